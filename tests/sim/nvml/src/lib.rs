//! Test-double `libnvidia-ml.so.1` over the simulated GPU machine (see tests/sim/common).
//!
//! Every entry point has NVML's real name, signature and return codes, so unmodified clients
//! (stock nvidia-smi 535, pynvml, nvitop, gpustat) can `dlopen` it through `LD_LIBRARY_PATH`.
//! Device identity comes from `genv_sim_common::machine()`, memory use and compute processes
//! from the cross-process ledger the simulated libcuda writes.
//!
//! `GENV_SIM_TRACE=1` prints every call and its return code to stderr: clients look functions
//! up with `dlsym` at first use, so this is how to see what a client needs.

// The C ABI is the contract of every exported function: callers pass NVML's pointers.
#![allow(clippy::missing_safety_doc)]

use std::ffi::{c_char, CStr};
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
    if addr < base || (addr - base) % size != 0 {
        return Err(INVALID_ARGUMENT);
    }
    let index = (addr - base) / size;
    if index >= machine().gpus.len() {
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
