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

/// `nvmlProcessInfo_v1_t`.
const V1: usize = 16;
/// `nvmlProcessInfo_v2_t`, and what the `_v3` functions write in most drivers.
const V2: usize = 24;
/// `nvmlProcessDetail_v1_t`, and the `_v3` record of the drivers whose header briefly gave
/// `nvmlProcessInfo_t` a `usedGpuCcProtectedMemory` field.
const V3_CC: usize = 32;

/// The signature shared by every process-list function (the record type is opaque here).
pub(crate) type ListFn = unsafe extern "C" fn(Device, *mut c_uint, *mut u8) -> Ret;

real_fn! {
    real_compute = c"nvmlDeviceGetComputeRunningProcesses": fn(Device, *mut c_uint, *mut u8);
    real_compute_v2 = c"nvmlDeviceGetComputeRunningProcesses_v2": fn(Device, *mut c_uint, *mut u8);
    real_compute_v3 = c"nvmlDeviceGetComputeRunningProcesses_v3": fn(Device, *mut c_uint, *mut u8);
    real_graphics = c"nvmlDeviceGetGraphicsRunningProcesses": fn(Device, *mut c_uint, *mut u8);
    real_graphics_v2 = c"nvmlDeviceGetGraphicsRunningProcesses_v2": fn(Device, *mut c_uint, *mut u8);
    real_graphics_v3 = c"nvmlDeviceGetGraphicsRunningProcesses_v3": fn(Device, *mut c_uint, *mut u8);
    real_mps = c"nvmlDeviceGetMPSComputeRunningProcesses": fn(Device, *mut c_uint, *mut u8);
    real_mps_v2 = c"nvmlDeviceGetMPSComputeRunningProcesses_v2": fn(Device, *mut c_uint, *mut u8);
    real_mps_v3 = c"nvmlDeviceGetMPSComputeRunningProcesses_v3": fn(Device, *mut c_uint, *mut u8);
    real_detail_list = c"nvmlDeviceGetRunningProcessDetailList": fn(Device, *mut DetailList);
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
    let cc = !crate::hook::real_nvml(c"nvmlDeviceGetConfComputeMemSizeInfo").is_null();
    let detail = !crate::hook::real_nvml(c"nvmlDeviceGetRunningProcessDetailList").is_null();
    let s = if cc && !detail { V3_CC } else { V2 };
    STRIDE.store(s, Ordering::Relaxed);
    s
}

/// Defines one public wrapper: its real function and record size.
macro_rules! list_wrapper {
    ($($w:ident => $real:ident, $stride:expr;)*) => {$(
        unsafe extern "C" fn $w(dev: Device, count: *mut c_uint, out: *mut u8) -> Ret {
            guard(|| match $real() {
                Ok(f) => filtered(|n, b| f(dev, n, b), dev, count, out, $stride),
                Err(e) => e,
            })
        }
    )*};
}

list_wrapper! {
    compute => real_compute, V1;
    compute_v2 => real_compute_v2, V2;
    compute_v3 => real_compute_v3, v3_stride();
    graphics => real_graphics, V1;
    graphics_v2 => real_graphics_v2, V2;
    graphics_v3 => real_graphics_v3, v3_stride();
    mps => real_mps, V1;
    mps_v2 => real_mps_v2, V2;
    mps_v3 => real_mps_v3, v3_stride();
}

pub(super) fn lookup(name: &[u8]) -> Option<*mut c_void> {
    let f: ListFn = match name {
        b"nvmlDeviceGetComputeRunningProcesses" => compute,
        b"nvmlDeviceGetComputeRunningProcesses_v2" => compute_v2,
        b"nvmlDeviceGetComputeRunningProcesses_v3" => compute_v3,
        b"nvmlDeviceGetGraphicsRunningProcesses" => graphics,
        b"nvmlDeviceGetGraphicsRunningProcesses_v2" => graphics_v2,
        b"nvmlDeviceGetGraphicsRunningProcesses_v3" => graphics_v3,
        b"nvmlDeviceGetMPSComputeRunningProcesses" => mps,
        b"nvmlDeviceGetMPSComputeRunningProcesses_v2" => mps_v2,
        b"nvmlDeviceGetMPSComputeRunningProcesses_v3" => mps_v3,
        b"nvmlDeviceGetRunningProcessDetailList" => {
            return Some(detail_list as unsafe extern "C" fn(_, _) -> _ as *mut c_void)
        }
        _ => return None,
    };
    Some(f as *mut c_void)
}

/// `nvmlProcessDetailList_v1_t`: the caller's version and mode go to the driver as they are.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct DetailList {
    version: c_uint,
    mode: c_uint,
    entries: c_uint,
    records: *mut u8,
}

/// `nvmlProcessDetailList_v1`: size 24, version 1 in the top byte.
const DETAIL_LIST_V1: c_uint = (std::mem::size_of::<DetailList>() as c_uint) | (1 << 24);

unsafe extern "C" fn detail_list(dev: Device, list: *mut DetailList) -> Ret {
    guard(|| {
        let f = match real_detail_list() {
            Ok(f) => f,
            Err(e) => return e,
        };
        // A version we do not know may lay records out differently: the driver's answer.
        if list.is_null() || (*list).version != DETAIL_LIST_V1 {
            return f(dev, list);
        }
        let asked = *list;
        let call = |n: *mut c_uint, b: *mut u8| {
            let mut l = DetailList {
                entries: *n,
                records: b,
                ..asked
            };
            let r = f(dev, &mut l);
            *n = l.entries;
            r
        };
        filtered(call, dev, &mut (*list).entries, (*list).records, V3_CC)
    })
}

/// First buffer size asked of the driver, in records; grown when the driver needs more.
const FIRST_CAPACITY: usize = 64;

/// Calls `real(count, buffer)` with a buffer of our own, keeps the environment's processes with the ledger's
/// figures, and answers the caller with NVML's sizing protocol: `*count` comes in as the
/// caller's capacity and goes back as the number of records; when they do not fit (a NULL
/// buffer with count 0 is the usual probe) the answer is NVML_ERROR_INSUFFICIENT_SIZE and the
/// buffer is left alone.
pub(crate) unsafe fn filtered(
    real: impl Fn(*mut c_uint, *mut u8) -> Ret,
    dev: Device,
    count: *mut c_uint,
    out: *mut u8,
    stride: usize,
) -> Ret {
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
        if r == INSUFFICIENT_SIZE && (n as usize) > cap && tries < 8 {
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
        return INSUFFICIENT_SIZE;
    }
    if kept == 0 {
        return SUCCESS;
    }
    if out.is_null() {
        return INVALID_ARGUMENT;
    }
    std::ptr::copy_nonoverlapping(buf.as_ptr() as *const u8, out, kept * stride);
    SUCCESS
}
