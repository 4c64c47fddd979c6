//! Stream-ordered allocation and memory pools. Work is synchronous here, so a stream-ordered
//! free gives the memory back at once (as with a release threshold of 0 after a synchronize).

use crate::state::*;
use genv_abi::cuda::*;
use std::ffi::{c_int, c_void};

/// The context a stream belongs to; the default streams mean the current context.
fn stream_ctx(d: &Driver, s: CUstream) -> Result<usize, CUresult> {
    let (cur, _) = d.current()?;
    let h = s as usize;
    if h == 0 || h == CU_STREAM_LEGACY || h == CU_STREAM_PER_THREAD {
        return Ok(cur);
    }
    let st = d.streams.get(&h).ok_or(CUDA_ERROR_INVALID_HANDLE)?;
    d.live_ctx(st.ctx)?;
    Ok(st.ctx)
}

fn new_pool(d: &mut Driver, ord: usize) -> usize {
    let h = d.handle();
    let nvml = d.visible[ord];
    d.pools.insert(
        h,
        Pool {
            ord,
            nvml,
            used: 0,
            high: 0,
            release_threshold: 0,
        },
    );
    h
}

fn default_pool(d: &mut Driver, ord: usize) -> usize {
    if d.devs[ord].default_pool == 0 {
        let h = new_pool(d, ord);
        d.devs[ord].default_pool = h;
    }
    d.devs[ord].default_pool
}

fn current_pool(d: &mut Driver, ord: usize) -> usize {
    if d.devs[ord].current_pool == 0 {
        let h = default_pool(d, ord);
        d.devs[ord].current_pool = h;
    }
    d.devs[ord].current_pool
}

