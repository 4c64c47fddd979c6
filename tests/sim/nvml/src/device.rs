//! Device enumeration, identity, memory and the constant readings of an idle H100.

use std::ffi::{c_char, c_int, c_uint, c_ulonglong};

use std::sync::OnceLock;

use genv_sim_common::{ledger, normalize_bus_id};

use crate::*;

const ENABLED: sys::nvmlEnableState_t = sys::nvmlEnableState_enum_NVML_FEATURE_ENABLED;
const DISABLED: sys::nvmlEnableState_t = sys::nvmlEnableState_enum_NVML_FEATURE_DISABLED;

/// PCI device id (high half) and vendor id (low half) of an H100 SXM5 80GB, and its subsystem.
const PCI_DEVICE_ID: c_uint = 0x2330_10DE;
const PCI_SUBSYSTEM_ID: c_uint = 0x16C1_10DE;

/// Idle readings, in NVML's units (°C, mW, MHz, %).
const TEMPERATURE_GPU: c_uint = 33;
const POWER_USAGE_MW: c_uint = 69_000;
const POWER_LIMIT_MW: c_uint = 700_000;
const POWER_LIMIT_MIN_MW: c_uint = 200_000;
const GPU_CLOCK_MHZ: c_uint = 345;
const GPU_CLOCK_MAX_MHZ: c_uint = 1980;
const GPU_CLOCK_APP_MHZ: c_uint = 1755;
const MEM_CLOCK_MHZ: c_uint = 2619;
const VIDEO_CLOCK_MHZ: c_uint = 765;
const VIDEO_CLOCK_MAX_MHZ: c_uint = 1965;
const BAR1_TOTAL: u64 = 131_072 << 20;
const BAR1_USED: u64 = 1 << 20;
/// nvmlClocksThrottleReasonGpuIdle: an idle GPU clocks down.
const THROTTLE_GPU_IDLE: c_ulonglong = 0x1;
const THROTTLE_SUPPORTED: c_ulonglong = 0x1ff;

fn count() -> c_uint {
    machine().gpus.len() as c_uint
}

unsafe fn handle_by_index(index: c_uint, device: *mut sys::nvmlDevice_t) -> Result<(), Ret> {
    initialized()?;
    if index >= count() {
        return Err(INVALID_ARGUMENT);
    }
    out(device, handle_of(index as usize))
}

/// The v1 lookup calls v2 as the real one does: through the global scope (`crate::global`).
unsafe fn handle_by_index_v1(index: c_uint, device: *mut sys::nvmlDevice_t) -> Result<(), Ret> {
    type HandleByIndex = unsafe extern "C" fn(c_uint, *mut sys::nvmlDevice_t) -> Ret;
    static V2: OnceLock<usize> = OnceLock::new();
    match *V2.get_or_init(|| global(c"nvmlDeviceGetHandleByIndex_v2") as usize) {
        0 => handle_by_index(index, device),
        // SAFETY: the address of nvmlDeviceGetHandleByIndex_v2, whichever library defines it.
        f => match std::mem::transmute::<usize, HandleByIndex>(f)(index, device) {
            SUCCESS => Ok(()),
            e => Err(e),
        },
    }
}

unsafe fn handle_by_bus_id(
    bus_id: *const c_char,
    device: *mut sys::nvmlDevice_t,
) -> Result<(), Ret> {
    initialized()?;
    let s = in_str(bus_id)?;
    if device.is_null() || normalize_bus_id(s).is_none() {
        return Err(INVALID_ARGUMENT);
    }
    let i = machine().by_bus_id(s).ok_or(NOT_FOUND)?;
    out(device, handle_of(i))
}

fn pci_info(g: &Gpu) -> sys::nvmlPciInfo_t {
    // SAFETY: plain C struct of integers and char arrays; all zeroes is a valid value.
    let mut p: sys::nvmlPciInfo_t = unsafe { std::mem::zeroed() };
    fill_field(&mut p.busIdLegacy, &g.bus_id_short);
    fill_field(&mut p.busId, &g.bus_id);
    p.domain = g.pci_domain;
    p.bus = g.pci_bus;
    p.device = g.pci_device;
    p.pciDeviceId = PCI_DEVICE_ID;
    p.pciSubSystemId = PCI_SUBSYSTEM_ID;
    p
}

