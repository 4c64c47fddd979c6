//! Linear device, managed and page-locked host memory; copies and memsets.
//!
//! Device memory is anonymous host memory, so copies are plain memory copies. Every device byte
//! is taken from the cross-process ledger first, under the current context's device.

use crate::state::*;
use genv_abi::cuda::*;
use genv_sim_common::machine;
use std::ffi::{c_int, c_uint, c_void};

/// Allocates `size` device-kind bytes in the current context.
fn alloc_current(size: u64, kind: Kind, low32: bool) -> Result<u64, CUresult> {
    let mut d = driver();
    let (h, c) = d.current()?;
    let nvml = c.nvml;
    d.alloc(size, nvml, h, kind, low32)
}

fn free_device(p: u64) -> R {
    let mut d = driver();
    d.current()?;
    if p == 0 {
        // Freeing NULL is a no-op, as with free().
        return Ok(());
    }
    match d.allocs.get(&p) {
        Some(a) if a.kind != Kind::Host => {}
        _ => return Err(CUDA_ERROR_INVALID_VALUE),
    }
    d.free_alloc(p);
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAlloc_v2(dptr: *mut CUdeviceptr, size: usize) -> CUresult {
    ffi(|| {
        if dptr.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        out(dptr, alloc_current(size as u64, Kind::Device, false)?)
    })
}

/// The pre-3.2 ABI: a 32-bit pointer, so the memory is mapped below 4 GiB.
#[no_mangle]
pub unsafe extern "C" fn cuMemAlloc(dptr: *mut CUdeviceptrV1, size: c_uint) -> CUresult {
    ffi(|| {
        if dptr.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let p = alloc_current(size as u64, Kind::Device, true)?;
        match u32::try_from(p) {
            Ok(p32) => out(dptr, p32),
            Err(_) => {
                driver().free_alloc(p);
                Err(CUDA_ERROR_OUT_OF_MEMORY)
            }
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemFree_v2(dptr: CUdeviceptr) -> CUresult {
    ffi(|| free_device(dptr))
}

#[no_mangle]
pub unsafe extern "C" fn cuMemFree(dptr: CUdeviceptrV1) -> CUresult {
    ffi(|| free_device(dptr as u64))
}

/// Rows are padded to 512 bytes, as the real driver does for these devices.
#[no_mangle]
pub unsafe extern "C" fn cuMemAllocPitch_v2(
    dptr: *mut CUdeviceptr,
    pitch: *mut usize,
    width: usize,
    height: usize,
    element_size: c_uint,
) -> CUresult {
    ffi(|| {
        if dptr.is_null() || pitch.is_null() || ![4, 8, 16].contains(&element_size) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        if width == 0 || height == 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let p = width.checked_add(511).ok_or(CUDA_ERROR_INVALID_VALUE)? & !511;
        let size = p.checked_mul(height).ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
        let ptr = alloc_current(size as u64, Kind::Device, false)?;
        out(pitch, p)?;
        out(dptr, ptr)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocManaged(
    dptr: *mut CUdeviceptr,
    size: usize,
    flags: c_uint,
) -> CUresult {
    ffi(|| {
        // CU_MEM_ATTACH_GLOBAL or CU_MEM_ATTACH_HOST.
        if dptr.is_null() || (flags != 1 && flags != 2) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        out(dptr, alloc_current(size as u64, Kind::Managed, false)?)
    })
}

fn mem_info() -> Result<(u64, u64), CUresult> {
    let d = driver();
    let (_, c) = d.current()?;
    let total = machine().gpus[c.nvml].total_memory;
    Ok((total.saturating_sub(used(c.nvml)), total))
}

#[no_mangle]
pub unsafe extern "C" fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CUresult {
    ffi(|| {
        let (f, t) = mem_info()?;
        out(free, f as usize)?;
        out(total, t as usize)
    })
}

/// The pre-3.2 ABI with 32-bit sizes: clamped.
#[no_mangle]
pub unsafe extern "C" fn cuMemGetInfo(free: *mut c_uint, total: *mut c_uint) -> CUresult {
    ffi(|| {
        let (f, t) = mem_info()?;
        out(free, f.min(u32::MAX as u64) as c_uint)?;
        out(total, t.min(u32::MAX as u64) as c_uint)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemGetAddressRange_v2(
    base: *mut CUdeviceptr,
    size: *mut usize,
    dptr: CUdeviceptr,
) -> CUresult {
    ffi(|| {
        let d = driver();
        d.current()?;
        let (b, s) = match d.find_alloc(dptr) {
            Some((b, a)) => (b, a.size),
            None => match d.mappings.range(..=dptr).next_back() {
                Some((&b, m)) if dptr < b + m.size => (b, m.size),
                _ => return Err(CUDA_ERROR_NOT_FOUND),
            },
        };
        if !base.is_null() {
            base.write(b);
        }
        if !size.is_null() {
            size.write(s as usize);
        }
        Ok(())
    })
}

fn host_alloc(pp: *mut *mut c_void, size: u64, flags: u32) -> R {
    if pp.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let mut d = driver();
    let (h, c) = d.current()?;
    let nvml = c.nvml;
    let p = d.alloc(size, nvml, h, Kind::Host, false)?;
    if let Some(a) = d.allocs.get_mut(&p) {
        a.host_flags = flags;
    }
    unsafe { pp.write(p as *mut c_void) };
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocHost_v2(pp: *mut *mut c_void, size: usize) -> CUresult {
    ffi(|| host_alloc(pp, size as u64, 0))
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocHost(pp: *mut *mut c_void, size: c_uint) -> CUresult {
    ffi(|| host_alloc(pp, size as u64, 0))
}

#[no_mangle]
pub unsafe extern "C" fn cuMemHostAlloc(
    pp: *mut *mut c_void,
    size: usize,
    flags: c_uint,
) -> CUresult {
    ffi(|| {
        // PORTABLE 1, DEVICEMAP 2, WRITECOMBINED 4.
        if flags & !7 != 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        host_alloc(pp, size as u64, flags)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemFreeHost(p: *mut c_void) -> CUresult {
    ffi(|| {
        let mut d = driver();
        d.current()?;
        match d.allocs.get(&(p as u64)) {
            Some(a) if a.kind == Kind::Host => {}
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        }
        d.free_alloc(p as u64);
        Ok(())
    })
}

/// Host memory is its own device address under unified addressing.
#[no_mangle]
pub unsafe extern "C" fn cuMemHostGetDevicePointer_v2(
    pdptr: *mut CUdeviceptr,
    p: *mut c_void,
    flags: c_uint,
) -> CUresult {
    ffi(|| {
        let d = driver();
        d.current()?;
        if flags != 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        match d.find_alloc(p as u64) {
            Some((_, a)) if a.kind == Kind::Host => out(pdptr, p as u64),
            _ => Err(CUDA_ERROR_INVALID_VALUE),
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemHostGetFlags(flags: *mut c_uint, p: *mut c_void) -> CUresult {
    ffi(|| {
        let d = driver();
        d.current()?;
        match d.find_alloc(p as u64) {
            Some((_, a)) if a.kind == Kind::Host => out(flags, a.host_flags),
            _ => Err(CUDA_ERROR_INVALID_VALUE),
        }
    })
}

/// Registered host memory stays the caller's; it is recorded only so that copies accept it and a
/// second registration fails as on the real driver.
#[no_mangle]
pub unsafe extern "C" fn cuMemHostRegister_v2(
    p: *mut c_void,
    size: usize,
    _flags: c_uint,
) -> CUresult {
    ffi(|| {
        let mut d = driver();
        let (h, c) = d.current()?;
        let nvml = c.nvml;
        if p.is_null() || size == 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        if d.find_alloc(p as u64).is_some() {
            return Err(CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED);
        }
        d.registered.insert(p as u64, (size as u64, nvml, h));
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemHostUnregister(p: *mut c_void) -> CUresult {
    ffi(|| {
        let mut d = driver();
        d.current()?;
        d.registered
            .remove(&(p as u64))
            .map(|_| ())
            .ok_or(CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED)
    })
}

/// `CUpointer_attribute` queries for memory this driver handed out.
#[no_mangle]
pub unsafe extern "C" fn cuPointerGetAttribute(
    data: *mut c_void,
    attr: c_int,
    ptr: CUdeviceptr,
) -> CUresult {
    ffi(|| {
        let d = driver();
        d.ready()?;
        if data.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let (base, a) = d.find_alloc(ptr).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        let ord = d.ordinal_of(a.nvml).unwrap_or(0) as c_int;
        // CU_MEMORYTYPE_HOST 1, DEVICE 2.
        let mem_type: c_uint = if a.kind == Kind::Host { 1 } else { 2 };
        match attr {
            1 => (data as *mut CUcontext).write(a.ctx as CUcontext),
            2 => (data as *mut c_uint).write(mem_type),
            3 => (data as *mut CUdeviceptr).write(ptr),
            4 => {
                let host = matches!(a.kind, Kind::Host | Kind::Managed);
                if !host {
                    return Err(CUDA_ERROR_INVALID_VALUE);
                }
                (data as *mut *mut c_void).write(ptr as *mut c_void)
            }
            6 => (data as *mut c_uint).write(0),
            7 => (data as *mut u64).write(base),
            8 => (data as *mut c_uint).write((a.kind == Kind::Managed) as c_uint),
            9 => (data as *mut c_int).write(ord),
            11 => (data as *mut CUdeviceptr).write(base),
            12 => (data as *mut usize).write(a.size as usize),
            13 => (data as *mut c_uint).write(1),
            17 => match a.kind {
                Kind::Pool(p) => (data as *mut CUmemoryPool).write(p as CUmemoryPool),
                _ => (data as *mut CUmemoryPool).write(std::ptr::null_mut()),
            },
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        }
        Ok(())
    })
}

/// Checks that a copy's device sides are memory this driver handed out, then copies.
/// `dst_dev` / `src_dev` say which sides must be device (or registered / host-allocated) memory.
fn copy(dst: u64, src: u64, n: usize, dst_dev: bool, src_dev: bool) -> R {
    {
        let d = driver();
        d.current()?;
        if n == 0 {
            return Ok(());
        }
        if dst == 0 || src == 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let n = n as u64;
        let dst_ok = d.writable_range(dst, n) || d.registered_range(dst, n);
        let src_ok = d.valid_range(src, n) || d.registered_range(src, n);
        if (dst_dev && !dst_ok) || (src_dev && !src_ok) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
    }
    // memmove: device-to-device copies within one allocation may overlap.
    unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, n) };
    Ok(())
}

/// `cuMemcpy` takes unified addresses: either side may be host memory.
fn copy_unified(dst: u64, src: u64, n: usize) -> R {
    let (dd, sd) = {
        let d = driver();
        (d.known(dst), d.known(src))
    };
    copy(dst, src, n, dd, sd)
}

pub(crate) fn check_stream(s: CUstream) -> R {
    let d = driver();
    d.current()?;
    let h = s as usize;
    if h == 0 || h == CU_STREAM_LEGACY || h == CU_STREAM_PER_THREAD || d.streams.contains_key(&h) {
        Ok(())
    } else {
        Err(CUDA_ERROR_INVALID_HANDLE)
    }
}

macro_rules! memcpy_fns {
    ($($name:ident),*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(dst: CUdeviceptr, src: CUdeviceptr, n: usize) -> CUresult {
            ffi(|| copy_unified(dst, src, n))
        }
    )*};
}
memcpy_fns!(cuMemcpy, cuMemcpy_ptds);

macro_rules! memcpy_async_fns {
    ($($name:ident),*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) -> CUresult {
            ffi(|| {
                check_stream(s)?;
                copy_unified(dst, src, n)
            })
        }
    )*};
}
memcpy_async_fns!(cuMemcpyAsync, cuMemcpyAsync_ptsz);

macro_rules! htod_fns {
    ($($name:ident),*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(dst: CUdeviceptr, src: *const c_void, n: usize) -> CUresult {
            ffi(|| copy(dst, src as u64, n, true, false))
        }
    )*};
}
htod_fns!(cuMemcpyHtoD_v2, cuMemcpyHtoD_v2_ptds);

macro_rules! htod_async_fns {
    ($($name:ident),*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(dst: CUdeviceptr, src: *const c_void, n: usize, s: CUstream) -> CUresult {
            ffi(|| {
                check_stream(s)?;
                copy(dst, src as u64, n, true, false)
            })
        }
    )*};
}
htod_async_fns!(cuMemcpyHtoDAsync_v2, cuMemcpyHtoDAsync_v2_ptsz);

macro_rules! dtoh_fns {
    ($($name:ident),*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(dst: *mut c_void, src: CUdeviceptr, n: usize) -> CUresult {
            ffi(|| copy(dst as u64, src, n, false, true))
        }
    )*};
}
dtoh_fns!(cuMemcpyDtoH_v2, cuMemcpyDtoH_v2_ptds);

macro_rules! dtoh_async_fns {
    ($($name:ident),*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(dst: *mut c_void, src: CUdeviceptr, n: usize, s: CUstream) -> CUresult {
            ffi(|| {
                check_stream(s)?;
                copy(dst as u64, src, n, false, true)
            })
        }
    )*};
}
dtoh_async_fns!(cuMemcpyDtoHAsync_v2, cuMemcpyDtoHAsync_v2_ptsz);

macro_rules! dtod_fns {
    ($($name:ident),*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(dst: CUdeviceptr, src: CUdeviceptr, n: usize) -> CUresult {
            ffi(|| copy(dst, src, n, true, true))
        }
    )*};
}
dtod_fns!(cuMemcpyDtoD_v2, cuMemcpyDtoD_v2_ptds);

macro_rules! dtod_async_fns {
    ($($name:ident),*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(dst: CUdeviceptr, src: CUdeviceptr, n: usize, s: CUstream) -> CUresult {
            ffi(|| {
                check_stream(s)?;
                copy(dst, src, n, true, true)
            })
        }
    )*};
}
dtod_async_fns!(cuMemcpyDtoDAsync_v2, cuMemcpyDtoDAsync_v2_ptsz);

/// The pre-3.2 ABI with 32-bit device pointers and sizes.
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyHtoD(
    dst: CUdeviceptrV1,
    src: *const c_void,
    n: c_uint,
) -> CUresult {
    ffi(|| copy(dst as u64, src as u64, n as usize, true, false))
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoH(dst: *mut c_void, src: CUdeviceptrV1, n: c_uint) -> CUresult {
    ffi(|| copy(dst as u64, src as u64, n as usize, false, true))
}

fn ctx_arg(c: CUcontext) -> R {
    let d = driver();
    d.ready()?;
    d.live_ctx(c as usize).map(|_| ())
}

macro_rules! peer_fns {
    ($($name:ident),*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            dst: CUdeviceptr,
            dst_ctx: CUcontext,
            src: CUdeviceptr,
            src_ctx: CUcontext,
            n: usize,
        ) -> CUresult {
            ffi(|| {
                ctx_arg(dst_ctx)?;
                ctx_arg(src_ctx)?;
                copy(dst, src, n, true, true)
            })
        }
    )*};
}
peer_fns!(cuMemcpyPeer, cuMemcpyPeer_ptds);

macro_rules! peer_async_fns {
    ($($name:ident),*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            dst: CUdeviceptr,
            dst_ctx: CUcontext,
            src: CUdeviceptr,
            src_ctx: CUcontext,
            n: usize,
            s: CUstream,
        ) -> CUresult {
            ffi(|| {
                ctx_arg(dst_ctx)?;
                ctx_arg(src_ctx)?;
                check_stream(s)?;
                copy(dst, src, n, true, true)
            })
        }
    )*};
}
peer_async_fns!(cuMemcpyPeerAsync, cuMemcpyPeerAsync_ptsz);

/// Fills `height` rows of `width` elements of `T`, `pitch` bytes apart.
fn fill<T: Copy>(dst: u64, pitch: usize, value: T, width: usize, height: usize) -> R {
    let size = std::mem::size_of::<T>();
    {
        let d = driver();
        d.current()?;
        if width == 0 || height == 0 {
            return Ok(());
        }
        if dst & (size as u64 - 1) != 0 || (height > 1 && pitch < width * size) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let span = pitch as u64 * (height as u64 - 1) + (width * size) as u64;
        if !d.writable_range(dst, span) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
    }
    for row in 0..height {
        let p = (dst + (row * pitch) as u64) as *mut T;
        unsafe { std::slice::from_raw_parts_mut(p, width).fill(value) };
    }
    Ok(())
}

macro_rules! memset_fns {
    ($t:ty: $($name:ident),*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(dst: CUdeviceptr, value: $t, n: usize) -> CUresult {
            ffi(|| fill(dst, 0, value, n, 1))
        }
    )*};
}
memset_fns!(u8: cuMemsetD8_v2, cuMemsetD8_v2_ptds);
memset_fns!(u16: cuMemsetD16_v2, cuMemsetD16_v2_ptds);
memset_fns!(u32: cuMemsetD32_v2, cuMemsetD32_v2_ptds);

macro_rules! memset_async_fns {
    ($t:ty: $($name:ident),*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(dst: CUdeviceptr, value: $t, n: usize, s: CUstream) -> CUresult {
            ffi(|| {
                check_stream(s)?;
                fill(dst, 0, value, n, 1)
            })
        }
    )*};
}
memset_async_fns!(u8: cuMemsetD8Async, cuMemsetD8Async_ptsz);
memset_async_fns!(u16: cuMemsetD16Async, cuMemsetD16Async_ptsz);
memset_async_fns!(u32: cuMemsetD32Async, cuMemsetD32Async_ptsz);

macro_rules! memset2d_fns {
    ($t:ty: $($name:ident),*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(dst: CUdeviceptr, pitch: usize, value: $t, w: usize, h: usize) -> CUresult {
            ffi(|| fill(dst, pitch, value, w, h))
        }
    )*};
}
memset2d_fns!(u8: cuMemsetD2D8_v2, cuMemsetD2D8_v2_ptds);
memset2d_fns!(u16: cuMemsetD2D16_v2, cuMemsetD2D16_v2_ptds);
memset2d_fns!(u32: cuMemsetD2D32_v2, cuMemsetD2D32_v2_ptds);

macro_rules! memset2d_async_fns {
    ($t:ty: $($name:ident),*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            dst: CUdeviceptr,
            pitch: usize,
            value: $t,
            w: usize,
            h: usize,
            s: CUstream,
        ) -> CUresult {
            ffi(|| {
                check_stream(s)?;
                fill(dst, pitch, value, w, h)
            })
        }
    )*};
}
memset2d_async_fns!(u8: cuMemsetD2D8Async, cuMemsetD2D8Async_ptsz);
memset2d_async_fns!(u16: cuMemsetD2D16Async, cuMemsetD2D16Async_ptsz);
memset2d_async_fns!(u32: cuMemsetD2D32Async, cuMemsetD2D32Async_ptsz);

// The pre-3.2 ABI: 32-bit device pointers and `unsigned int` sizes. Its allocations are mapped
// below 4 GiB so that their addresses fit.

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocPitch(
    dptr: *mut CUdeviceptrV1,
    pitch: *mut c_uint,
    width: c_uint,
    height: c_uint,
    element_size: c_uint,
) -> CUresult {
    ffi(|| {
        if dptr.is_null()
            || pitch.is_null()
            || ![4, 8, 16].contains(&element_size)
            || width == 0
            || height == 0
        {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let p = (width as u64 + 511) & !511;
        let ptr = alloc_current(p * height as u64, Kind::Device, true)?;
        match (u32::try_from(ptr), u32::try_from(p)) {
            (Ok(ptr32), Ok(p32)) => {
                out(pitch, p32)?;
                out(dptr, ptr32)
            }
            _ => {
                driver().free_alloc(ptr);
                Err(CUDA_ERROR_OUT_OF_MEMORY)
            }
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemGetAddressRange(
    base: *mut CUdeviceptrV1,
    size: *mut c_uint,
    dptr: CUdeviceptrV1,
) -> CUresult {
    ffi(|| {
        let d = driver();
        d.current()?;
        let (b, a) = d.find_alloc(dptr as u64).ok_or(CUDA_ERROR_NOT_FOUND)?;
        if !base.is_null() {
            base.write(u32::try_from(b).map_err(|_| CUDA_ERROR_INVALID_VALUE)?);
        }
        if !size.is_null() {
            size.write(a.size.min(u32::MAX as u64) as c_uint);
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoD(
    dst: CUdeviceptrV1,
    src: CUdeviceptrV1,
    n: c_uint,
) -> CUresult {
    ffi(|| copy(dst as u64, src as u64, n as usize, true, true))
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyHtoDAsync(
    dst: CUdeviceptrV1,
    src: *const c_void,
    n: c_uint,
    s: CUstream,
) -> CUresult {
    ffi(|| {
        check_stream(s)?;
        copy(dst as u64, src as u64, n as usize, true, false)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoHAsync(
    dst: *mut c_void,
    src: CUdeviceptrV1,
    n: c_uint,
    s: CUstream,
) -> CUresult {
    ffi(|| {
        check_stream(s)?;
        copy(dst as u64, src as u64, n as usize, false, true)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoDAsync(
    dst: CUdeviceptrV1,
    src: CUdeviceptrV1,
    n: c_uint,
    s: CUstream,
) -> CUresult {
    ffi(|| {
        check_stream(s)?;
        copy(dst as u64, src as u64, n as usize, true, true)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemsetD8(dst: CUdeviceptrV1, value: u8, n: c_uint) -> CUresult {
    ffi(|| fill(dst as u64, 0, value, n as usize, 1))
}

#[no_mangle]
pub unsafe extern "C" fn cuMemsetD16(dst: CUdeviceptrV1, value: u16, n: c_uint) -> CUresult {
    ffi(|| fill(dst as u64, 0, value, n as usize, 1))
}

#[no_mangle]
pub unsafe extern "C" fn cuMemsetD32(dst: CUdeviceptrV1, value: u32, n: c_uint) -> CUresult {
    ffi(|| fill(dst as u64, 0, value, n as usize, 1))
}
