//! Process lists: the real driver's list, keeping only the environment's processes.
//!
//! A process belongs to the environment when the shim registered it in the ledger under the
//! environment (at its first allocation) or, before that, when it was started with the
//! environment's `GENV_ENVIRONMENT_ID` (it then holds none of the capacity). Its
//! `usedGpuMemory` is what the ledger says it holds on that device: the allocations made
//! through the shim, the figure the capacity is enforced on, so NVML, `cuMemGetInfo` and
//! enforcement agree. The driver's own figure also counts the CUDA context, which the capacity
//! does not.
//!
//! The same filter serves the public `nvmlDeviceGet*RunningProcesses*` functions,
//! `nvmlDeviceGetRunningProcessDetailList` and nvidia-smi's private export-table slots; records
//! differ only in size (pid u32 at 0, usedGpuMemory u64 at 8 in all of them).

use std::ffi::c_uint;

use super::*;

use super::devices::{env_pids, pid_used, started_in_env};

/// `nvmlProcessInfo_v1_t`.
pub(super) const V1: usize = 16;
/// `nvmlProcessInfo_v2_t`, and what the `_v3` functions write in most drivers.
pub(super) const V2: usize = 24;
/// `nvmlProcessDetail_v1_t`, and the `_v3` record of the drivers whose header briefly gave
/// `nvmlProcessInfo_t` a `usedGpuCcProtectedMemory` field.
pub(super) const V3_CC: usize = 32;

/// The record size of process-list function `name`, by its generation suffix.
pub(super) fn record_size(name: &str) -> usize {
    if name.ends_with("_v3") {
        v3_stride()
    } else if name.ends_with("_v2") {
        V2
    } else {
        V1
    }
}

/// The `_v3` record size of the driver in use. Drivers that have confidential-computing memory
/// queries but not yet the detail list wrote 32-byte `_v3` records; the others 24 (the same
/// test nvitop makes). We must read the driver's records with the driver's size, and the caller
/// expects what the driver would have written.
fn v3_stride() -> usize {
    static STRIDE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let s = STRIDE.load(Ordering::Relaxed);
    if s != 0 {
        return s;
    }
    let cc = !real::NVML
        .sym(c"nvmlDeviceGetConfComputeMemSizeInfo")
        .is_null();
    let detail = !real::NVML
        .sym(c"nvmlDeviceGetRunningProcessDetailList")
        .is_null();
    let s = if cc && !detail { V3_CC } else { V2 };
    STRIDE.store(s, Ordering::Relaxed);
    s
}

/// `nvmlProcessDetailList_v1_t`: the caller's version and mode go to the driver as they are.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DetailList {
    version: c_uint,
    mode: c_uint,
    entries: c_uint,
    records: *mut u8,
}

/// `nvmlProcessDetailList_v1`: the struct's size, version 1 in the top byte.
const DETAIL_LIST_V1: c_uint = (std::mem::size_of::<DetailList>() as c_uint) | (1 << 24);

/// # Safety
/// The arguments as `nvmlDeviceGetRunningProcessDetailList` takes them.
pub(super) unsafe fn detail_list(
    real: unsafe extern "C" fn(Device, *mut DetailList) -> Ret,
    dev: Device,
    list: *mut DetailList,
) -> Ret {
    // SAFETY: the caller's list, read and written as the driver would.
    unsafe {
        // A version we do not know may lay records out differently: the driver's answer.
        if list.is_null() || (*list).version != DETAIL_LIST_V1 {
            return real(dev, list);
        }
        let asked = *list;
        let call = |n: *mut c_uint, b: *mut u8| {
            let mut l = DetailList {
                entries: *n,
                records: b,
                ..asked
            };
            let r = real(dev, &mut l);
            *n = l.entries;
            r
        };
        filtered(call, dev, &mut (*list).entries, (*list).records, V3_CC)
    }
}

/// First buffer size asked of the driver, in records; grown when the driver needs more. Small:
/// a GPU runs few processes, and nvidia-smi asks three lists per GPU with room for 500 records
/// of 4 KiB each, which we must not zero every time.
const FIRST_CAPACITY: usize = 8;

/// How far the driver's records can be trusted.
#[derive(Clone, Copy)]
pub(crate) enum Check {
    /// A measured layout: each record is what its layout says.
    Trusted,
    /// A layout taken from the newest measured one but not measured itself (name at this
    /// offset): every record the driver wrote must be [`plausible`], or none is shown. The
    /// function hears which.
    Unmeasured(usize, fn(bool)),
}

/// [`filter_records`] of a measured layout.
///
/// # Safety
/// As [`filter_records`].
pub(crate) unsafe fn filtered(
    real: impl Fn(*mut c_uint, *mut u8) -> Ret,
    dev: Device,
    count: *mut c_uint,
    out: *mut u8,
    stride: usize,
) -> Ret {
    // SAFETY: the caller's contract.
    unsafe { filter_records(real, dev, count, out, Rec::list(stride), Check::Trusted) }
}

