//! Device enumeration under NVML, and the environment's view as the NVML wrappers need it.

use super::*;
use crate::view::EnvMemory;

// SAFETY: the driver's C signature of that name.
static GET_INDEX: Real<unsafe extern "C" fn(Device, *mut c_uint) -> Ret> =
    unsafe { Real::new(&real::NVML, c"nvmlDeviceGetIndex") };

/// Whether the process is in an environment now; the wrappers pass through when not.
pub(super) fn in_env() -> bool {
    crate::view::get().is_some()
}

/// The NVML index behind virtual index `i`.
pub(super) fn host_of_virtual(i: c_uint) -> Option<u32> {
    let v = crate::view::get()?;
    v.devices().get(i as usize).map(|d| d.host_index)
}

/// The virtual index of NVML index `host`, when that device is attached.
pub(super) fn virtual_of_host(host: u32) -> Option<u32> {
    crate::view::get()?.host_to_virtual(host)
}

/// The NVML index of a real handle.
pub(super) fn host_index(dev: Device) -> Result<u32, Ret> {
    let f = GET_INDEX.get().ok_or(ERROR_FUNCTION_NOT_FOUND)?;
    let mut i: c_uint = 0;
    // SAFETY: a handle of the caller's and a valid out pointer.
    match unsafe { f(dev, &mut i) } {
        SUCCESS => Ok(i),
        e => Err(e),
    }
}

/// The environment's processes (one scan of the ledger).
pub(super) fn env_pids() -> Vec<u32> {
    crate::view::get().map_or_else(Vec::new, |v| v.env_pids())
}

/// What process `pid` of the environment holds on NVML device `host` (one scan of the ledger:
/// asked only for the processes a list keeps).
pub(super) fn pid_used(pid: u32, host: u32) -> u64 {
    crate::view::get().map_or(0, |v| v.pid_used(pid, host))
}

/// Whether process `pid` was started in this environment although it has no ledger slot: the
/// shim registers a process at its first allocation, so one that only made a context is known
/// by its `GENV_ENVIRONMENT_ID` alone. Another user's environment is unreadable: such a process
/// stays hidden until it allocates.
pub(super) fn started_in_env(pid: u32) -> bool {
    let Some(v) = crate::view::get() else {
        return false;
    };
    if v.broken || v.eid.is_empty() {
        return false;
    }
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let want = format!("GENV_ENVIRONMENT_ID={}", v.eid);
    environ.split(|&b| b == 0).any(|e| e == want.as_bytes())
}

/// After the real `nvmlDeviceGetCount*` answered `r` into `n` (its answers for an
/// uninitialised library or a NULL pointer stand): the environment's count.
///
/// # Safety
/// `n` as those functions take it.
pub(super) unsafe fn count(r: Ret, n: *mut c_uint) -> Ret {
    if r != SUCCESS || !in_env() {
        return r;
    }
    let c = crate::view::get().map_or(0, |v| v.devices().len());
    // SAFETY: the driver succeeded, so `n` is a valid out pointer.
    unsafe { *n = c as c_uint };
    SUCCESS
}

/// A handle by virtual index: `call` with the host index behind it.
pub(super) fn by_index(index: c_uint, call: impl FnOnce(c_uint) -> Ret) -> Ret {
    if !in_env() {
        return call(index);
    }
    match host_of_virtual(index) {
        Some(host) => call(host),
        None => ERROR_INVALID_ARGUMENT,
    }
}

/// After a real lookup by identity (UUID, serial, bus id) answered `r` and `*dev`: found only
/// when that device is attached.
///
/// # Safety
/// `dev` as those functions take it.
pub(super) unsafe fn by_key(r: Ret, dev: *mut Device) -> Ret {
    if r != SUCCESS || !in_env() {
        return r;
    }
    // SAFETY: written by the driver on success.
    let attached = host_index(unsafe { *dev })
        .ok()
        .and_then(virtual_of_host)
        .is_some();
    if !attached {
        // SAFETY: as above.
        unsafe { *dev = std::ptr::null_mut() };
        return ERROR_NOT_FOUND;
    }
    SUCCESS
}

/// After the real `nvmlDeviceGetIndex` answered `r` and `*index`: the virtual index.
///
/// # Safety
/// `index` as that function takes it.
pub(super) unsafe fn index(r: Ret, index: *mut c_uint) -> Ret {
    if r != SUCCESS || !in_env() {
        return r;
    }
    // A detached device's handle (kept from before a detach) has no index in the view.
    // SAFETY: written by the driver on success.
    match virtual_of_host(unsafe { *index }) {
        Some(v) => {
            // SAFETY: as above.
            unsafe { *index = v };
            SUCCESS
        }
        None => ERROR_INVALID_ARGUMENT,
    }
}

/// The environment's memory on the device of handle `dev`, given the driver's figures; None
/// for a device outside the view (its real figures stay).
pub(super) fn memory(dev: Device, real_free: u64, real_total: u64) -> Option<EnvMemory> {
    let host = host_index(dev).ok()?;
    crate::view::get()?.memory(host, real_free, real_total)
}
