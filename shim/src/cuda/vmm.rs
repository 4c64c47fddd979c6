//! Virtual memory management (`cuMemCreate` / `cuMemMap` / `cuMemRelease`): a physical
//! allocation is counted from `cuMemCreate` (through the one allocation path) until its last
//! reference goes — the handle and each mapping of it — since programs release the handle right
//! after mapping it (PyTorch's expandable segments).

use super::*;

/// VMM physical allocations: reservation and references (the handle plus each mapping).
#[derive(Default)]
struct Vmm {
    handles: HashMap<u64, (Entry, u32)>,
    /// Mapped address -> (size, handle).
    maps: BTreeMap<u64, (u64, u64)>,
}
static VMM: Fresh<Mutex<Vmm>> = Fresh::new(|| Mutex::new(Vmm::default()));

pub(super) fn after_fork_child() {
    VMM.forget();
}

/// Drops one reference of VMM allocation `h`; returns its reservation when it was the last.
fn unref(vmm: &mut Vmm, h: u64) -> Option<Entry> {
    let (_, refs) = vmm.handles.get_mut(&h)?;
    *refs = refs.saturating_sub(1);
    if *refs == 0 {
        vmm.handles.remove(&h).map(|(e, _)| e)
    } else {
        None
    }
}

fn add_ref(vmm: &mut Vmm, h: u64) {
    if let Some((_, refs)) = vmm.handles.get_mut(&h) {
        *refs += 1;
    }
}

/// # Safety
/// The arguments as `cuMemCreate` takes them; `call` makes the allocation.
pub(super) unsafe fn create(
    handle: *mut CUmemGenericAllocationHandle,
    size: usize,
    prop: *const CUmemAllocationProp,
    call: impl FnOnce() -> CUresult,
) -> CUresult {
    // Only device memory counts; host (NUMA) allocations and invalid props go to the driver.
    // SAFETY: the caller's props, read as the driver reads them.
    let Some(dev) = (unsafe { prop.as_ref() })
        .filter(|p| p.location.kind == CU_MEM_LOCATION_TYPE_DEVICE)
        .map(|p| p.location.id)
    else {
        return call();
    };
    memory::alloc_with(
        size as u64,
        // A device outside the environment is refused, as every allocation path does.
        |v| devices::host_of(v, dev).ok_or(CUDA_ERROR_OUT_OF_MEMORY),
        call,
        |e| {
            // SAFETY: written by the driver on success.
            let h = unsafe { *handle };
            if let Some((old, _)) = memory::lock(VMM.get()).handles.insert(h, (e, 1)) {
                old.release();
            }
        },
    )
}

/// # Safety
/// `call` releases `handle`.
pub(super) unsafe fn release(handle: u64, call: impl FnOnce() -> CUresult) -> CUresult {
    if !memory::tracking() {
        return call();
    }
    let (snapshot, gone) = {
        let mut g = memory::lock(VMM.get());
        let s = g.handles.get(&handle).copied();
        (s, unref(&mut g, handle))
    };
    let r = call();
    if r == CUDA_SUCCESS {
        if let Some(e) = gone {
            e.release();
        }
    } else if let Some(s) = snapshot {
        // The driver refused: put the reference back as it was.
        let mut g = memory::lock(VMM.get());
        match g.handles.get_mut(&handle) {
            Some(x) => x.1 += 1,
            None => {
                g.handles.insert(handle, s);
            }
        }
    }
    r
}

/// After the real `cuMemMap` answered `r`.
pub(super) fn mapped(r: CUresult, ptr: CUdeviceptr, size: usize, handle: u64) -> CUresult {
    if r == CUDA_SUCCESS && memory::tracking() {
        let mut g = memory::lock(VMM.get());
        if g.handles.contains_key(&handle) {
            add_ref(&mut g, handle);
            g.maps.insert(ptr, (size as u64, handle));
        }
    }
    r
}

/// `call` unmaps `[ptr, ptr + size)`.
pub(super) fn unmap(ptr: CUdeviceptr, size: usize, call: impl FnOnce() -> CUresult) -> CUresult {
    if !memory::tracking() {
        return call();
    }
    let end = ptr.saturating_add(size as u64);
    let inside: Vec<(u64, (u64, u64))> = {
        let mut g = memory::lock(VMM.get());
        let keys: Vec<u64> = g.maps.range(ptr..end).map(|(k, _)| *k).collect();
        keys.into_iter()
            .filter_map(|k| g.maps.remove(&k).map(|m| (k, m)))
            .collect()
    };
    let r = call();
    let mut g = memory::lock(VMM.get());
    if r != CUDA_SUCCESS {
        for (k, m) in inside {
            g.maps.insert(k, m);
        }
        return r;
    }
    let gone: Vec<Entry> = inside
        .iter()
        .filter_map(|(_, (_, h))| unref(&mut g, *h))
        .collect();
    drop(g);
    for e in gone {
        e.release();
    }
    r
}

/// After the real `cuMemRetainAllocationHandle` answered `r`.
///
/// # Safety
/// `handle` as that function takes it.
pub(super) unsafe fn retained(r: CUresult, handle: *mut u64) -> CUresult {
    if r == CUDA_SUCCESS && memory::tracking() && !handle.is_null() {
        // SAFETY: written by the driver on success.
        add_ref(&mut memory::lock(VMM.get()), unsafe { *handle });
    }
    r
}
