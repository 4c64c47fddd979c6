//! nvidia-smi's private export table (`nvmlInternalGetExportTable`), where stock nvidia-smi 535
//! reads its bus ids and process lists: it never calls the public process-list functions.
//!
//! When the driver's table for nvidia-smi's UUID has the 535 layout (slot 0, the table's size,
//! is 0x7a8), nvidia-smi gets a copy of it, taken once, whose index-based and process-list
//! slots follow the view. Any other layout is handed over unchanged, since its slot numbers
//! may mean something else: nvidia-smi then sees the whole machine, and a debug log line says so.

use std::ffi::{c_char, c_uint};
use std::sync::OnceLock;

use super::procs::{filtered, ListFn};
use super::*;

/// The table nvidia-smi asks for: c4fe3e6c-c98f-6c4e-a327-ee696e12f7c4.
const SMI_TABLE_UUID: [u8; 16] = [
    0xc4, 0xfe, 0x3e, 0x6c, 0xc9, 0x8f, 0x6c, 0x4e, 0xa3, 0x27, 0xee, 0x69, 0x6e, 0x12, 0xf7, 0xc4,
];
/// Slot 0 of the 535 table: 245 pointer-sized slots.
const LAYOUT_535_SIZE: usize = 0x7a8;
const SLOTS: usize = LAYOUT_535_SIZE / std::mem::size_of::<usize>();

/// Slot 12, `(const char *busId, u32 *domain, u32 *bus, u32 *device, u32 *function)`, stays the
/// driver's: it only parses the string. For `-i <bus id>` nvidia-smi parses the user's string
/// with it for each index it enumerates, then compares with slot 75's answer for that index;
/// slot 75 following the view is what keeps other GPUs out (refusing in 12 would make nvidia-smi
/// report a malformed bus id instead of no device).
/// `(u32 index, u32 *domain, u32 *bus, u32 *device)`
const SLOT_BUS_BY_INDEX: usize = 75;
/// `(u32 index, char *buf, u32 len)`: `"%04X:%02X:%02X.0"` of NVML index `index`.
const SLOT_BUS_ID_BY_INDEX: usize = 81;
/// `(nvmlDevice_t, u32 *count, record *buf)`: compute, graphics, MPS processes.
const SLOT_COMPUTE: usize = 213;
const SLOT_GRAPHICS: usize = 214;
const SLOT_MPS: usize = 215;
/// Size of one record of slots 213-215.
const PROC_RECORD: usize = 0x1020;

type BusFn = unsafe extern "C" fn(c_uint, *mut c_uint, *mut c_uint, *mut c_uint) -> Ret;
type BusIdFn = unsafe extern "C" fn(c_uint, *mut c_char, c_uint) -> Ret;

/// The driver's table as it was, and ours.
struct Tables {
    real: [usize; SLOTS],
    ours: Box<[usize; SLOTS]>,
}

static TABLES: OnceLock<Tables> = OnceLock::new();

real_fn! {
    real_export_table = c"nvmlInternalGetExportTable": fn(*mut *const c_void, *const [u8; 16]);
}

pub(super) fn wrapper() -> *mut c_void {
    get_export_table as unsafe extern "C" fn(_, _) -> _ as *mut c_void
}

unsafe extern "C" fn get_export_table(table: *mut *const c_void, uuid: *const [u8; 16]) -> Ret {
    guard(|| {
        let r = match real_export_table() {
            Ok(f) => f(table, uuid),
            Err(e) => return e,
        };
        if r != SUCCESS || table.is_null() || uuid.is_null() || (*table).is_null() {
            return r;
        }
        if uuid.read_unaligned() != SMI_TABLE_UUID {
            return r;
        }
        let real = *table as *const usize;
        let size = real.read_unaligned();
        if size != LAYOUT_535_SIZE {
            log_unknown_layout(size);
            return r;
        }
        let t = TABLES.get_or_init(|| copy(real));
        *table = t.ours.as_ptr() as *const c_void;
        SUCCESS
    })
}

fn log_unknown_layout(size: usize) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        crate::debug!(
            "nvml: nvidia-smi's export table has size {size:#x}, not 535's {LAYOUT_535_SIZE:#x}: \
             passed through unchanged, so nvidia-smi shows every GPU and process"
        )
    });
}

/// Copies the driver's 535 table and points the slots that need the view at our wrappers
/// (a slot the driver left NULL stays NULL: nvidia-smi checks before calling).
unsafe fn copy(real: *const usize) -> Tables {
    let mut t = Tables {
        real: [0; SLOTS],
        ours: Box::new([0; SLOTS]),
    };
    for i in 0..SLOTS {
        t.real[i] = real.add(i).read_unaligned();
    }
    *t.ours = t.real;
    let ours: [(usize, usize); 5] = [
        (SLOT_BUS_BY_INDEX, bus_by_index as BusFn as usize),
        (SLOT_BUS_ID_BY_INDEX, bus_id_by_index as BusIdFn as usize),
        (SLOT_COMPUTE, compute as ListFn as usize),
        (SLOT_GRAPHICS, graphics as ListFn as usize),
        (SLOT_MPS, mps as ListFn as usize),
    ];
    for (slot, f) in ours {
        if t.real[slot] != 0 {
            t.ours[slot] = f;
        }
    }
    t
}

/// The driver's function in `slot` (set, since ours is only installed over a non-NULL one).
unsafe fn real_slot<F: Copy>(slot: usize) -> Option<F> {
    let a = TABLES.get()?.real[slot];
    (a != 0).then(|| std::mem::transmute_copy::<usize, F>(&a))
}

unsafe extern "C" fn bus_id_by_index(index: c_uint, buf: *mut c_char, len: c_uint) -> Ret {
    guard(|| {
        let Some(f) = real_slot::<BusIdFn>(SLOT_BUS_ID_BY_INDEX) else {
            return UNKNOWN;
        };
        if !in_env() {
            return f(index, buf, len);
        }
        match host_of_virtual(index) {
            Some(host) => f(host, buf, len),
            None => INVALID_ARGUMENT,
        }
    })
}

unsafe extern "C" fn bus_by_index(
    index: c_uint,
    domain: *mut c_uint,
    bus: *mut c_uint,
    device: *mut c_uint,
) -> Ret {
    guard(|| {
        let Some(f) = real_slot::<BusFn>(SLOT_BUS_BY_INDEX) else {
            return UNKNOWN;
        };
        if !in_env() {
            return f(index, domain, bus, device);
        }
        match host_of_virtual(index) {
            Some(host) => f(host, domain, bus, device),
            None => INVALID_ARGUMENT,
        }
    })
}

unsafe extern "C" fn compute(dev: Device, count: *mut c_uint, out: *mut u8) -> Ret {
    procs_slot(SLOT_COMPUTE, dev, count, out)
}

unsafe extern "C" fn graphics(dev: Device, count: *mut c_uint, out: *mut u8) -> Ret {
    procs_slot(SLOT_GRAPHICS, dev, count, out)
}

unsafe extern "C" fn mps(dev: Device, count: *mut c_uint, out: *mut u8) -> Ret {
    procs_slot(SLOT_MPS, dev, count, out)
}

unsafe fn procs_slot(slot: usize, dev: Device, count: *mut c_uint, out: *mut u8) -> Ret {
    guard(|| match real_slot::<ListFn>(slot) {
        Some(f) => filtered(|n, b| f(dev, n, b), dev, count, out, PROC_RECORD),
        None => UNKNOWN,
    })
}
