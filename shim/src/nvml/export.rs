//! nvidia-smi's private export table (`nvmlInternalGetExportTable`), where stock nvidia-smi 535
//! reads its bus ids and process lists: it never calls the public process-list functions.
//!
//! When the driver's table for nvidia-smi's UUID has the 535 layout (slot 0, the table's size,
//! is 0x7a8), nvidia-smi gets a copy of it, taken once, whose index-based and process-list
//! slots follow the view. Any other layout is handed over unchanged, since its slot numbers
//! may mean something else: nvidia-smi then sees the whole machine, and a debug log line says so.

use std::ffi::{c_char, c_uint};
use std::sync::OnceLock;

use super::procs::filtered;
use super::*;
use genv_abi::nvml::export::*;

/// Slot 12 (`SLOT_PARSE_BUS_ID`) stays the driver's: it only parses the string. For
/// `-i <bus id>` nvidia-smi parses the user's string with it for each index it enumerates, then
/// compares with slot 75's answer for that index; slot 75 following the view is what keeps other
/// GPUs out (refusing in 12 would make nvidia-smi report a malformed bus id instead of no
/// device).
const SLOTS: usize = SLOTS_535;

/// The signature of the process-list slots (the record type is opaque here).
type ListFn = unsafe extern "C" fn(Device, *mut c_uint, *mut u8) -> Ret;
type BusFn = unsafe extern "C" fn(c_uint, *mut c_uint, *mut c_uint, *mut c_uint) -> Ret;
type BusIdFn = unsafe extern "C" fn(c_uint, *mut c_char, c_uint) -> Ret;

/// The driver's table as it was, and ours.
struct Tables {
    real: [usize; SLOTS],
    ours: Box<[usize; SLOTS]>,
}

static TABLES: OnceLock<Tables> = OnceLock::new();

/// After the real `nvmlInternalGetExportTable` answered `r` and `*table`: nvidia-smi's table of
/// the 535 layout is replaced by our copy.
///
/// # Safety
/// The arguments as `nvmlInternalGetExportTable` takes them.
pub(super) unsafe fn get(r: Ret, table: *mut *const c_void, uuid: *const [u8; 16]) -> Ret {
    // SAFETY: the caller's pointers; the driver wrote `*table` on success, and a table starts
    // with its size in bytes.
    unsafe {
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
    }
    SUCCESS
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
///
/// # Safety
/// `real` points at the driver's table of the 535 layout ([`SLOTS`] pointer-sized slots).
unsafe fn copy(real: *const usize) -> Tables {
    let mut t = Tables {
        real: [0; SLOTS],
        ours: Box::new([0; SLOTS]),
    };
    for i in 0..SLOTS {
        // SAFETY: inside the table (see above); it need not be aligned.
        t.real[i] = unsafe { real.add(i).read_unaligned() };
    }
    *t.ours = t.real;
    let ours: [(usize, usize); 5] = [
        (SLOT_BUS_BY_INDEX, bus_by_index as BusFn as usize),
        (SLOT_BUS_ID_BY_INDEX, bus_id_by_index as BusIdFn as usize),
        (
            SLOT_COMPUTE_PROCS,
            procs_slot::<SLOT_COMPUTE_PROCS> as ListFn as usize,
        ),
        (
            SLOT_GRAPHICS_PROCS,
            procs_slot::<SLOT_GRAPHICS_PROCS> as ListFn as usize,
        ),
        (
            SLOT_MPS_PROCS,
            procs_slot::<SLOT_MPS_PROCS> as ListFn as usize,
        ),
    ];
    for (slot, f) in ours {
        if t.real[slot] != 0 {
            t.ours[slot] = f;
        }
    }
    t
}

/// The driver's function in `slot` (set, since ours is only installed over a non-NULL one).
///
/// # Safety
/// `F` must be the C type of the driver's function in `slot`.
unsafe fn real_slot<F: Copy>(slot: usize) -> Option<F> {
    let a = TABLES.get()?.real[slot];
    // SAFETY: a non-NULL function address of that type (see above).
    (a != 0).then(|| unsafe { std::mem::transmute_copy::<usize, F>(&a) })
}

/// Slot 81: the bus id string of a virtual index.
unsafe extern "C" fn bus_id_by_index(index: c_uint, buf: *mut c_char, len: c_uint) -> Ret {
    real::guard(ERROR_UNKNOWN, || {
        // SAFETY: slot 81's C type; the caller's arguments go to the driver's function, with
        // the host index in place of the virtual one.
        unsafe {
            let Some(f) = real_slot::<BusIdFn>(SLOT_BUS_ID_BY_INDEX) else {
                return ERROR_UNKNOWN;
            };
            match in_env().then(|| host_of_virtual(index)) {
                None => f(index, buf, len),
                Some(Some(host)) => f(host, buf, len),
                Some(None) => ERROR_INVALID_ARGUMENT,
            }
        }
    })
}

/// Slot 75: the bus numbers of a virtual index.
unsafe extern "C" fn bus_by_index(
    index: c_uint,
    domain: *mut c_uint,
    bus: *mut c_uint,
    device: *mut c_uint,
) -> Ret {
    real::guard(ERROR_UNKNOWN, || {
        // SAFETY: as in `bus_id_by_index`, for slot 75's C type.
        unsafe {
            let Some(f) = real_slot::<BusFn>(SLOT_BUS_BY_INDEX) else {
                return ERROR_UNKNOWN;
            };
            match in_env().then(|| host_of_virtual(index)) {
                None => f(index, domain, bus, device),
                Some(Some(host)) => f(host, domain, bus, device),
                Some(None) => ERROR_INVALID_ARGUMENT,
            }
        }
    })
}

/// Slots 213-215: the environment's processes only.
unsafe extern "C" fn procs_slot<const SLOT: usize>(
    dev: Device,
    count: *mut c_uint,
    out: *mut u8,
) -> Ret {
    real::guard(ERROR_UNKNOWN, || {
        // SAFETY: the process-list slots' C type; the caller's arguments, as the driver's
        // function takes them.
        unsafe {
            match real_slot::<ListFn>(SLOT) {
                Some(f) => filtered(|n, b| f(dev, n, b), dev, count, out, PROC_RECORD_SIZE),
                None => ERROR_UNKNOWN,
            }
        }
    })
}