/// Where a record keeps what the filter reads and writes.
#[derive(Clone, Copy)]
pub(crate) struct Rec {
    /// Bytes per record, a multiple of 8.
    pub stride: usize,
    /// Offset of the u32 pid.
    pub pid: usize,
    /// Offset of the u64 memory figure the ledger's replaces, when the record has one.
    pub used: Option<usize>,
}

impl Rec {
    /// A process-list record: pid u32 at 0, usedGpuMemory u64 at 8.
    pub const fn list(stride: usize) -> Rec {
        Rec {
            stride,
            pid: 0,
            used: Some(8),
        }
    }
}

/// Calls `real(count, buffer)` with a buffer of our own, keeps the environment's processes with
/// the ledger's figures, and answers the caller with NVML's sizing protocol: `*count` comes in
/// as the caller's capacity and goes back as the number of records; when they do not fit (a
/// NULL buffer with count 0 is the usual probe) the answer is NVML_ERROR_INSUFFICIENT_SIZE and
/// the buffer is left alone.
///
/// # Safety
/// `count` and `out` as the process-list functions take them, with records laid out as `rec`
/// says; `real` calls the driver's.
pub(crate) unsafe fn filter_records(
    real: impl Fn(*mut c_uint, *mut u8) -> Ret,
    dev: Device,
    count: *mut c_uint,
    out: *mut u8,
    rec: Rec,
    check: Check,
) -> Ret {
    let stride = rec.stride;
    // SAFETY: the caller's count and buffer, read and written as the driver would (see the
    // function's contract); our own buffer is large enough for what the driver wrote in it.
    unsafe {
        if count.is_null() || !in_env() {
            return real(count, out);
        }
        let host = match host_index(dev) {
            Ok(h) => h,
            Err(e) => return e,
        };
        let wanted = *count as usize;
        // u64 words keep the records' u64 fields aligned; every record size is a multiple of 8.
        let words = stride / 8;
        // A driver whose records are larger than we think must not write past our buffer.
        let slack = match check {
            Check::Trusted => 1,
            Check::Unmeasured(..) => 2,
        };
        let mut cap = wanted.clamp(1, FIRST_CAPACITY);
        let mut buf: Vec<u64>;
        let mut n: c_uint;
        let mut tries = 0;
        loop {
            buf = vec![0u64; cap * words * slack];
            n = cap as c_uint;
            let r = real(&mut n, buf.as_mut_ptr() as *mut u8);
            if r == ERROR_INSUFFICIENT_SIZE && (n as usize) > cap && tries < 8 {
                // Processes may start between two calls: leave some room.
                cap = n as usize + 8;
                tries += 1;
                continue;
            }
            if r != SUCCESS {
                return r;
            }
            break;
        }
        if let (Check::Unmeasured(name, said), true) = (check, n > 0) {
            // SAFETY: our own buffer, read as bytes.
            let bytes = std::slice::from_raw_parts(buf.as_ptr() as *const u8, buf.len() * 8);
            let ok = (n as usize) <= cap
                && (0..n as usize).all(|i| plausible(&bytes[i * stride..(i + 1) * stride], name));
            said(ok);
            if !ok {
                *count = 0;
                return SUCCESS;
            }
        }
        let n = (n as usize).min(cap);
        if n == 0 {
            // Nothing to keep (graphics and MPS lists usually): no need to read the ledger.
            *count = 0;
            return SUCCESS;
        }
        let env = env_pids();
        let mut kept = 0usize;
        for i in 0..n {
            let w = buf[i * words + rec.pid / 8].to_ne_bytes();
            let o = rec.pid % 8;
            let pid = u32::from_ne_bytes([w[o], w[o + 1], w[o + 2], w[o + 3]]);
            let used = if env.contains(&pid) {
                pid_used(pid, host)
            } else if started_in_env(pid) {
                // Holds nothing through the shim yet.
                0
            } else {
                continue;
            };
            let dst = kept * words;
            buf.copy_within(i * words..(i + 1) * words, dst);
            if let Some(u) = rec.used {
                buf[dst + u / 8] = used;
            }
            kept += 1;
        }
        *count = kept as c_uint;
        if kept > wanted {
            return ERROR_INSUFFICIENT_SIZE;
        }
        if kept == 0 {
            return SUCCESS;
        }
        if out.is_null() {
            return ERROR_INVALID_ARGUMENT;
        }
        std::ptr::copy_nonoverlapping(buf.as_ptr() as *const u8, out, kept * stride);
        SUCCESS
    }
}

