//! CUDA arrays and mipmapped arrays: device memory without an address, so they only take their
//! bytes from the ledger (copies to and from arrays are not simulated).

use crate::state::*;
use genv_abi::cuda::*;
use std::ffi::c_uint;

/// Bytes of an array: width * height * depth * bytes per channel * channels.
fn array_bytes(desc: &CudaArray3dDescriptor) -> Result<u64, CUresult> {
    let per = format_bytes(desc.format).ok_or(CUDA_ERROR_INVALID_VALUE)?;
    if desc.width == 0 || ![1, 2, 4].contains(&desc.num_channels) {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    // A 3D array may not have depth without height.
    if desc.height == 0 && desc.depth != 0 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    [desc.width, desc.height.max(1), desc.depth.max(1)]
        .iter()
        .try_fold(per * desc.num_channels as u64, |acc, &x| {
            acc.checked_mul(x as u64)
        })
        .ok_or(CUDA_ERROR_OUT_OF_MEMORY)
}

fn create(handle: *mut CUarray, desc: CudaArray3dDescriptor, mipmapped: bool) -> R {
    if handle.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let mut d = driver();
    let (ctx, c) = d.current()?;
    let nvml = c.nvml;
    let bytes = array_bytes(&desc)?;
    if !reserve(nvml, bytes) {
        return Err(CUDA_ERROR_OUT_OF_MEMORY);
    }
    let h = d.handle();
    d.arrays.insert(
        h,
        ArrayObj {
            ctx,
            nvml,
            bytes,
            desc,
            mipmapped,
        },
    );
    unsafe { out(handle, h as CUarray) }
}

fn destroy(handle: *mut std::ffi::c_void, mipmapped: bool) -> R {
    let mut d = driver();
    d.ready()?;
    let h = handle as usize;
    match d.arrays.get(&h) {
        Some(a) if a.mipmapped == mipmapped => {}
        _ => return Err(CUDA_ERROR_INVALID_HANDLE),
    }
    if let Some(a) = d.arrays.remove(&h) {
        unreserve(a.nvml, a.bytes);
    }
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn cuArrayCreate_v2(
    handle: *mut CUarray,
    desc: *const CudaArrayDescriptor,
) -> CUresult {
    ffi(|| {
        let a = desc.as_ref().ok_or(CUDA_ERROR_INVALID_VALUE)?;
        let d3 = CudaArray3dDescriptor {
            width: a.width,
            height: a.height,
            depth: 0,
            format: a.format,
            num_channels: a.num_channels,
            flags: 0,
        };
        create(handle, d3, false)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuArray3DCreate_v2(
    handle: *mut CUarray,
    desc: *const CudaArray3dDescriptor,
) -> CUresult {
    ffi(|| {
        create(
            handle,
            *desc.as_ref().ok_or(CUDA_ERROR_INVALID_VALUE)?,
            false,
        )
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuArrayDestroy(handle: CUarray) -> CUresult {
    ffi(|| destroy(handle, false))
}

#[no_mangle]
pub unsafe extern "C" fn cuArrayGetDescriptor_v2(
    desc: *mut CudaArrayDescriptor,
    handle: CUarray,
) -> CUresult {
    ffi(|| {
        let d = driver();
        d.ready()?;
        let a = d
            .arrays
            .get(&(handle as usize))
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        out(
            desc,
            CudaArrayDescriptor {
                width: a.desc.width,
                height: a.desc.height,
                format: a.desc.format,
                num_channels: a.desc.num_channels,
            },
        )
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuArray3DGetDescriptor_v2(
    desc: *mut CudaArray3dDescriptor,
    handle: CUarray,
) -> CUresult {
    ffi(|| {
        let d = driver();
        d.ready()?;
        let a = d
            .arrays
            .get(&(handle as usize))
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        out(desc, a.desc)
    })
}

/// Counted at the size of its base level; the smaller levels are not simulated.
#[no_mangle]
pub unsafe extern "C" fn cuMipmappedArrayCreate(
    handle: *mut CUmipmappedArray,
    desc: *const CudaArray3dDescriptor,
    levels: c_uint,
) -> CUresult {
    ffi(|| {
        if levels == 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        create(
            handle,
            *desc.as_ref().ok_or(CUDA_ERROR_INVALID_VALUE)?,
            true,
        )
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMipmappedArrayDestroy(handle: CUmipmappedArray) -> CUresult {
    ffi(|| destroy(handle, true))
}

#[no_mangle]
pub unsafe extern "C" fn cuArrayCreate(
    handle: *mut CUarray,
    desc: *const CudaArrayDescriptorV1,
) -> CUresult {
    ffi(|| {
        let a = desc.as_ref().ok_or(CUDA_ERROR_INVALID_VALUE)?;
        let d3 = CudaArray3dDescriptor {
            width: a.width as usize,
            height: a.height as usize,
            depth: 0,
            format: a.format,
            num_channels: a.num_channels,
            flags: 0,
        };
        create(handle, d3, false)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuArray3DCreate(
    handle: *mut CUarray,
    desc: *const CudaArray3dDescriptorV1,
) -> CUresult {
    ffi(|| {
        let a = desc.as_ref().ok_or(CUDA_ERROR_INVALID_VALUE)?;
        let d3 = CudaArray3dDescriptor {
            width: a.width as usize,
            height: a.height as usize,
            depth: a.depth as usize,
            format: a.format,
            num_channels: a.num_channels,
            flags: a.flags,
        };
        create(handle, d3, false)
    })
}
