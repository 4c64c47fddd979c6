//! NVML inside an environment: the device list, memory and process lists follow the view. Every
//! hooked function is declared once, below; every other name (utilisation, clocks, power,
//! temperature, …) gets the real function, so it costs nothing. Outside an environment the
//! wrappers pass through; `nvmlInit*` re-reads `GENV_ENVIRONMENT_ID` (see `view::follow`), so a
//! process that enters or leaves an environment itself sees the new view from its next
//! `nvmlInit` on.
//!
//! Numbering: virtual index `i` is the `i`-th attached device in attach order. Handles are the
//! real driver's handles (so pass-through functions accept them); only the functions that turn
//! an index, UUID, serial or bus id into a handle, or a handle into an index, are remapped
//! (`devices`). Memory: `View::memory`, the figures CUDA reports too. Process lists: `procs`;
//! lists of handles: `topology`; nvidia-smi's private table: `export`.
//!
//! Rules kept by every wrapper: no panic crosses into C (it becomes NVML_ERROR_UNKNOWN), no lock
//! is held across a real NVML call, and all state is either immutable after first use or local
//! to the call, so wrappers are thread-safe.

use crate::hooks::hooks;
use crate::real::{self, Real};
use genv_abi::nvml::*;
use std::ffi::{c_char, c_uint, c_void, CStr};
use std::sync::atomic::Ordering;

pub(crate) type Device = *mut c_void;

mod devices;
mod export;
pub mod linked;
mod procs;
mod topology;

use devices::{host_index, host_of_virtual, in_env, virtual_of_host};
pub use procs::{DetailList, UtilizationInfo};

/// The shim's wrapper for NVML name `name`, when it has one. The hook asks only for names the
/// real NVML defines, so a wrapper never makes a client believe in a function the driver lacks.
pub fn lookup(name: &CStr) -> Option<*mut c_void> {
    table(name.to_bytes()).map(|h| h.wrapper)
}

