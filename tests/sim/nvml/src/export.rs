//! `nvmlInternalGetExportTable`: the private table stock nvidia-smi reads its bus ids and (from
//! 525 on) its process lists from; it never calls the public *RunningProcesses functions then.
//!
//! The table is the played generation's (`GENV_SIM_DRIVER`, see `genv_abi::nvml::export`): its
//! size in slot 0, and the slots nvidia-smi was seen to use filled where the table reaches them
//! (12, 75, 81; 213-215 writing the generation's records). nvidia-smi checks the size and each
//! slot for NULL before calling, so the rest stay NULL. Every filled slot writes all of its
//! outputs whenever it returns success.
//!
//! Made-up layouts, for the shim's path for drivers nobody has measured:
//! `GENV_SIM_EXPORT_SIZE` (bytes, `0x820` or decimal) sets the table's size and
//! `GENV_SIM_EXPORT_RECORD` the process record's (its name in the last 4096 bytes). A table
//! larger than its generation's also serves the compute processes, unfiltered, from its last
//! slot: a newer driver may list processes in a slot no one has measured.

use std::ffi::{c_char, c_uint, c_void};
use std::sync::OnceLock;

use genv_abi::nvml::export::*;
use genv_sim_common::{normalize_bus_id, ProcUsage};

use crate::procs::{list_with, Kind, NO_INSTANCE};
use crate::*;

type ProcSlot = unsafe extern "C" fn(sys::nvmlDevice_t, *mut c_uint, *mut u8) -> Ret;
type HandleByIndex = unsafe extern "C" fn(c_uint, *mut sys::nvmlDevice_t) -> Ret;

/// The table served, made once per process.
struct Table {
    slots: Vec<usize>,
    record: Option<Record>,
}

fn size_var(name: &str) -> Option<usize> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => usize::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let g = machine().driver;
        // Bounded so that a made-up size cannot make the table absurd.
        let size = size_var("GENV_SIM_EXPORT_SIZE")
            .unwrap_or(g.size)
            .clamp(SLOT, 0x10000);
        let n = size.div_ceil(SLOT);
        let record = match size_var("GENV_SIM_EXPORT_RECORD") {
            Some(r) => Record::ending_in_name(r),
            None => g.record.or(Some(RECORD_535)),
        };
        let mut t = vec![0usize; n];
        t[0] = size;
        let mut set = |slot: usize, f: usize| {
            // nvidia-smi calls slot N only when the size covers it.
            if (slot + 1) * SLOT <= size {
                t[slot] = f;
            }
        };
        set(
            SLOT_PARSE_BUS_ID,
            parse_bus_id as unsafe extern "C" fn(_, _, _, _, _) -> Ret as usize,
        );
        set(
            SLOT_BUS_BY_INDEX,
            bus_by_index as unsafe extern "C" fn(_, _, _, _) -> Ret as usize,
        );
        set(
            SLOT_BUS_ID_BY_INDEX,
            bus_id_by_index as unsafe extern "C" fn(_, _, _) -> Ret as usize,
        );
        if record.is_some() && (g.record.is_some() || n > g.slots()) {
            set(SLOT_COMPUTE_PROCS, compute_procs as ProcSlot as usize);
            set(SLOT_GRAPHICS_PROCS, graphics_procs as ProcSlot as usize);
            set(SLOT_MPS_PROCS, mps_procs as ProcSlot as usize);
        }
        if n > g.slots() && n - 1 > SLOT_MPS_PROCS && record.is_some() {
            set(n - 1, moved_procs as ProcSlot as usize);
        }
        Table { slots: t, record }
    })
}

nvml! {
    fn nvmlInternalGetExportTable(table: *mut *const c_void, uuid: *const [u8; 16]) {
        if table.is_null() || uuid.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        if uuid.read_unaligned() != SMI_TABLE_UUID {
            // Other private tables are not simulated.
            return Err(NOT_SUPPORTED);
        }
        out(table, crate::export::table().slots.as_ptr() as *const c_void)
    }
}

