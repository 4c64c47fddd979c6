//! Event sets. Nothing ever happens on the simulated GPUs, so a wait always times out; the
//! calls still exist because nvidia-smi stops without nvmlEventSetCreate / nvmlEventSetFree.

use std::ffi::{c_uint, c_ulonglong};
use std::sync::Mutex;
use std::time::Duration;

use crate::*;

/// Addresses of the live sets, so a stale or foreign pointer is refused, never freed.
static SETS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// What an nvmlEventSet_t points at.
struct EventSet {
    _registered: u64,
}

fn known(set: sys::nvmlEventSet_t) -> Result<(), Ret> {
    let sets = SETS.lock().unwrap_or_else(|e| e.into_inner());
    if !set.is_null() && sets.contains(&(set as usize)) {
        Ok(())
    } else {
        Err(INVALID_ARGUMENT)
    }
}

/// ECC single/double bit, P-state, Xid and clock events, as on a datacenter GPU.
const SUPPORTED_EVENTS: c_ulonglong = 0x1f;

unsafe fn wait(
    set: sys::nvmlEventSet_t,
    data: *mut sys::nvmlEventData_t,
    timeout_ms: c_uint,
) -> Result<(), Ret> {
    initialized()?;
    known(set)?;
    if data.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    std::thread::sleep(Duration::from_millis(timeout_ms as u64));
    Err(TIMEOUT)
}

nvml! {
    fn nvmlEventSetCreate(set: *mut sys::nvmlEventSet_t) {
        initialized()?;
        if set.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        let p = Box::into_raw(Box::new(EventSet { _registered: 0 }));
        SETS.lock().unwrap_or_else(|e| e.into_inner()).push(p as usize);
        out(set, p as sys::nvmlEventSet_t)
    }
    fn nvmlEventSetFree(set: sys::nvmlEventSet_t) {
        initialized()?;
        let mut sets = SETS.lock().unwrap_or_else(|e| e.into_inner());
        let i = sets.iter().position(|&s| s == set as usize).ok_or(INVALID_ARGUMENT)?;
        sets.swap_remove(i);
        drop(Box::from_raw(set as *mut EventSet));
        Ok(())
    }
    fn nvmlEventSetWait(set: sys::nvmlEventSet_t, data: *mut sys::nvmlEventData_t, timeout_ms: c_uint) {
        wait(set, data, timeout_ms)
    }
    fn nvmlEventSetWait_v2(set: sys::nvmlEventSet_t, data: *mut sys::nvmlEventData_t, timeout_ms: c_uint) {
        wait(set, data, timeout_ms)
    }
    fn nvmlDeviceRegisterEvents(device: sys::nvmlDevice_t, types: c_ulonglong, set: sys::nvmlEventSet_t) {
        crate::device(device)?;
        known(set)?;
        if types & !SUPPORTED_EVENTS != 0 {
            return Err(NOT_SUPPORTED);
        }
        Ok(())
    }
    fn nvmlDeviceGetSupportedEventTypes(device: sys::nvmlDevice_t, types: *mut c_ulonglong) {
        crate::device(device)?;
        out(types, SUPPORTED_EVENTS)
    }
}