hooks! {
    api {
        lib: real::NVML, ret: Ret, missing: ERROR_FUNCTION_NOT_FOUND,
        panicked: ERROR_UNKNOWN, real: real, name: NAME, attrs: [],
        linked: [linked],
    }

    // Initialisation: where the process's environment is looked at again.

    fn nvmlInit | nvmlInit_v2 () {
        linked::note();
        crate::view::follow();
        real()
    }
    fn nvmlInitWithFlags(flags: c_uint) {
        linked::note();
        crate::view::follow();
        real(flags)
    }

    // Enumeration.

    fn nvmlDeviceGetCount | nvmlDeviceGetCount_v2 (n: *mut c_uint) {
        devices::count(real(n), n)
    }
    fn nvmlDeviceGetHandleByIndex | nvmlDeviceGetHandleByIndex_v2 (index: c_uint, dev: *mut Device) {
        devices::by_index(index, |host| real(host, dev))
    }
    /// A lookup by identity: the real answer, if its device is attached.
    fn nvmlDeviceGetHandleByUUID
        | nvmlDeviceGetHandleBySerial
        | nvmlDeviceGetHandleByPciBusId
        | nvmlDeviceGetHandleByPciBusId_v2 (key: *const c_char, dev: *mut Device) {
        devices::by_key(real(key, dev), dev)
    }
    fn nvmlDeviceGetHandleByUUIDV(key: *const c_void, dev: *mut Device) {
        devices::by_key(real(key, dev), dev)
    }
    fn nvmlDeviceGetIndex(dev: Device, index: *mut c_uint) {
        devices::index(real(dev, index), index)
    }

    // Memory.

    fn nvmlDeviceGetMemoryInfo(dev: Device, mem: *mut MemoryV1) {
        let r = real(dev, mem);
        if r == SUCCESS {
            let m = &mut *mem;
            if let Some(e) = devices::memory(dev, m.free, m.total) {
                (m.total, m.free, m.used) = (e.total, e.free, e.used);
            }
        }
        r
    }
    fn nvmlDeviceGetMemoryInfo_v2(dev: Device, mem: *mut MemoryV2) {
        let r = real(dev, mem);
        if r == SUCCESS {
            let m = &mut *mem;
            if let Some(e) = devices::memory(dev, m.free, m.total) {
                // The driver's reservation is not the environment's: the capacity is all it has.
                (m.total, m.reserved, m.free, m.used) = (e.total, 0, e.free, e.used);
            }
        }
        r
    }

    // Processes: the environment's only, with what each holds in the ledger.

    fn nvmlDeviceGetComputeRunningProcesses
        | nvmlDeviceGetComputeRunningProcesses_v2
        | nvmlDeviceGetComputeRunningProcesses_v3
        | nvmlDeviceGetGraphicsRunningProcesses
        | nvmlDeviceGetGraphicsRunningProcesses_v2
        | nvmlDeviceGetGraphicsRunningProcesses_v3
        | nvmlDeviceGetMPSComputeRunningProcesses
        | nvmlDeviceGetMPSComputeRunningProcesses_v2
        | nvmlDeviceGetMPSComputeRunningProcesses_v3 (dev: Device, count: *mut c_uint, out: *mut u8) {
        procs::filtered(|n, b| real(dev, n, b), dev, count, out, procs::record_size(NAME))
    }
    fn nvmlDeviceGetRunningProcessDetailList(dev: Device, list: *mut DetailList) {
        procs::detail_list(real, dev, list)
    }
    /// Utilisation samples and accounting name processes too.
    fn nvmlDeviceGetProcessUtilization(dev: Device, samples: *mut u8, count: *mut c_uint, since: u64) {
        procs::utilization(|b, n| real(dev, b, n, since), dev, samples, count)
    }
    fn nvmlDeviceGetProcessesUtilizationInfo(dev: Device, info: *mut UtilizationInfo) {
        procs::utilization_info(real, dev, info)
    }
    fn nvmlDeviceGetAccountingPids(dev: Device, count: *mut c_uint, pids: *mut c_uint) {
        procs::pid_list(|n, b| real(dev, n, b), count, pids)
    }
    /// Another environment's process has no accounting record, as far as this one can tell.
    fn nvmlDeviceGetAccountingStats(dev: Device, pid: c_uint, stats: *mut c_void) {
        if procs::foreign(pid) {
            ERROR_NOT_FOUND
        } else {
            real(dev, pid, stats)
        }
    }

    // Lists of device handles: the view's only.

    fn nvmlDeviceGetTopologyNearestGpus(dev: Device, level: c_uint, count: *mut c_uint, out: *mut Device) {
        topology::filtered(|n, b| real(dev, level, n, b), count, out, topology::Probe::Succeeds)
    }
    fn nvmlSystemGetTopologyGpuSet(cpu: c_uint, count: *mut c_uint, out: *mut Device) {
        topology::filtered(|n, b| real(cpu, n, b), count, out, topology::Probe::Succeeds)
    }
    fn nvmlUnitGetDevices(unit: *mut c_void, count: *mut c_uint, out: *mut Device) {
        topology::filtered(|n, b| real(unit, n, b), count, out, topology::Probe::Insufficient)
    }

    // nvidia-smi's private export table.

    /// Callable before `nvmlInit`, so also a first use.
    fn nvmlInternalGetExportTable(table: *mut *const c_void, uuid: *const [u8; 16]) {
        linked::note();
        export::get(real(table, uuid), table, uuid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wrapper_has_its_own_real_function() {
        for n in NAMES {
            let h = table(n.as_bytes()).unwrap();
            assert_eq!(h.real.name().to_str().unwrap(), *n);
        }
        assert!(table(b"nvmlDeviceGetTemperature").is_none());
        assert_eq!(
            procs::record_size("nvmlDeviceGetGraphicsRunningProcesses_v2"),
            procs::V2
        );
    }
}
