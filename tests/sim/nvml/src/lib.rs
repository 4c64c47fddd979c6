//! Test-double `libnvidia-ml.so.1` over the simulated GPU machine (see tests/sim/common).
//!
//! Every entry point has NVML's real name, signature and return codes, so unmodified clients
//! (stock nvidia-smi of every measured generation, pynvml, nvitop, gpustat) can `dlopen` it
//! through `LD_LIBRARY_PATH`, or link against it. Device identity comes from
//! `genv_sim_common::machine()`, memory use and compute processes from the cross-process ledger
//! the simulated libcuda writes.
//!
//! `GENV_SIM_DRIVER` picks the generation played (see `genv_abi::nvml::export::GENERATIONS`):
//! its version strings and its export table (`export`). Which functions exist is the file's:
//! the library built here has every generation's; `make sim` also writes, per generation,
//! `target/sim/nvml-<major>/libnvidia-ml.so.1` without the functions that generation's library
//! lacks (`genv-sim-generations`), so that clients probing for a symbol find what they would.
//!
//! Like the real libraries (measured on 470-555: their own `nvmlInit_v2`, v1
//! `nvmlDeviceGetHandleByIndex` and export-table slots call `nvmlInitWithFlags` /
//! `nvmlDeviceGetHandleByIndex_v2` through their PLT), a few entry points reach others through
//! the global scope (`global`), where a preloaded library that exports the same names comes
//! first.
//!
//! `GENV_SIM_TRACE=1` prints every call and its return code to stderr: clients look functions
//! up with `dlsym` at first use, so this is how to see what a client needs.

// The C ABI is the contract of every exported function: callers pass NVML's pointers.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use genv_sim_common::{machine, Gpu, MAX_GPUS};
use nvml_wrapper_sys::bindings as sys;

type Ret = sys::nvmlReturn_t;

const SUCCESS: Ret = sys::nvmlReturn_enum_NVML_SUCCESS;
const UNINITIALIZED: Ret = sys::nvmlReturn_enum_NVML_ERROR_UNINITIALIZED;
const INVALID_ARGUMENT: Ret = sys::nvmlReturn_enum_NVML_ERROR_INVALID_ARGUMENT;
const NOT_SUPPORTED: Ret = sys::nvmlReturn_enum_NVML_ERROR_NOT_SUPPORTED;
const NOT_FOUND: Ret = sys::nvmlReturn_enum_NVML_ERROR_NOT_FOUND;
const INSUFFICIENT_SIZE: Ret = sys::nvmlReturn_enum_NVML_ERROR_INSUFFICIENT_SIZE;
const TIMEOUT: Ret = sys::nvmlReturn_enum_NVML_ERROR_TIMEOUT;
const UNKNOWN: Ret = sys::nvmlReturn_enum_NVML_ERROR_UNKNOWN;

fn trace_on() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("GENV_SIM_TRACE")
            .map(|v| !v.is_empty() && v != "0")
            .unwrap_or(false)
    })
}

fn trace(name: &str, ret: Ret) {
    if trace_on() {
        eprintln!("[genv-sim-nvml] {name} -> {ret}");
    }
}

/// Runs an entry point's body: a panic must not unwind into C, so it becomes NVML_ERROR_UNKNOWN.
fn call(name: &str, body: impl FnOnce() -> Result<(), Ret>) -> Ret {
    let ret = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => SUCCESS,
        Ok(Err(e)) => e,
        Err(_) => UNKNOWN,
    };
    trace(name, ret);
    ret
}

/// Defines exported NVML functions whose bodies return `Result<(), nvmlReturn_t>`.
macro_rules! nvml {
    ($(fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block)*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> Ret {
            call(stringify!($name), move || $body)
        }
    )*};
}

/// Defines exported functions that answer NVML_ERROR_NOT_SUPPORTED without touching their
/// arguments; the C caller passes and cleans up its own arguments, so no signature is needed.
macro_rules! not_supported {
    ($($name:ident)*) => {$(
        #[no_mangle]
        pub extern "C" fn $name() -> Ret {
            trace(stringify!($name), NOT_SUPPORTED);
            NOT_SUPPORTED
        }
    )*};
}

