//! The CUDA driver inside an environment: every hooked entry point, declared once each.
//!
//! - `devices`: which devices a program sees (the driver restricted with
//!   `CUDA_VISIBLE_DEVICES`, or the shim's own numbering after in-process activation), context
//!   creation, memory figures;
//! - `memory`: the one allocation path and linear memory; `pools`: stream-ordered allocation;
//!   `vmm`: `cuMemCreate` and mappings; `arrays`: CUDA arrays;
//! - `procaddr`: `cuGetProcAddress` answers our wrapper of exactly the variant the driver gave.
//!
//! Capacity: every allocation path reserves its bytes in the ledger *before* calling the
//! driver (see memory.rs); `cuMemGetInfo(_v2)` and `cuDeviceTotalMem(_v2)` report total =
//! min(capacity, physical) and free = min(capacity - environment's use, what the device really
//! has free). Every other entry point is the driver's own.

use crate::env;
use crate::hooks::hooks;
use crate::ledger::{self, Ticket};
use crate::real::{self, Real};
use crate::view::{self, View};
use genv_abi::cuda::*;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Mutex, OnceLock};

mod arrays;
mod devices;
mod memory;
mod pools;
mod procaddr;
mod vmm;

pub use arrays::array_bytes;
pub use devices::select;
use memory::{Entry, Fresh, Map};

pub(crate) fn after_fork_child() {
    // The parent's allocations are not the child's to free, and its registration in the
    // ledger is dropped by ledger::after_fork_child: start empty.
    memory::PTRS.forget();
    arrays::after_fork_child();
    vmm::after_fork_child();
    pools::after_fork_child();
}

/// The shim's wrapper for exported driver symbol `name`, when it has one (for `dlsym`).
pub fn wrapper(name: &[u8]) -> Option<*mut c_void> {
    table(name).map(|h| h.wrapper)
}