/// `nvmlProcessUtilizationSample_t`: pid u32 at 0, then a timestamp and percentages.
const UTILIZATION_SAMPLE: Rec = Rec {
    stride: 32,
    pid: 0,
    used: None,
};
/// `nvmlProcessUtilizationInfo_v1_t`: a timestamp, then pid u32 at 8 and percentages.
const UTILIZATION_INFO: Rec = Rec {
    stride: 40,
    pid: 8,
    used: None,
};

/// `nvmlDeviceGetProcessUtilization`: the samples of the environment's processes only (the
/// driver's sizing protocol, with the buffer before the count).
///
/// # Safety
/// The arguments as that function takes them; `real(buffer, count)` calls the driver's.
pub(super) unsafe fn utilization(
    real: impl Fn(*mut u8, *mut c_uint) -> Ret,
    dev: Device,
    samples: *mut u8,
    count: *mut c_uint,
) -> Ret {
    // SAFETY: the caller's contract.
    let r = unsafe {
        filter_records(
            |n, b| real(b, n),
            dev,
            count,
            samples,
            UTILIZATION_SAMPLE,
            Check::Trusted,
        )
    };
    // SAFETY: as above.
    unsafe { no_samples(r, count) }
}

/// The driver answers NVML_ERROR_NOT_FOUND when it has no sample: so do we when none is the
/// environment's.
///
/// # Safety
/// `count` as the utilisation functions take it.
unsafe fn no_samples(r: Ret, count: *const c_uint) -> Ret {
    // SAFETY: the caller's count, written by the filter when it succeeded.
    if r == SUCCESS && in_env() && !count.is_null() && unsafe { *count } == 0 {
        ERROR_NOT_FOUND
    } else {
        r
    }
}

/// `nvmlProcessesUtilizationInfo_v1_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UtilizationInfo {
    version: c_uint,
    count: c_uint,
    last_seen: u64,
    records: *mut u8,
}

/// `nvmlProcessesUtilizationInfo_v1`: the struct's size, version 1 in the top byte.
const UTILIZATION_INFO_V1: c_uint = (std::mem::size_of::<UtilizationInfo>() as c_uint) | (1 << 24);

/// `nvmlDeviceGetProcessesUtilizationInfo` (550 on): the environment's processes only.
///
/// # Safety
/// The arguments as that function takes them.
pub(super) unsafe fn utilization_info(
    real: unsafe extern "C" fn(Device, *mut UtilizationInfo) -> Ret,
    dev: Device,
    info: *mut UtilizationInfo,
) -> Ret {
    // SAFETY: the caller's struct, read and written as the driver would.
    unsafe {
        // A version we do not know may lay records out differently: none is shown.
        if info.is_null() || (*info).version != UTILIZATION_INFO_V1 {
            if !in_env() {
                return real(dev, info);
            }
            return ERROR_NOT_SUPPORTED;
        }
        let asked = *info;
        let last_seen = std::ptr::addr_of_mut!((*info).last_seen);
        let call = move |n: *mut c_uint, b: *mut u8| {
            let mut i = UtilizationInfo {
                count: *n,
                records: b,
                ..asked
            };
            let r = real(dev, &mut i);
            *n = i.count;
            *last_seen = i.last_seen;
            r
        };
        let count = std::ptr::addr_of_mut!((*info).count);
        let r = filter_records(
            call,
            dev,
            count,
            asked.records,
            UTILIZATION_INFO,
            Check::Trusted,
        );
        no_samples(r, count)
    }
}

/// Whether `pid` is a process the environment may not see (it is in one and `pid` is neither
/// one of its processes nor started in it).
pub(super) fn foreign(pid: c_uint) -> bool {
    in_env() && !env_pids().contains(&pid) && !started_in_env(pid)
}

/// A list of pids (`nvmlDeviceGetAccountingPids`): the environment's only, with NVML's sizing
/// protocol (`*count` in: capacity, out: entries; NVML_ERROR_INSUFFICIENT_SIZE when short).
///
/// # Safety
/// `count` and `pids` as that function takes them; `real(count, buffer)` calls the driver's.
pub(super) unsafe fn pid_list(
    real: impl Fn(*mut c_uint, *mut c_uint) -> Ret,
    count: *mut c_uint,
    pids: *mut c_uint,
) -> Ret {
    // SAFETY: the caller's count and buffer, as the driver would use them; ours holds `cap`.
    unsafe {
        if count.is_null() || !in_env() {
            return real(count, pids);
        }
        let wanted = *count as usize;
        let mut cap = wanted.clamp(1, 64);
        let mut buf: Vec<c_uint>;
        let mut n: c_uint;
        let mut tries = 0;
        loop {
            buf = vec![0; cap];
            n = cap as c_uint;
            let r = real(&mut n, buf.as_mut_ptr());
            if r == ERROR_INSUFFICIENT_SIZE && (n as usize) > cap && tries < 8 {
                cap = n as usize + 8;
                tries += 1;
                continue;
            }
            if r != SUCCESS {
                return r;
            }
            break;
        }
        buf.truncate((n as usize).min(cap));
        buf.retain(|&p| !foreign(p));
        *count = buf.len() as c_uint;
        if buf.len() > wanted {
            return ERROR_INSUFFICIENT_SIZE;
        }
        if !buf.is_empty() {
            if pids.is_null() {
                return ERROR_INVALID_ARGUMENT;
            }
            std::ptr::copy_nonoverlapping(buf.as_ptr(), pids, buf.len());
        }
        SUCCESS
    }
}

