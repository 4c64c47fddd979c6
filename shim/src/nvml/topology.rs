//! Functions that answer lists of device handles (topology neighbours, a CPU's GPUs, a unit's
//! GPUs): only the view's devices are kept, so no handle of another GPU reaches the program.

use std::ffi::c_uint;

use super::*;

/// How a function answers a count of 0: the topology functions treat it as a size query and
/// succeed; `nvmlUnitGetDevices` answers ERROR_INSUFFICIENT_SIZE like the process lists.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Probe {
    Succeeds,
    Insufficient,
}

/// First buffer asked of the driver, in handles (a machine rarely has more GPUs).
const FIRST_CAPACITY: usize = 64;

/// Runs `call(count, buffer)` on a buffer of our own, keeps the view's devices, and answers the
/// caller's `count` / `out` like the driver would have for that list.
///
/// # Safety
/// `count` and `out` as the handle-list functions take them; `call` calls the driver's.
pub(super) unsafe fn filtered(
    call: impl Fn(*mut c_uint, *mut Device) -> Ret,
    count: *mut c_uint,
    out: *mut Device,
    probe: Probe,
) -> Ret {
    // SAFETY: the caller's count and buffer, read and written as the driver would (see the
    // function's contract); our own buffer is large enough for what the driver wrote in it.
    unsafe {
        if count.is_null() || !in_env() {
            return call(count, out);
        }
        let mut cap = FIRST_CAPACITY;
        let mut buf: Vec<Device>;
        let mut n: c_uint;
        let mut tries = 0;
        loop {
            buf = vec![std::ptr::null_mut(); cap];
            n = cap as c_uint;
            let r = call(&mut n, buf.as_mut_ptr());
            if r == ERROR_INSUFFICIENT_SIZE && (n as usize) > cap && tries < 4 {
                cap = n as usize;
                tries += 1;
                continue;
            }
            if r != SUCCESS {
                return r;
            }
            break;
        }
        let kept: Vec<Device> = buf[..(n as usize).min(cap)]
            .iter()
            .copied()
            .filter(|&h| host_index(h).ok().and_then(virtual_of_host).is_some())
            .collect();
        let wanted = *count as usize;
        *count = kept.len() as c_uint;
        if wanted == 0 && probe == Probe::Succeeds {
            return SUCCESS;
        }
        if kept.len() > wanted {
            return ERROR_INSUFFICIENT_SIZE;
        }
        if kept.is_empty() {
            return SUCCESS;
        }
        if out.is_null() {
            return ERROR_INVALID_ARGUMENT;
        }
        std::ptr::copy_nonoverlapping(kept.as_ptr(), out, kept.len());
        SUCCESS
    }
}
