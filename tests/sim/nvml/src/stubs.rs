//! Functions clients look up and handle when they answer NVML_ERROR_NOT_SUPPORTED (nvidia-smi
//! prints N/A, pynvml clients skip the field). A missing symbol is worse: nvidia-smi prints
//! "Function Not Found" or stops, nvitop prints tracebacks. The names are those stock
//! nvidia-smi 535 and the Python clients look up that the simulated machine does not answer.

//! Left out on purpose: `nvmlDeviceGetConfComputeMemSizeInfo`. nvitop takes its presence
//! (without `nvmlDeviceGetRunningProcessDetailList`) as the sign of early 535 headers, whose
//! `_v3` process record had a trailing `usedGpuCcProtectedMemory` (32 bytes); this library
//! writes the 24-byte record that pynvml and later headers use, so nvitop must not guess 32.

use crate::*;

not_supported! {
    // Seen answered by `nvidia-smi -q` on an H100 without these features.
    nvmlDeviceGetAccountingBufferSize
    nvmlDeviceGetAutoBoostedClocksEnabled
    nvmlDeviceGetBridgeChipInfo
    nvmlDeviceGetConfComputeProtectedMemoryUsage
    nvmlDeviceGetDriverModel
    nvmlDeviceGetEncoderStats
    nvmlDeviceGetFBCStats
    nvmlDeviceGetGpuFabricInfo
    nvmlDeviceGetGpuOperationMode
    nvmlDeviceGetGridLicensableFeatures_v4
    nvmlDeviceGetGspFirmwareVersion
    nvmlDeviceGetHostVgpuMode
    nvmlDeviceGetJpgUtilization
    nvmlDeviceGetLastBBXFlushTime
    nvmlDeviceGetMaxMigDeviceCount
    nvmlDeviceGetModuleId
    nvmlDeviceGetOfaUtilization
    nvmlDeviceGetRetiredPages
    nvmlDeviceGetRetiredPagesPendingStatus
    nvmlDeviceGetRowRemapperHistogram
    nvmlDeviceGetSramEccErrorStatus

    // Other queries nvidia-smi 535 knows: MIG, NVLink, topology, vGPU, confidential computing.
    nvmlDeviceGetAccountingPids
    nvmlDeviceGetAccountingStats
    nvmlDeviceGetActiveVgpus
    nvmlDeviceGetAttributes_v2
    nvmlDeviceGetComputeInstanceId
    nvmlDeviceGetCpuAffinity
    nvmlDeviceGetCreatableVgpus
    nvmlDeviceGetDeviceHandleFromMigDeviceHandle
    nvmlDeviceGetEncoderSessions
    nvmlDeviceGetFBCSessions
    nvmlDeviceGetGpcClkVfOffset
    nvmlDeviceGetGpuInstanceId
    nvmlDeviceGetGpuInstancePossiblePlacements_v2
    nvmlDeviceGetGpuInstanceProfileInfoV
    nvmlDeviceGetGpuInstanceRemainingCapacity
    nvmlDeviceGetGpuInstances
    nvmlDeviceGetGspFirmwareMode
    nvmlDeviceGetMemoryAffinity
    nvmlDeviceGetMigDeviceHandleByIndex
    nvmlDeviceGetNvLinkCapability
    nvmlDeviceGetNvLinkRemotePciInfo_v2
    nvmlDeviceGetP2PStatus
    nvmlDeviceGetRetiredPages_v2
    nvmlDeviceGetSamples
    nvmlDeviceGetSupportedGraphicsClocks
    nvmlDeviceGetSupportedMemoryClocks
    nvmlDeviceGetSupportedVgpus
    nvmlDeviceGetTopologyCommonAncestor
    nvmlDeviceGetTopologyNearestGpus
    nvmlDeviceGetVgpuCapabilities
    nvmlDeviceGetVgpuMetadata
    nvmlDeviceGetVgpuProcessUtilization
    nvmlDeviceGetVgpuSchedulerCapabilities
    nvmlDeviceGetVgpuSchedulerLog
    nvmlDeviceGetVgpuSchedulerState
    nvmlDeviceGetVgpuUtilization
    nvmlDeviceGetViolationStatus
    nvmlDeviceQueryDrainState
    nvmlGetExcludedDeviceInfoByIndex
    nvmlGetVgpuDriverCapabilities
    nvmlSystemGetConfComputeCapabilities
    nvmlSystemGetConfComputeGpusReadyState
    nvmlSystemGetConfComputeState
    nvmlSystemGetHicVersion
    nvmlSystemGetNvlinkBwMode
    nvmlSystemGetTopologyGpuSet

    // Settings: the simulated machine has nothing to change.
    nvmlDeviceClearAccountingPids
    nvmlDeviceClearEccErrorCounts
    nvmlDeviceCreateGpuInstance
    nvmlDeviceCreateGpuInstanceWithPlacement
    nvmlDeviceDiscoverGpus
    nvmlDeviceModifyDrainState
    nvmlDeviceRemoveGpu_v2
    nvmlDeviceResetApplicationsClocks
    nvmlDeviceResetGpuLockedClocks
    nvmlDeviceResetMemoryLockedClocks
    nvmlDeviceResetNvLinkErrorCounters
    nvmlDeviceSetAPIRestriction
    nvmlDeviceSetAccountingMode
    nvmlDeviceSetApplicationsClocks
    nvmlDeviceSetAutoBoostedClocksEnabled
    nvmlDeviceSetComputeMode
    nvmlDeviceSetConfComputeUnprotectedMemSize
    nvmlDeviceSetDefaultAutoBoostedClocksEnabled
    nvmlDeviceSetDriverModel
    nvmlDeviceSetEccMode
    nvmlDeviceSetGpcClkVfOffset
    nvmlDeviceSetGpuLockedClocks
    nvmlDeviceSetGpuOperationMode
    nvmlDeviceSetMemoryLockedClocks
    nvmlDeviceSetMigMode
    nvmlDeviceSetNvLinkDeviceLowPowerThreshold
    nvmlDeviceSetPersistenceMode
    nvmlDeviceSetPowerManagementLimit_v2
    nvmlDeviceSetTemperatureThreshold
    nvmlDeviceSetVgpuSchedulerState
    nvmlDeviceSetVirtualizationMode
    nvmlSystemSetConfComputeGpusReadyState
    nvmlSystemSetNvlinkBwMode

    // Units, vGPU instances, GPM and MIG instances: none exist here, so these are only reached with
    // handles no call hands out.
    nvmlComputeInstanceDestroy
    nvmlComputeInstanceGetInfo_v2
    nvmlGpmMetricsGet
    nvmlGpmQueryIfStreamingEnabled
    nvmlGpmSampleAlloc
    nvmlGpmSampleFree
    nvmlGpmSampleGet
    nvmlGpmSetStreamingEnabled
    nvmlGpuInstanceCreateComputeInstance
    nvmlGpuInstanceCreateComputeInstanceWithPlacement
    nvmlGpuInstanceDestroy
    nvmlGpuInstanceGetComputeInstancePossiblePlacements
    nvmlGpuInstanceGetComputeInstanceProfileInfoV
    nvmlGpuInstanceGetComputeInstanceRemainingCapacity
    nvmlGpuInstanceGetComputeInstances
    nvmlGpuInstanceGetInfo
    nvmlUnitGetDevices
    nvmlUnitGetFanSpeedInfo
    nvmlUnitGetHandleByIndex
    nvmlUnitGetLedState
    nvmlUnitGetPsuInfo
    nvmlUnitGetTemperature
    nvmlUnitGetUnitInfo
    nvmlUnitSetLedState
    nvmlVgpuInstanceClearAccountingPids
    nvmlVgpuInstanceGetAccountingMode
    nvmlVgpuInstanceGetAccountingPids
    nvmlVgpuInstanceGetAccountingStats
    nvmlVgpuInstanceGetEccMode
    nvmlVgpuInstanceGetEncoderSessions
    nvmlVgpuInstanceGetEncoderStats
    nvmlVgpuInstanceGetFBCSessions
    nvmlVgpuInstanceGetFBCStats
    nvmlVgpuInstanceGetFbUsage
    nvmlVgpuInstanceGetFrameRateLimit
    nvmlVgpuInstanceGetGpuInstanceId
    nvmlVgpuInstanceGetGpuPciId
    nvmlVgpuInstanceGetLicenseInfo_v2
    nvmlVgpuInstanceGetMdevUUID
    nvmlVgpuInstanceGetType
    nvmlVgpuInstanceGetUUID
    nvmlVgpuInstanceGetVmDriverVersion
    nvmlVgpuInstanceGetVmID
    nvmlVgpuTypeGetCapabilities
    nvmlVgpuTypeGetClass
    nvmlVgpuTypeGetDeviceID
    nvmlVgpuTypeGetFrameRateLimit
    nvmlVgpuTypeGetFramebufferSize
    nvmlVgpuTypeGetGpuInstanceProfileId
    nvmlVgpuTypeGetLicense
    nvmlVgpuTypeGetMaxInstances
    nvmlVgpuTypeGetMaxInstancesPerVm
    nvmlVgpuTypeGetName
    nvmlVgpuTypeGetNumDisplayHeads
    nvmlVgpuTypeGetResolution
    // No fans on an SXM H100: nvidia-smi prints N/A, as on the real card.
    nvmlDeviceGetFanSpeed

    // What `nvidia-smi -q` of 550 and 555 asks for beyond 535 (absent before those: see
    // `Generation::adds`), N/A on this card.
    nvmlDeviceGetC2cModeInfoV
    nvmlDeviceGetGpuFabricInfoV
    nvmlDeviceGetVgpuHeterogeneousMode
    nvmlDeviceGetCapabilities
    nvmlDeviceGetDriverModel_v2
}
