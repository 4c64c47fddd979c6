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

use super::devices::{env_processes, started_in_env};

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

/// First buffer size asked of the driver, in records; grown when the driver needs more.
const FIRST_CAPACITY: usize = 64;

/// Calls `real(count, buffer)` with a buffer of our own, keeps the environment's processes with the ledger's
/// figures, and answers the caller with NVML's sizing protocol: `*count` comes in as the
/// caller's capacity and goes back as the number of records; when they do not fit (a NULL
/// buffer with count 0 is the usual probe) the answer is NVML_ERROR_INSUFFICIENT_SIZE and the
/// buffer is left alone.
///
/// # Safety
/// `count` and `out` as the process-list functions take them; `real` calls the driver's.
pub(crate) unsafe fn filtered(
    real: impl Fn(*mut c_uint, *mut u8) -> Ret,
    dev: Device,
    count: *mut c_uint,
    out: *mut u8,
    stride: usize,
) -> Ret {
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
        let mut cap = wanted.clamp(1, FIRST_CAPACITY);
        let mut buf: Vec<u64>;
        let mut n: c_uint;
        let mut tries = 0;
        loop {
            buf = vec![0u64; cap * words];
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
        let n = (n as usize).min(cap);
        let env = env_processes(host);
        let mut kept = 0usize;
        for i in 0..n {
            let rec = &buf[i * words..(i + 1) * words];
            let b = rec[0].to_ne_bytes();
            let pid = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
            let used = match env.iter().find(|(p, _)| *p == pid) {
                Some(&(_, used)) => used,
                // Holds nothing through the shim yet.
                None if started_in_env(pid) => 0,
                None => continue,
            };
            let dst = kept * words;
            buf.copy_within(i * words..(i + 1) * words, dst);
            buf[dst + 1] = used;
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
