//! `cuGetProcAddress`: the variant table picks the exported symbol, and a static table of this
//! library's own entry points gives its address. No `dlsym`: a shim that wraps `dlsym` must not
//! be able to redirect the driver's own answers.

use crate::state::*;
use genv_abi::cuda::*;
use genv_abi::procaddr::{self, resolve};
use std::ffi::{c_char, c_int, c_void, CStr};

use crate::array::*;
use crate::context::*;
use crate::device::*;
use crate::errors::*;
use crate::memory::*;
use crate::pool::*;
use crate::stream::*;
use crate::vmm::*;

macro_rules! exports {
    ($($name:ident),* $(,)?) => {
        /// Every entry point this library exports.
        #[cfg(test)]
        pub const EXPORTS: &[&str] = &[$(stringify!($name)),*];

        /// The address of one of this library's entry points.
        pub fn lookup(symbol: &str) -> Option<*mut c_void> {
            match symbol {
                $(stringify!($name) => Some($name as *mut c_void),)*
                _ => None,
            }
        }
    };
}

exports!(
    cuArray3DCreate,
    cuArray3DCreate_v2,
    cuArray3DGetDescriptor_v2,
    cuArrayCreate,
    cuArrayCreate_v2,
    cuArrayDestroy,
    cuArrayGetDescriptor_v2,
    cuCtxCreate,
    cuCtxCreate_v2,
    cuCtxCreate_v3,
    cuCtxCreate_v4,
    cuCtxDestroy,
    cuCtxDestroy_v2,
    cuCtxDisablePeerAccess,
    cuCtxEnablePeerAccess,
    cuCtxGetApiVersion,
    cuCtxGetCacheConfig,
    cuCtxGetCurrent,
    cuCtxGetDevice,
    cuCtxGetDevice_v2,
    cuCtxGetFlags,
    cuCtxGetId,
    cuCtxGetLimit,
    cuCtxGetStreamPriorityRange,
    cuCtxPopCurrent,
    cuCtxPopCurrent_v2,
    cuCtxPushCurrent,
    cuCtxPushCurrent_v2,
    cuCtxSetCacheConfig,
    cuCtxSetCurrent,
    cuCtxSetLimit,
    cuCtxSynchronize,
    cuCtxSynchronize_v2,
    cuDeviceCanAccessPeer,
    cuDeviceComputeCapability,
    cuDeviceGet,
    cuDeviceGetAttribute,
    cuDeviceGetByPCIBusId,
    cuDeviceGetCount,
    cuDeviceGetDefaultMemPool,
    cuDeviceGetLuid,
    cuDeviceGetMemPool,
    cuDeviceGetName,
    cuDeviceGetPCIBusId,
    cuDeviceGetProperties,
    cuDeviceGetUuid,
    cuDeviceGetUuid_v2,
    cuDevicePrimaryCtxGetState,
    cuDevicePrimaryCtxRelease,
    cuDevicePrimaryCtxRelease_v2,
    cuDevicePrimaryCtxReset,
    cuDevicePrimaryCtxReset_v2,
    cuDevicePrimaryCtxRetain,
    cuDevicePrimaryCtxSetFlags,
    cuDevicePrimaryCtxSetFlags_v2,
    cuDeviceSetMemPool,
    cuDeviceTotalMem,
    cuDeviceTotalMem_v2,
    cuDriverGetVersion,
    cuEventCreate,
    cuEventDestroy,
    cuEventDestroy_v2,
    cuEventElapsedTime,
    cuEventQuery,
    cuEventRecord,
    cuEventRecordWithFlags,
    cuEventRecordWithFlags_ptsz,
    cuEventRecord_ptsz,
    cuEventSynchronize,
    cuGetErrorName,
    cuGetErrorString,
    cuGetExportTable,
    cuGetProcAddress,
    cuGetProcAddress_v2,
    cuInit,
    cuLaunchKernel,
    cuLaunchKernel_ptsz,
    cuLibraryLoadData,
    cuLinkCreate_v2,
    cuMemAddressFree,
    cuMemAddressReserve,
    cuMemAlloc,
    cuMemAllocAsync,
    cuMemAllocAsync_ptsz,
    cuMemAllocFromPoolAsync,
    cuMemAllocFromPoolAsync_ptsz,
    cuMemAllocHost,
    cuMemAllocHost_v2,
    cuMemAllocManaged,
    cuMemAllocPitch,
    cuMemAllocPitch_v2,
    cuMemAlloc_v2,
    cuMemCreate,
    cuMemFree,
    cuMemFreeAsync,
    cuMemFreeAsync_ptsz,
    cuMemFreeHost,
    cuMemFree_v2,
    cuMemGetAccess,
    cuMemGetAddressRange,
    cuMemGetAddressRange_v2,
    cuMemGetAllocationGranularity,
    cuMemGetAllocationPropertiesFromHandle,
    cuMemGetInfo,
    cuMemGetInfo_v2,
    cuMemHostAlloc,
    cuMemHostGetDevicePointer_v2,
    cuMemHostGetFlags,
    cuMemHostRegister_v2,
    cuMemHostUnregister,
    cuMemMap,
    cuMemPoolCreate,
    cuMemPoolDestroy,
    cuMemPoolGetAttribute,
    cuMemPoolSetAttribute,
    cuMemPoolTrimTo,
    cuMemRelease,
    cuMemRetainAllocationHandle,
    cuMemSetAccess,
    cuMemUnmap,
    cuMemcpy,
    cuMemcpyAsync,
    cuMemcpyAsync_ptsz,
    cuMemcpyDtoD,
    cuMemcpyDtoDAsync,
    cuMemcpyDtoDAsync_v2,
    cuMemcpyDtoDAsync_v2_ptsz,
    cuMemcpyDtoD_v2,
    cuMemcpyDtoD_v2_ptds,
    cuMemcpyDtoH,
    cuMemcpyDtoHAsync,
    cuMemcpyDtoHAsync_v2,
    cuMemcpyDtoHAsync_v2_ptsz,
    cuMemcpyDtoH_v2,
    cuMemcpyDtoH_v2_ptds,
    cuMemcpyHtoD,
    cuMemcpyHtoDAsync,
    cuMemcpyHtoDAsync_v2,
    cuMemcpyHtoDAsync_v2_ptsz,
    cuMemcpyHtoD_v2,
    cuMemcpyHtoD_v2_ptds,
    cuMemcpyPeer,
    cuMemcpyPeerAsync,
    cuMemcpyPeerAsync_ptsz,
    cuMemcpyPeer_ptds,
    cuMemcpy_ptds,
    cuMemsetD16,
    cuMemsetD16Async,
    cuMemsetD16Async_ptsz,
    cuMemsetD16_v2,
    cuMemsetD16_v2_ptds,
    cuMemsetD2D16Async,
    cuMemsetD2D16Async_ptsz,
    cuMemsetD2D16_v2,
    cuMemsetD2D16_v2_ptds,
    cuMemsetD2D32Async,
    cuMemsetD2D32Async_ptsz,
    cuMemsetD2D32_v2,
    cuMemsetD2D32_v2_ptds,
    cuMemsetD2D8Async,
    cuMemsetD2D8Async_ptsz,
    cuMemsetD2D8_v2,
    cuMemsetD2D8_v2_ptds,
    cuMemsetD32,
    cuMemsetD32Async,
    cuMemsetD32Async_ptsz,
    cuMemsetD32_v2,
    cuMemsetD32_v2_ptds,
    cuMemsetD8,
    cuMemsetD8Async,
    cuMemsetD8Async_ptsz,
    cuMemsetD8_v2,
    cuMemsetD8_v2_ptds,
    cuMipmappedArrayCreate,
    cuMipmappedArrayDestroy,
    cuModuleGetFunction,
    cuModuleLoad,
    cuModuleLoadData,
    cuModuleLoadDataEx,
    cuModuleLoadFatBinary,
    cuModuleUnload,
    cuPointerGetAttribute,
    cuStreamCreate,
    cuStreamCreateWithPriority,
    cuStreamDestroy,
    cuStreamDestroy_v2,
    cuStreamGetCtx,
    cuStreamGetCtx_ptsz,
    cuStreamGetFlags,
    cuStreamGetFlags_ptsz,
    cuStreamGetPriority,
    cuStreamGetPriority_ptsz,
    cuStreamQuery,
    cuStreamQuery_ptsz,
    cuStreamSynchronize,
    cuStreamSynchronize_ptsz,
    cuStreamWaitEvent,
    cuStreamWaitEvent_ptsz,
);

