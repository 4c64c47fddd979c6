//! Running-process lists: compute processes come from the ledger; nothing on this machine does
//! graphics or MPS, so those lists are always empty.

use std::ffi::c_uint;

use genv_sim_common::{ledger, ProcUsage};

use crate::*;

/// gpuInstanceId / computeInstanceId of a process on a GPU without MIG.
pub(crate) use genv_abi::nvml::NO_INSTANCE;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Compute,
    Graphics,
    Mps,
}

/// The processes of one kind on NVML device `index`.
pub(crate) fn processes(index: usize, kind: Kind) -> Vec<ProcUsage> {
    match kind {
        Kind::Compute => ledger().map(|l| l.processes(index)).unwrap_or_default(),
        Kind::Graphics | Kind::Mps => Vec::new(),
    }
}

/// NVML's sizing protocol: `*count` comes in as the buffer's capacity; when the list does not
/// fit (a NULL buffer with count 0 is the usual probe) the needed count goes back with
/// NVML_ERROR_INSUFFICIENT_SIZE and the buffer is left alone.
pub(crate) unsafe fn list<T>(
    device: sys::nvmlDevice_t,
    kind: Kind,
    count: *mut c_uint,
    infos: *mut T,
    make: impl Fn(&ProcUsage) -> T,
) -> Result<(), Ret> {
    list_with(device, kind, count, infos.is_null(), |i, p| {
        infos.add(i).write_unaligned(make(p))
    })
}

/// The sizing protocol of [`list`], with `write(i, process)` filling record `i` of a buffer
/// that is there unless `no_buffer`.
pub(crate) unsafe fn list_with(
    device: sys::nvmlDevice_t,
    kind: Kind,
    count: *mut c_uint,
    no_buffer: bool,
    mut write: impl FnMut(usize, &ProcUsage),
) -> Result<(), Ret> {
    let g = crate::device(device)?;
    if count.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    let procs = processes(g.index as usize, kind);
    let capacity = count.read_unaligned() as usize;
    count.write_unaligned(procs.len() as c_uint);
    if procs.len() > capacity {
        return Err(INSUFFICIENT_SIZE);
    }
    if procs.is_empty() {
        return Ok(());
    }
    if no_buffer {
        return Err(INVALID_ARGUMENT);
    }
    for (i, p) in procs.iter().enumerate() {
        write(i, p);
    }
    Ok(())
}

fn v1(p: &ProcUsage) -> sys::nvmlProcessInfo_v1_t {
    sys::nvmlProcessInfo_v1_t {
        pid: p.pid,
        usedGpuMemory: p.used,
    }
}

fn v2(p: &ProcUsage) -> sys::nvmlProcessInfo_v2_t {
    sys::nvmlProcessInfo_v2_t {
        pid: p.pid,
        usedGpuMemory: p.used,
        gpuInstanceId: NO_INSTANCE,
        computeInstanceId: NO_INSTANCE,
    }
}

