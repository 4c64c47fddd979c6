//! NVML inside an environment: the device list, memory and process lists follow the view.
//!
//! The hook asks [`lookup`] for every `nvml*` symbol looked up (unless the shim is bypassed).
//! Names handled here get a wrapper; every other name (utilisation, clocks, power, temperature,
//! …) gets the real function, so it costs nothing. Outside an environment the wrappers pass
//! through; `nvmlInit*` re-reads `GENV_ENVIRONMENT_ID` (see `view::follow`), so a process that
//! enters or leaves an environment itself sees the new view from its next `nvmlInit` on.
//!
//! Numbering: virtual index `i` is the `i`-th attached device in attach order. Handles are the
//! real driver's handles (so pass-through functions accept them); only the functions that turn
//! an index, UUID, serial or bus id into a handle, or a handle into an index, are remapped.
//!
//! Memory: `used` is what the environment holds on the device according to the ledger (the
//! allocations made through the shim, the same figure `cuMemGetInfo` and the capacity check
//! use), `total` is the environment's capacity there (the physical size when none is set), and
//! `free` is `total - used`, never more than the device really has free.
//!
//! Rules kept by every wrapper: no panic crosses into C (it becomes NVML_ERROR_UNKNOWN), no lock
//! is held across a real NVML call, and all state is either immutable after first use or local
//! to the call, so wrappers are thread-safe.