/// `nvmlPciInfo_t` before `_v2`: a 16-byte bus id, then the ids and four reserved words.
#[repr(C)]
pub struct PciInfoV1 {
    bus_id: [c_char; 16],
    domain: c_uint,
    bus: c_uint,
    device: c_uint,
    pci_device_id: c_uint,
    pci_sub_system_id: c_uint,
    reserved: [c_uint; 4],
}

/// Bytes held on the device by live processes, from the ledger the simulated libcuda writes.
fn used(g: &Gpu) -> u64 {
    ledger()
        .map(|l| l.used(g.index as usize))
        .unwrap_or(0)
        .min(g.total_memory)
}

fn clock(ty: sys::nvmlClockType_t, max: bool) -> Result<c_uint, Ret> {
    Ok(match (ty, max) {
        (
            sys::nvmlClockType_enum_NVML_CLOCK_GRAPHICS | sys::nvmlClockType_enum_NVML_CLOCK_SM,
            false,
        ) => GPU_CLOCK_MHZ,
        (
            sys::nvmlClockType_enum_NVML_CLOCK_GRAPHICS | sys::nvmlClockType_enum_NVML_CLOCK_SM,
            true,
        ) => GPU_CLOCK_MAX_MHZ,
        (sys::nvmlClockType_enum_NVML_CLOCK_MEM, _) => MEM_CLOCK_MHZ,
        (sys::nvmlClockType_enum_NVML_CLOCK_VIDEO, false) => VIDEO_CLOCK_MHZ,
        (sys::nvmlClockType_enum_NVML_CLOCK_VIDEO, true) => VIDEO_CLOCK_MAX_MHZ,
        _ => return Err(INVALID_ARGUMENT),
    })
}

fn app_clock(ty: sys::nvmlClockType_t) -> Result<c_uint, Ret> {
    match ty {
        sys::nvmlClockType_enum_NVML_CLOCK_GRAPHICS | sys::nvmlClockType_enum_NVML_CLOCK_SM => {
            Ok(GPU_CLOCK_APP_MHZ)
        }
        sys::nvmlClockType_enum_NVML_CLOCK_MEM => Ok(MEM_CLOCK_MHZ),
        sys::nvmlClockType_enum_NVML_CLOCK_VIDEO => Ok(VIDEO_CLOCK_MAX_MHZ),
        _ => Err(INVALID_ARGUMENT),
    }
}

