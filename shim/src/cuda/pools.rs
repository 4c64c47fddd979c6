//! Stream-ordered allocation and memory pools: an allocation counts on the device of the pool
//! it comes from (noted when the pool is made or fetched), else of its stream.

use super::*;

/// Memory pools -> the CUDA device they allocate on.
static POOLS: Fresh<Mutex<HashMap<usize, CUdevice>>> = Fresh::new(|| Mutex::new(HashMap::new()));

pub(super) fn after_fork_child() {
    POOLS.forget();
}

/// # Safety
/// `dptr` as `cuMemAllocAsync` takes it; `call` makes the allocation.
pub(super) unsafe fn alloc_async(
    dptr: *mut CUdeviceptr,
    size: usize,
    s: CUstream,
    call: impl FnOnce() -> CUresult,
) -> CUresult {
    memory::alloc_in(
        &memory::PTRS,
        size as u64,
        |v| devices::stream_host(v, s),
        call,
        // SAFETY: written by the driver on success.
        || unsafe { *dptr },
    )
}

/// # Safety
/// `dptr` as `cuMemAllocFromPoolAsync` takes it; `call` makes the allocation.
pub(super) unsafe fn alloc_from_pool(
    dptr: *mut CUdeviceptr,
    size: usize,
    pool: CUmemoryPool,
    s: CUstream,
    call: impl FnOnce() -> CUresult,
) -> CUresult {
    memory::alloc_in(
        &memory::PTRS,
        size as u64,
        |v| {
            // The pool's device when we saw the pool made; else the stream's.
            let dev = memory::lock(POOLS.get()).get(&(pool as usize)).copied();
            match dev {
                Some(d) => devices::host_of(v, d).ok_or(CUDA_ERROR_OUT_OF_MEMORY),
                None => devices::stream_host(v, s),
            }
        },
        call,
        // SAFETY: written by the driver on success.
        || unsafe { *dptr },
    )
}

/// Noted also outside an environment (pools are made rarely): a pool made before the process
/// entered one may allocate inside it.
pub(super) fn note(pool: CUmemoryPool, dev: CUdevice) {
    if !pool.is_null() {
        memory::lock(POOLS.get()).insert(pool as usize, dev);
    }
}

/// After the real `cuMemPoolCreate` answered `r`.
///
/// # Safety
/// The arguments as `cuMemPoolCreate` takes them.
pub(super) unsafe fn created(
    r: CUresult,
    pool: *mut CUmemoryPool,
    props: *const CUmemPoolProps,
) -> CUresult {
    // SAFETY: the caller's pointers, valid on success; the props are read as the driver did.
    unsafe {
        if r == CUDA_SUCCESS
            && !props.is_null()
            && (*props).location.kind == CU_MEM_LOCATION_TYPE_DEVICE
        {
            note(*pool, (*props).location.id);
        }
    }
    r
}

pub(super) fn destroyed(r: CUresult, pool: CUmemoryPool) -> CUresult {
    if r == CUDA_SUCCESS {
        memory::lock(POOLS.get()).remove(&(pool as usize));
    }
    r
}

/// After the real `cuDeviceGetDefaultMemPool` / `cuDeviceGetMemPool` answered `r`.
///
/// # Safety
/// `pool` as those functions take it.
pub(super) unsafe fn fetched(r: CUresult, pool: *mut CUmemoryPool, dev: CUdevice) -> CUresult {
    if r == CUDA_SUCCESS {
        // SAFETY: written by the driver on success.
        note(unsafe { *pool }, dev);
    }
    r
}
