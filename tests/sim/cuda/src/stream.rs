//! Streams and events (work is synchronous, so they only keep their bookkeeping), and the
//! module / launch entry points, which cannot work without a GPU and say so.

use crate::memory::check_stream;
use crate::state::*;
use genv_abi::cuda::*;
use std::ffi::{c_char, c_float, c_int, c_uint, c_void};
use std::time::Instant;

fn new_stream(ph: *mut CUstream, flags: c_uint, priority: c_int) -> R {
    let mut d = driver();
    let (ctx, _) = d.current()?;
    // CU_STREAM_DEFAULT 0, CU_STREAM_NON_BLOCKING 1.
    if ph.is_null() || flags & !1 != 0 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let h = d.handle();
    d.streams.insert(
        h,
        Stream {
            ctx,
            flags,
            // Priorities clamp to the device's range [-5, 0].
            priority: priority.clamp(-5, 0),
        },
    );
    unsafe { out(ph, h as CUstream) }
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamCreate(ph: *mut CUstream, flags: c_uint) -> CUresult {
    ffi(|| new_stream(ph, flags, 0))
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamCreateWithPriority(
    ph: *mut CUstream,
    flags: c_uint,
    priority: c_int,
) -> CUresult {
    ffi(|| new_stream(ph, flags, priority))
}

fn destroy_stream(s: CUstream) -> R {
    let mut d = driver();
    d.ready()?;
    d.streams
        .remove(&(s as usize))
        .map(|_| ())
        .ok_or(CUDA_ERROR_INVALID_HANDLE)
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamDestroy(s: CUstream) -> CUresult {
    ffi(|| destroy_stream(s))
}

#[no_mangle]
pub unsafe extern "C" fn cuStreamDestroy_v2(s: CUstream) -> CUresult {
    ffi(|| destroy_stream(s))
}

macro_rules! stream_noop_fns {
    ($($name:ident),*) => {$(
        /// Everything already ran: done.
        #[no_mangle]
        pub unsafe extern "C" fn $name(s: CUstream) -> CUresult {
            ffi(|| check_stream(s))
        }
    )*};
}
stream_noop_fns!(
    cuStreamSynchronize,
    cuStreamSynchronize_ptsz,
    cuStreamQuery,
    cuStreamQuery_ptsz
);

macro_rules! stream_wait_fns {
    ($($name:ident),*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(s: CUstream, e: CUevent, _flags: c_uint) -> CUresult {
            ffi(|| {
                check_stream(s)?;
                check_event(e)
            })
        }
    )*};
}
stream_wait_fns!(cuStreamWaitEvent, cuStreamWaitEvent_ptsz);

/// Stream property getters; the default streams read as blocking, priority 0.
fn stream_prop(s: CUstream, f: impl FnOnce(Option<&Stream>) -> R) -> R {
    check_stream(s)?;
    let d = driver();
    f(d.streams.get(&(s as usize)))
}

macro_rules! stream_flags_fns {
    ($($name:ident),*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(s: CUstream, flags: *mut c_uint) -> CUresult {
            ffi(|| stream_prop(s, |st| out(flags, st.map_or(0, |st| st.flags))))
        }
    )*};
}
stream_flags_fns!(cuStreamGetFlags, cuStreamGetFlags_ptsz);

macro_rules! stream_priority_fns {
    ($($name:ident),*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(s: CUstream, priority: *mut c_int) -> CUresult {
            ffi(|| stream_prop(s, |st| out(priority, st.map_or(0, |st| st.priority))))
        }
    )*};
}
stream_priority_fns!(cuStreamGetPriority, cuStreamGetPriority_ptsz);

macro_rules! stream_ctx_fns {
    ($($name:ident),*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(s: CUstream, pctx: *mut CUcontext) -> CUresult {
            ffi(|| {
                let cur = stack_top().unwrap_or(0);
                stream_prop(s, |st| out(pctx, st.map_or(cur, |st| st.ctx) as CUcontext))
            })
        }
    )*};
}
stream_ctx_fns!(cuStreamGetCtx, cuStreamGetCtx_ptsz);

