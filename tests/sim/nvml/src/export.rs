//! `nvmlInternalGetExportTable`: the private table stock nvidia-smi 535 reads its process list
//! and bus ids from (it never calls the public *RunningProcesses functions).
//!
//! Only the slots nvidia-smi was seen to use are filled; it checks the table's size and each
//! slot for NULL before calling, so the rest stay NULL. Every filled slot writes all of its
//! outputs whenever it returns success.

use std::ffi::{c_char, c_uint, c_void};
use std::ptr::null;

use genv_sim_common::normalize_bus_id;

use crate::procs::{list, Kind, NO_INSTANCE};
use crate::*;

use genv_abi::nvml::export::*;

const SLOTS: usize = SLOTS_535;

#[repr(C)]
struct Table([*const c_void; SLOTS]);
// SAFETY: the table is immutable; it holds only a size and function addresses.
unsafe impl Sync for Table {}

type ProcSlot = unsafe extern "C" fn(sys::nvmlDevice_t, *mut c_uint, *mut ProcRecord) -> Ret;

static SMI_TABLE: Table = {
    let mut t = [null(); SLOTS];
    // Slot 0 is the table's size in bytes, which nvidia-smi checks first.
    t[0] = (SLOTS * std::mem::size_of::<*const c_void>()) as *const c_void;
    t[SLOT_PARSE_BUS_ID] =
        parse_bus_id as unsafe extern "C" fn(_, _, _, _, _) -> Ret as *const c_void;
    t[SLOT_BUS_BY_INDEX] = bus_by_index as unsafe extern "C" fn(_, _, _, _) -> Ret as *const c_void;
    t[SLOT_BUS_ID_BY_INDEX] =
        bus_id_by_index as unsafe extern "C" fn(_, _, _) -> Ret as *const c_void;
    t[SLOT_COMPUTE_PROCS] = compute_procs as ProcSlot as *const c_void;
    t[SLOT_GRAPHICS_PROCS] = graphics_procs as ProcSlot as *const c_void;
    t[SLOT_MPS_PROCS] = mps_procs as ProcSlot as *const c_void;
    Table(t)
};

nvml! {
    fn nvmlInternalGetExportTable(table: *mut *const c_void, uuid: *const [u8; 16]) {
        if table.is_null() || uuid.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        if uuid.read_unaligned() != SMI_TABLE_UUID {
            // Other private tables (and other drivers' layouts) are not simulated.
            return Err(NOT_SUPPORTED);
        }
        out(table, SMI_TABLE.0.as_ptr() as *const c_void)
    }
}

unsafe extern "C" fn bus_id_by_index(index: c_uint, buf: *mut c_char, len: c_uint) -> Ret {
    call("nvmlInternalGetExportTable[81] bus id", || {
        initialized()?;
        let g = machine().gpus.get(index as usize).ok_or(INVALID_ARGUMENT)?;
        let s = format!(
            "{:04X}:{:02X}:{:02X}.0",
            g.pci_domain, g.pci_bus, g.pci_device
        );
        out_str(buf, len, &s)
    })
}

unsafe extern "C" fn parse_bus_id(
    bus_id: *const c_char,
    domain: *mut c_uint,
    bus: *mut c_uint,
    device: *mut c_uint,
    function: *mut c_uint,
) -> Ret {
    call("nvmlInternalGetExportTable[12] parse bus id", || {
        let s = in_str(bus_id)?;
        nonnull(&[domain as *const c_uint, bus, device, function])?;
        let (d, b, dv, f) = normalize_bus_id(s).ok_or(INVALID_ARGUMENT)?;
        out(domain, d)?;
        out(bus, b)?;
        out(device, dv)?;
        out(function, f)
    })
}

unsafe extern "C" fn bus_by_index(
    index: c_uint,
    domain: *mut c_uint,
    bus: *mut c_uint,
    device: *mut c_uint,
) -> Ret {
    call("nvmlInternalGetExportTable[75] bus by index", || {
        initialized()?;
        let g = machine().gpus.get(index as usize).ok_or(INVALID_ARGUMENT)?;
        nonnull(&[domain as *const c_uint, bus, device])?;
        out(domain, g.pci_domain)?;
        out(bus, g.pci_bus)?;
        out(device, g.pci_device)
    })
}

unsafe fn proc_records(
    device: sys::nvmlDevice_t,
    kind: Kind,
    count: *mut c_uint,
    records: *mut ProcRecord,
) -> Result<(), Ret> {
    // NVML's sizing protocol, as for the public process lists.
    list(device, kind, count, records, |p| {
        // SAFETY: plain data; all-zero is a valid record.
        let mut r: ProcRecord = unsafe { std::mem::zeroed() };
        r.pid = p.pid;
        r.used_gpu_memory = p.used;
        r.gpu_instance_id = NO_INSTANCE;
        r.compute_instance_id = NO_INSTANCE;
        // A process that has just exited has no name and is skipped by nvidia-smi.
        fill_field(&mut r.name, &process_name(p.pid).unwrap_or_default());
        r
    })
}

unsafe extern "C" fn compute_procs(
    d: sys::nvmlDevice_t,
    n: *mut c_uint,
    r: *mut ProcRecord,
) -> Ret {
    call("nvmlInternalGetExportTable[213] compute processes", || {
        proc_records(d, Kind::Compute, n, r)
    })
}

unsafe extern "C" fn graphics_procs(
    d: sys::nvmlDevice_t,
    n: *mut c_uint,
    r: *mut ProcRecord,
) -> Ret {
    call("nvmlInternalGetExportTable[214] graphics processes", || {
        proc_records(d, Kind::Graphics, n, r)
    })
}

unsafe extern "C" fn mps_procs(d: sys::nvmlDevice_t, n: *mut c_uint, r: *mut ProcRecord) -> Ret {
    call("nvmlInternalGetExportTable[215] MPS processes", || {
        proc_records(d, Kind::Mps, n, r)
    })
}