/// The address of NVML function `name` as a library linked against NVML binds it: looked up in
/// the global scope from here (glibc's own `dlsym`, found past any preloaded one), so a
/// preloaded library exporting the name comes first, as it does for the real libraries' PLT.
fn global(name: &CStr) -> *mut c_void {
    type Dlsym = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;
    static DLSYM: OnceLock<usize> = OnceLock::new();
    let f = *DLSYM.get_or_init(|| {
        [c"GLIBC_2.34", c"GLIBC_2.2.5", c"GLIBC_2.17"]
            .iter()
            // SAFETY: dlvsym with NUL-terminated strings.
            .map(|v| unsafe { libc::dlvsym(libc::RTLD_NEXT, c"dlsym".as_ptr(), v.as_ptr()) })
            .find(|p| !p.is_null())
            .map_or(0, |p| p as usize)
    });
    if f == 0 {
        return std::ptr::null_mut();
    }
    // SAFETY: glibc's dlsym, with a NUL-terminated name.
    unsafe { std::mem::transmute::<usize, Dlsym>(f)(libc::RTLD_DEFAULT, name.as_ptr()) }
}

mod device;
mod events;
mod export;
mod procs;
mod stubs;
mod system;

/// nvmlInit* minus nvmlShutdown calls: NVML counts its initialisations.
static INIT_COUNT: AtomicU32 = AtomicU32::new(0);

fn initialized() -> Result<(), Ret> {
    if INIT_COUNT.load(Ordering::Acquire) > 0 {
        Ok(())
    } else {
        Err(UNINITIALIZED)
    }
}

/// What a device handle points at: one static slot per device, so a device's handle is the
/// same pointer for the life of the process.
#[repr(C)]
struct DeviceSlot {
    index: u32,
}

static DEVICES: [DeviceSlot; MAX_GPUS] = {
    let mut d = [const { DeviceSlot { index: 0 } }; MAX_GPUS];
    let mut i = 0;
    while i < MAX_GPUS {
        d[i].index = i as u32;
        i += 1;
    }
    d
};

fn handle_of(index: usize) -> sys::nvmlDevice_t {
    &DEVICES[index] as *const DeviceSlot as sys::nvmlDevice_t
}

/// The NVML index behind a handle; anything that is not one of our slots is rejected.
fn index_of(handle: sys::nvmlDevice_t) -> Result<usize, Ret> {
    let base = DEVICES.as_ptr() as usize;
    let addr = handle as usize;
    let size = std::mem::size_of::<DeviceSlot>();
    let index = addr.wrapping_sub(base) / size;
    if addr < base || base + index * size != addr || index >= machine().gpus.len() {
        return Err(INVALID_ARGUMENT);
    }
    Ok(index)
}

/// The device behind a handle, after the init check every device call makes first.
fn device(handle: sys::nvmlDevice_t) -> Result<&'static Gpu, Ret> {
    initialized()?;
    Ok(&machine().gpus[index_of(handle)?])
}

/// Writes one output value.
unsafe fn out<T>(p: *mut T, v: T) -> Result<(), Ret> {
    if p.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    p.write_unaligned(v);
    Ok(())
}

/// Checks that every output pointer is set before anything is written.
fn nonnull<T>(ptrs: &[*const T]) -> Result<(), Ret> {
    if ptrs.iter().any(|p| p.is_null()) {
        Err(INVALID_ARGUMENT)
    } else {
        Ok(())
    }
}

/// Copies `s` and its NUL into a caller's buffer of `len` bytes, as NVML's string getters do.
unsafe fn out_str(buf: *mut c_char, len: u32, s: &str) -> Result<(), Ret> {
    if buf.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    if (len as usize) < s.len() + 1 {
        return Err(INSUFFICIENT_SIZE);
    }
    write_cstr(buf, s.len() + 1, s);
    Ok(())
}

/// Writes as much of `s` as fits in `cap` bytes (at least 1), NUL-terminated.
unsafe fn write_cstr(buf: *mut c_char, cap: usize, s: &str) {
    let n = s.len().min(cap.saturating_sub(1));
    std::ptr::copy_nonoverlapping(s.as_ptr() as *const c_char, buf, n);
    *buf.add(n) = 0;
}

/// A C string argument.
unsafe fn in_str<'a>(p: *const c_char) -> Result<&'a str, Ret> {
    if p.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    CStr::from_ptr(p).to_str().map_err(|_| INVALID_ARGUMENT)
}

/// A fixed-size C string field (struct member).
fn fill_field(field: &mut [c_char], s: &str) {
    field.fill(0);
    let room = field.len().saturating_sub(1);
    for (d, b) in field.iter_mut().zip(s.bytes().take(room)) {
        *d = b as c_char;
    }
}