nvml! {
    fn nvmlDeviceGetCount(device_count: *mut c_uint) {
        initialized()?;
        out(device_count, count())
    }
    fn nvmlDeviceGetCount_v2(device_count: *mut c_uint) {
        initialized()?;
        out(device_count, count())
    }
    fn nvmlDeviceGetHandleByIndex(index: c_uint, device: *mut sys::nvmlDevice_t) {
        handle_by_index_v1(index, device)
    }
    fn nvmlDeviceGetHandleByIndex_v2(index: c_uint, device: *mut sys::nvmlDevice_t) {
        handle_by_index(index, device)
    }
    fn nvmlDeviceGetHandleByUUID(uuid: *const c_char, device: *mut sys::nvmlDevice_t) {
        initialized()?;
        let u = in_str(uuid)?;
        if device.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        // NVML wants the whole UUID; prefixes are a convenience of nvidia-smi's -i.
        let i = machine()
            .gpus
            .iter()
            .position(|g| g.uuid.eq_ignore_ascii_case(u.trim()))
            .ok_or(NOT_FOUND)?;
        out(device, handle_of(i))
    }
    fn nvmlDeviceGetHandleBySerial(serial: *const c_char, device: *mut sys::nvmlDevice_t) {
        initialized()?;
        let s = in_str(serial)?;
        if device.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        let i = machine()
            .gpus
            .iter()
            .position(|g| g.serial == s.trim())
            .ok_or(NOT_FOUND)?;
        out(device, handle_of(i))
    }
    fn nvmlDeviceGetHandleByPciBusId(bus_id: *const c_char, device: *mut sys::nvmlDevice_t) {
        handle_by_bus_id(bus_id, device)
    }
    fn nvmlDeviceGetHandleByPciBusId_v2(bus_id: *const c_char, device: *mut sys::nvmlDevice_t) {
        handle_by_bus_id(bus_id, device)
    }

    fn nvmlDeviceGetIndex(device: sys::nvmlDevice_t, index: *mut c_uint) {
        out(index, crate::device(device)?.index)
    }
    fn nvmlDeviceGetName(device: sys::nvmlDevice_t, name: *mut c_char, length: c_uint) {
        out_str(name, length, &crate::device(device)?.name)
    }
    fn nvmlDeviceGetUUID(device: sys::nvmlDevice_t, uuid: *mut c_char, length: c_uint) {
        out_str(uuid, length, &crate::device(device)?.uuid)
    }
    fn nvmlDeviceGetSerial(device: sys::nvmlDevice_t, serial: *mut c_char, length: c_uint) {
        out_str(serial, length, &crate::device(device)?.serial)
    }
    fn nvmlDeviceGetBoardPartNumber(device: sys::nvmlDevice_t, part: *mut c_char, length: c_uint) {
        crate::device(device)?;
        out_str(part, length, "699-2G530-0200-000")
    }
    fn nvmlDeviceGetVbiosVersion(device: sys::nvmlDevice_t, version: *mut c_char, length: c_uint) {
        crate::device(device)?;
        out_str(version, length, "96.00.74.00.01")
    }
    fn nvmlDeviceGetInforomImageVersion(device: sys::nvmlDevice_t, version: *mut c_char, length: c_uint) {
        crate::device(device)?;
        out_str(version, length, "G520.0200.00.05")
    }
    fn nvmlDeviceGetInforomVersion(
        device: sys::nvmlDevice_t,
        object: sys::nvmlInforomObject_t,
        version: *mut c_char,
        length: c_uint,
    ) {
        crate::device(device)?;
        let v = match object {
            sys::nvmlInforomObject_enum_NVML_INFOROM_OEM => "2.1",
            sys::nvmlInforomObject_enum_NVML_INFOROM_ECC => "7.0",
            _ => return Err(NOT_SUPPORTED),
        };
        out_str(version, length, v)
    }
    fn nvmlDeviceValidateInforom(device: sys::nvmlDevice_t) {
        crate::device(device).map(|_| ())
    }

    fn nvmlDeviceGetPciInfo(device: sys::nvmlDevice_t, pci: *mut PciInfoV1) {
        let g = crate::device(device)?;
        let mut v = PciInfoV1 {
            bus_id: [0; 16],
            domain: g.pci_domain,
            bus: g.pci_bus,
            device: g.pci_device,
            pci_device_id: PCI_DEVICE_ID,
            pci_sub_system_id: PCI_SUBSYSTEM_ID,
            reserved: [0; 4],
        };
        fill_field(&mut v.bus_id, &g.bus_id_short);
        out(pci, v)
    }
    fn nvmlDeviceGetPciInfo_v2(device: sys::nvmlDevice_t, pci: *mut sys::nvmlPciInfo_t) {
        out(pci, pci_info(crate::device(device)?))
    }
    fn nvmlDeviceGetPciInfo_v3(device: sys::nvmlDevice_t, pci: *mut sys::nvmlPciInfo_t) {
        out(pci, pci_info(crate::device(device)?))
    }
    // 550 on: nvidia-smi's bus id columns and `-q` PCI section.
    fn nvmlDeviceGetPciInfoExt(device: sys::nvmlDevice_t, pci: *mut sys::nvmlPciInfoExt_t) {
        let g = crate::device(device)?;
        if pci.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        // SAFETY: plain C struct of integers and a char array; all zeroes is a valid value.
        let mut p: sys::nvmlPciInfoExt_t = std::mem::zeroed();
        // The caller sets `version`; kept as given.
        p.version = (*pci).version;
        fill_field(&mut p.busId, &g.bus_id);
        p.domain = g.pci_domain;
        p.bus = g.pci_bus;
        p.device = g.pci_device;
        p.pciDeviceId = PCI_DEVICE_ID;
        p.pciSubSystemId = PCI_SUBSYSTEM_ID;
        // Display controller, 3D controller: what a datacenter GPU reports.
        p.baseClass = 0x03;
        p.subClass = 0x02;
        out(pci, p)
    }

    fn nvmlDeviceGetMemoryInfo(device: sys::nvmlDevice_t, memory: *mut sys::nvmlMemory_t) {
        let g = crate::device(device)?;
        let u = used(g);
        out(memory, sys::nvmlMemory_t { total: g.total_memory, free: g.total_memory - u, used: u })
    }
    fn nvmlDeviceGetMemoryInfo_v2(device: sys::nvmlDevice_t, memory: *mut sys::nvmlMemory_v2_t) {
        let g = crate::device(device)?;
        if memory.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        let u = used(g);
        // The caller sets `version`; nothing here depends on it, so it is kept as given.
        let version = (*memory).version;
        out(memory, sys::nvmlMemory_v2_t {
            version,
            total: g.total_memory,
            reserved: 0,
            free: g.total_memory - u,
            used: u,
        })
    }
    fn nvmlDeviceGetBAR1MemoryInfo(device: sys::nvmlDevice_t, bar1: *mut sys::nvmlBAR1Memory_t) {
        crate::device(device)?;
        out(bar1, sys::nvmlBAR1Memory_t {
            bar1Total: BAR1_TOTAL,
            bar1Free: BAR1_TOTAL - BAR1_USED,
            bar1Used: BAR1_USED,
        })
    }

    fn nvmlDeviceGetTemperature(device: sys::nvmlDevice_t, sensor: sys::nvmlTemperatureSensors_t, temp: *mut c_uint) {
        crate::device(device)?;
        if sensor != sys::nvmlTemperatureSensors_enum_NVML_TEMPERATURE_GPU {
            return Err(INVALID_ARGUMENT);
        }
        out(temp, TEMPERATURE_GPU)
    }
    fn nvmlDeviceGetTemperatureThreshold(
        device: sys::nvmlDevice_t,
        threshold: sys::nvmlTemperatureThresholds_t,
        temp: *mut c_uint,
    ) {
        crate::device(device)?;
        let t = match threshold {
            sys::nvmlTemperatureThresholds_enum_NVML_TEMPERATURE_THRESHOLD_SHUTDOWN => 92,
            sys::nvmlTemperatureThresholds_enum_NVML_TEMPERATURE_THRESHOLD_SLOWDOWN => 89,
            sys::nvmlTemperatureThresholds_enum_NVML_TEMPERATURE_THRESHOLD_MEM_MAX => 95,
            sys::nvmlTemperatureThresholds_enum_NVML_TEMPERATURE_THRESHOLD_GPU_MAX => 87,
            _ => return Err(NOT_SUPPORTED),
        };
        out(temp, t)
    }

    fn nvmlDeviceGetPowerUsage(device: sys::nvmlDevice_t, power: *mut c_uint) {
        crate::device(device)?;
        out(power, POWER_USAGE_MW)
    }
    fn nvmlDeviceGetEnforcedPowerLimit(device: sys::nvmlDevice_t, limit: *mut c_uint) {
        crate::device(device)?;
        out(limit, POWER_LIMIT_MW)
    }
    fn nvmlDeviceGetPowerManagementLimit(device: sys::nvmlDevice_t, limit: *mut c_uint) {
        crate::device(device)?;
        out(limit, POWER_LIMIT_MW)
    }
    fn nvmlDeviceGetPowerManagementDefaultLimit(device: sys::nvmlDevice_t, limit: *mut c_uint) {
        crate::device(device)?;
        out(limit, POWER_LIMIT_MW)
    }
    fn nvmlDeviceGetPowerManagementLimitConstraints(
        device: sys::nvmlDevice_t,
        min_limit: *mut c_uint,
        max_limit: *mut c_uint,
    ) {
        crate::device(device)?;
        nonnull(&[min_limit as *const c_uint, max_limit])?;
        out(min_limit, POWER_LIMIT_MIN_MW)?;
        out(max_limit, POWER_LIMIT_MW)
    }
    fn nvmlDeviceGetPowerManagementMode(device: sys::nvmlDevice_t, mode: *mut sys::nvmlEnableState_t) {
        crate::device(device)?;
        out(mode, ENABLED)
    }
    fn nvmlDeviceGetPowerState(device: sys::nvmlDevice_t, state: *mut sys::nvmlPstates_t) {
        crate::device(device)?;
        out(state, sys::nvmlPStates_enum_NVML_PSTATE_0)
    }
    fn nvmlDeviceGetPerformanceState(device: sys::nvmlDevice_t, state: *mut sys::nvmlPstates_t) {
        crate::device(device)?;
        out(state, sys::nvmlPStates_enum_NVML_PSTATE_0)
    }

    fn nvmlDeviceGetUtilizationRates(device: sys::nvmlDevice_t, util: *mut sys::nvmlUtilization_t) {
        crate::device(device)?;
        out(util, sys::nvmlUtilization_t { gpu: 0, memory: 0 })
    }
    fn nvmlDeviceGetEncoderUtilization(device: sys::nvmlDevice_t, util: *mut c_uint, period_us: *mut c_uint) {
        crate::device(device)?;
        nonnull(&[util as *const c_uint, period_us])?;
        out(util, 0)?;
        out(period_us, 167_000)
    }
    fn nvmlDeviceGetDecoderUtilization(device: sys::nvmlDevice_t, util: *mut c_uint, period_us: *mut c_uint) {
        crate::device(device)?;
        nonnull(&[util as *const c_uint, period_us])?;
        out(util, 0)?;
        out(period_us, 167_000)
    }

    fn nvmlDeviceGetClockInfo(device: sys::nvmlDevice_t, ty: sys::nvmlClockType_t, mhz: *mut c_uint) {
        crate::device(device)?;
        out(mhz, clock(ty, false)?)
    }
    fn nvmlDeviceGetMaxClockInfo(device: sys::nvmlDevice_t, ty: sys::nvmlClockType_t, mhz: *mut c_uint) {
        crate::device(device)?;
        out(mhz, clock(ty, true)?)
    }
    fn nvmlDeviceGetMaxCustomerBoostClock(device: sys::nvmlDevice_t, ty: sys::nvmlClockType_t, mhz: *mut c_uint) {
        crate::device(device)?;
        out(mhz, clock(ty, true)?)
    }
    fn nvmlDeviceGetApplicationsClock(device: sys::nvmlDevice_t, ty: sys::nvmlClockType_t, mhz: *mut c_uint) {
        crate::device(device)?;
        out(mhz, app_clock(ty)?)
    }
    fn nvmlDeviceGetDefaultApplicationsClock(device: sys::nvmlDevice_t, ty: sys::nvmlClockType_t, mhz: *mut c_uint) {
        crate::device(device)?;
        out(mhz, app_clock(ty)?)
    }
    fn nvmlDeviceGetClock(
        device: sys::nvmlDevice_t,
        ty: sys::nvmlClockType_t,
        id: sys::nvmlClockId_t,
        mhz: *mut c_uint,
    ) {
        crate::device(device)?;
        let v = match id {
            sys::nvmlClockId_enum_NVML_CLOCK_ID_CURRENT => clock(ty, false)?,
            sys::nvmlClockId_enum_NVML_CLOCK_ID_APP_CLOCK_TARGET
            | sys::nvmlClockId_enum_NVML_CLOCK_ID_APP_CLOCK_DEFAULT => app_clock(ty)?,
            sys::nvmlClockId_enum_NVML_CLOCK_ID_CUSTOMER_BOOST_MAX => clock(ty, true)?,
            _ => return Err(INVALID_ARGUMENT),
        };
        out(mhz, v)
    }
    fn nvmlDeviceGetCurrentClocksThrottleReasons(device: sys::nvmlDevice_t, reasons: *mut c_ulonglong) {
        crate::device(device)?;
        out(reasons, THROTTLE_GPU_IDLE)
    }
    fn nvmlDeviceGetSupportedClocksThrottleReasons(device: sys::nvmlDevice_t, reasons: *mut c_ulonglong) {
        crate::device(device)?;
        out(reasons, THROTTLE_SUPPORTED)
    }

    fn nvmlDeviceGetPersistenceMode(device: sys::nvmlDevice_t, mode: *mut sys::nvmlEnableState_t) {
        crate::device(device)?;
        out(mode, ENABLED)
    }
    fn nvmlDeviceGetDisplayActive(device: sys::nvmlDevice_t, active: *mut sys::nvmlEnableState_t) {
        crate::device(device)?;
        out(active, DISABLED)
    }
    fn nvmlDeviceGetDisplayMode(device: sys::nvmlDevice_t, mode: *mut sys::nvmlEnableState_t) {
        crate::device(device)?;
        out(mode, DISABLED)
    }
    fn nvmlDeviceGetEccMode(
        device: sys::nvmlDevice_t,
        current: *mut sys::nvmlEnableState_t,
        pending: *mut sys::nvmlEnableState_t,
    ) {
        crate::device(device)?;
        nonnull(&[current as *const sys::nvmlEnableState_t, pending])?;
        out(current, ENABLED)?;
        out(pending, ENABLED)
    }
    fn nvmlDeviceGetTotalEccErrors(
        device: sys::nvmlDevice_t,
        _error_type: sys::nvmlMemoryErrorType_t,
        _counter_type: sys::nvmlEccCounterType_t,
        count: *mut c_ulonglong,
    ) {
        crate::device(device)?;
        out(count, 0)
    }
    fn nvmlDeviceGetMemoryErrorCounter(
        device: sys::nvmlDevice_t,
        _error_type: sys::nvmlMemoryErrorType_t,
        _counter_type: sys::nvmlEccCounterType_t,
        _location: sys::nvmlMemoryLocation_t,
        count: *mut c_ulonglong,
    ) {
        crate::device(device)?;
        out(count, 0)
    }
    fn nvmlDeviceGetRemappedRows(
        device: sys::nvmlDevice_t,
        corr_rows: *mut c_uint,
        unc_rows: *mut c_uint,
        is_pending: *mut c_uint,
        failure_occurred: *mut c_uint,
    ) {
        crate::device(device)?;
        nonnull(&[corr_rows as *const c_uint, unc_rows, is_pending, failure_occurred])?;
        out(corr_rows, 0)?;
        out(unc_rows, 0)?;
        out(is_pending, 0)?;
        out(failure_occurred, 0)
    }
    fn nvmlDeviceGetComputeMode(device: sys::nvmlDevice_t, mode: *mut sys::nvmlComputeMode_t) {
        crate::device(device)?;
        out(mode, sys::nvmlComputeMode_enum_NVML_COMPUTEMODE_DEFAULT)
    }
    fn nvmlDeviceGetMigMode(device: sys::nvmlDevice_t, current: *mut c_uint, pending: *mut c_uint) {
        crate::device(device)?;
        nonnull(&[current as *const c_uint, pending])?;
        out(current, DISABLED)?;
        out(pending, DISABLED)
    }
    fn nvmlDeviceIsMigDeviceHandle(device: sys::nvmlDevice_t, is_mig: *mut c_uint) {
        crate::device(device)?;
        out(is_mig, 0)
    }
    fn nvmlDeviceGetVirtualizationMode(device: sys::nvmlDevice_t, mode: *mut sys::nvmlGpuVirtualizationMode_t) {
        crate::device(device)?;
        out(mode, sys::nvmlGpuVirtualizationMode_NVML_GPU_VIRTUALIZATION_MODE_NONE)
    }
    fn nvmlDeviceGetAccountingMode(device: sys::nvmlDevice_t, mode: *mut sys::nvmlEnableState_t) {
        crate::device(device)?;
        out(mode, DISABLED)
    }

    fn nvmlDeviceGetBrand(device: sys::nvmlDevice_t, brand: *mut sys::nvmlBrandType_t) {
        crate::device(device)?;
        out(brand, sys::nvmlBrandType_enum_NVML_BRAND_NVIDIA)
    }
    fn nvmlDeviceGetArchitecture(device: sys::nvmlDevice_t, arch: *mut sys::nvmlDeviceArchitecture_t) {
        crate::device(device)?;
        out(arch, sys::NVML_DEVICE_ARCH_HOPPER)
    }
    fn nvmlDeviceGetCudaComputeCapability(device: sys::nvmlDevice_t, major: *mut c_int, minor: *mut c_int) {
        crate::device(device)?;
        nonnull(&[major as *const c_int, minor])?;
        out(major, 9)?;
        out(minor, 0)
    }
    fn nvmlDeviceGetMinorNumber(device: sys::nvmlDevice_t, minor: *mut c_uint) {
        out(minor, crate::device(device)?.index)
    }
    fn nvmlDeviceGetBoardId(device: sys::nvmlDevice_t, board_id: *mut c_uint) {
        // Real board ids are built from the bus number, so they differ per GPU.
        out(board_id, crate::device(device)?.pci_bus << 8)
    }
    fn nvmlDeviceGetMultiGpuBoard(device: sys::nvmlDevice_t, multi: *mut c_uint) {
        crate::device(device)?;
        out(multi, 0)
    }
    fn nvmlDeviceGetNumGpuCores(device: sys::nvmlDevice_t, cores: *mut c_uint) {
        crate::device(device)?;
        out(cores, 16_896)
    }
    fn nvmlDeviceGetMemoryBusWidth(device: sys::nvmlDevice_t, width: *mut c_uint) {
        crate::device(device)?;
        out(width, 5120)
    }

    fn nvmlDeviceGetCurrPcieLinkGeneration(device: sys::nvmlDevice_t, gen: *mut c_uint) {
        crate::device(device)?;
        out(gen, 5)
    }
    fn nvmlDeviceGetMaxPcieLinkGeneration(device: sys::nvmlDevice_t, gen: *mut c_uint) {
        crate::device(device)?;
        out(gen, 5)
    }
    fn nvmlDeviceGetGpuMaxPcieLinkGeneration(device: sys::nvmlDevice_t, gen: *mut c_uint) {
        crate::device(device)?;
        out(gen, 5)
    }
    fn nvmlDeviceGetCurrPcieLinkWidth(device: sys::nvmlDevice_t, width: *mut c_uint) {
        crate::device(device)?;
        out(width, 16)
    }
    fn nvmlDeviceGetMaxPcieLinkWidth(device: sys::nvmlDevice_t, width: *mut c_uint) {
        crate::device(device)?;
        out(width, 16)
    }
    fn nvmlDeviceGetPcieReplayCounter(device: sys::nvmlDevice_t, value: *mut c_uint) {
        crate::device(device)?;
        out(value, 0)
    }
    fn nvmlDeviceGetPcieThroughput(device: sys::nvmlDevice_t, counter: sys::nvmlPcieUtilCounter_t, value: *mut c_uint) {
        crate::device(device)?;
        if counter > 1 {
            return Err(INVALID_ARGUMENT);
        }
        out(value, 0)
    }
}

