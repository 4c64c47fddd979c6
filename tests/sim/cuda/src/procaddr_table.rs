// The CUDA driver's cuGetProcAddress variant table, as plain data.
//
// This file has no dependencies (not even on its crate) so that another crate can reuse the same
// knowledge with `#[path = ".../procaddr_table.rs"] mod procaddr_table;` or `include!` (which is
// why this header is `//`, not `//!`: inner doc comments break `include!`).
//
// Format:
// - `VARIANTS`: rows `(base name, first CUDA version, exported symbol)`. `cuGetProcAddress` is
//   asked for a base name ("cuMemAlloc") and the CUDA version the caller was built for (3020 =
//   CUDA 3.2); the answer is the row of that base name with the highest version <= the asked one.
//   The version picks an ABI: `cuMemAlloc` 2000 is the 32-bit-pointer original, 3020 is
//   `cuMemAlloc_v2`. Rows of one base name are adjacent and sorted by version.
// - `PER_THREAD`: the same row shape, for the per-thread-default-stream entry points (`_ptds` for
//   calls without a stream argument, `_ptsz` for calls with one). They are chosen when `flags`
//   is `CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM` and a row's version is <= the asked
//   version; otherwise the `VARIANTS` answer stands (most functions have no per-thread variant).
// - `resolve` implements exactly that and returns the exported symbol name, or the
//   `CUdriverProcAddressQueryResult` value explaining why there is none.
//
// The base names and versions are those that cuda-bindings 12.9 asks the driver for (about 480
// entry points), plus the unsuffixed originals that older callers reach with lower versions. The
// first versions of originals this simulator does not export (graphics interop, texture
// references, linking) are best-effort; those of every exported symbol are tested.

/// `cuGetProcAddress` flags.
pub const CU_GET_PROC_ADDRESS_DEFAULT: u64 = 0;
pub const CU_GET_PROC_ADDRESS_LEGACY_STREAM: u64 = 1;
pub const CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM: u64 = 2;

/// `CUdriverProcAddressQueryResult` values.
pub const CU_GET_PROC_ADDRESS_SUCCESS: u32 = 0;
pub const CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND: u32 = 1;
pub const CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT: u32 = 2;

/// Picks the exported symbol for `name` at `version` under `flags` (0, 1 or 2; the caller
/// rejects other flags). `Err` carries `CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND` (unknown name) or
/// `CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT` (the function is newer than `version`).
pub fn resolve(name: &str, version: i32, flags: u64) -> Result<&'static str, u32> {
    if flags == CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM {
        if let Ok(sym) = best(PER_THREAD, name, version) {
            return Ok(sym);
        }
    }
    best(VARIANTS, name, version)
}