/// Utilisation samples of the compute processes (all idle), in NVML's sizing protocol; no
/// process at all is NVML_ERROR_NOT_FOUND, as the real function answers without samples.
unsafe fn samples<T>(
    device: sys::nvmlDevice_t,
    count: *mut c_uint,
    out: *mut T,
    make: impl Fn(u32, u64) -> T,
) -> Result<(), Ret> {
    let g = crate::device(device)?;
    if count.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    let procs = processes(g.index as usize, Kind::Compute);
    if procs.is_empty() {
        count.write_unaligned(0);
        return Err(NOT_FOUND);
    }
    let capacity = count.read_unaligned() as usize;
    count.write_unaligned(procs.len() as c_uint);
    if out.is_null() || procs.len() > capacity {
        return Err(INSUFFICIENT_SIZE);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    for (i, p) in procs.iter().enumerate() {
        out.add(i).write_unaligned(make(p.pid, now));
    }
    Ok(())
}

nvml! {
    fn nvmlDeviceGetProcessUtilization(
        device: sys::nvmlDevice_t,
        utilization: *mut sys::nvmlProcessUtilizationSample_t,
        count: *mut c_uint,
        _last_seen: u64,
    ) {
        samples(device, count, utilization, |pid, t| sys::nvmlProcessUtilizationSample_t {
            pid,
            timeStamp: t,
            smUtil: 0,
            memUtil: 0,
            encUtil: 0,
            decUtil: 0,
        })
    }
    // 550 on.
    fn nvmlDeviceGetProcessesUtilizationInfo(
        device: sys::nvmlDevice_t,
        info: *mut sys::nvmlProcessesUtilizationInfo_t,
    ) {
        const V1: c_uint =
            std::mem::size_of::<sys::nvmlProcessesUtilizationInfo_t>() as c_uint | 1 << 24;
        if info.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        if (*info).version != V1 {
            return Err(sys::nvmlReturn_enum_NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
        }
        let count = std::ptr::addr_of_mut!((*info).processSamplesCount);
        samples(device, count, (*info).procUtilArray, |pid, t| sys::nvmlProcessUtilizationInfo_v1_t {
            timeStamp: t,
            pid,
            smUtil: 0,
            memUtil: 0,
            encUtil: 0,
            decUtil: 0,
            jpgUtil: 0,
            ofaUtil: 0,
        })
    }
}

// v2 and v3 share one 24-byte record; v1's is 16 bytes.
nvml! {
    fn nvmlDeviceGetComputeRunningProcesses(
        device: sys::nvmlDevice_t,
        count: *mut c_uint,
        infos: *mut sys::nvmlProcessInfo_v1_t,
    ) {
        list(device, Kind::Compute, count, infos, v1)
    }
    fn nvmlDeviceGetComputeRunningProcesses_v2(
        device: sys::nvmlDevice_t,
        count: *mut c_uint,
        infos: *mut sys::nvmlProcessInfo_v2_t,
    ) {
        list(device, Kind::Compute, count, infos, v2)
    }
    fn nvmlDeviceGetComputeRunningProcesses_v3(
        device: sys::nvmlDevice_t,
        count: *mut c_uint,
        infos: *mut sys::nvmlProcessInfo_v2_t,
    ) {
        list(device, Kind::Compute, count, infos, v2)
    }
    fn nvmlDeviceGetGraphicsRunningProcesses(
        device: sys::nvmlDevice_t,
        count: *mut c_uint,
        infos: *mut sys::nvmlProcessInfo_v1_t,
    ) {
        list(device, Kind::Graphics, count, infos, v1)
    }
    fn nvmlDeviceGetGraphicsRunningProcesses_v2(
        device: sys::nvmlDevice_t,
        count: *mut c_uint,
        infos: *mut sys::nvmlProcessInfo_v2_t,
    ) {
        list(device, Kind::Graphics, count, infos, v2)
    }
    fn nvmlDeviceGetGraphicsRunningProcesses_v3(
        device: sys::nvmlDevice_t,
        count: *mut c_uint,
        infos: *mut sys::nvmlProcessInfo_v2_t,
    ) {
        list(device, Kind::Graphics, count, infos, v2)
    }
    fn nvmlDeviceGetMPSComputeRunningProcesses(
        device: sys::nvmlDevice_t,
        count: *mut c_uint,
        infos: *mut sys::nvmlProcessInfo_v1_t,
    ) {
        list(device, Kind::Mps, count, infos, v1)
    }
    fn nvmlDeviceGetMPSComputeRunningProcesses_v2(
        device: sys::nvmlDevice_t,
        count: *mut c_uint,
        infos: *mut sys::nvmlProcessInfo_v2_t,
    ) {
        list(device, Kind::Mps, count, infos, v2)
    }
    fn nvmlDeviceGetMPSComputeRunningProcesses_v3(
        device: sys::nvmlDevice_t,
        count: *mut c_uint,
        infos: *mut sys::nvmlProcessInfo_v2_t,
    ) {
        list(device, Kind::Mps, count, infos, v2)
    }
}