/// One field of nvmlDeviceGetFieldValues: its value type and value, or why it has none.
fn field(id: c_uint, scope: c_uint) -> Result<(sys::nvmlValueType_t, u64), Ret> {
    use sys::field_id::*;
    const UINT: sys::nvmlValueType_t = sys::nvmlValueType_enum_NVML_VALUE_TYPE_UNSIGNED_INT;
    // Module (GPU + CPU) power exists only on Grace Hopper boards.
    let gpu_scope = scope == sys::NVML_POWER_SCOPE_GPU;
    Ok(match id {
        NVML_FI_DEV_ECC_CURRENT | NVML_FI_DEV_ECC_PENDING => (UINT, 1),
        NVML_FI_DEV_POWER_AVERAGE | NVML_FI_DEV_POWER_INSTANT if gpu_scope => {
            (UINT, POWER_USAGE_MW as u64)
        }
        NVML_FI_DEV_POWER_MIN_LIMIT if gpu_scope => (UINT, POWER_LIMIT_MIN_MW as u64),
        NVML_FI_DEV_POWER_MAX_LIMIT
        | NVML_FI_DEV_POWER_DEFAULT_LIMIT
        | NVML_FI_DEV_POWER_CURRENT_LIMIT
        | NVML_FI_DEV_POWER_REQUESTED_LIMIT
            if gpu_scope =>
        {
            (UINT, POWER_LIMIT_MW as u64)
        }
        _ => return Err(NOT_SUPPORTED),
    })
}

nvml! {
    // Answers per field, as the real call does: the call succeeds and each value carries its
    // own return code (callers read the values without looking at anything else).
    fn nvmlDeviceGetFieldValues(device: sys::nvmlDevice_t, count: c_int, values: *mut sys::nvmlFieldValue_t) {
        crate::device(device)?;
        if count < 0 || (count > 0 && values.is_null()) {
            return Err(INVALID_ARGUMENT);
        }
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        for i in 0..count as usize {
            let v = &mut *values.add(i);
            v.timestamp = now_us;
            v.latencyUsec = 0;
            match field(v.fieldId, v.scopeId) {
                Ok((ty, val)) => {
                    v.valueType = ty;
                    v.value = sys::nvmlValue_t { ullVal: 0 };
                    if ty == sys::nvmlValueType_enum_NVML_VALUE_TYPE_UNSIGNED_INT {
                        v.value.uiVal = val as c_uint;
                    } else {
                        v.value.ullVal = val;
                    }
                    v.nvmlReturn = SUCCESS;
                }
                Err(e) => {
                    v.value = sys::nvmlValue_t { ullVal: 0 };
                    v.nvmlReturn = e;
                }
            }
        }
        Ok(())
    }
}