fn pool_alloc(d: &mut Driver, dptr: *mut CUdeviceptr, size: usize, pool: usize) -> R {
    if dptr.is_null() {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    let nvml = d.pools.get(&pool).ok_or(CUDA_ERROR_INVALID_VALUE)?.nvml;
    let p = d.alloc(size as u64, nvml, 0, Kind::Pool(pool), false)?;
    if let Some(pl) = d.pools.get_mut(&pool) {
        pl.used += size as u64;
        pl.high = pl.high.max(pl.used);
    }
    unsafe { out(dptr, p) }
}

fn alloc_async(dptr: *mut CUdeviceptr, size: usize, s: CUstream) -> R {
    let mut d = driver();
    let ctx = stream_ctx(&d, s)?;
    let ord = d.live_ctx(ctx)?.ord;
    let pool = current_pool(&mut d, ord);
    pool_alloc(&mut d, dptr, size, pool)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocAsync(
    dptr: *mut CUdeviceptr,
    size: usize,
    s: CUstream,
) -> CUresult {
    ffi(|| alloc_async(dptr, size, s))
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocAsync_ptsz(
    dptr: *mut CUdeviceptr,
    size: usize,
    s: CUstream,
) -> CUresult {
    ffi(|| alloc_async(dptr, size, s))
}

fn alloc_from_pool(dptr: *mut CUdeviceptr, size: usize, pool: CUmemoryPool, s: CUstream) -> R {
    let mut d = driver();
    stream_ctx(&d, s)?;
    pool_alloc(&mut d, dptr, size, pool as usize)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocFromPoolAsync(
    dptr: *mut CUdeviceptr,
    size: usize,
    pool: CUmemoryPool,
    s: CUstream,
) -> CUresult {
    ffi(|| alloc_from_pool(dptr, size, pool, s))
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocFromPoolAsync_ptsz(
    dptr: *mut CUdeviceptr,
    size: usize,
    pool: CUmemoryPool,
    s: CUstream,
) -> CUresult {
    ffi(|| alloc_from_pool(dptr, size, pool, s))
}

/// Any device allocation may be freed in stream order, not only pool memory.
fn free_async(dptr: CUdeviceptr, s: CUstream) -> R {
    let mut d = driver();
    stream_ctx(&d, s)?;
    match d.allocs.get(&dptr) {
        Some(a) if a.kind != Kind::Host => {}
        _ => return Err(CUDA_ERROR_INVALID_VALUE),
    }
    d.free_alloc(dptr);
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn cuMemFreeAsync(dptr: CUdeviceptr, s: CUstream) -> CUresult {
    ffi(|| free_async(dptr, s))
}

#[no_mangle]
pub unsafe extern "C" fn cuMemFreeAsync_ptsz(dptr: CUdeviceptr, s: CUstream) -> CUresult {
    ffi(|| free_async(dptr, s))
}

#[no_mangle]
pub unsafe extern "C" fn cuMemPoolCreate(
    pool: *mut CUmemoryPool,
    props: *const CUmemPoolProps,
) -> CUresult {
    ffi(|| {
        let mut d = driver();
        d.ready()?;
        let p = props.as_ref().ok_or(CUDA_ERROR_INVALID_VALUE)?;
        if pool.is_null()
            || p.alloc_type != CU_MEM_ALLOCATION_TYPE_PINNED
            || p.location.kind != CU_MEM_LOCATION_TYPE_DEVICE
            || p.handle_types & !1 != 0
        {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        d.nvml(p.location.id)
            .map_err(|_| CUDA_ERROR_INVALID_VALUE)?;
        let h = new_pool(&mut d, p.location.id as usize);
        out(pool, h as CUmemoryPool)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemPoolDestroy(pool: CUmemoryPool) -> CUresult {
    ffi(|| {
        let mut d = driver();
        d.ready()?;
        let h = pool as usize;
        let ord = d.pools.get(&h).ok_or(CUDA_ERROR_INVALID_VALUE)?.ord;
        if d.devs[ord].default_pool == h {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let owned: Vec<u64> = d
            .allocs
            .iter()
            .filter(|(_, a)| a.kind == Kind::Pool(h))
            .map(|(&p, _)| p)
            .collect();
        for p in owned {
            d.free_alloc(p);
        }
        d.pools.remove(&h);
        if d.devs[ord].current_pool == h {
            d.devs[ord].current_pool = d.devs[ord].default_pool;
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetDefaultMemPool(
    pool: *mut CUmemoryPool,
    dev: CUdevice,
) -> CUresult {
    ffi(|| {
        let mut d = driver();
        d.nvml(dev)?;
        let h = default_pool(&mut d, dev as usize);
        out(pool, h as CUmemoryPool)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetMemPool(pool: *mut CUmemoryPool, dev: CUdevice) -> CUresult {
    ffi(|| {
        let mut d = driver();
        d.nvml(dev)?;
        let h = current_pool(&mut d, dev as usize);
        out(pool, h as CUmemoryPool)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceSetMemPool(dev: CUdevice, pool: CUmemoryPool) -> CUresult {
    ffi(|| {
        let mut d = driver();
        d.nvml(dev)?;
        match d.pools.get(&(pool as usize)) {
            Some(p) if p.ord == dev as usize => {}
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        }
        d.devs[dev as usize].current_pool = pool as usize;
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemPoolTrimTo(pool: CUmemoryPool, _keep: usize) -> CUresult {
    ffi(|| {
        let d = driver();
        d.ready()?;
        d.pools
            .get(&(pool as usize))
            .map(|_| ())
            .ok_or(CUDA_ERROR_INVALID_VALUE)
    })
}

/// `CUmemPool_attribute`: 1-3 reuse policies (int), 4 release threshold, 5-8 usage (u64).
#[no_mangle]
pub unsafe extern "C" fn cuMemPoolGetAttribute(
    pool: CUmemoryPool,
    attr: c_int,
    value: *mut c_void,
) -> CUresult {
    ffi(|| {
        let d = driver();
        d.ready()?;
        let p = d
            .pools
            .get(&(pool as usize))
            .ok_or(CUDA_ERROR_INVALID_VALUE)?;
        if value.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        match attr {
            1..=3 => (value as *mut c_int).write(1),
            4 => (value as *mut u64).write(p.release_threshold),
            5 | 7 => (value as *mut u64).write(p.used),
            6 | 8 => (value as *mut u64).write(p.high),
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemPoolSetAttribute(
    pool: CUmemoryPool,
    attr: c_int,
    value: *mut c_void,
) -> CUresult {
    ffi(|| {
        let mut d = driver();
        d.ready()?;
        let p = d
            .pools
            .get_mut(&(pool as usize))
            .ok_or(CUDA_ERROR_INVALID_VALUE)?;
        if value.is_null() {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        match attr {
            1..=3 => {}
            4 => p.release_threshold = (value as *const u64).read(),
            // Only resetting the high-water marks is allowed.
            6 | 8 => p.high = p.used,
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        }
        Ok(())
    })
}