use std::ffi::{c_char, c_uint, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

pub(crate) type Ret = c_uint;
pub(crate) type Device = *mut c_void;

pub(crate) const SUCCESS: Ret = 0;
pub(crate) const INVALID_ARGUMENT: Ret = 2;
pub(crate) const NOT_FOUND: Ret = 6;
pub(crate) const INSUFFICIENT_SIZE: Ret = 7;
pub(crate) const FUNCTION_NOT_FOUND: Ret = 13;
pub(crate) const UNKNOWN: Ret = 999;

/// Runs a wrapper's body; a panic must not unwind into the C caller.
pub(crate) fn guard(body: impl FnOnce() -> Ret) -> Ret {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(UNKNOWN)
}

/// A real NVML function, resolved once on first use. Resolution is a `dlsym`, never an NVML
/// call, so nothing is held across the driver.
pub(crate) struct Real {
    name: &'static CStr,
    addr: AtomicUsize,
}

/// Marks "looked up and absent", distinct from "not looked up yet" (0).
const ABSENT: usize = usize::MAX;

impl Real {
    pub(crate) const fn new(name: &'static CStr) -> Real {
        Real {
            name,
            addr: AtomicUsize::new(0),
        }
    }

    /// The real function's address, or None when the driver lacks it.
    pub(crate) fn addr(&self) -> Option<usize> {
        let mut a = self.addr.load(Ordering::Acquire);
        if a == 0 {
            let p = crate::hook::real_nvml(self.name) as usize;
            a = if p == 0 { ABSENT } else { p };
            // Racing resolvers store the same value.
            self.addr.store(a, Ordering::Release);
        }
        (a != ABSENT).then_some(a)
    }
}

/// Declares accessors for real functions: `real_x()` is the typed function, or
/// FUNCTION_NOT_FOUND when the driver lacks it.
macro_rules! real_fn {
    ($($f:ident = $name:literal: fn($($arg:ty),*);)*) => {$(
        #[allow(dead_code)]
        pub(crate) fn $f() -> Result<unsafe extern "C" fn($($arg),*) -> $crate::nvml::Ret, $crate::nvml::Ret> {
            static R: $crate::nvml::Real = $crate::nvml::Real::new($name);
            match R.addr() {
                // SAFETY: the driver exports this name with this C signature.
                Some(a) => Ok(unsafe {
                    std::mem::transmute::<usize, unsafe extern "C" fn($($arg),*) -> $crate::nvml::Ret>(a)
                }),
                None => Err($crate::nvml::FUNCTION_NOT_FOUND),
            }
        }
    )*};
}

mod export;
mod procs;
mod topology;

real_fn! {
    real_init = c"nvmlInit": fn();
    real_init_v2 = c"nvmlInit_v2": fn();
    real_init_flags = c"nvmlInitWithFlags": fn(c_uint);
    real_get_index = c"nvmlDeviceGetIndex": fn(Device, *mut c_uint);
    real_count = c"nvmlDeviceGetCount": fn(*mut c_uint);
    real_count_v2 = c"nvmlDeviceGetCount_v2": fn(*mut c_uint);
    real_by_index = c"nvmlDeviceGetHandleByIndex": fn(c_uint, *mut Device);
    real_by_index_v2 = c"nvmlDeviceGetHandleByIndex_v2": fn(c_uint, *mut Device);
    real_by_uuid = c"nvmlDeviceGetHandleByUUID": fn(*const c_char, *mut Device);
    real_by_uuidv = c"nvmlDeviceGetHandleByUUIDV": fn(*const c_void, *mut Device);
    real_by_serial = c"nvmlDeviceGetHandleBySerial": fn(*const c_char, *mut Device);
    real_by_bus_id = c"nvmlDeviceGetHandleByPciBusId": fn(*const c_char, *mut Device);
    real_by_bus_id_v2 = c"nvmlDeviceGetHandleByPciBusId_v2": fn(*const c_char, *mut Device);
    real_memory = c"nvmlDeviceGetMemoryInfo": fn(Device, *mut MemoryV1);
    real_memory_v2 = c"nvmlDeviceGetMemoryInfo_v2": fn(Device, *mut MemoryV2);
}

/// The names wrapped here, each with its wrapper.
pub fn lookup(name: &CStr) -> Option<*mut c_void> {
    let w: *mut c_void = match name.to_bytes() {
        b"nvmlInit" => init as unsafe extern "C" fn() -> _ as _,
        b"nvmlInit_v2" => init_v2 as unsafe extern "C" fn() -> _ as _,
        b"nvmlInitWithFlags" => init_with_flags as unsafe extern "C" fn(_) -> _ as _,
        b"nvmlDeviceGetCount" => device_count as unsafe extern "C" fn(_) -> _ as _,
        b"nvmlDeviceGetCount_v2" => device_count_v2 as unsafe extern "C" fn(_) -> _ as _,
        b"nvmlDeviceGetHandleByIndex" => by_index as unsafe extern "C" fn(_, _) -> _ as _,
        b"nvmlDeviceGetHandleByIndex_v2" => by_index_v2 as unsafe extern "C" fn(_, _) -> _ as _,
        b"nvmlDeviceGetHandleByUUID" => by_uuid as unsafe extern "C" fn(_, _) -> _ as _,
        b"nvmlDeviceGetHandleByUUIDV" => by_uuidv as unsafe extern "C" fn(_, _) -> _ as _,
        b"nvmlDeviceGetHandleBySerial" => by_serial as unsafe extern "C" fn(_, _) -> _ as _,
        b"nvmlDeviceGetHandleByPciBusId" => by_bus_id as unsafe extern "C" fn(_, _) -> _ as _,
        b"nvmlDeviceGetHandleByPciBusId_v2" => by_bus_id_v2 as unsafe extern "C" fn(_, _) -> _ as _,
        b"nvmlDeviceGetIndex" => device_index as unsafe extern "C" fn(_, _) -> _ as _,
        b"nvmlDeviceGetMemoryInfo" => memory_info as unsafe extern "C" fn(_, _) -> _ as _,
        b"nvmlDeviceGetMemoryInfo_v2" => memory_info_v2 as unsafe extern "C" fn(_, _) -> _ as _,
        b"nvmlInternalGetExportTable" => export::wrapper(),
        other => procs::lookup(other).or_else(|| topology::lookup(other))?,
    };
    // The hook asks only for names the real NVML defines, so a wrapper never makes a client
    // believe in a function the driver lacks.
    Some(w)
}

// ---------------------------------------------------------------------------------------------
// Initialisation: where the process's environment is looked at again.

unsafe extern "C" fn init() -> Ret {
    guard(|| {
        crate::view::follow();
        real_init().map_or_else(|e| e, |f| f())
    })
}

unsafe extern "C" fn init_v2() -> Ret {
    guard(|| {
        crate::view::follow();
        real_init_v2().map_or_else(|e| e, |f| f())
    })
}

unsafe extern "C" fn init_with_flags(flags: c_uint) -> Ret {
    guard(|| {
        crate::view::follow();
        real_init_flags().map_or_else(|e| e, |f| f(flags))
    })
}

// ---------------------------------------------------------------------------------------------
// The environment's view, as this module needs it.

/// Whether the process is in an environment now; the wrappers pass through when not.
pub(crate) fn in_env() -> bool {
    crate::view::get().is_some()
}

/// How many devices the environment has (0 when detached, or when its state cannot be read).
fn view_count() -> usize {
    crate::view::get().map_or(0, |v| v.devices().len())
}

/// The NVML index behind virtual index `i`.
pub(crate) fn host_of_virtual(i: c_uint) -> Option<u32> {
    let v = crate::view::get()?;
    v.devices().get(i as usize).map(|d| d.host_index)
}

/// The virtual index of NVML index `host`, when that device is attached.
pub(crate) fn virtual_of_host(host: u32) -> Option<u32> {
    crate::view::get()?.host_to_virtual(host)
}

/// (capacity, the environment's use) on NVML device `host`, when it is attached.
fn memory_of_host(host: u32) -> Option<(u64, u64)> {
    let v = crate::view::get()?;
    Some((v.device(host)?.capacity, v.env_used(host)))
}

/// The environment's processes on NVML device `host`, with what each holds there.
pub(crate) fn env_processes(host: u32) -> Vec<(u32, u64)> {
    match crate::view::get() {
        Some(v) => v
            .env_pids()
            .into_iter()
            .map(|pid| (pid, v.pid_used(pid, host)))
            .collect(),
        None => Vec::new(),
    }
}

/// Whether process `pid` was started in this environment although it has no ledger slot: the
/// shim registers a process at its first allocation, so one that only made a context is known
/// by its `GENV_ENVIRONMENT_ID` alone. Another user's environment is unreadable: such a process
/// stays hidden until it allocates.
pub(crate) fn started_in_env(pid: u32) -> bool {
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

// ---------------------------------------------------------------------------------------------
// Device enumeration.

/// The NVML index of a real handle.
pub(crate) unsafe fn host_index(dev: Device) -> Result<u32, Ret> {
    let mut i: c_uint = 0;
    match real_get_index()?(dev, &mut i) {
        SUCCESS => Ok(i),
        e => Err(e),
    }
}

unsafe fn count(
    real: Result<unsafe extern "C" fn(*mut c_uint) -> Ret, Ret>,
    n: *mut c_uint,
) -> Ret {
    guard(|| {
        // The real call first keeps its answers for an uninitialised library or a NULL pointer.
        let r = match real {
            Ok(f) => f(n),
            Err(e) => return e,
        };
        if r != SUCCESS || !in_env() {
            return r;
        }
        *n = view_count() as c_uint;
        SUCCESS
    })
}

unsafe extern "C" fn device_count(n: *mut c_uint) -> Ret {
    count(real_count(), n)
}

unsafe extern "C" fn device_count_v2(n: *mut c_uint) -> Ret {
    count(real_count_v2(), n)
}

unsafe fn handle_by_index(
    real: Result<unsafe extern "C" fn(c_uint, *mut Device) -> Ret, Ret>,
    index: c_uint,
    dev: *mut Device,
) -> Ret {
    guard(|| {
        let real = match real {
            Ok(f) => f,
            Err(e) => return e,
        };
        if !in_env() {
            return real(index, dev);
        }
        match host_of_virtual(index) {
            Some(host) => real(host, dev),
            None => INVALID_ARGUMENT,
        }
    })
}

unsafe extern "C" fn by_index(index: c_uint, dev: *mut Device) -> Ret {
    handle_by_index(real_by_index(), index, dev)
}

unsafe extern "C" fn by_index_v2(index: c_uint, dev: *mut Device) -> Ret {
    handle_by_index(real_by_index_v2(), index, dev)
}

/// A lookup by identity (UUID, serial, bus id): the real answer, if its device is attached.
unsafe fn handle_by_key<K>(
    real: Result<unsafe extern "C" fn(*const K, *mut Device) -> Ret, Ret>,
    key: *const K,
    dev: *mut Device,
) -> Ret {
    guard(|| {
        let r = match real {
            Ok(f) => f(key, dev),
            Err(e) => return e,
        };
        if r != SUCCESS || !in_env() {
            return r;
        }
        let attached = host_index(*dev).ok().and_then(virtual_of_host).is_some();
        if !attached {
            *dev = std::ptr::null_mut();
            return NOT_FOUND;
        }
        SUCCESS
    })
}

unsafe extern "C" fn by_uuid(key: *const c_char, dev: *mut Device) -> Ret {
    handle_by_key(real_by_uuid(), key, dev)
}

unsafe extern "C" fn by_uuidv(key: *const c_void, dev: *mut Device) -> Ret {
    handle_by_key(real_by_uuidv(), key, dev)
}

unsafe extern "C" fn by_serial(key: *const c_char, dev: *mut Device) -> Ret {
    handle_by_key(real_by_serial(), key, dev)
}

unsafe extern "C" fn by_bus_id(key: *const c_char, dev: *mut Device) -> Ret {
    handle_by_key(real_by_bus_id(), key, dev)
}

unsafe extern "C" fn by_bus_id_v2(key: *const c_char, dev: *mut Device) -> Ret {
    handle_by_key(real_by_bus_id_v2(), key, dev)
}

unsafe extern "C" fn device_index(dev: Device, index: *mut c_uint) -> Ret {
    guard(|| {
        let r = match real_get_index() {
            Ok(f) => f(dev, index),
            Err(e) => return e,
        };
        if r != SUCCESS || !in_env() {
            return r;
        }
        // A detached device's handle (kept from before a detach) has no index in the view.
        match virtual_of_host(*index) {
            Some(v) => {
                *index = v;
                SUCCESS
            }
            None => INVALID_ARGUMENT,
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Memory.

/// `nvmlMemory_t`.
#[repr(C)]
pub(crate) struct MemoryV1 {
    total: u64,
    free: u64,
    used: u64,
}

/// `nvmlMemory_v2_t`.
#[repr(C)]
pub(crate) struct MemoryV2 {
    version: c_uint,
    total: u64,
    reserved: u64,
    free: u64,
    used: u64,
}

/// (total, free, used) as the environment sees the device, given what the driver says is free.
/// None for a device outside the view: its real figures stay.
fn env_memory(host: u32, real_free: u64) -> Option<(u64, u64, u64)> {
    let (capacity, used) = memory_of_host(host)?;
    let free = capacity.saturating_sub(used).min(real_free);
    Some((capacity, free, used))
}

unsafe extern "C" fn memory_info(dev: Device, mem: *mut MemoryV1) -> Ret {
    guard(|| {
        let r = match real_memory() {
            Ok(f) => f(dev, mem),
            Err(e) => return e,
        };
        if r != SUCCESS {
            return r;
        }
        let Ok(host) = host_index(dev) else {
            return r;
        };
        let m = &mut *mem;
        if let Some((total, free, used)) = env_memory(host, m.free) {
            m.total = total;
            m.free = free;
            m.used = used;
        }
        SUCCESS
    })
}

unsafe extern "C" fn memory_info_v2(dev: Device, mem: *mut MemoryV2) -> Ret {
    guard(|| {
        let r = match real_memory_v2() {
            Ok(f) => f(dev, mem),
            Err(e) => return e,
        };
        if r != SUCCESS {
            return r;
        }
        let Ok(host) = host_index(dev) else {
            return r;
        };
        let m = &mut *mem;
        if let Some((total, free, used)) = env_memory(host, m.free) {
            // The driver's reservation is not the environment's: the capacity is all it has.
            m.total = total;
            m.reserved = 0;
            m.free = free;
            m.used = used;
        }
        SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_layouts() {
        assert_eq!(std::mem::size_of::<MemoryV1>(), 24);
        assert_eq!(std::mem::size_of::<MemoryV2>(), 40);
        assert_eq!(std::mem::offset_of!(MemoryV2, total), 8);
    }
}