hooks! {
    api {
        lib: real::CUDA, ret: CUresult, missing: CUDA_ERROR_NOT_FOUND,
        panicked: CUDA_ERROR_UNKNOWN, real: real, name: NAME, attrs: [#[no_mangle]],
    }

    // Devices.

    /// An initialisation point; restricts the driver to the environment's GPUs.
    fn cuInit(flags: c_uint) {
        devices::init(real, flags)
    }
    fn cuDeviceGetCount(count: *mut c_int) {
        devices::count(real, count)
    }
    fn cuDeviceGet(dev: *mut CUdevice, ordinal: c_int) {
        devices::get(real, dev, ordinal)
    }
    fn cuDeviceGetByPCIBusId(dev: *mut CUdevice, bus_id: *const c_char) {
        devices::by_bus_id(real(dev, bus_id), dev)
    }
    /// Context creation: an initialisation point, and only on the environment's devices.
    fn cuDevicePrimaryCtxRetain(pctx: *mut CUcontext, dev: CUdevice) {
        devices::ctx_create(dev, || real(pctx, dev))
    }
    fn cuCtxCreate | cuCtxCreate_v2 (pctx: *mut CUcontext, flags: c_uint, dev: CUdevice) {
        devices::ctx_create(dev, || real(pctx, flags, dev))
    }
    fn cuCtxCreate_v3(
        pctx: *mut CUcontext,
        params: *mut c_void,
        num_params: c_int,
        flags: c_uint,
        dev: CUdevice,
    ) {
        devices::ctx_create(dev, || real(pctx, params, num_params, flags, dev))
    }
    fn cuCtxCreate_v4(pctx: *mut CUcontext, params: *const c_void, flags: c_uint, dev: CUdevice) {
        devices::ctx_create(dev, || real(pctx, params, flags, dev))
    }
    /// min(capacity, physical).
    fn cuDeviceTotalMem_v2 | cuDeviceTotalMem (bytes: *mut usize | *mut c_uint, dev: CUdevice) {
        let r = real(bytes, dev);
        if r == CUDA_SUCCESS && !bytes.is_null() {
            *bytes = devices::capped_total(dev, *bytes as u64) as _;
        }
        r
    }
    /// The environment's free and total memory on the current device.
    fn cuMemGetInfo_v2 | cuMemGetInfo (free: *mut usize | *mut c_uint, total: *mut usize | *mut c_uint) {
        let r = real(free, total);
        if r == CUDA_SUCCESS && !free.is_null() && !total.is_null() {
            let (f, t) = devices::mem_info(*free as u64, *total as u64);
            *free = f as _;
            *total = t as _;
        }
        r
    }

    // Linear memory.

    fn cuMemAlloc_v2 | cuMemAlloc (dptr: *mut CUdeviceptr | *mut CUdeviceptrV1, size: usize | c_uint) {
        memory::alloc(size as u64, || real(dptr, size), || *dptr as u64)
    }
    fn cuMemFree_v2 | cuMemFree (dptr: CUdeviceptr | CUdeviceptrV1) {
        memory::free(dptr as u64, || real(dptr))
    }
    /// Reserved at rows padded to the usual pitch, settled with the pitch the driver chose.
    fn cuMemAllocPitch_v2 | cuMemAllocPitch (
        dptr: *mut CUdeviceptr | *mut CUdeviceptrV1,
        pitch: *mut usize | *mut c_uint,
        width: usize | c_uint,
        height: usize | c_uint,
        elem: c_uint,
    ) {
        memory::pitched(
            width as u64,
            height as u64,
            || real(dptr, pitch, width, height, elem),
            || (*dptr as u64, *pitch as u64),
        )
    }
    fn cuMemAllocManaged(dptr: *mut CUdeviceptr, size: usize, flags: c_uint) {
        memory::alloc(size as u64, || real(dptr, size, flags), || *dptr)
    }

    // Stream-ordered allocation and pools.

    fn cuMemAllocAsync | cuMemAllocAsync_ptsz (dptr: *mut CUdeviceptr, size: usize, s: CUstream) {
        pools::alloc_async(dptr, size, s, || real(dptr, size, s))
    }
    fn cuMemAllocFromPoolAsync | cuMemAllocFromPoolAsync_ptsz (
        dptr: *mut CUdeviceptr,
        size: usize,
        pool: CUmemoryPool,
        s: CUstream,
    ) {
        pools::alloc_from_pool(dptr, size, pool, s, || real(dptr, size, pool, s))
    }
    /// Given back when enqueued: the pool may cache the memory, but it is not the program's.
    fn cuMemFreeAsync | cuMemFreeAsync_ptsz (dptr: CUdeviceptr, s: CUstream) {
        memory::free(dptr, || real(dptr, s))
    }
    fn cuMemPoolCreate(pool: *mut CUmemoryPool, props: *const CUmemPoolProps) {
        pools::created(real(pool, props), pool, props)
    }
    fn cuMemPoolDestroy(pool: CUmemoryPool) {
        pools::destroyed(real(pool), pool)
    }
    fn cuDeviceGetDefaultMemPool | cuDeviceGetMemPool (pool: *mut CUmemoryPool, dev: CUdevice) {
        pools::fetched(real(pool, dev), pool, dev)
    }

    // Virtual memory management.

    fn cuMemCreate(
        handle: *mut CUmemGenericAllocationHandle,
        size: usize,
        prop: *const CUmemAllocationProp,
        flags: u64,
    ) {
        vmm::create(handle, size, prop, || real(handle, size, prop, flags))
    }
    fn cuMemRelease(handle: CUmemGenericAllocationHandle) {
        vmm::release(handle, || real(handle))
    }
    fn cuMemMap(
        ptr: CUdeviceptr,
        size: usize,
        offset: usize,
        handle: CUmemGenericAllocationHandle,
        flags: u64,
    ) {
        vmm::mapped(real(ptr, size, offset, handle, flags), ptr, size, handle)
    }
    fn cuMemUnmap(ptr: CUdeviceptr, size: usize) {
        vmm::unmap(ptr, size, || real(ptr, size))
    }
    fn cuMemRetainAllocationHandle(handle: *mut CUmemGenericAllocationHandle, addr: *mut c_void) {
        vmm::retained(real(handle, addr), handle)
    }

    // Arrays.

    fn cuArrayCreate_v2 | cuArrayCreate (
        handle: *mut CUarray,
        desc: *const CudaArrayDescriptor | *const CudaArrayDescriptorV1,
    ) {
        arrays::create(handle, desc, None, || real(handle, desc))
    }
    fn cuArray3DCreate_v2 | cuArray3DCreate (
        handle: *mut CUarray,
        desc: *const CudaArray3dDescriptor | *const CudaArray3dDescriptorV1,
    ) {
        arrays::create(handle, desc, None, || real(handle, desc))
    }
    fn cuArrayDestroy(handle: CUarray) {
        arrays::destroy(handle, false, || real(handle))
    }
    /// Counted with all its levels.
    fn cuMipmappedArrayCreate(
        handle: *mut CUmipmappedArray,
        desc: *const CudaArray3dDescriptor,
        levels: c_uint,
    ) {
        arrays::create(handle, desc, Some(levels), || real(handle, desc, levels))
    }
    fn cuMipmappedArrayDestroy(handle: CUmipmappedArray) {
        arrays::destroy(handle, true, || real(handle))
    }

    // cuGetProcAddress.

    fn cuGetProcAddress(symbol: *const c_char, pfn: *mut *mut c_void, version: c_int, flags: u64) {
        let r = real(symbol, pfn, version, flags);
        if r == CUDA_SUCCESS {
            procaddr::wrap(symbol, pfn, version, flags);
        }
        r
    }
    fn cuGetProcAddress_v2(
        symbol: *const c_char,
        pfn: *mut *mut c_void,
        version: c_int,
        flags: u64,
        status: *mut c_int,
    ) {
        let r = real(symbol, pfn, version, flags, status);
        if r == CUDA_SUCCESS {
            procaddr::wrap(symbol, pfn, version, flags);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays() {
        // 2D float4 256x256: 1 MiB.
        assert_eq!(array_bytes(256, 256, 0, 0x20, 4, 0, 1), 1 << 20);
        // 1D uint8.
        assert_eq!(array_bytes(100, 0, 0, 0x01, 1, 0, 1), 100);
        // Mipmaps of 4x4 uint8: 16 + 4 + 1.
        assert_eq!(array_bytes(4, 4, 0, 0x01, 1, 0, 3), 21);
        // Layered: 3 layers of 4x4 with 2 levels: 3 * (16 + 4).
        assert_eq!(array_bytes(4, 4, 3, 0x01, 1, CUDA_ARRAY3D_LAYERED, 2), 60);
        // A format this shim does not know counts 4 bytes a channel.
        assert_eq!(array_bytes(10, 0, 0, 0x7777, 1, 0, 1), 40);
    }

    #[test]
    fn variants_are_wrapped_exactly() {
        assert_eq!(
            genv_abi::procaddr::resolve("cuMemAlloc", 3020, 0),
            Ok("cuMemAlloc_v2")
        );
        assert!(table(b"cuMemAlloc_v2").is_some());
        assert!(table(b"cuLaunchKernel").is_none());
        assert_eq!(
            wrapper(b"cuMemAllocAsync_ptsz"),
            Some(cuMemAllocAsync_ptsz as *mut c_void)
        );
        // Twins are their own functions with their own real slots.
        assert_ne!(wrapper(b"cuMemAlloc"), wrapper(b"cuMemAlloc_v2"));
        assert_eq!(table(b"cuMemAlloc").unwrap().real.name(), c"cuMemAlloc");
    }

    #[test]
    fn every_hooked_name_is_in_the_variant_table() {
        // cuGetProcAddress can only hand back wrappers of names the variant table knows.
        let known: std::collections::HashSet<&str> = genv_abi::procaddr::VARIANTS
            .iter()
            .chain(genv_abi::procaddr::PER_THREAD)
            .map(|r| r.2)
            .collect();
        for n in NAMES {
            assert!(
                known.contains(n),
                "{n} is hooked but no variant row answers it"
            );
        }
    }

    #[test]
    fn uuid_format() {
        let b = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ];
        assert_eq!(
            devices::uuid_string(&b),
            "GPU-12345678-9abc-def0-0123-456789abcdef"
        );
    }
}
