//! Functions that answer lists of device handles (topology neighbours, a CPU's GPUs, a unit's
//! GPUs): only the view's devices are kept, so no handle of another GPU reaches the program.

use std::ffi::c_uint;

use super::*;

real_fn! {
    real_nearest = c"nvmlDeviceGetTopologyNearestGpus": fn(Device, c_uint, *mut c_uint, *mut Device);
    real_gpu_set = c"nvmlSystemGetTopologyGpuSet": fn(c_uint, *mut c_uint, *mut Device);
    real_unit_devices = c"nvmlUnitGetDevices": fn(*mut c_void, *mut c_uint, *mut Device);
}

pub(super) fn lookup(name: &[u8]) -> Option<*mut c_void> {
    Some(match name {
        b"nvmlDeviceGetTopologyNearestGpus" => {
            nearest as unsafe extern "C" fn(_, _, _, _) -> _ as *mut c_void
        }
        b"nvmlSystemGetTopologyGpuSet" => {
            gpu_set as unsafe extern "C" fn(_, _, _) -> _ as *mut c_void
        }
        b"nvmlUnitGetDevices" => unit_devices as unsafe extern "C" fn(_, _, _) -> _ as *mut c_void,
        _ => return None,
    })
}

/// How a function answers a count of 0: the topology functions treat it as a size query and
/// succeed; `nvmlUnitGetDevices` answers INSUFFICIENT_SIZE like the process lists.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    Succeeds,
    Insufficient,
}

/// First buffer asked of the driver, in handles (a machine rarely has more GPUs).
const FIRST_CAPACITY: usize = 64;

/// Runs `call(count, buffer)` on a buffer of our own, keeps the view's devices, and answers the
/// caller's `count` / `out` like the driver would have for that list.
unsafe fn filtered(
    call: impl Fn(*mut c_uint, *mut Device) -> Ret,
    count: *mut c_uint,
    out: *mut Device,
    probe: Probe,
) -> Ret {
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
        if r == INSUFFICIENT_SIZE && (n as usize) > cap && tries < 4 {
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
        return INSUFFICIENT_SIZE;
    }
    if kept.is_empty() {
        return SUCCESS;
    }
    if out.is_null() {
        return INVALID_ARGUMENT;
    }
    std::ptr::copy_nonoverlapping(kept.as_ptr(), out, kept.len());
    SUCCESS
}

unsafe extern "C" fn nearest(
    dev: Device,
    level: c_uint,
    count: *mut c_uint,
    out: *mut Device,
) -> Ret {
    guard(|| match real_nearest() {
        Ok(f) => filtered(|n, b| f(dev, level, n, b), count, out, Probe::Succeeds),
        Err(e) => e,
    })
}

unsafe extern "C" fn gpu_set(cpu: c_uint, count: *mut c_uint, out: *mut Device) -> Ret {
    guard(|| match real_gpu_set() {
        Ok(f) => filtered(|n, b| f(cpu, n, b), count, out, Probe::Succeeds),
        Err(e) => e,
    })
}

unsafe extern "C" fn unit_devices(unit: *mut c_void, count: *mut c_uint, out: *mut Device) -> Ret {
    guard(|| match real_unit_devices() {
        Ok(f) => filtered(|n, b| f(unit, n, b), count, out, Probe::Insufficient),
        Err(e) => e,
    })
}
