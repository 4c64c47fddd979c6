//! Library life cycle and system-wide queries.

use std::ffi::{c_char, c_int, c_uint};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use crate::*;

nvml! {
    fn nvmlInit() {
        INIT_COUNT.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
    // As the real one: a tail call of nvmlInitWithFlags(0), bound in the global scope.
    fn nvmlInit_v2() {
        type InitWithFlags = unsafe extern "C" fn(c_uint) -> Ret;
        static F: OnceLock<usize> = OnceLock::new();
        match *F.get_or_init(|| global(c"nvmlInitWithFlags") as usize) {
            0 => {
                INIT_COUNT.fetch_add(1, Ordering::AcqRel);
                Ok(())
            }
            // SAFETY: the address of nvmlInitWithFlags, whichever library defines it.
            f => match std::mem::transmute::<usize, InitWithFlags>(f)(0) {
                SUCCESS => Ok(()),
                e => Err(e),
            },
        }
    }
    fn nvmlInitWithFlags(_flags: c_uint) {
        INIT_COUNT.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
    fn nvmlShutdown() {
        INIT_COUNT
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .map(|_| ())
            .map_err(|_| UNINITIALIZED)
    }

    fn nvmlSystemGetDriverVersion(version: *mut c_char, length: c_uint) {
        initialized()?;
        out_str(version, length, machine().driver_version)
    }
    fn nvmlSystemGetNVMLVersion(version: *mut c_char, length: c_uint) {
        initialized()?;
        // NVML's version is the CUDA major in front of the driver version.
        let v = format!("{}.{}", machine().cuda_version / 1000, machine().driver_version);
        out_str(version, length, &v)
    }
    fn nvmlSystemGetCudaDriverVersion(version: *mut c_int) {
        initialized()?;
        out(version, machine().cuda_version)
    }
    fn nvmlSystemGetCudaDriverVersion_v2(version: *mut c_int) {
        initialized()?;
        out(version, machine().cuda_version)
    }
    fn nvmlSystemGetProcessName(pid: c_uint, name: *mut c_char, length: c_uint) {
        initialized()?;
        if name.is_null() || length == 0 {
            return Err(INVALID_ARGUMENT);
        }
        let n = process_name(pid).ok_or(NOT_FOUND)?;
        // Long names are cut to the buffer, as the real library does.
        write_cstr(name, length as usize, &n);
        Ok(())
    }

    // No S-class units (external enclosures) on this machine.
    fn nvmlUnitGetCount(count: *mut c_uint) {
        initialized()?;
        out(count, 0)
    }
    fn nvmlGetExcludedDeviceCount(count: *mut c_uint) {
        initialized()?;
        out(count, 0)
    }
}

/// NVML's message for each return code, NUL-terminated for C.
fn message(ret: Ret) -> &'static CStr {
    match ret {
        0 => c"Success",
        1 => c"Uninitialized",
        2 => c"Invalid Argument",
        3 => c"Not Supported",
        4 => c"Insufficient Permissions",
        5 => c"Already Initialized",
        6 => c"Not Found",
        7 => c"Insufficient Size",
        8 => c"Insufficient External Power",
        9 => c"Driver Not Loaded",
        10 => c"Timeout",
        11 => c"Interrupt request issue",
        12 => c"NVML Shared Library Not Found",
        13 => c"Function Not Found",
        14 => c"Corrupted infoROM",
        15 => c"GPU is lost",
        16 => c"GPU requires restart",
        17 => c"The operating system has blocked the request.",
        18 => c"RM has detected an NVML/RM version mismatch.",
        19 => c"In use by another client",
        20 => c"Insufficient Memory",
        21 => c"No data",
        22 => c"The requested vgpu operation is not available on target device, because ECC is enabled",
        23 => c"Insufficient resources for request",
        24 => c"Frequency not supported",
        25 => c"Argument version mismatch",
        26 => c"Deprecated",
        27 => c"Not Ready",
        28 => c"GPU not found",
        29 => c"Invalid state",
        _ => c"Unknown Error",
    }
}

#[no_mangle]
pub extern "C" fn nvmlErrorString(result: Ret) -> *const c_char {
    message(result).as_ptr()
}
