//! Primary and created contexts, and the per-thread context stack.

use crate::state::*;
use genv_abi::cuda::*;
use std::ffi::{c_int, c_uint, c_void};

/// Context creation flags the driver accepts (`CU_CTX_FLAGS_MASK`).
const CTX_FLAGS_MASK: c_uint = 0xff;

fn push(h: usize) {
    STACK.with(|s| s.borrow_mut().push(h));
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxRetain(pctx: *mut CUcontext, dev: CUdevice) -> CUresult {
    ffi(|| {
        let mut d = driver();
        d.nvml(dev)?;
        if pctx.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let ord = dev as usize;
        let h = d.devs[ord].primary;
        if h == 0 {
            let flags = d.devs[ord].primary_flags;
            let h = d.new_ctx(ord, flags, true)?;
            d.devs[ord].primary = h;
        } else if d.devs[ord].primary_refs == 0 {
            // Reactivation keeps the handle, as the real driver does.
            let nvml = d.visible[ord];
            d.ctx_up(nvml)?;
            let flags = d.devs[ord].primary_flags;
            if let Some(c) = d.ctxs.get_mut(&h) {
                c.active = true;
                c.flags = flags;
            }
        }
        d.devs[ord].primary_refs += 1;
        out(pctx, d.devs[ord].primary as CUcontext)
    })
}

fn primary_release(dev: CUdevice) -> R {
    let mut d = driver();
    d.nvml(dev)?;
    let ord = dev as usize;
    if d.devs[ord].primary_refs == 0 {
        return Err(CUDA_ERROR_INVALID_CONTEXT);
    }
    d.devs[ord].primary_refs -= 1;
    if d.devs[ord].primary_refs == 0 {
        let h = d.devs[ord].primary;
        d.ctx_down(h);
    }
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxRelease(dev: CUdevice) -> CUresult {
    ffi(|| primary_release(dev))
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxRelease_v2(dev: CUdevice) -> CUresult {
    ffi(|| primary_release(dev))
}

/// Destroys the primary context's allocations and deactivates it, whatever its count.
fn primary_reset(dev: CUdevice) -> R {
    let mut d = driver();
    d.nvml(dev)?;
    let ord = dev as usize;
    if d.devs[ord].primary_refs > 0 {
        d.devs[ord].primary_refs = 0;
        let h = d.devs[ord].primary;
        d.ctx_down(h);
    }
    d.devs[ord].primary_flags = 0;
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxReset(dev: CUdevice) -> CUresult {
    ffi(|| primary_reset(dev))
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxReset_v2(dev: CUdevice) -> CUresult {
    ffi(|| primary_reset(dev))
}

/// `_v2` may change the flags of an active primary context; the original may not.
fn primary_set_flags(dev: CUdevice, flags: c_uint, v2: bool) -> R {
    let mut d = driver();
    d.nvml(dev)?;
    if flags & !CTX_FLAGS_MASK != 0 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let ord = dev as usize;
    if d.devs[ord].primary_refs > 0 {
        if !v2 {
            return Err(CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE);
        }
        let h = d.devs[ord].primary;
        if let Some(c) = d.ctxs.get_mut(&h) {
            c.flags = flags;
        }
    }
    d.devs[ord].primary_flags = flags;
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxSetFlags(dev: CUdevice, flags: c_uint) -> CUresult {
    ffi(|| primary_set_flags(dev, flags, false))
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxSetFlags_v2(dev: CUdevice, flags: c_uint) -> CUresult {
    ffi(|| primary_set_flags(dev, flags, true))
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxGetState(
    dev: CUdevice,
    flags: *mut c_uint,
    active: *mut c_int,
) -> CUresult {
    ffi(|| {
        let d = driver();
        d.nvml(dev)?;
        let s = &d.devs[dev as usize];
        out(flags, s.primary_flags)?;
        out(active, (s.primary_refs > 0) as c_int)
    })
}

fn ctx_create(pctx: *mut CUcontext, flags: c_uint, dev: CUdevice) -> R {
    let mut d = driver();
    d.nvml(dev)?;
    if pctx.is_null() || flags & !CTX_FLAGS_MASK != 0 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let h = d.new_ctx(dev as usize, flags, false)?;
    push(h);
    unsafe { out(pctx, h as CUcontext) }
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxCreate(
    pctx: *mut CUcontext,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    ffi(|| ctx_create(pctx, flags, dev))
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxCreate_v2(
    pctx: *mut CUcontext,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    ffi(|| ctx_create(pctx, flags, dev))
}

/// With execution-affinity parameters, which the simulated devices do not support.
#[no_mangle]
pub unsafe extern "C" fn cuCtxCreate_v3(
    pctx: *mut CUcontext,
    params: *mut c_void,
    num_params: c_int,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    ffi(|| {
        if num_params < 0 || (num_params > 0 && params.is_null()) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        if num_params > 0 {
            driver().nvml(dev)?;
            return Err(CUDA_ERROR_NOT_SUPPORTED);
        }
        ctx_create(pctx, flags, dev)
    })
}

/// `CUctxCreateParams`: execution affinity and CIG parameters.
#[repr(C)]
pub struct CtxCreateParams {
    exec_affinity_params: *mut c_void,
    num_exec_affinity_params: c_int,
    cig_params: *mut c_void,
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxCreate_v4(
    pctx: *mut CUcontext,
    params: *const CtxCreateParams,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    ffi(|| {
        if let Some(p) = params.as_ref() {
            if p.num_exec_affinity_params > 0 || !p.cig_params.is_null() {
                driver().nvml(dev)?;
                return Err(CUDA_ERROR_NOT_SUPPORTED);
            }
        }
        ctx_create(pctx, flags, dev)
    })
}

fn ctx_destroy(ctx: CUcontext) -> R {
    let mut d = driver();
    d.ready()?;
    let h = ctx as usize;
    match d.ctxs.get(&h) {
        Some(c) if c.active && !c.primary => {}
        _ => return Err(CUDA_ERROR_INVALID_CONTEXT),
    }
    d.ctx_down(h);
    d.ctxs.remove(&h);
    STACK.with(|s| {
        let mut s = s.borrow_mut();
        if s.last() == Some(&h) {
            s.pop();
        }
    });
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxDestroy(ctx: CUcontext) -> CUresult {
    ffi(|| ctx_destroy(ctx))
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxDestroy_v2(ctx: CUcontext) -> CUresult {
    ffi(|| ctx_destroy(ctx))
}

fn ctx_push(ctx: CUcontext) -> R {
    let d = driver();
    d.ready()?;
    let h = ctx as usize;
    if !d.ctxs.contains_key(&h) {
        return Err(CUDA_ERROR_INVALID_CONTEXT);
    }
    push(h);
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxPushCurrent(ctx: CUcontext) -> CUresult {
    ffi(|| ctx_push(ctx))
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxPushCurrent_v2(ctx: CUcontext) -> CUresult {
    ffi(|| ctx_push(ctx))
}

fn ctx_pop(pctx: *mut CUcontext) -> R {
    driver().ready()?;
    let h = STACK
        .with(|s| s.borrow_mut().pop())
        .ok_or(CUDA_ERROR_INVALID_CONTEXT)?;
    if !pctx.is_null() {
        unsafe { pctx.write(h as CUcontext) };
    }
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxPopCurrent(pctx: *mut CUcontext) -> CUresult {
    ffi(|| ctx_pop(pctx))
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxPopCurrent_v2(pctx: *mut CUcontext) -> CUresult {
    ffi(|| ctx_pop(pctx))
}

/// Replaces the top of the stack; NULL pops it.
#[no_mangle]
pub unsafe extern "C" fn cuCtxSetCurrent(ctx: CUcontext) -> CUresult {
    ffi(|| {
        let d = driver();
        d.ready()?;
        let h = ctx as usize;
        if h != 0 && !d.ctxs.contains_key(&h) {
            return Err(CUDA_ERROR_INVALID_CONTEXT);
        }
        STACK.with(|s| {
            let mut s = s.borrow_mut();
            s.pop();
            if h != 0 {
                s.push(h);
            }
        });
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetCurrent(pctx: *mut CUcontext) -> CUresult {
    ffi(|| {
        driver().ready()?;
        out(pctx, stack_top().unwrap_or(0) as CUcontext)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetDevice(device: *mut CUdevice) -> CUresult {
    ffi(|| {
        let d = driver();
        let (_, c) = d.current()?;
        out(device, c.ord as CUdevice)
    })
}

/// CUDA 13: the device of `ctx`, or of the current context when NULL.
#[no_mangle]
pub unsafe extern "C" fn cuCtxGetDevice_v2(device: *mut CUdevice, ctx: CUcontext) -> CUresult {
    ffi(|| {
        let d = driver();
        let ord = if ctx.is_null() {
            d.current()?.1.ord
        } else {
            d.ready()?;
            d.live_ctx(ctx as usize)?.ord
        };
        out(device, ord as CUdevice)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetFlags(flags: *mut c_uint) -> CUresult {
    ffi(|| {
        let d = driver();
        let (_, c) = d.current()?;
        out(flags, c.flags)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetId(ctx: CUcontext, id: *mut u64) -> CUresult {
    ffi(|| {
        let d = driver();
        let c = if ctx.is_null() {
            d.current()?.1
        } else {
            d.ready()?;
            d.live_ctx(ctx as usize)?
        };
        out(id, c.id)
    })
}

/// Work is synchronous here, so there is never anything to wait for.
#[no_mangle]
pub unsafe extern "C" fn cuCtxSynchronize() -> CUresult {
    ffi(|| driver().current().map(|_| ()))
}

/// CUDA 13: synchronises `ctx`, or the current context when NULL (nothing ever runs here).
#[no_mangle]
pub unsafe extern "C" fn cuCtxSynchronize_v2(ctx: CUcontext) -> CUresult {
    ffi(|| {
        let d = driver();
        if ctx.is_null() {
            d.current().map(|_| ())
        } else {
            d.ready()?;
            d.live_ctx(ctx as usize).map(|_| ())
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetApiVersion(ctx: CUcontext, version: *mut c_uint) -> CUresult {
    ffi(|| {
        let d = driver();
        if ctx.is_null() {
            d.current()?;
        } else {
            d.ready()?;
            d.live_ctx(ctx as usize)?;
        }
        // Every context made through the 3.2+ ABI reports 3020.
        out(version, 3020)
    })
}

/// `CUlimit` defaults of an H100: stack size, printf FIFO, malloc heap, sync depth, pending launches.
#[no_mangle]
pub unsafe extern "C" fn cuCtxGetLimit(value: *mut usize, limit: c_int) -> CUresult {
    ffi(|| {
        driver().current()?;
        let v = match limit {
            0 => 1024,
            1 => 1_048_576,
            2 => 8_388_608,
            3 => 2,
            4 => 2048,
            5 => 32,
            6 => 0,
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        };
        out(value, v)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxSetLimit(limit: c_int, _value: usize) -> CUresult {
    ffi(|| {
        driver().current()?;
        if !(0..=6).contains(&limit) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetStreamPriorityRange(
    least: *mut c_int,
    greatest: *mut c_int,
) -> CUresult {
    ffi(|| {
        driver().current()?;
        if !least.is_null() {
            least.write(0);
        }
        if !greatest.is_null() {
            greatest.write(-5);
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetCacheConfig(config: *mut c_int) -> CUresult {
    ffi(|| {
        driver().current()?;
        out(config, 0)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxSetCacheConfig(_config: c_int) -> CUresult {
    ffi(|| driver().current().map(|_| ()))
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxEnablePeerAccess(peer: CUcontext, _flags: c_uint) -> CUresult {
    ffi(|| {
        let d = driver();
        d.current()?;
        d.live_ctx(peer as usize).map(|_| ())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxDisablePeerAccess(peer: CUcontext) -> CUresult {
    ffi(|| {
        let d = driver();
        d.current()?;
        d.live_ctx(peer as usize).map(|_| ())
    })
}