/// The last row of `name` whose version is <= `version` (rows are sorted by version).
fn best(
    table: &[(&str, i32, &'static str)],
    name: &str,
    version: i32,
) -> Result<&'static str, u32> {
    let mut status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    let mut pick = None;
    for &(base, since, sym) in table {
        if base == name {
            status = CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT;
            if since <= version {
                pick = Some(sym);
            }
        }
    }
    pick.ok_or(status)
}

/// `(base name, first CUDA version, exported symbol)`, see the top of the file.
pub const VARIANTS: &[(&str, i32, &str)] = &[
    ("cuGetErrorString", 6000, "cuGetErrorString"),
    ("cuGetErrorName", 6000, "cuGetErrorName"),
    ("cuInit", 2000, "cuInit"),
    ("cuDriverGetVersion", 2020, "cuDriverGetVersion"),
    ("cuDeviceGet", 2000, "cuDeviceGet"),
    ("cuDeviceGetCount", 2000, "cuDeviceGetCount"),
    ("cuDeviceGetName", 2000, "cuDeviceGetName"),
    ("cuDeviceGetUuid", 9020, "cuDeviceGetUuid"),
    ("cuDeviceGetUuid", 11040, "cuDeviceGetUuid_v2"),
    ("cuDeviceGetLuid", 10000, "cuDeviceGetLuid"),
    ("cuDeviceTotalMem", 2000, "cuDeviceTotalMem"),
    ("cuDeviceTotalMem", 3020, "cuDeviceTotalMem_v2"),
    (
        "cuDeviceGetTexture1DLinearMaxWidth",
        11010,
        "cuDeviceGetTexture1DLinearMaxWidth",
    ),
    ("cuDeviceGetAttribute", 2000, "cuDeviceGetAttribute"),
    (
        "cuDeviceGetNvSciSyncAttributes",
        10020,
        "cuDeviceGetNvSciSyncAttributes",
    ),
    ("cuDeviceSetMemPool", 11020, "cuDeviceSetMemPool"),
    ("cuDeviceGetMemPool", 11020, "cuDeviceGetMemPool"),
    (
        "cuDeviceGetDefaultMemPool",
        11020,
        "cuDeviceGetDefaultMemPool",
    ),
    (
        "cuDeviceGetExecAffinitySupport",
        11040,
        "cuDeviceGetExecAffinitySupport",
    ),
    (
        "cuFlushGPUDirectRDMAWrites",
        11030,
        "cuFlushGPUDirectRDMAWrites",
    ),
    ("cuDeviceGetProperties", 2000, "cuDeviceGetProperties"),
    (
        "cuDeviceComputeCapability",
        2000,
        "cuDeviceComputeCapability",
    ),
    ("cuDevicePrimaryCtxRetain", 7000, "cuDevicePrimaryCtxRetain"),
    (
        "cuDevicePrimaryCtxRelease",
        7000,
        "cuDevicePrimaryCtxRelease",
    ),
    (
        "cuDevicePrimaryCtxRelease",
        11000,
        "cuDevicePrimaryCtxRelease_v2",
    ),
    (
        "cuDevicePrimaryCtxSetFlags",
        7000,
        "cuDevicePrimaryCtxSetFlags",
    ),
    (
        "cuDevicePrimaryCtxSetFlags",
        11000,
        "cuDevicePrimaryCtxSetFlags_v2",
    ),
    (
        "cuDevicePrimaryCtxGetState",
        7000,
        "cuDevicePrimaryCtxGetState",
    ),
    ("cuDevicePrimaryCtxReset", 7000, "cuDevicePrimaryCtxReset"),
    (
        "cuDevicePrimaryCtxReset",
        11000,
        "cuDevicePrimaryCtxReset_v2",
    ),
    ("cuCtxCreate", 2000, "cuCtxCreate"),
    ("cuCtxCreate", 3020, "cuCtxCreate_v2"),
    ("cuCtxCreate", 11040, "cuCtxCreate_v3"),
    ("cuCtxCreate", 12050, "cuCtxCreate_v4"),
    ("cuCtxDestroy", 2000, "cuCtxDestroy"),
    ("cuCtxDestroy", 4000, "cuCtxDestroy_v2"),
    ("cuCtxPushCurrent", 2000, "cuCtxPushCurrent"),
    ("cuCtxPushCurrent", 4000, "cuCtxPushCurrent_v2"),
    ("cuCtxPopCurrent", 2000, "cuCtxPopCurrent"),
    ("cuCtxPopCurrent", 4000, "cuCtxPopCurrent_v2"),
    ("cuCtxSetCurrent", 4000, "cuCtxSetCurrent"),
    ("cuCtxGetCurrent", 4000, "cuCtxGetCurrent"),
    ("cuCtxGetDevice", 2000, "cuCtxGetDevice"),
    ("cuCtxGetFlags", 7000, "cuCtxGetFlags"),
    ("cuCtxSetFlags", 12010, "cuCtxSetFlags"),
    ("cuCtxGetId", 12000, "cuCtxGetId"),
    ("cuCtxSynchronize", 2000, "cuCtxSynchronize"),
    ("cuCtxSetLimit", 3010, "cuCtxSetLimit"),
    ("cuCtxGetLimit", 3010, "cuCtxGetLimit"),
    ("cuCtxGetCacheConfig", 3020, "cuCtxGetCacheConfig"),
    ("cuCtxSetCacheConfig", 3020, "cuCtxSetCacheConfig"),
    ("cuCtxGetApiVersion", 3020, "cuCtxGetApiVersion"),
    (
        "cuCtxGetStreamPriorityRange",
        5050,
        "cuCtxGetStreamPriorityRange",
    ),
    (
        "cuCtxResetPersistingL2Cache",
        11000,
        "cuCtxResetPersistingL2Cache",
    ),
    ("cuCtxGetExecAffinity", 11040, "cuCtxGetExecAffinity"),
    ("cuCtxRecordEvent", 12050, "cuCtxRecordEvent"),
    ("cuCtxWaitEvent", 12050, "cuCtxWaitEvent"),
    ("cuCtxAttach", 2000, "cuCtxAttach"),
    ("cuCtxDetach", 2000, "cuCtxDetach"),
    ("cuCtxGetSharedMemConfig", 4020, "cuCtxGetSharedMemConfig"),
    ("cuCtxSetSharedMemConfig", 4020, "cuCtxSetSharedMemConfig"),
    ("cuModuleLoad", 2000, "cuModuleLoad"),
    ("cuModuleLoadData", 2000, "cuModuleLoadData"),
    ("cuModuleLoadDataEx", 2010, "cuModuleLoadDataEx"),
    ("cuModuleLoadFatBinary", 2000, "cuModuleLoadFatBinary"),
    ("cuModuleUnload", 2000, "cuModuleUnload"),
    ("cuModuleGetLoadingMode", 11070, "cuModuleGetLoadingMode"),
    ("cuModuleGetFunction", 2000, "cuModuleGetFunction"),
    (
        "cuModuleGetFunctionCount",
        12040,
        "cuModuleGetFunctionCount",
    ),
    (
        "cuModuleEnumerateFunctions",
        12040,
        "cuModuleEnumerateFunctions",
    ),
    ("cuModuleGetGlobal", 2000, "cuModuleGetGlobal"),
    ("cuModuleGetGlobal", 3020, "cuModuleGetGlobal_v2"),
    ("cuLinkCreate", 5050, "cuLinkCreate"),
    ("cuLinkCreate", 6050, "cuLinkCreate_v2"),
    ("cuLinkAddData", 5050, "cuLinkAddData"),
    ("cuLinkAddData", 6050, "cuLinkAddData_v2"),
    ("cuLinkAddFile", 5050, "cuLinkAddFile"),
    ("cuLinkAddFile", 6050, "cuLinkAddFile_v2"),
    ("cuLinkComplete", 5050, "cuLinkComplete"),
    ("cuLinkDestroy", 5050, "cuLinkDestroy"),
    ("cuModuleGetTexRef", 2000, "cuModuleGetTexRef"),
    ("cuModuleGetSurfRef", 3000, "cuModuleGetSurfRef"),
    ("cuLibraryLoadData", 12000, "cuLibraryLoadData"),
    ("cuLibraryLoadFromFile", 12000, "cuLibraryLoadFromFile"),
    ("cuLibraryUnload", 12000, "cuLibraryUnload"),
    ("cuLibraryGetKernel", 12000, "cuLibraryGetKernel"),
    ("cuLibraryGetKernelCount", 12040, "cuLibraryGetKernelCount"),
    (
        "cuLibraryEnumerateKernels",
        12040,
        "cuLibraryEnumerateKernels",
    ),
    ("cuLibraryGetModule", 12000, "cuLibraryGetModule"),
    ("cuKernelGetFunction", 12000, "cuKernelGetFunction"),
    ("cuKernelGetLibrary", 12050, "cuKernelGetLibrary"),
    ("cuLibraryGetGlobal", 12000, "cuLibraryGetGlobal"),
    ("cuLibraryGetManaged", 12000, "cuLibraryGetManaged"),
    (
        "cuLibraryGetUnifiedFunction",
        12000,
        "cuLibraryGetUnifiedFunction",
    ),
    ("cuKernelGetAttribute", 12000, "cuKernelGetAttribute"),
    ("cuKernelSetAttribute", 12000, "cuKernelSetAttribute"),
    ("cuKernelSetCacheConfig", 12000, "cuKernelSetCacheConfig"),
    ("cuKernelGetName", 12030, "cuKernelGetName"),
    ("cuKernelGetParamInfo", 12040, "cuKernelGetParamInfo"),
    ("cuMemGetInfo", 2000, "cuMemGetInfo"),
    ("cuMemGetInfo", 3020, "cuMemGetInfo_v2"),
    ("cuMemAlloc", 2000, "cuMemAlloc"),
    ("cuMemAlloc", 3020, "cuMemAlloc_v2"),
    ("cuMemAllocPitch", 2000, "cuMemAllocPitch"),
    ("cuMemAllocPitch", 3020, "cuMemAllocPitch_v2"),
    ("cuMemFree", 2000, "cuMemFree"),
    ("cuMemFree", 3020, "cuMemFree_v2"),
    ("cuMemGetAddressRange", 2000, "cuMemGetAddressRange"),
    ("cuMemGetAddressRange", 3020, "cuMemGetAddressRange_v2"),
    ("cuMemAllocHost", 2000, "cuMemAllocHost"),
    ("cuMemAllocHost", 3020, "cuMemAllocHost_v2"),
    ("cuMemFreeHost", 2000, "cuMemFreeHost"),
    ("cuMemHostAlloc", 2020, "cuMemHostAlloc"),
    (
        "cuMemHostGetDevicePointer",
        2020,
        "cuMemHostGetDevicePointer",
    ),
    (
        "cuMemHostGetDevicePointer",
        3020,
        "cuMemHostGetDevicePointer_v2",
    ),
    ("cuMemHostGetFlags", 2030, "cuMemHostGetFlags"),
    ("cuMemAllocManaged", 6000, "cuMemAllocManaged"),
    (
        "cuDeviceRegisterAsyncNotification",
        12040,
        "cuDeviceRegisterAsyncNotification",
    ),
    (
        "cuDeviceUnregisterAsyncNotification",
        12040,
        "cuDeviceUnregisterAsyncNotification",
    ),
    ("cuDeviceGetByPCIBusId", 4010, "cuDeviceGetByPCIBusId"),
    ("cuDeviceGetPCIBusId", 4010, "cuDeviceGetPCIBusId"),
    ("cuIpcGetEventHandle", 4010, "cuIpcGetEventHandle"),
    ("cuIpcOpenEventHandle", 4010, "cuIpcOpenEventHandle"),
    ("cuIpcGetMemHandle", 4010, "cuIpcGetMemHandle"),
    ("cuIpcOpenMemHandle", 4010, "cuIpcOpenMemHandle"),
    ("cuIpcOpenMemHandle", 11000, "cuIpcOpenMemHandle_v2"),
    ("cuIpcCloseMemHandle", 4010, "cuIpcCloseMemHandle"),
    ("cuMemHostRegister", 4000, "cuMemHostRegister"),
    ("cuMemHostRegister", 6050, "cuMemHostRegister_v2"),
    ("cuMemHostUnregister", 4000, "cuMemHostUnregister"),
    ("cuMemcpy", 4000, "cuMemcpy"),
    ("cuMemcpyPeer", 4000, "cuMemcpyPeer"),
    ("cuMemcpyHtoD", 2000, "cuMemcpyHtoD"),
    ("cuMemcpyHtoD", 3020, "cuMemcpyHtoD_v2"),
    ("cuMemcpyDtoH", 2000, "cuMemcpyDtoH"),
    ("cuMemcpyDtoH", 3020, "cuMemcpyDtoH_v2"),
    ("cuMemcpyDtoD", 2000, "cuMemcpyDtoD"),
    ("cuMemcpyDtoD", 3020, "cuMemcpyDtoD_v2"),
    ("cuMemcpyDtoA", 2000, "cuMemcpyDtoA"),
    ("cuMemcpyDtoA", 3020, "cuMemcpyDtoA_v2"),
    ("cuMemcpyAtoD", 2000, "cuMemcpyAtoD"),
    ("cuMemcpyAtoD", 3020, "cuMemcpyAtoD_v2"),
    ("cuMemcpyHtoA", 2000, "cuMemcpyHtoA"),
    ("cuMemcpyHtoA", 3020, "cuMemcpyHtoA_v2"),
    ("cuMemcpyAtoH", 2000, "cuMemcpyAtoH"),
    ("cuMemcpyAtoH", 3020, "cuMemcpyAtoH_v2"),
    ("cuMemcpyAtoA", 2000, "cuMemcpyAtoA"),
    ("cuMemcpyAtoA", 3020, "cuMemcpyAtoA_v2"),
    ("cuMemcpy2D", 2000, "cuMemcpy2D"),
    ("cuMemcpy2D", 3020, "cuMemcpy2D_v2"),
    ("cuMemcpy2DUnaligned", 2000, "cuMemcpy2DUnaligned"),
    ("cuMemcpy2DUnaligned", 3020, "cuMemcpy2DUnaligned_v2"),
    ("cuMemcpy3D", 2000, "cuMemcpy3D"),
    ("cuMemcpy3D", 3020, "cuMemcpy3D_v2"),
    ("cuMemcpy3DPeer", 4000, "cuMemcpy3DPeer"),
    ("cuMemcpyAsync", 4000, "cuMemcpyAsync"),
    ("cuMemcpyPeerAsync", 4000, "cuMemcpyPeerAsync"),
    ("cuMemcpyHtoDAsync", 2000, "cuMemcpyHtoDAsync"),
    ("cuMemcpyHtoDAsync", 3020, "cuMemcpyHtoDAsync_v2"),
    ("cuMemcpyDtoHAsync", 2000, "cuMemcpyDtoHAsync"),
    ("cuMemcpyDtoHAsync", 3020, "cuMemcpyDtoHAsync_v2"),
    ("cuMemcpyDtoDAsync", 3000, "cuMemcpyDtoDAsync"),
    ("cuMemcpyDtoDAsync", 3020, "cuMemcpyDtoDAsync_v2"),
    ("cuMemcpyHtoAAsync", 2000, "cuMemcpyHtoAAsync"),
    ("cuMemcpyHtoAAsync", 3020, "cuMemcpyHtoAAsync_v2"),
    ("cuMemcpyAtoHAsync", 2000, "cuMemcpyAtoHAsync"),
    ("cuMemcpyAtoHAsync", 3020, "cuMemcpyAtoHAsync_v2"),
    ("cuMemcpy2DAsync", 2000, "cuMemcpy2DAsync"),
    ("cuMemcpy2DAsync", 3020, "cuMemcpy2DAsync_v2"),
    ("cuMemcpy3DAsync", 2000, "cuMemcpy3DAsync"),
    ("cuMemcpy3DAsync", 3020, "cuMemcpy3DAsync_v2"),
    ("cuMemcpy3DPeerAsync", 4000, "cuMemcpy3DPeerAsync"),
    ("cuMemcpyBatchAsync", 12080, "cuMemcpyBatchAsync"),
    ("cuMemcpy3DBatchAsync", 12080, "cuMemcpy3DBatchAsync"),
    ("cuMemsetD8", 2000, "cuMemsetD8"),
    ("cuMemsetD8", 3020, "cuMemsetD8_v2"),
    ("cuMemsetD16", 2000, "cuMemsetD16"),
    ("cuMemsetD16", 3020, "cuMemsetD16_v2"),
    ("cuMemsetD32", 2000, "cuMemsetD32"),
    ("cuMemsetD32", 3020, "cuMemsetD32_v2"),
    ("cuMemsetD2D8", 2000, "cuMemsetD2D8"),
    ("cuMemsetD2D8", 3020, "cuMemsetD2D8_v2"),
    ("cuMemsetD2D16", 2000, "cuMemsetD2D16"),
    ("cuMemsetD2D16", 3020, "cuMemsetD2D16_v2"),
    ("cuMemsetD2D32", 2000, "cuMemsetD2D32"),
    ("cuMemsetD2D32", 3020, "cuMemsetD2D32_v2"),
    ("cuMemsetD8Async", 3020, "cuMemsetD8Async"),
    ("cuMemsetD16Async", 3020, "cuMemsetD16Async"),
    ("cuMemsetD32Async", 3020, "cuMemsetD32Async"),
    ("cuMemsetD2D8Async", 3020, "cuMemsetD2D8Async"),
    ("cuMemsetD2D16Async", 3020, "cuMemsetD2D16Async"),
    ("cuMemsetD2D32Async", 3020, "cuMemsetD2D32Async"),
    ("cuArrayCreate", 2000, "cuArrayCreate"),
    ("cuArrayCreate", 3020, "cuArrayCreate_v2"),
    ("cuArrayGetDescriptor", 2000, "cuArrayGetDescriptor"),
    ("cuArrayGetDescriptor", 3020, "cuArrayGetDescriptor_v2"),
    (
        "cuArrayGetSparseProperties",
        11010,
        "cuArrayGetSparseProperties",
    ),
    (
        "cuMipmappedArrayGetSparseProperties",
        11010,
        "cuMipmappedArrayGetSparseProperties",
    ),
    (
        "cuArrayGetMemoryRequirements",
        11060,
        "cuArrayGetMemoryRequirements",
    ),
    (
        "cuMipmappedArrayGetMemoryRequirements",
        11060,
        "cuMipmappedArrayGetMemoryRequirements",
    ),
    ("cuArrayGetPlane", 11020, "cuArrayGetPlane"),
    ("cuArrayDestroy", 2000, "cuArrayDestroy"),
    ("cuArray3DCreate", 2000, "cuArray3DCreate"),
    ("cuArray3DCreate", 3020, "cuArray3DCreate_v2"),
    ("cuArray3DGetDescriptor", 2000, "cuArray3DGetDescriptor"),
    ("cuArray3DGetDescriptor", 3020, "cuArray3DGetDescriptor_v2"),
    ("cuMipmappedArrayCreate", 5000, "cuMipmappedArrayCreate"),
    ("cuMipmappedArrayGetLevel", 5000, "cuMipmappedArrayGetLevel"),
    ("cuMipmappedArrayDestroy", 5000, "cuMipmappedArrayDestroy"),
    (
        "cuMemGetHandleForAddressRange",
        11070,
        "cuMemGetHandleForAddressRange",
    ),
    (
        "cuMemBatchDecompressAsync",
        12060,
        "cuMemBatchDecompressAsync",
    ),
    ("cuMemAddressReserve", 10020, "cuMemAddressReserve"),
    ("cuMemAddressFree", 10020, "cuMemAddressFree"),
    ("cuMemCreate", 10020, "cuMemCreate"),
    ("cuMemRelease", 10020, "cuMemRelease"),
    ("cuMemMap", 10020, "cuMemMap"),
    ("cuMemMapArrayAsync", 11010, "cuMemMapArrayAsync"),
    ("cuMemUnmap", 10020, "cuMemUnmap"),
    ("cuMemSetAccess", 10020, "cuMemSetAccess"),
    ("cuMemGetAccess", 10020, "cuMemGetAccess"),
    (
        "cuMemExportToShareableHandle",
        10020,
        "cuMemExportToShareableHandle",
    ),
    (
        "cuMemImportFromShareableHandle",
        10020,
        "cuMemImportFromShareableHandle",
    ),
    (
        "cuMemGetAllocationGranularity",
        10020,
        "cuMemGetAllocationGranularity",
    ),
    (
        "cuMemGetAllocationPropertiesFromHandle",
        10020,
        "cuMemGetAllocationPropertiesFromHandle",
    ),
    (
        "cuMemRetainAllocationHandle",
        11000,
        "cuMemRetainAllocationHandle",
    ),
    ("cuMemFreeAsync", 11020, "cuMemFreeAsync"),
    ("cuMemAllocAsync", 11020, "cuMemAllocAsync"),
    ("cuMemPoolTrimTo", 11020, "cuMemPoolTrimTo"),
    ("cuMemPoolSetAttribute", 11020, "cuMemPoolSetAttribute"),
    ("cuMemPoolGetAttribute", 11020, "cuMemPoolGetAttribute"),
    ("cuMemPoolSetAccess", 11020, "cuMemPoolSetAccess"),
    ("cuMemPoolGetAccess", 11020, "cuMemPoolGetAccess"),
    ("cuMemPoolCreate", 11020, "cuMemPoolCreate"),
    ("cuMemPoolDestroy", 11020, "cuMemPoolDestroy"),
    ("cuMemAllocFromPoolAsync", 11020, "cuMemAllocFromPoolAsync"),
    (
        "cuMemPoolExportToShareableHandle",
        11020,
        "cuMemPoolExportToShareableHandle",
    ),
    (
        "cuMemPoolImportFromShareableHandle",
        11020,
        "cuMemPoolImportFromShareableHandle",
    ),
    ("cuMemPoolExportPointer", 11020, "cuMemPoolExportPointer"),
    ("cuMemPoolImportPointer", 11020, "cuMemPoolImportPointer"),
    ("cuMulticastCreate", 12010, "cuMulticastCreate"),
    ("cuMulticastAddDevice", 12010, "cuMulticastAddDevice"),
    ("cuMulticastBindMem", 12010, "cuMulticastBindMem"),
    ("cuMulticastBindAddr", 12010, "cuMulticastBindAddr"),
    ("cuMulticastUnbind", 12010, "cuMulticastUnbind"),
    (
        "cuMulticastGetGranularity",
        12010,
        "cuMulticastGetGranularity",
    ),
    ("cuPointerGetAttribute", 4000, "cuPointerGetAttribute"),
    ("cuMemPrefetchAsync", 8000, "cuMemPrefetchAsync"),
    ("cuMemPrefetchAsync", 12020, "cuMemPrefetchAsync_v2"),
    ("cuMemAdvise", 8000, "cuMemAdvise"),
    ("cuMemAdvise", 12020, "cuMemAdvise_v2"),
    ("cuMemRangeGetAttribute", 8000, "cuMemRangeGetAttribute"),
    ("cuMemRangeGetAttributes", 8000, "cuMemRangeGetAttributes"),
    ("cuPointerSetAttribute", 6000, "cuPointerSetAttribute"),
    ("cuPointerGetAttributes", 7000, "cuPointerGetAttributes"),
    ("cuStreamCreate", 2000, "cuStreamCreate"),
    (
        "cuStreamCreateWithPriority",
        5050,
        "cuStreamCreateWithPriority",
    ),
    ("cuStreamGetPriority", 5050, "cuStreamGetPriority"),
    ("cuStreamGetDevice", 12080, "cuStreamGetDevice"),
    ("cuStreamGetFlags", 5050, "cuStreamGetFlags"),
    ("cuStreamGetId", 12000, "cuStreamGetId"),
    ("cuStreamGetCtx", 9020, "cuStreamGetCtx"),
    ("cuStreamGetCtx", 12050, "cuStreamGetCtx_v2"),
    ("cuStreamWaitEvent", 3020, "cuStreamWaitEvent"),
    ("cuStreamAddCallback", 5000, "cuStreamAddCallback"),
    ("cuStreamBeginCapture", 10000, "cuStreamBeginCapture"),
    ("cuStreamBeginCapture", 10010, "cuStreamBeginCapture_v2"),
    (
        "cuStreamBeginCaptureToGraph",
        12030,
        "cuStreamBeginCaptureToGraph",
    ),
    (
        "cuThreadExchangeStreamCaptureMode",
        10010,
        "cuThreadExchangeStreamCaptureMode",
    ),
    ("cuStreamEndCapture", 10000, "cuStreamEndCapture"),
    ("cuStreamIsCapturing", 10000, "cuStreamIsCapturing"),
    ("cuStreamGetCaptureInfo", 10010, "cuStreamGetCaptureInfo"),
    ("cuStreamGetCaptureInfo", 11030, "cuStreamGetCaptureInfo_v2"),
    ("cuStreamGetCaptureInfo", 12030, "cuStreamGetCaptureInfo_v3"),
    (
        "cuStreamUpdateCaptureDependencies",
        11030,
        "cuStreamUpdateCaptureDependencies",
    ),
    (
        "cuStreamUpdateCaptureDependencies",
        12030,
        "cuStreamUpdateCaptureDependencies_v2",
    ),
    ("cuStreamAttachMemAsync", 6000, "cuStreamAttachMemAsync"),
    ("cuStreamQuery", 2000, "cuStreamQuery"),
    ("cuStreamSynchronize", 2000, "cuStreamSynchronize"),
    ("cuStreamDestroy", 2000, "cuStreamDestroy"),
    ("cuStreamDestroy", 4000, "cuStreamDestroy_v2"),
    ("cuStreamCopyAttributes", 11000, "cuStreamCopyAttributes"),
    ("cuStreamGetAttribute", 11000, "cuStreamGetAttribute"),
    ("cuStreamSetAttribute", 11000, "cuStreamSetAttribute"),
    ("cuEventCreate", 2000, "cuEventCreate"),
    ("cuEventRecord", 2000, "cuEventRecord"),
    ("cuEventRecordWithFlags", 11010, "cuEventRecordWithFlags"),
    ("cuEventQuery", 2000, "cuEventQuery"),
    ("cuEventSynchronize", 2000, "cuEventSynchronize"),
    ("cuEventDestroy", 2000, "cuEventDestroy"),
    ("cuEventDestroy", 4000, "cuEventDestroy_v2"),
    ("cuEventElapsedTime", 2000, "cuEventElapsedTime"),
    ("cuEventElapsedTime", 12080, "cuEventElapsedTime_v2"),
    ("cuImportExternalMemory", 10000, "cuImportExternalMemory"),
    (
        "cuExternalMemoryGetMappedBuffer",
        10000,
        "cuExternalMemoryGetMappedBuffer",
    ),
    (
        "cuExternalMemoryGetMappedMipmappedArray",
        10000,
        "cuExternalMemoryGetMappedMipmappedArray",
    ),
    ("cuDestroyExternalMemory", 10000, "cuDestroyExternalMemory"),
    (
        "cuImportExternalSemaphore",
        10000,
        "cuImportExternalSemaphore",
    ),
    (
        "cuSignalExternalSemaphoresAsync",
        10000,
        "cuSignalExternalSemaphoresAsync",
    ),
    (
        "cuWaitExternalSemaphoresAsync",
        10000,
        "cuWaitExternalSemaphoresAsync",
    ),
    (
        "cuDestroyExternalSemaphore",
        10000,
        "cuDestroyExternalSemaphore",
    ),
    ("cuStreamWaitValue32", 8000, "cuStreamWaitValue32"),
    ("cuStreamWaitValue32", 11070, "cuStreamWaitValue32_v2"),
    ("cuStreamWaitValue64", 9000, "cuStreamWaitValue64"),
    ("cuStreamWaitValue64", 11070, "cuStreamWaitValue64_v2"),
    ("cuStreamWriteValue32", 8000, "cuStreamWriteValue32"),
    ("cuStreamWriteValue32", 11070, "cuStreamWriteValue32_v2"),
    ("cuStreamWriteValue64", 9000, "cuStreamWriteValue64"),
    ("cuStreamWriteValue64", 11070, "cuStreamWriteValue64_v2"),
    ("cuStreamBatchMemOp", 8000, "cuStreamBatchMemOp"),
    ("cuStreamBatchMemOp", 11070, "cuStreamBatchMemOp_v2"),
    ("cuFuncGetAttribute", 2020, "cuFuncGetAttribute"),
    ("cuFuncSetAttribute", 9000, "cuFuncSetAttribute"),
    ("cuFuncSetCacheConfig", 3000, "cuFuncSetCacheConfig"),
    ("cuFuncGetModule", 11000, "cuFuncGetModule"),
    ("cuFuncGetName", 12030, "cuFuncGetName"),
    ("cuFuncGetParamInfo", 12040, "cuFuncGetParamInfo"),
    ("cuFuncIsLoaded", 12040, "cuFuncIsLoaded"),
    ("cuFuncLoad", 12040, "cuFuncLoad"),
    ("cuLaunchKernel", 4000, "cuLaunchKernel"),
    ("cuLaunchKernelEx", 11060, "cuLaunchKernelEx"),
    (
        "cuLaunchCooperativeKernel",
        9000,
        "cuLaunchCooperativeKernel",
    ),
    (
        "cuLaunchCooperativeKernelMultiDevice",
        9000,
        "cuLaunchCooperativeKernelMultiDevice",
    ),
    ("cuLaunchHostFunc", 10000, "cuLaunchHostFunc"),
    ("cuFuncSetBlockShape", 2000, "cuFuncSetBlockShape"),
    ("cuFuncSetSharedSize", 2000, "cuFuncSetSharedSize"),
    ("cuParamSetSize", 2000, "cuParamSetSize"),
    ("cuParamSeti", 2000, "cuParamSeti"),
    ("cuParamSetf", 2000, "cuParamSetf"),
    ("cuParamSetv", 2000, "cuParamSetv"),
    ("cuLaunch", 2000, "cuLaunch"),
    ("cuLaunchGrid", 2000, "cuLaunchGrid"),
    ("cuLaunchGridAsync", 2000, "cuLaunchGridAsync"),
    ("cuParamSetTexRef", 2000, "cuParamSetTexRef"),
    ("cuFuncSetSharedMemConfig", 4020, "cuFuncSetSharedMemConfig"),
    ("cuGraphCreate", 10000, "cuGraphCreate"),
    ("cuGraphAddKernelNode", 10000, "cuGraphAddKernelNode"),
    ("cuGraphAddKernelNode", 12000, "cuGraphAddKernelNode_v2"),
    (
        "cuGraphKernelNodeGetParams",
        10000,
        "cuGraphKernelNodeGetParams",
    ),
    (
        "cuGraphKernelNodeGetParams",
        12000,
        "cuGraphKernelNodeGetParams_v2",
    ),
    (
        "cuGraphKernelNodeSetParams",
        10000,
        "cuGraphKernelNodeSetParams",
    ),
    (
        "cuGraphKernelNodeSetParams",
        12000,
        "cuGraphKernelNodeSetParams_v2",
    ),
    ("cuGraphAddMemcpyNode", 10000, "cuGraphAddMemcpyNode"),
    (
        "cuGraphMemcpyNodeGetParams",
        10000,
        "cuGraphMemcpyNodeGetParams",
    ),
    (
        "cuGraphMemcpyNodeSetParams",
        10000,
        "cuGraphMemcpyNodeSetParams",
    ),
    ("cuGraphAddMemsetNode", 10000, "cuGraphAddMemsetNode"),
    (
        "cuGraphMemsetNodeGetParams",
        10000,
        "cuGraphMemsetNodeGetParams",
    ),
    (
        "cuGraphMemsetNodeSetParams",
        10000,
        "cuGraphMemsetNodeSetParams",
    ),
    ("cuGraphAddHostNode", 10000, "cuGraphAddHostNode"),
    (
        "cuGraphHostNodeGetParams",
        10000,
        "cuGraphHostNodeGetParams",
    ),
    (
        "cuGraphHostNodeSetParams",
        10000,
        "cuGraphHostNodeSetParams",
    ),
    (
        "cuGraphAddChildGraphNode",
        10000,
        "cuGraphAddChildGraphNode",
    ),
    (
        "cuGraphChildGraphNodeGetGraph",
        10000,
        "cuGraphChildGraphNodeGetGraph",
    ),
    ("cuGraphAddEmptyNode", 10000, "cuGraphAddEmptyNode"),
    (
        "cuGraphAddEventRecordNode",
        11010,
        "cuGraphAddEventRecordNode",
    ),
    (
        "cuGraphEventRecordNodeGetEvent",
        11010,
        "cuGraphEventRecordNodeGetEvent",
    ),
    (
        "cuGraphEventRecordNodeSetEvent",
        11010,
        "cuGraphEventRecordNodeSetEvent",
    ),
    ("cuGraphAddEventWaitNode", 11010, "cuGraphAddEventWaitNode"),
    (
        "cuGraphEventWaitNodeGetEvent",
        11010,
        "cuGraphEventWaitNodeGetEvent",
    ),
    (
        "cuGraphEventWaitNodeSetEvent",
        11010,
        "cuGraphEventWaitNodeSetEvent",
    ),
    (
        "cuGraphAddExternalSemaphoresSignalNode",
        11020,
        "cuGraphAddExternalSemaphoresSignalNode",
    ),
    (
        "cuGraphExternalSemaphoresSignalNodeGetParams",
        11020,
        "cuGraphExternalSemaphoresSignalNodeGetParams",
    ),
    (
        "cuGraphExternalSemaphoresSignalNodeSetParams",
        11020,
        "cuGraphExternalSemaphoresSignalNodeSetParams",
    ),
    (
        "cuGraphAddExternalSemaphoresWaitNode",
        11020,
        "cuGraphAddExternalSemaphoresWaitNode",
    ),
    (
        "cuGraphExternalSemaphoresWaitNodeGetParams",
        11020,
        "cuGraphExternalSemaphoresWaitNodeGetParams",
    ),
    (
        "cuGraphExternalSemaphoresWaitNodeSetParams",
        11020,
        "cuGraphExternalSemaphoresWaitNodeSetParams",
    ),
    (
        "cuGraphAddBatchMemOpNode",
        11070,
        "cuGraphAddBatchMemOpNode",
    ),
    (
        "cuGraphBatchMemOpNodeGetParams",
        11070,
        "cuGraphBatchMemOpNodeGetParams",
    ),
    (
        "cuGraphBatchMemOpNodeSetParams",
        11070,
        "cuGraphBatchMemOpNodeSetParams",
    ),
    (
        "cuGraphExecBatchMemOpNodeSetParams",
        11070,
        "cuGraphExecBatchMemOpNodeSetParams",
    ),
    ("cuGraphAddMemAllocNode", 11040, "cuGraphAddMemAllocNode"),
    (
        "cuGraphMemAllocNodeGetParams",
        11040,
        "cuGraphMemAllocNodeGetParams",
    ),
    ("cuGraphAddMemFreeNode", 11040, "cuGraphAddMemFreeNode"),
    (
        "cuGraphMemFreeNodeGetParams",
        11040,
        "cuGraphMemFreeNodeGetParams",
    ),
    ("cuDeviceGraphMemTrim", 11040, "cuDeviceGraphMemTrim"),
    (
        "cuDeviceGetGraphMemAttribute",
        11040,
        "cuDeviceGetGraphMemAttribute",
    ),
    (
        "cuDeviceSetGraphMemAttribute",
        11040,
        "cuDeviceSetGraphMemAttribute",
    ),
    ("cuGraphClone", 10000, "cuGraphClone"),
    ("cuGraphNodeFindInClone", 10000, "cuGraphNodeFindInClone"),
    ("cuGraphNodeGetType", 10000, "cuGraphNodeGetType"),
    ("cuGraphGetNodes", 10000, "cuGraphGetNodes"),
    ("cuGraphGetRootNodes", 10000, "cuGraphGetRootNodes"),
    ("cuGraphGetEdges", 10000, "cuGraphGetEdges"),
    ("cuGraphGetEdges", 12030, "cuGraphGetEdges_v2"),
    (
        "cuGraphNodeGetDependencies",
        10000,
        "cuGraphNodeGetDependencies",
    ),
    (
        "cuGraphNodeGetDependencies",
        12030,
        "cuGraphNodeGetDependencies_v2",
    ),
    (
        "cuGraphNodeGetDependentNodes",
        10000,
        "cuGraphNodeGetDependentNodes",
    ),
    (
        "cuGraphNodeGetDependentNodes",
        12030,
        "cuGraphNodeGetDependentNodes_v2",
    ),
    ("cuGraphAddDependencies", 10000, "cuGraphAddDependencies"),
    ("cuGraphAddDependencies", 12030, "cuGraphAddDependencies_v2"),
    (
        "cuGraphRemoveDependencies",
        10000,
        "cuGraphRemoveDependencies",
    ),
    (
        "cuGraphRemoveDependencies",
        12030,
        "cuGraphRemoveDependencies_v2",
    ),
    ("cuGraphDestroyNode", 10000, "cuGraphDestroyNode"),
    (
        "cuGraphInstantiateWithFlags",
        11040,
        "cuGraphInstantiateWithFlags",
    ),
    (
        "cuGraphInstantiateWithParams",
        12000,
        "cuGraphInstantiateWithParams",
    ),
    ("cuGraphExecGetFlags", 12000, "cuGraphExecGetFlags"),
    (
        "cuGraphExecKernelNodeSetParams",
        10010,
        "cuGraphExecKernelNodeSetParams",
    ),
    (
        "cuGraphExecKernelNodeSetParams",
        12000,
        "cuGraphExecKernelNodeSetParams_v2",
    ),
    (
        "cuGraphExecMemcpyNodeSetParams",
        10020,
        "cuGraphExecMemcpyNodeSetParams",
    ),
    (
        "cuGraphExecMemsetNodeSetParams",
        10020,
        "cuGraphExecMemsetNodeSetParams",
    ),
    (
        "cuGraphExecHostNodeSetParams",
        10020,
        "cuGraphExecHostNodeSetParams",
    ),
    (
        "cuGraphExecChildGraphNodeSetParams",
        11010,
        "cuGraphExecChildGraphNodeSetParams",
    ),
    (
        "cuGraphExecEventRecordNodeSetEvent",
        11010,
        "cuGraphExecEventRecordNodeSetEvent",
    ),
    (
        "cuGraphExecEventWaitNodeSetEvent",
        11010,
        "cuGraphExecEventWaitNodeSetEvent",
    ),
    (
        "cuGraphExecExternalSemaphoresSignalNodeSetParams",
        11020,
        "cuGraphExecExternalSemaphoresSignalNodeSetParams",
    ),
    (
        "cuGraphExecExternalSemaphoresWaitNodeSetParams",
        11020,
        "cuGraphExecExternalSemaphoresWaitNodeSetParams",
    ),
    ("cuGraphNodeSetEnabled", 11060, "cuGraphNodeSetEnabled"),
    ("cuGraphNodeGetEnabled", 11060, "cuGraphNodeGetEnabled"),
    ("cuGraphUpload", 11010, "cuGraphUpload"),
    ("cuGraphLaunch", 10000, "cuGraphLaunch"),
    ("cuGraphExecDestroy", 10000, "cuGraphExecDestroy"),
    ("cuGraphDestroy", 10000, "cuGraphDestroy"),
    ("cuGraphExecUpdate", 10020, "cuGraphExecUpdate"),
    ("cuGraphExecUpdate", 12000, "cuGraphExecUpdate_v2"),
    (
        "cuGraphKernelNodeCopyAttributes",
        11000,
        "cuGraphKernelNodeCopyAttributes",
    ),
    (
        "cuGraphKernelNodeGetAttribute",
        11000,
        "cuGraphKernelNodeGetAttribute",
    ),
    (
        "cuGraphKernelNodeSetAttribute",
        11000,
        "cuGraphKernelNodeSetAttribute",
    ),
    ("cuGraphDebugDotPrint", 11030, "cuGraphDebugDotPrint"),
    ("cuUserObjectCreate", 11030, "cuUserObjectCreate"),
    ("cuUserObjectRetain", 11030, "cuUserObjectRetain"),
    ("cuUserObjectRelease", 11030, "cuUserObjectRelease"),
    ("cuGraphRetainUserObject", 11030, "cuGraphRetainUserObject"),
    (
        "cuGraphReleaseUserObject",
        11030,
        "cuGraphReleaseUserObject",
    ),
    ("cuGraphAddNode", 12020, "cuGraphAddNode"),
    ("cuGraphAddNode", 12030, "cuGraphAddNode_v2"),
    ("cuGraphNodeSetParams", 12020, "cuGraphNodeSetParams"),
    (
        "cuGraphExecNodeSetParams",
        12020,
        "cuGraphExecNodeSetParams",
    ),
    (
        "cuGraphConditionalHandleCreate",
        12030,
        "cuGraphConditionalHandleCreate",
    ),
    (
        "cuOccupancyMaxActiveBlocksPerMultiprocessor",
        6050,
        "cuOccupancyMaxActiveBlocksPerMultiprocessor",
    ),
    (
        "cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags",
        7000,
        "cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags",
    ),
    (
        "cuOccupancyMaxPotentialBlockSize",
        6050,
        "cuOccupancyMaxPotentialBlockSize",
    ),
    (
        "cuOccupancyMaxPotentialBlockSizeWithFlags",
        7000,
        "cuOccupancyMaxPotentialBlockSizeWithFlags",
    ),
    (
        "cuOccupancyAvailableDynamicSMemPerBlock",
        10020,
        "cuOccupancyAvailableDynamicSMemPerBlock",
    ),
    (
        "cuOccupancyMaxPotentialClusterSize",
        11070,
        "cuOccupancyMaxPotentialClusterSize",
    ),
    (
        "cuOccupancyMaxActiveClusters",
        11070,
        "cuOccupancyMaxActiveClusters",
    ),
    ("cuTexRefSetArray", 2000, "cuTexRefSetArray"),
    (
        "cuTexRefSetMipmappedArray",
        5000,
        "cuTexRefSetMipmappedArray",
    ),
    ("cuTexRefSetAddress", 2000, "cuTexRefSetAddress"),
    ("cuTexRefSetAddress", 3020, "cuTexRefSetAddress_v2"),
    ("cuTexRefSetAddress2D", 2020, "cuTexRefSetAddress2D"),
    ("cuTexRefSetAddress2D", 3020, "cuTexRefSetAddress2D_v2"),
    ("cuTexRefSetAddress2D", 4010, "cuTexRefSetAddress2D_v3"),
    ("cuTexRefSetFormat", 2000, "cuTexRefSetFormat"),
    ("cuTexRefSetAddressMode", 2000, "cuTexRefSetAddressMode"),
    ("cuTexRefSetFilterMode", 2000, "cuTexRefSetFilterMode"),
    (
        "cuTexRefSetMipmapFilterMode",
        5000,
        "cuTexRefSetMipmapFilterMode",
    ),
    (
        "cuTexRefSetMipmapLevelBias",
        5000,
        "cuTexRefSetMipmapLevelBias",
    ),
    (
        "cuTexRefSetMipmapLevelClamp",
        5000,
        "cuTexRefSetMipmapLevelClamp",
    ),
    ("cuTexRefSetMaxAnisotropy", 5000, "cuTexRefSetMaxAnisotropy"),
    ("cuTexRefSetBorderColor", 8000, "cuTexRefSetBorderColor"),
    ("cuTexRefSetFlags", 2000, "cuTexRefSetFlags"),
    ("cuTexRefGetAddress", 2000, "cuTexRefGetAddress"),
    ("cuTexRefGetAddress", 3020, "cuTexRefGetAddress_v2"),
    ("cuTexRefGetArray", 2000, "cuTexRefGetArray"),
    (
        "cuTexRefGetMipmappedArray",
        5000,
        "cuTexRefGetMipmappedArray",
    ),
    ("cuTexRefGetAddressMode", 2000, "cuTexRefGetAddressMode"),
    ("cuTexRefGetFilterMode", 2000, "cuTexRefGetFilterMode"),
    ("cuTexRefGetFormat", 2000, "cuTexRefGetFormat"),
    (
        "cuTexRefGetMipmapFilterMode",
        5000,
        "cuTexRefGetMipmapFilterMode",
    ),
    (
        "cuTexRefGetMipmapLevelBias",
        5000,
        "cuTexRefGetMipmapLevelBias",
    ),
    (
        "cuTexRefGetMipmapLevelClamp",
        5000,
        "cuTexRefGetMipmapLevelClamp",
    ),
    ("cuTexRefGetMaxAnisotropy", 5000, "cuTexRefGetMaxAnisotropy"),
    ("cuTexRefGetBorderColor", 8000, "cuTexRefGetBorderColor"),
    ("cuTexRefGetFlags", 2000, "cuTexRefGetFlags"),
    ("cuTexRefCreate", 2000, "cuTexRefCreate"),
    ("cuTexRefDestroy", 2000, "cuTexRefDestroy"),
    ("cuSurfRefSetArray", 3000, "cuSurfRefSetArray"),
    ("cuSurfRefGetArray", 3000, "cuSurfRefGetArray"),
    ("cuTexObjectCreate", 5000, "cuTexObjectCreate"),
    ("cuTexObjectDestroy", 5000, "cuTexObjectDestroy"),
    (
        "cuTexObjectGetResourceDesc",
        5000,
        "cuTexObjectGetResourceDesc",
    ),
    (
        "cuTexObjectGetTextureDesc",
        5000,
        "cuTexObjectGetTextureDesc",
    ),
    (
        "cuTexObjectGetResourceViewDesc",
        5000,
        "cuTexObjectGetResourceViewDesc",
    ),
    ("cuSurfObjectCreate", 5000, "cuSurfObjectCreate"),
    ("cuSurfObjectDestroy", 5000, "cuSurfObjectDestroy"),
    (
        "cuSurfObjectGetResourceDesc",
        5000,
        "cuSurfObjectGetResourceDesc",
    ),
    ("cuTensorMapEncodeTiled", 12000, "cuTensorMapEncodeTiled"),
    ("cuTensorMapEncodeIm2col", 12000, "cuTensorMapEncodeIm2col"),
    (
        "cuTensorMapEncodeIm2colWide",
        12080,
        "cuTensorMapEncodeIm2colWide",
    ),
    (
        "cuTensorMapReplaceAddress",
        12000,
        "cuTensorMapReplaceAddress",
    ),
    ("cuDeviceCanAccessPeer", 4000, "cuDeviceCanAccessPeer"),
    ("cuCtxEnablePeerAccess", 4000, "cuCtxEnablePeerAccess"),
    ("cuCtxDisablePeerAccess", 4000, "cuCtxDisablePeerAccess"),
    ("cuDeviceGetP2PAttribute", 8000, "cuDeviceGetP2PAttribute"),
    (
        "cuGraphicsUnregisterResource",
        3000,
        "cuGraphicsUnregisterResource",
    ),
    (
        "cuGraphicsSubResourceGetMappedArray",
        3000,
        "cuGraphicsSubResourceGetMappedArray",
    ),
    (
        "cuGraphicsResourceGetMappedMipmappedArray",
        5000,
        "cuGraphicsResourceGetMappedMipmappedArray",
    ),
    (
        "cuGraphicsResourceGetMappedPointer",
        3000,
        "cuGraphicsResourceGetMappedPointer",
    ),
    (
        "cuGraphicsResourceGetMappedPointer",
        3020,
        "cuGraphicsResourceGetMappedPointer_v2",
    ),
    (
        "cuGraphicsResourceSetMapFlags",
        3000,
        "cuGraphicsResourceSetMapFlags",
    ),
    (
        "cuGraphicsResourceSetMapFlags",
        6050,
        "cuGraphicsResourceSetMapFlags_v2",
    ),
    ("cuGraphicsMapResources", 3000, "cuGraphicsMapResources"),
    ("cuGraphicsUnmapResources", 3000, "cuGraphicsUnmapResources"),
    ("cuGetProcAddress", 11030, "cuGetProcAddress"),
    ("cuGetProcAddress", 12000, "cuGetProcAddress_v2"),
    ("cuCoredumpGetAttribute", 12010, "cuCoredumpGetAttribute"),
    (
        "cuCoredumpGetAttributeGlobal",
        12010,
        "cuCoredumpGetAttributeGlobal",
    ),
    ("cuCoredumpSetAttribute", 12010, "cuCoredumpSetAttribute"),
    (
        "cuCoredumpSetAttributeGlobal",
        12010,
        "cuCoredumpSetAttributeGlobal",
    ),
    ("cuGetExportTable", 3000, "cuGetExportTable"),
    ("cuGreenCtxCreate", 12040, "cuGreenCtxCreate"),
    ("cuGreenCtxDestroy", 12040, "cuGreenCtxDestroy"),
    ("cuCtxFromGreenCtx", 12040, "cuCtxFromGreenCtx"),
    ("cuDeviceGetDevResource", 12040, "cuDeviceGetDevResource"),
    ("cuCtxGetDevResource", 12040, "cuCtxGetDevResource"),
    (
        "cuGreenCtxGetDevResource",
        12040,
        "cuGreenCtxGetDevResource",
    ),
    (
        "cuDevSmResourceSplitByCount",
        12040,
        "cuDevSmResourceSplitByCount",
    ),
    (
        "cuDevResourceGenerateDesc",
        12040,
        "cuDevResourceGenerateDesc",
    ),
    ("cuGreenCtxRecordEvent", 12040, "cuGreenCtxRecordEvent"),
    ("cuGreenCtxWaitEvent", 12040, "cuGreenCtxWaitEvent"),
    ("cuStreamGetGreenCtx", 12040, "cuStreamGetGreenCtx"),
    ("cuGreenCtxStreamCreate", 12050, "cuGreenCtxStreamCreate"),
    ("cuLogsRegisterCallback", 12080, "cuLogsRegisterCallback"),
    (
        "cuLogsUnregisterCallback",
        12080,
        "cuLogsUnregisterCallback",
    ),
    ("cuLogsCurrent", 12080, "cuLogsCurrent"),
    ("cuLogsDumpToFile", 12080, "cuLogsDumpToFile"),
    ("cuLogsDumpToMemory", 12080, "cuLogsDumpToMemory"),
    (
        "cuCheckpointProcessGetRestoreThreadId",
        12080,
        "cuCheckpointProcessGetRestoreThreadId",
    ),
    (
        "cuCheckpointProcessGetState",
        12080,
        "cuCheckpointProcessGetState",
    ),
    ("cuCheckpointProcessLock", 12080, "cuCheckpointProcessLock"),
    (
        "cuCheckpointProcessCheckpoint",
        12080,
        "cuCheckpointProcessCheckpoint",
    ),
    (
        "cuCheckpointProcessRestore",
        12080,
        "cuCheckpointProcessRestore",
    ),
    (
        "cuCheckpointProcessUnlock",
        12080,
        "cuCheckpointProcessUnlock",
    ),
    (
        "cuGraphicsEGLRegisterImage",
        7000,
        "cuGraphicsEGLRegisterImage",
    ),
    (
        "cuEGLStreamConsumerConnect",
        7000,
        "cuEGLStreamConsumerConnect",
    ),
    (
        "cuEGLStreamConsumerConnectWithFlags",
        8000,
        "cuEGLStreamConsumerConnectWithFlags",
    ),
    (
        "cuEGLStreamConsumerDisconnect",
        7000,
        "cuEGLStreamConsumerDisconnect",
    ),
    (
        "cuEGLStreamConsumerAcquireFrame",
        7000,
        "cuEGLStreamConsumerAcquireFrame",
    ),
    (
        "cuEGLStreamConsumerReleaseFrame",
        7000,
        "cuEGLStreamConsumerReleaseFrame",
    ),
    (
        "cuEGLStreamProducerConnect",
        7000,
        "cuEGLStreamProducerConnect",
    ),
    (
        "cuEGLStreamProducerDisconnect",
        7000,
        "cuEGLStreamProducerDisconnect",
    ),
    (
        "cuEGLStreamProducerPresentFrame",
        7000,
        "cuEGLStreamProducerPresentFrame",
    ),
    (
        "cuEGLStreamProducerReturnFrame",
        7000,
        "cuEGLStreamProducerReturnFrame",
    ),
    (
        "cuGraphicsResourceGetMappedEglFrame",
        7000,
        "cuGraphicsResourceGetMappedEglFrame",
    ),
    ("cuEventCreateFromEGLSync", 9000, "cuEventCreateFromEGLSync"),
    (
        "cuGraphicsGLRegisterBuffer",
        3000,
        "cuGraphicsGLRegisterBuffer",
    ),
    (
        "cuGraphicsGLRegisterImage",
        3000,
        "cuGraphicsGLRegisterImage",
    ),
    ("cuGLGetDevices", 4010, "cuGLGetDevices"),
    ("cuGLGetDevices", 6050, "cuGLGetDevices_v2"),
    ("cuGLCtxCreate", 2000, "cuGLCtxCreate"),
    ("cuGLCtxCreate", 3020, "cuGLCtxCreate_v2"),
    ("cuGLInit", 2000, "cuGLInit"),
    ("cuGLRegisterBufferObject", 2000, "cuGLRegisterBufferObject"),
    ("cuGLMapBufferObject", 2000, "cuGLMapBufferObject"),
    ("cuGLMapBufferObject", 3020, "cuGLMapBufferObject_v2"),
    ("cuGLUnmapBufferObject", 2000, "cuGLUnmapBufferObject"),
    (
        "cuGLUnregisterBufferObject",
        2000,
        "cuGLUnregisterBufferObject",
    ),
    (
        "cuGLSetBufferObjectMapFlags",
        2030,
        "cuGLSetBufferObjectMapFlags",
    ),
    ("cuGLMapBufferObjectAsync", 3000, "cuGLMapBufferObjectAsync"),
    (
        "cuGLMapBufferObjectAsync",
        3020,
        "cuGLMapBufferObjectAsync_v2",
    ),
    (
        "cuGLUnmapBufferObjectAsync",
        2030,
        "cuGLUnmapBufferObjectAsync",
    ),
    ("cuProfilerInitialize", 4000, "cuProfilerInitialize"),
    ("cuProfilerStart", 4000, "cuProfilerStart"),
    ("cuProfilerStop", 4000, "cuProfilerStop"),
    ("cuVDPAUGetDevice", 3010, "cuVDPAUGetDevice"),
    ("cuVDPAUCtxCreate", 3010, "cuVDPAUCtxCreate"),
    ("cuVDPAUCtxCreate", 3020, "cuVDPAUCtxCreate_v2"),
    (
        "cuGraphicsVDPAURegisterVideoSurface",
        3010,
        "cuGraphicsVDPAURegisterVideoSurface",
    ),
    (
        "cuGraphicsVDPAURegisterOutputSurface",
        3010,
        "cuGraphicsVDPAURegisterOutputSurface",
    ),
];

/// Per-thread-default-stream variants: `(base name, first CUDA version, exported symbol)`.
pub const PER_THREAD: &[(&str, i32, &str)] = &[
    ("cuMemcpy", 7000, "cuMemcpy_ptds"),
    ("cuMemcpyPeer", 7000, "cuMemcpyPeer_ptds"),
    ("cuMemcpyHtoD", 7000, "cuMemcpyHtoD_v2_ptds"),
    ("cuMemcpyDtoH", 7000, "cuMemcpyDtoH_v2_ptds"),
    ("cuMemcpyDtoD", 7000, "cuMemcpyDtoD_v2_ptds"),
    ("cuMemcpyDtoA", 7000, "cuMemcpyDtoA_v2_ptds"),
    ("cuMemcpyAtoD", 7000, "cuMemcpyAtoD_v2_ptds"),
    ("cuMemcpyHtoA", 7000, "cuMemcpyHtoA_v2_ptds"),
    ("cuMemcpyAtoH", 7000, "cuMemcpyAtoH_v2_ptds"),
    ("cuMemcpyAtoA", 7000, "cuMemcpyAtoA_v2_ptds"),
    ("cuMemcpy2D", 7000, "cuMemcpy2D_v2_ptds"),
    ("cuMemcpy2DUnaligned", 7000, "cuMemcpy2DUnaligned_v2_ptds"),
    ("cuMemcpy3D", 7000, "cuMemcpy3D_v2_ptds"),
    ("cuMemcpy3DPeer", 7000, "cuMemcpy3DPeer_ptds"),
    ("cuMemcpyAsync", 7000, "cuMemcpyAsync_ptsz"),
    ("cuMemcpyPeerAsync", 7000, "cuMemcpyPeerAsync_ptsz"),
    ("cuMemcpyHtoDAsync", 7000, "cuMemcpyHtoDAsync_v2_ptsz"),
    ("cuMemcpyDtoHAsync", 7000, "cuMemcpyDtoHAsync_v2_ptsz"),
    ("cuMemcpyDtoDAsync", 7000, "cuMemcpyDtoDAsync_v2_ptsz"),
    ("cuMemcpyHtoAAsync", 7000, "cuMemcpyHtoAAsync_v2_ptsz"),
    ("cuMemcpyAtoHAsync", 7000, "cuMemcpyAtoHAsync_v2_ptsz"),
    ("cuMemcpy2DAsync", 7000, "cuMemcpy2DAsync_v2_ptsz"),
    ("cuMemcpy3DAsync", 7000, "cuMemcpy3DAsync_v2_ptsz"),
    ("cuMemcpy3DPeerAsync", 7000, "cuMemcpy3DPeerAsync_ptsz"),
    ("cuMemsetD8", 7000, "cuMemsetD8_v2_ptds"),
    ("cuMemsetD16", 7000, "cuMemsetD16_v2_ptds"),
    ("cuMemsetD32", 7000, "cuMemsetD32_v2_ptds"),
    ("cuMemsetD2D8", 7000, "cuMemsetD2D8_v2_ptds"),
    ("cuMemsetD2D16", 7000, "cuMemsetD2D16_v2_ptds"),
    ("cuMemsetD2D32", 7000, "cuMemsetD2D32_v2_ptds"),
    ("cuMemsetD8Async", 7000, "cuMemsetD8Async_ptsz"),
    ("cuMemsetD16Async", 7000, "cuMemsetD16Async_ptsz"),
    ("cuMemsetD32Async", 7000, "cuMemsetD32Async_ptsz"),
    ("cuMemsetD2D8Async", 7000, "cuMemsetD2D8Async_ptsz"),
    ("cuMemsetD2D16Async", 7000, "cuMemsetD2D16Async_ptsz"),
    ("cuMemsetD2D32Async", 7000, "cuMemsetD2D32Async_ptsz"),
    ("cuStreamGetPriority", 7000, "cuStreamGetPriority_ptsz"),
    ("cuStreamGetFlags", 7000, "cuStreamGetFlags_ptsz"),
    ("cuStreamWaitEvent", 7000, "cuStreamWaitEvent_ptsz"),
    ("cuStreamAddCallback", 7000, "cuStreamAddCallback_ptsz"),
    (
        "cuStreamAttachMemAsync",
        7000,
        "cuStreamAttachMemAsync_ptsz",
    ),
    ("cuStreamQuery", 7000, "cuStreamQuery_ptsz"),
    ("cuStreamSynchronize", 7000, "cuStreamSynchronize_ptsz"),
    ("cuEventRecord", 7000, "cuEventRecord_ptsz"),
    ("cuLaunchKernel", 7000, "cuLaunchKernel_ptsz"),
    (
        "cuGraphicsMapResources",
        7000,
        "cuGraphicsMapResources_ptsz",
    ),
    (
        "cuGraphicsUnmapResources",
        7000,
        "cuGraphicsUnmapResources_ptsz",
    ),
    ("cuGLMapBufferObject", 7000, "cuGLMapBufferObject_v2_ptds"),
    (
        "cuGLMapBufferObjectAsync",
        7000,
        "cuGLMapBufferObjectAsync_v2_ptsz",
    ),
    ("cuStreamGetId", 12000, "cuStreamGetId_ptsz"),
    ("cuStreamGetCtx", 9020, "cuStreamGetCtx_ptsz"),
    ("cuStreamGetCtx", 12050, "cuStreamGetCtx_v2_ptsz"),
    ("cuStreamBeginCapture", 10000, "cuStreamBeginCapture_ptsz"),
    (
        "cuStreamBeginCapture",
        10010,
        "cuStreamBeginCapture_v2_ptsz",
    ),
    ("cuStreamEndCapture", 10000, "cuStreamEndCapture_ptsz"),
    ("cuStreamIsCapturing", 10000, "cuStreamIsCapturing_ptsz"),
    (
        "cuStreamGetCaptureInfo",
        10010,
        "cuStreamGetCaptureInfo_ptsz",
    ),
    (
        "cuStreamGetCaptureInfo",
        11030,
        "cuStreamGetCaptureInfo_v2_ptsz",
    ),
    (
        "cuStreamGetCaptureInfo",
        12030,
        "cuStreamGetCaptureInfo_v3_ptsz",
    ),
    (
        "cuStreamUpdateCaptureDependencies",
        11030,
        "cuStreamUpdateCaptureDependencies_ptsz",
    ),
    (
        "cuStreamUpdateCaptureDependencies",
        12030,
        "cuStreamUpdateCaptureDependencies_v2_ptsz",
    ),
    (
        "cuStreamBeginCaptureToGraph",
        12030,
        "cuStreamBeginCaptureToGraph_ptsz",
    ),
    (
        "cuEventRecordWithFlags",
        11010,
        "cuEventRecordWithFlags_ptsz",
    ),
    ("cuLaunchKernelEx", 11060, "cuLaunchKernelEx_ptsz"),
    ("cuLaunchHostFunc", 10000, "cuLaunchHostFunc_ptsz"),
    (
        "cuLaunchCooperativeKernel",
        9000,
        "cuLaunchCooperativeKernel_ptsz",
    ),
    ("cuStreamWriteValue32", 8000, "cuStreamWriteValue32_ptsz"),
    (
        "cuStreamWriteValue32",
        11070,
        "cuStreamWriteValue32_v2_ptsz",
    ),
    ("cuStreamWriteValue64", 9000, "cuStreamWriteValue64_ptsz"),
    (
        "cuStreamWriteValue64",
        11070,
        "cuStreamWriteValue64_v2_ptsz",
    ),
    ("cuStreamWaitValue32", 8000, "cuStreamWaitValue32_ptsz"),
    ("cuStreamWaitValue32", 11070, "cuStreamWaitValue32_v2_ptsz"),
    ("cuStreamWaitValue64", 9000, "cuStreamWaitValue64_ptsz"),
    ("cuStreamWaitValue64", 11070, "cuStreamWaitValue64_v2_ptsz"),
    ("cuStreamBatchMemOp", 8000, "cuStreamBatchMemOp_ptsz"),
    ("cuStreamBatchMemOp", 11070, "cuStreamBatchMemOp_v2_ptsz"),
    (
        "cuSignalExternalSemaphoresAsync",
        10000,
        "cuSignalExternalSemaphoresAsync_ptsz",
    ),
    (
        "cuWaitExternalSemaphoresAsync",
        10000,
        "cuWaitExternalSemaphoresAsync_ptsz",
    ),
    (
        "cuGraphInstantiateWithParams",
        12000,
        "cuGraphInstantiateWithParams_ptsz",
    ),
    ("cuGraphUpload", 11010, "cuGraphUpload_ptsz"),
    ("cuGraphLaunch", 10000, "cuGraphLaunch_ptsz"),
    (
        "cuStreamCopyAttributes",
        11000,
        "cuStreamCopyAttributes_ptds",
    ),
    ("cuStreamGetAttribute", 11000, "cuStreamGetAttribute_ptsz"),
    ("cuStreamSetAttribute", 11000, "cuStreamSetAttribute_ptsz"),
    ("cuMemMapArrayAsync", 11010, "cuMemMapArrayAsync_ptsz"),
    ("cuMemFreeAsync", 11020, "cuMemFreeAsync_ptsz"),
    ("cuMemAllocAsync", 11020, "cuMemAllocAsync_ptsz"),
    (
        "cuMemAllocFromPoolAsync",
        11020,
        "cuMemAllocFromPoolAsync_ptsz",
    ),
    ("cuMemPrefetchAsync", 8000, "cuMemPrefetchAsync_ptsz"),
    ("cuMemPrefetchAsync", 12020, "cuMemPrefetchAsync_v2_ptsz"),
    ("cuMemcpyBatchAsync", 12080, "cuMemcpyBatchAsync_ptsz"),
    ("cuMemcpy3DBatchAsync", 12080, "cuMemcpy3DBatchAsync_ptsz"),
    (
        "cuMemBatchDecompressAsync",
        12060,
        "cuMemBatchDecompressAsync_ptsz",
    ),
    ("cuStreamGetDevice", 12080, "cuStreamGetDevice_ptsz"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_pick_the_abi() {
        let cases = [
            ("cuCtxCreate", 2000, "cuCtxCreate"),
            ("cuCtxCreate", 3020, "cuCtxCreate_v2"),
            ("cuCtxCreate", 11039, "cuCtxCreate_v2"),
            ("cuCtxCreate", 11040, "cuCtxCreate_v3"),
            ("cuCtxCreate", 12050, "cuCtxCreate_v4"),
            ("cuCtxCreate", 13000, "cuCtxCreate_v4"),
            ("cuMemAlloc", 2000, "cuMemAlloc"),
            ("cuMemAlloc", 3010, "cuMemAlloc"),
            ("cuMemAlloc", 3020, "cuMemAlloc_v2"),
            ("cuMemFree", 3020, "cuMemFree_v2"),
            ("cuMemGetInfo", 3020, "cuMemGetInfo_v2"),
            ("cuDeviceTotalMem", 3020, "cuDeviceTotalMem_v2"),
            ("cuMemcpyHtoD", 3020, "cuMemcpyHtoD_v2"),
            ("cuMemcpyDtoH", 12000, "cuMemcpyDtoH_v2"),
            (
                "cuDevicePrimaryCtxRelease",
                7000,
                "cuDevicePrimaryCtxRelease",
            ),
            (
                "cuDevicePrimaryCtxRelease",
                11000,
                "cuDevicePrimaryCtxRelease_v2",
            ),
            (
                "cuDevicePrimaryCtxReset",
                11000,
                "cuDevicePrimaryCtxReset_v2",
            ),
            (
                "cuDevicePrimaryCtxSetFlags",
                11000,
                "cuDevicePrimaryCtxSetFlags_v2",
            ),
            ("cuCtxDestroy", 4000, "cuCtxDestroy_v2"),
            ("cuCtxPushCurrent", 4000, "cuCtxPushCurrent_v2"),
            ("cuCtxPopCurrent", 3020, "cuCtxPopCurrent"),
            ("cuDeviceGetUuid", 9020, "cuDeviceGetUuid"),
            ("cuDeviceGetUuid", 11040, "cuDeviceGetUuid_v2"),
            ("cuGetProcAddress", 11030, "cuGetProcAddress"),
            ("cuGetProcAddress", 12000, "cuGetProcAddress_v2"),
            ("cuInit", 2000, "cuInit"),
        ];
        for (name, version, want) in cases {
            for flags in [
                CU_GET_PROC_ADDRESS_DEFAULT,
                CU_GET_PROC_ADDRESS_LEGACY_STREAM,
            ] {
                assert_eq!(
                    resolve(name, version, flags),
                    Ok(want),
                    "{name} {version} {flags}"
                );
            }
        }
    }

    #[test]
    fn flags_pick_per_thread_variants() {
        let ptds = CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;
        let cases = [
            ("cuMemcpyHtoDAsync", 7000, "cuMemcpyHtoDAsync_v2_ptsz"),
            ("cuMemcpyHtoD", 7000, "cuMemcpyHtoD_v2_ptds"),
            ("cuMemcpy", 7000, "cuMemcpy_ptds"),
            ("cuMemcpyAsync", 12000, "cuMemcpyAsync_ptsz"),
            ("cuMemsetD8", 7000, "cuMemsetD8_v2_ptds"),
            ("cuMemsetD32Async", 7000, "cuMemsetD32Async_ptsz"),
            ("cuMemAllocAsync", 11020, "cuMemAllocAsync_ptsz"),
            ("cuMemFreeAsync", 11020, "cuMemFreeAsync_ptsz"),
            (
                "cuMemAllocFromPoolAsync",
                11020,
                "cuMemAllocFromPoolAsync_ptsz",
            ),
            ("cuStreamSynchronize", 7000, "cuStreamSynchronize_ptsz"),
            ("cuLaunchKernel", 7000, "cuLaunchKernel_ptsz"),
            (
                "cuStreamGetCaptureInfo",
                11030,
                "cuStreamGetCaptureInfo_v2_ptsz",
            ),
            // No per-thread variant below 7000: the legacy answer stands.
            ("cuMemcpyHtoD", 3020, "cuMemcpyHtoD_v2"),
            // Functions without per-thread variants are the same under every flag.
            ("cuMemAlloc", 3020, "cuMemAlloc_v2"),
            ("cuCtxCreate", 12050, "cuCtxCreate_v4"),
        ];
        for (name, version, want) in cases {
            assert_eq!(resolve(name, version, ptds), Ok(want), "{name} {version}");
        }
        assert_eq!(
            resolve("cuMemcpyHtoDAsync", 7000, 0),
            Ok("cuMemcpyHtoDAsync_v2")
        );
        assert_eq!(
            resolve("cuMemcpyHtoDAsync", 7000, 1),
            Ok("cuMemcpyHtoDAsync_v2")
        );
        assert_eq!(resolve("cuMemAllocAsync", 11020, 0), Ok("cuMemAllocAsync"));
    }

    #[test]
    fn failures_say_why() {
        assert_eq!(
            resolve("cuNoSuchThing", 12000, 0),
            Err(CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND)
        );
        // The plain name is the key: a suffixed one is not.
        assert_eq!(
            resolve("cuMemAlloc_v2", 12000, 0),
            Err(CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND)
        );
        assert_eq!(
            resolve("cuMemAllocAsync", 11010, 0),
            Err(CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT)
        );
        assert_eq!(
            resolve("cuMemAllocAsync", 11010, 2),
            Err(CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT)
        );
        assert_eq!(
            resolve("cuMemAlloc", 1000, 0),
            Err(CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT)
        );
    }

    #[test]
    fn rows_are_grouped_and_sorted() {
        for table in [VARIANTS, PER_THREAD] {
            let mut seen: Vec<&str> = Vec::new();
            for (i, &(base, since, sym)) in table.iter().enumerate() {
                assert!(sym.starts_with(base), "{sym} is not a variant of {base}");
                assert!(since >= 2000, "{base} {since}");
                if i > 0 && table[i - 1].0 == base {
                    assert!(table[i - 1].1 < since, "{base} rows out of order");
                } else {
                    assert!(!seen.contains(&base), "{base} rows are not adjacent");
                    seen.push(base);
                }
            }
        }
        for &(base, _, sym) in PER_THREAD {
            assert!(sym.ends_with("_ptsz") || sym.ends_with("_ptds"), "{sym}");
            assert!(
                VARIANTS.iter().any(|r| r.0 == base),
                "{base} has no legacy rows"
            );
        }
    }
}