/// `GENV_SIM_TRACE=1`: every request and the variant it resolves to, on stderr (how to see what
/// a client asks for: cuda-bindings resolves its ~500 entry points this way at import).
fn trace(name: &str, version: c_int, flags: u64, answer: &Result<&str, u32>) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let on = *ON
        .get_or_init(|| std::env::var("GENV_SIM_TRACE").is_ok_and(|v| !v.is_empty() && v != "0"));
    if on {
        let found = match answer {
            Ok(sym) if lookup(sym).is_some() => sym.to_string(),
            Ok(sym) => format!("{sym} (not simulated)"),
            Err(s) => format!("status {s}"),
        };
        eprintln!("[genv-sim-cuda] cuGetProcAddress {name} {version} {flags} -> {found}");
    }
}

unsafe fn get_proc(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: u64,
    status: *mut u32,
) -> R {
    let set_status = |s: u32| {
        if !status.is_null() {
            status.write(s);
        }
    };
    if symbol.is_null()
        || pfn.is_null()
        || flags > procaddr::CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM
    {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    pfn.write(std::ptr::null_mut());
    let name = CStr::from_ptr(symbol).to_str().unwrap_or("");
    let answer = resolve(name, version, flags);
    trace(name, version, flags, &answer);
    match answer {
        Ok(sym) => match lookup(sym) {
            Some(p) => {
                pfn.write(p);
                set_status(procaddr::CU_GET_PROC_ADDRESS_SUCCESS);
                Ok(())
            }
            // A real entry point this simulator does not implement.
            None => {
                set_status(procaddr::CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND);
                Err(CUDA_ERROR_NOT_FOUND)
            }
        },
        Err(s) => {
            set_status(s);
            Err(CUDA_ERROR_NOT_FOUND)
        }
    }
}

/// Works before `cuInit`, as the real one does (the CUDA runtime resolves `cuInit` through it).
#[no_mangle]
pub unsafe extern "C" fn cuGetProcAddress(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: u64,
) -> CUresult {
    ffi(|| get_proc(symbol, pfn, version, flags, std::ptr::null_mut()))
}

#[no_mangle]
pub unsafe extern "C" fn cuGetProcAddress_v2(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: u64,
    status: *mut u32,
) -> CUresult {
    ffi(|| get_proc(symbol, pfn, version, flags, status))
}

/// The runtime's private tables cannot be imitated; refusing is safe, crashing is not.
#[no_mangle]
pub unsafe extern "C" fn cuGetExportTable(
    table: *mut *const c_void,
    _id: *const CUuuid,
) -> CUresult {
    ffi(|| {
        if !table.is_null() {
            table.write(std::ptr::null());
        }
        Err(CUDA_ERROR_NOT_SUPPORTED)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use genv_abi::procaddr::{PER_THREAD, VARIANTS};

    #[test]
    fn every_export_is_reachable_through_the_table() {
        for name in EXPORTS {
            let listed = VARIANTS.iter().chain(PER_THREAD).any(|r| r.2 == *name);
            assert!(
                listed,
                "{name} is exported but cuGetProcAddress cannot reach it"
            );
            assert!(lookup(name).is_some());
        }
        let mut sorted = EXPORTS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), EXPORTS.len());
    }

    #[test]
    fn lookup_matches_the_functions() {
        assert_eq!(lookup("cuMemAlloc_v2"), Some(cuMemAlloc_v2 as *mut c_void));
        assert_ne!(lookup("cuMemAlloc"), lookup("cuMemAlloc_v2"));
        assert_eq!(lookup("cuNoSuchThing"), None);
    }
}