/// The device of NVML index `index`, found as the real slots find it: through
/// `nvmlDeviceGetHandleByIndex_v2` as the global scope binds it (see `crate::global`).
unsafe fn device_of_index(index: c_uint) -> Result<&'static Gpu, Ret> {
    static F: OnceLock<usize> = OnceLock::new();
    let f = *F.get_or_init(|| global(c"nvmlDeviceGetHandleByIndex_v2") as usize);
    if f == 0 {
        initialized()?;
        return machine().gpus.get(index as usize).ok_or(INVALID_ARGUMENT);
    }
    // SAFETY: the address of nvmlDeviceGetHandleByIndex_v2, whatever library defines it.
    let f = std::mem::transmute::<usize, HandleByIndex>(f);
    let mut h: sys::nvmlDevice_t = std::ptr::null_mut();
    match f(index, &mut h) {
        SUCCESS => crate::device(h),
        e => Err(e),
    }
}

unsafe extern "C" fn bus_id_by_index(index: c_uint, buf: *mut c_char, len: c_uint) -> Ret {
    call("nvmlInternalGetExportTable[81] bus id", || {
        let g = device_of_index(index)?;
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
        let g = device_of_index(index)?;
        nonnull(&[domain as *const c_uint, bus, device])?;
        out(domain, g.pci_domain)?;
        out(bus, g.pci_bus)?;
        out(device, g.pci_device)
    })
}

/// Writes process `p` as record `i` of the table's layout.
unsafe fn write_record(buf: *mut u8, r: Record, i: usize, p: &ProcUsage) {
    let rec = buf.add(i * r.size);
    std::ptr::write_bytes(rec, 0, r.size);
    rec.add(RECORD_PID).cast::<u32>().write_unaligned(p.pid);
    rec.add(RECORD_USED).cast::<u64>().write_unaligned(p.used);
    rec.add(RECORD_GPU_INSTANCE)
        .cast::<u32>()
        .write_unaligned(NO_INSTANCE);
    rec.add(RECORD_COMPUTE_INSTANCE)
        .cast::<u32>()
        .write_unaligned(NO_INSTANCE);
    // A process that has just exited has no name and is skipped by nvidia-smi.
    let name = process_name(p.pid).unwrap_or_default();
    let field = std::slice::from_raw_parts_mut(rec.add(r.name) as *mut c_char, NAME_LEN);
    fill_field(field, &name);
}

unsafe fn proc_records(
    device: sys::nvmlDevice_t,
    kind: Kind,
    count: *mut c_uint,
    buf: *mut u8,
) -> Result<(), Ret> {
    let r = table().record.ok_or(NOT_SUPPORTED)?;
    // NVML's sizing protocol, as for the public process lists.
    list_with(device, kind, count, buf.is_null(), |i, p| {
        write_record(buf, r, i, p)
    })
}

unsafe extern "C" fn compute_procs(d: sys::nvmlDevice_t, n: *mut c_uint, r: *mut u8) -> Ret {
    call("nvmlInternalGetExportTable[213] compute processes", || {
        proc_records(d, Kind::Compute, n, r)
    })
}

unsafe extern "C" fn graphics_procs(d: sys::nvmlDevice_t, n: *mut c_uint, r: *mut u8) -> Ret {
    call("nvmlInternalGetExportTable[214] graphics processes", || {
        proc_records(d, Kind::Graphics, n, r)
    })
}

unsafe extern "C" fn mps_procs(d: sys::nvmlDevice_t, n: *mut c_uint, r: *mut u8) -> Ret {
    call("nvmlInternalGetExportTable[215] MPS processes", || {
        proc_records(d, Kind::Mps, n, r)
    })
}

unsafe extern "C" fn moved_procs(d: sys::nvmlDevice_t, n: *mut c_uint, r: *mut u8) -> Ret {
    call("nvmlInternalGetExportTable[last] compute processes", || {
        proc_records(d, Kind::Compute, n, r)
    })
}