/// Whether `rec` reads as a record of a running process with its name at offset `name`: a pid
/// that exists, instance ids that are "none" or small, and a non-empty name within its field
/// that is the process's argv[0], executable or comm. Misread records (another record size,
/// another name offset) fail all but by coincidence.
fn plausible(rec: &[u8], name: usize) -> bool {
    use genv_abi::nvml::export::{NAME_LEN, RECORD_COMPUTE_INSTANCE, RECORD_GPU_INSTANCE};
    let u32_at = |o: usize| u32::from_ne_bytes([rec[o], rec[o + 1], rec[o + 2], rec[o + 3]]);
    let pid = u32_at(0);
    let instance = |id: u32| id == NO_INSTANCE || id < 1024;
    if pid == 0
        || !instance(u32_at(RECORD_GPU_INSTANCE))
        || !instance(u32_at(RECORD_COMPUTE_INSTANCE))
        || rec.len() < name + NAME_LEN
    {
        return false;
    }
    let field = &rec[name..name + NAME_LEN];
    let Some(end) = field.iter().position(|&b| b == 0) else {
        return false;
    };
    let shown = &field[..end];
    if shown.is_empty() {
        return false;
    }
    let proc = format!("/proc/{pid}");
    let argv0 = std::fs::read(format!("{proc}/cmdline"))
        .is_ok_and(|c| c.split(|&b| b == 0).next() == Some(shown));
    argv0
        || std::fs::read_link(format!("{proc}/exe"))
            .is_ok_and(|p| p.as_os_str().as_encoded_bytes() == shown)
        || std::fs::read(format!("{proc}/comm"))
            .is_ok_and(|c| c.strip_suffix(b"\n").unwrap_or(&c) == shown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use genv_abi::nvml::export::{RECORD_525, RECORD_535};

    fn record(r: genv_abi::nvml::export::Record, pid: u32, name: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; r.size];
        v[..4].copy_from_slice(&pid.to_ne_bytes());
        v[0x10..0x18].fill(0xff);
        v[r.name..r.name + name.len()].copy_from_slice(name);
        v
    }

    #[test]
    fn plausible_records() {
        let me = std::process::id();
        let argv0 = std::fs::read("/proc/self/cmdline").unwrap();
        let argv0 = argv0.split(|&b| b == 0).next().unwrap().to_vec();
        let comm = std::fs::read("/proc/self/comm").unwrap();
        let comm = comm.strip_suffix(b"\n").unwrap();
        for name in [&argv0[..], comm] {
            assert!(plausible(&record(RECORD_535, me, name), RECORD_535.name));
            assert!(plausible(&record(RECORD_525, me, name), RECORD_525.name));
            // A record too short for the name offset it is read with.
            assert!(!plausible(&record(RECORD_525, me, name), RECORD_535.name));
        }
        // A 525 record read as 535's: the name seen starts 8 bytes into the real one.
        let mut shifted = record(RECORD_535, me, b"");
        shifted[RECORD_525.name..RECORD_525.name + argv0.len()].copy_from_slice(&argv0);
        assert!(argv0.len() > 8);
        assert!(!plausible(&shifted, RECORD_535.name));
        assert!(!plausible(&record(RECORD_535, me, b""), RECORD_535.name));
        assert!(!plausible(
            &record(RECORD_535, me, b"not-this-process"),
            RECORD_535.name
        ));
        assert!(!plausible(&record(RECORD_535, 0, comm), RECORD_535.name));
        let mut mig = record(RECORD_535, me, comm);
        mig[0x10..0x14].copy_from_slice(&5u32.to_ne_bytes());
        assert!(plausible(&mig, RECORD_535.name), "a MIG instance id");
        mig[0x10..0x14].copy_from_slice(&0x1234_5678u32.to_ne_bytes());
        assert!(!plausible(&mig, RECORD_535.name));
        // No NUL in the field.
        let mut full = record(RECORD_535, me, comm);
        full[RECORD_535.name..].fill(b'a');
        assert!(!plausible(&full, RECORD_535.name));
    }
}
