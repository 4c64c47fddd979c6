//! Process lists: the real driver's list, keeping only the environment's processes.
//!
//! A process belongs to the environment when the shim registered it in the ledger under the
//! environment (at its first allocation) or, before that, when it was started with the
//! environment's `GENV_ENVIRONMENT_ID` (it then holds none of the capacity). Its `usedGpuMemory` is
//! what the ledger says it holds on that device: the allocations made through the shim, the
//! figure the capacity is enforced on, so NVML, `cuMemGetInfo` and enforcement agree. The
//! driver's own figure also counts the CUDA context, which the capacity does not.
//!
//! The same filter serves the public `nvmlDeviceGet*RunningProcesses*` functions and nvidia-smi's
//! private export-table slots; records differ only in size (pid u32 at 0, usedGpuMemory u64 at
//! 8 in all of them).

use std::ffi::c_uint;

use super::*;

/// `nvmlProcessInfo_v1_t`.
const V1: usize = 16;
/// `nvmlProcessInfo_v2_t`, also what the `_v3` functions take.
const V2: usize = 24;

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
}

/// Defines one public wrapper: its real function and record size.
macro_rules! list_wrapper {
    ($($w:ident => $real:ident, $stride:expr;)*) => {$(
        unsafe extern "C" fn $w(dev: Device, count: *mut c_uint, out: *mut u8) -> Ret {
            guard(|| match $real() {
                Ok(f) => filtered(f, dev, count, out, $stride),
                Err(e) => e,
            })
        }
    )*};
}

list_wrapper! {
    compute => real_compute, V1;
    compute_v2 => real_compute_v2, V2;
    compute_v3 => real_compute_v3, V2;
    graphics => real_graphics, V1;
    graphics_v2 => real_graphics_v2, V2;
    graphics_v3 => real_graphics_v3, V2;
    mps => real_mps, V1;
    mps_v2 => real_mps_v2, V2;
    mps_v3 => real_mps_v3, V2;
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
        _ => return None,
    };
    Some(f as *mut c_void)
}

/// First buffer size asked of the driver, in records; grown when the driver needs more.
const FIRST_CAPACITY: usize = 64;

/// Calls `real` with a buffer of our own, keeps the environment's processes with the ledger's
/// figures, and answers the caller with NVML's sizing protocol: `*count` comes in as the
/// caller's capacity and goes back as the number of records; when they do not fit (a NULL
/// buffer with count 0 is the usual probe) the answer is NVML_ERROR_INSUFFICIENT_SIZE and the
/// buffer is left alone.
pub(crate) unsafe fn filtered(
    real: ListFn,
    dev: Device,
    count: *mut c_uint,
    out: *mut u8,
    stride: usize,
) -> Ret {
    if count.is_null() {
        return real(dev, count, out);
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
        let r = real(dev, &mut n, buf.as_mut_ptr() as *mut u8);
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
