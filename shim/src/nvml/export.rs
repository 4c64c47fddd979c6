//! nvidia-smi's private export table (`nvmlInternalGetExportTable`), where stock nvidia-smi
//! reads its bus ids and (from 525 on) its process lists: it never calls the public
//! process-list functions then.
//!
//! nvidia-smi gets a copy of the driver's table, taken once, read as `genv_abi`'s
//! `Layout::of(size)` says (the one table of per-generation knowledge):
//! - a measured size (470, 525, 535, 550, 555) is that generation's table: copied whole, at
//!   its size, with the index-based slots (75, 81) and the process lists (213-215, records of
//!   that generation's layout) following the view;
//! - any other size is read as the newest measured generation whose table is not larger, and
//!   only as far as that one goes: the slots it leaves NULL or does not have are NULL in the
//!   copy (nvidia-smi skips NULL slots), so no slot whose meaning nobody measured reaches
//!   nvidia-smi. Its process records are used only when every record the driver wrote checks
//!   out against `/proc` (`plausible`); otherwise nvidia-smi is shown no process at all.
//!
//! A debug log line says which, once; another says whether unmeasured records checked out.

use std::ffi::{c_char, c_uint};
use std::sync::{Once, OnceLock};

use super::procs::{filter_records, Check, Rec};
use super::*;
use genv_abi::nvml::export::*;

// Slot 12 (`SLOT_PARSE_BUS_ID`) stays the driver's: it only parses the string. For
// `-i <bus id>` nvidia-smi parses the user's string with it for each index it enumerates, then
// compares with slot 75's answer for that index; slot 75 following the view is what keeps other
// GPUs out (refusing in 12 would make nvidia-smi report a malformed bus id instead of no
// device).

/// The signature of the process-list slots (the record type is opaque here).
type ListFn = unsafe extern "C" fn(Device, *mut c_uint, *mut u8) -> Ret;
type BusFn = unsafe extern "C" fn(c_uint, *mut c_uint, *mut c_uint, *mut c_uint) -> Ret;
type BusIdFn = unsafe extern "C" fn(c_uint, *mut c_char, c_uint) -> Ret;

/// The driver's table as it was, how it is read, and the copy nvidia-smi gets.
struct Tables {
    layout: Layout,
    real: Box<[usize]>,
    ours: Box<[usize]>,
}

static TABLES: OnceLock<Tables> = OnceLock::new();

/// After the real `nvmlInternalGetExportTable` answered `r` and `*table`: nvidia-smi's table is
/// replaced by our copy.
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
        let t = TABLES.get_or_init(|| copy(real));
        *table = t.ours.as_ptr() as *const c_void;
    }
    SUCCESS
}

/// Copies the driver's table as its layout says and points the slots that need the view at
/// our wrappers (a slot the driver left NULL stays NULL: nvidia-smi checks before calling).
///
/// # Safety
/// `real` points at the driver's table, whose slot 0 is its size in bytes.
unsafe fn copy(real: *const usize) -> Tables {
    // SAFETY: slot 0 is always there; it need not be aligned.
    let size = unsafe { real.read_unaligned() };
    let layout = Layout::of(size);
    let n = layout.slots.max(1);
    // SAFETY: `n` slots lie within the driver's table (`Layout::slots` never passes its size;
    // slot 0 is there in any case).
    let real: Box<[usize]> = (0..n)
        .map(|i| unsafe { real.add(i).read_unaligned() })
        .collect();
    let mut ours: Box<[usize]> = (0..n)
        .map(|i| if layout.keeps(i) { real[i] } else { 0 })
        .collect();
    ours[0] = n * SLOT;
    // Ours only over a slot the copy keeps and the driver fills.
    fn wrap(ours: &mut [usize], slot: usize, f: usize) {
        if let Some(s) = ours.get_mut(slot).filter(|s| **s != 0) {
            *s = f;
        }
    }
    wrap(&mut ours, SLOT_BUS_BY_INDEX, bus_by_index as BusFn as usize);
    wrap(
        &mut ours,
        SLOT_BUS_ID_BY_INDEX,
        bus_id_by_index as BusIdFn as usize,
    );
    let lists: [(usize, ListFn); 3] = [
        (SLOT_COMPUTE_PROCS, procs_slot::<SLOT_COMPUTE_PROCS>),
        (SLOT_GRAPHICS_PROCS, procs_slot::<SLOT_GRAPHICS_PROCS>),
        (SLOT_MPS_PROCS, procs_slot::<SLOT_MPS_PROCS>),
    ];
    for (slot, f) in lists {
        match layout.record_of(slot) {
            Some(_) => wrap(&mut ours, slot, f as usize),
            // A process list whose records we do not know is not handed over.
            None => wrap(&mut ours, slot, 0),
        }
    }
    let g = layout.generation;
    if layout.exact {
        crate::debug!(
            "nvml: nvidia-smi's export table has size {size:#x}: driver {}'s layout",
            g.major
        );
    } else {
        crate::debug!(
            "nvml: nvidia-smi's export table has size {size:#x}, which no measured driver has: \
             served as {}'s ({n} slots; slots it leaves NULL or lacks are NULL), process \
             records checked against /proc before any is shown",
            g.major
        );
    }
    Tables { layout, real, ours }
}

/// The driver's function in `slot` (set, since ours is only installed over a non-NULL one).
///
/// # Safety
/// `F` must be the C type of the driver's function in `slot`.
unsafe fn real_slot<F: Copy>(slot: usize) -> Option<F> {
    let a = *TABLES.get()?.real.get(slot)?;
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
            let (Some(t), Some(f)) = (TABLES.get(), real_slot::<ListFn>(SLOT)) else {
                return ERROR_UNKNOWN;
            };
            let Some(record) = t.layout.record_of(SLOT) else {
                return ERROR_UNKNOWN;
            };
            let check = if t.layout.exact {
                Check::Trusted
            } else {
                Check::Unmeasured(record.name, checked)
            };
            filter_records(
                |n, b| f(dev, n, b),
                dev,
                count,
                out,
                Rec::list(record.size),
                check,
            )
        }
    })
}

/// Said once each: whether the records of a table nobody measured checked out.
fn checked(ok: bool) {
    static GOOD: Once = Once::new();
    static BAD: Once = Once::new();
    if ok {
        GOOD.call_once(|| {
            crate::debug!(
                "nvml: the unmeasured export table's process records check out: shown, \
                 the environment's only"
            )
        });
    } else {
        BAD.call_once(|| {
            crate::debug!(
                "nvml: the unmeasured export table's process records do not check out (a \
                 layout we do not know, or a process that just ended): no process shown"
            )
        });
    }
}