/// The name NVML reports for a process: its argv[0], else its comm; None when it is gone.
fn process_name(pid: u32) -> Option<String> {
    if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
        let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or(&[]);
        if !argv0.is_empty() {
            return Some(String::from_utf8_lossy(argv0).into_owned());
        }
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let comm = comm.trim_end_matches('\n');
    (!comm.is_empty()).then(|| comm.to_string())
}

#[cfg(test)]
mod tests {
    use super::device::*;
    use super::events::*;
    use super::export::*;
    use super::procs::*;
    use super::system::*;
    use super::*;
    use std::ffi::{c_uint, c_void};
    use std::ptr::null_mut;

    const SMI_UUID: [u8; 16] = [
        0xc4, 0xfe, 0x3e, 0x6c, 0xc9, 0x8f, 0x6c, 0x4e, 0xa3, 0x27, 0xee, 0x69, 0x6e, 0x12, 0xf7,
        0xc4,
    ];

    /// One test, because the init count and the machine are process-wide.
    #[test]
    fn nvml_contract() {
        let dir = std::env::temp_dir().join(format!("genv-sim-nvml-test-{}", std::process::id()));
        std::env::set_var("GENV_SIM_DIR", &dir);
        std::env::set_var("GENV_SIM_GPUS", "3");
        std::env::set_var("GENV_SIM_GPU_MEMORY", "1gi");
        unsafe {
            let mut n = 0u32;
            assert_eq!(nvmlDeviceGetCount_v2(&mut n), UNINITIALIZED);
            assert_eq!(nvmlShutdown(), UNINITIALIZED);
            assert_eq!(nvmlInit_v2(), SUCCESS);
            assert_eq!(nvmlInitWithFlags(0), SUCCESS);
            assert_eq!(nvmlShutdown(), SUCCESS);
            assert_eq!(
                nvmlDeviceGetCount_v2(&mut n),
                SUCCESS,
                "still one init left"
            );
            assert_eq!(n, 3);

            // Handles: stable, and anything else is refused.
            let mut h = null_mut();
            let mut h2 = null_mut();
            assert_eq!(nvmlDeviceGetHandleByIndex_v2(2, &mut h), SUCCESS);
            assert_eq!(nvmlDeviceGetHandleByIndex(2, &mut h2), SUCCESS);
            assert_eq!(h, h2);
            assert_eq!(nvmlDeviceGetHandleByIndex_v2(3, &mut h2), INVALID_ARGUMENT);
            let mut idx = 9u32;
            assert_eq!(nvmlDeviceGetIndex(h, &mut idx), SUCCESS);
            assert_eq!(idx, 2);
            for bad in [
                null_mut(),
                (h as usize + 1) as sys::nvmlDevice_t,
                handle_of(3),
            ] {
                assert_eq!(nvmlDeviceGetIndex(bad, &mut idx), INVALID_ARGUMENT);
            }
            assert_eq!(nvmlDeviceGetIndex(h, null_mut()), INVALID_ARGUMENT);
            let mut by_bus = null_mut();
            assert_eq!(
                nvmlDeviceGetHandleByPciBusId_v2(c"0000:38:00.0".as_ptr(), &mut by_bus),
                SUCCESS
            );
            assert_eq!(by_bus, h);

            // Strings: too small a buffer is an error, not a cut.
            let mut name = [0 as c_char; 64];
            assert_eq!(
                nvmlDeviceGetName(h, name.as_mut_ptr(), 5),
                INSUFFICIENT_SIZE
            );
            assert_eq!(nvmlDeviceGetName(h, name.as_mut_ptr(), 64), SUCCESS);
            assert_eq!(
                CStr::from_ptr(name.as_ptr()).to_str(),
                Ok("NVIDIA H100 80GB HBM3")
            );

            // Memory and processes come from the ledger: hold some as this process.
            let ledger = genv_sim_common::ledger().expect("ledger");
            assert!(ledger.reserve(2, 100 << 20));
            let mut mem: sys::nvmlMemory_v2_t = std::mem::zeroed();
            assert_eq!(nvmlDeviceGetMemoryInfo_v2(h, &mut mem), SUCCESS);
            assert_eq!(
                (mem.total, mem.used, mem.free),
                (1 << 30, 100 << 20, (1 << 30) - (100 << 20))
            );
            let mut count = 0u32;
            assert_eq!(
                nvmlDeviceGetComputeRunningProcesses_v3(h, &mut count, null_mut()),
                INSUFFICIENT_SIZE
            );
            assert_eq!(count, 1);
            let mut infos: [sys::nvmlProcessInfo_v2_t; 2] = std::mem::zeroed();
            count = 2;
            assert_eq!(
                nvmlDeviceGetComputeRunningProcesses_v3(h, &mut count, infos.as_mut_ptr()),
                SUCCESS
            );
            assert_eq!(count, 1);
            assert_eq!(infos[0].pid, std::process::id());
            assert_eq!(infos[0].usedGpuMemory, 100 << 20);
            count = 0;
            assert_eq!(
                nvmlDeviceGetGraphicsRunningProcesses_v3(h, &mut count, null_mut()),
                SUCCESS
            );
            assert_eq!(count, 0);

            // nvidia-smi's private table.
            let sentinel = SMI_UUID.as_ptr() as *const c_void;
            let mut table = sentinel;
            let other = [0u8; 16];
            assert_ne!(nvmlInternalGetExportTable(&mut table, &other), SUCCESS);
            assert_eq!(table, sentinel, "unknown tables leave the output alone");
            assert_eq!(nvmlInternalGetExportTable(&mut table, &SMI_UUID), SUCCESS);
            let slots = table as *const usize;
            assert_eq!(*slots, 0x7a8);
            for (i, filled) in [
                (1, false),
                (12, true),
                (75, true),
                (81, true),
                (213, true),
                (244, false),
            ] {
                assert_eq!(*slots.add(i) != 0, filled, "slot {i}");
            }
            type BusId = unsafe extern "C" fn(c_uint, *mut c_char, c_uint) -> Ret;
            let bus_id: BusId = std::mem::transmute(*slots.add(81));
            assert_eq!(bus_id(1, name.as_mut_ptr(), 64), SUCCESS);
            assert_eq!(CStr::from_ptr(name.as_ptr()).to_str(), Ok("0000:28:00.0"));
            assert_eq!(bus_id(3, name.as_mut_ptr(), 64), INVALID_ARGUMENT);
            type Procs = unsafe extern "C" fn(sys::nvmlDevice_t, *mut c_uint, *mut u8) -> Ret;
            let procs: Procs = std::mem::transmute(*slots.add(213));
            let mut records = vec![0u8; 0x1020 * 4];
            count = 4;
            assert_eq!(procs(h, &mut count, records.as_mut_ptr()), SUCCESS);
            assert_eq!(count, 1);
            assert_eq!(
                u32::from_ne_bytes(records[0..4].try_into().unwrap()),
                std::process::id()
            );
            assert_eq!(
                u64::from_ne_bytes(records[8..16].try_into().unwrap()),
                100 << 20
            );
            assert_ne!(records[0x20], 0, "a process name is written");

            ledger.release(2, 100 << 20);
            assert_eq!(nvmlDeviceGetMemoryInfo_v2(h, &mut mem), SUCCESS);
            assert_eq!(mem.used, 0);

            let mut set = null_mut();
            assert_eq!(nvmlEventSetCreate(&mut set), SUCCESS);
            let mut data: sys::nvmlEventData_t = std::mem::zeroed();
            assert_eq!(nvmlEventSetWait_v2(set, &mut data, 1), TIMEOUT);
            assert_eq!(nvmlEventSetFree(set), SUCCESS);
            assert_eq!(nvmlEventSetFree(set), INVALID_ARGUMENT);

            assert_eq!(nvmlShutdown(), SUCCESS);
            assert_eq!(nvmlDeviceGetIndex(h, &mut idx), UNINITIALIZED);
            assert_eq!(
                nvmlInternalGetExportTable(null_mut(), &SMI_UUID),
                INVALID_ARGUMENT
            );
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn error_strings() {
        let s = |r| {
            unsafe { CStr::from_ptr(nvmlErrorString(r)) }
                .to_str()
                .unwrap()
        };
        assert_eq!(s(SUCCESS), "Success");
        assert_eq!(s(INSUFFICIENT_SIZE), "Insufficient Size");
        assert_eq!(s(12345), "Unknown Error");
    }

    #[test]
    fn panics_become_unknown() {
        assert_eq!(call("test", || panic!("boom")), UNKNOWN);
    }
}