fn now_ns() -> u64 {
    use std::sync::OnceLock;
    static T0: OnceLock<Instant> = OnceLock::new();
    T0.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn check_event(e: CUevent) -> R {
    let d = driver();
    d.ready()?;
    if d.events.contains_key(&(e as usize)) {
        Ok(())
    } else {
        Err(CUDA_ERROR_INVALID_HANDLE)
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuEventCreate(ph: *mut CUevent, flags: c_uint) -> CUresult {
    ffi(|| {
        let mut d = driver();
        d.current()?;
        // DEFAULT 0, BLOCKING_SYNC 1, DISABLE_TIMING 2, INTERPROCESS 4.
        if ph.is_null() || flags & !7 != 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let h = d.handle();
        d.events.insert(h, 0);
        out(ph, h as CUevent)
    })
}

fn destroy_event(e: CUevent) -> R {
    let mut d = driver();
    d.ready()?;
    d.events
        .remove(&(e as usize))
        .map(|_| ())
        .ok_or(CUDA_ERROR_INVALID_HANDLE)
}

#[no_mangle]
pub unsafe extern "C" fn cuEventDestroy(e: CUevent) -> CUresult {
    ffi(|| destroy_event(e))
}

#[no_mangle]
pub unsafe extern "C" fn cuEventDestroy_v2(e: CUevent) -> CUresult {
    ffi(|| destroy_event(e))
}

fn record(e: CUevent, s: CUstream) -> R {
    check_stream(s)?;
    check_event(e)?;
    driver().events.insert(e as usize, now_ns());
    Ok(())
}

macro_rules! record_fns {
    ($($name:ident),*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(e: CUevent, s: CUstream) -> CUresult {
            ffi(|| record(e, s))
        }
    )*};
}
record_fns!(cuEventRecord, cuEventRecord_ptsz);

macro_rules! record_flags_fns {
    ($($name:ident),*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(e: CUevent, s: CUstream, _flags: c_uint) -> CUresult {
            ffi(|| record(e, s))
        }
    )*};
}
record_flags_fns!(cuEventRecordWithFlags, cuEventRecordWithFlags_ptsz);

#[no_mangle]
pub unsafe extern "C" fn cuEventQuery(e: CUevent) -> CUresult {
    ffi(|| check_event(e))
}

#[no_mangle]
pub unsafe extern "C" fn cuEventSynchronize(e: CUevent) -> CUresult {
    ffi(|| check_event(e))
}

#[no_mangle]
pub unsafe extern "C" fn cuEventElapsedTime(
    ms: *mut c_float,
    start: CUevent,
    end: CUevent,
) -> CUresult {
    ffi(|| {
        let d = driver();
        d.ready()?;
        let a = *d
            .events
            .get(&(start as usize))
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        let b = *d
            .events
            .get(&(end as usize))
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        out(ms, (b as f64 - a as f64) as c_float / 1e6)
    })
}

/// No GPU code can run here: loading any module image is refused.
fn no_modules() -> R {
    driver().current()?;
    Err(CUDA_ERROR_NOT_SUPPORTED)
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleLoad(_m: *mut CUmodule, _fname: *const c_char) -> CUresult {
    ffi(no_modules)
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleLoadData(_m: *mut CUmodule, _image: *const c_void) -> CUresult {
    ffi(no_modules)
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleLoadDataEx(
    _m: *mut CUmodule,
    _image: *const c_void,
    _n: c_uint,
    _opts: *mut c_int,
    _vals: *mut *mut c_void,
) -> CUresult {
    ffi(no_modules)
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleLoadFatBinary(_m: *mut CUmodule, _fat: *const c_void) -> CUresult {
    ffi(no_modules)
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleUnload(_m: CUmodule) -> CUresult {
    ffi(|| {
        driver().ready()?;
        Err(CUDA_ERROR_INVALID_HANDLE)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleGetFunction(
    _f: *mut CUfunction,
    _m: CUmodule,
    _name: *const c_char,
) -> CUresult {
    ffi(|| {
        driver().ready()?;
        Err(CUDA_ERROR_INVALID_HANDLE)
    })
}

#[no_mangle]
#[allow(clippy::too_many_arguments)] // the C signature
pub unsafe extern "C" fn cuLibraryLoadData(
    _lib: *mut *mut c_void,
    _code: *const c_void,
    _jit_opts: *mut c_int,
    _jit_vals: *mut *mut c_void,
    _n_jit: c_uint,
    _lib_opts: *mut c_int,
    _lib_vals: *mut *mut c_void,
    _n_lib: c_uint,
) -> CUresult {
    ffi(no_modules)
}

#[no_mangle]
pub unsafe extern "C" fn cuLinkCreate_v2(
    _n: c_uint,
    _opts: *mut c_int,
    _vals: *mut *mut c_void,
    _state: *mut *mut c_void,
) -> CUresult {
    ffi(no_modules)
}

/// There are no functions to launch, so every handle is invalid.
macro_rules! launch_fns {
    ($($name:ident),*) => {$(
        #[no_mangle]
        #[allow(clippy::too_many_arguments)] // the C signature
        pub unsafe extern "C" fn $name(
            _f: CUfunction,
            _gx: c_uint,
            _gy: c_uint,
            _gz: c_uint,
            _bx: c_uint,
            _by: c_uint,
            _bz: c_uint,
            _shared: c_uint,
            s: CUstream,
            _params: *mut *mut c_void,
            _extra: *mut *mut c_void,
        ) -> CUresult {
            ffi(|| {
                check_stream(s)?;
                Err(CUDA_ERROR_INVALID_HANDLE)
            })
        }
    )*};
}
launch_fns!(cuLaunchKernel, cuLaunchKernel_ptsz);
