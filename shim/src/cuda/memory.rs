//! The capacity on allocation: the one path every allocation takes ([`alloc_with`]), the
//! per-process records of what each allocation reserved, and linear memory (plain, pitched,
//! managed).
//!
//! Every allocation reserves its bytes in the ledger (atomically, against the environment's
//! capacity on that device) *before* calling the driver, and gives them back if the driver
//! fails. Over the capacity the answer is `CUDA_ERROR_OUT_OF_MEMORY` and the driver is not
//! called. The size of each allocation is kept per pointer / handle in this process (sharded
//! maps: no global lock, and no lock held across a driver call) and given back when it is
//! freed; frees of pointers the shim never saw go to the driver unchanged.

use super::*;

/// What an allocation reserved: bytes on a device, through a registration ([`Ticket`]).
#[derive(Clone, Copy)]
pub(super) struct Entry {
    pub bytes: u64,
    pub host: u32,
    pub ticket: usize,
}

impl Entry {
    pub fn release(self) {
        // SAFETY: tickets come from View::reserve.
        ledger::release(
            unsafe { Ticket::from_bits(self.ticket) },
            self.host,
            self.bytes,
        );
    }
}

/// Folded multiply: device pointers are aligned, so their low bits carry nothing.
#[derive(Default)]
struct PtrHasher(u64);

impl Hasher for PtrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(*b as u64 ^ self.0.rotate_left(8));
        }
    }
    fn write_u64(&mut self, k: u64) {
        let m = (k as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }
}

type Shard = Mutex<HashMap<u64, Entry, BuildHasherDefault<PtrHasher>>>;
/// Shards of a [`Map`]: enough that allocating threads rarely meet on one.
const SHARDS: usize = 64;
/// The top bits of the hash pick the shard (64 = 2^6).
const SHARD_SHIFT: u32 = 64 - 6;

/// A map sharded by key, so that threads allocating at once rarely meet on a lock. The locks
/// are held only for the map operation itself, never across a driver call.
pub(super) struct Map {
    shards: Vec<Shard>,
}

impl Map {
    pub fn new() -> Map {
        Map {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
    fn shard(
        &self,
        k: u64,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, Entry, BuildHasherDefault<PtrHasher>>> {
        let mut h = PtrHasher::default();
        h.write_u64(k);
        let i = (h.finish() >> SHARD_SHIFT) as usize % SHARDS;
        lock(&self.shards[i])
    }
    pub fn insert(&self, k: u64, e: Entry) {
        if let Some(old) = self.shard(k).insert(k, e) {
            // The driver reused a key we still held: it was freed behind our back (a path we do
            // not see); give its reservation back rather than leak it.
            old.release();
        }
    }
    pub fn remove(&self, k: u64) -> Option<Entry> {
        self.shard(k).remove(&k)
    }
}

/// A per-process object created on first use and replaced (never touched again) in a forked
/// child, whose copies of the parent's locks may be held by threads that do not exist there.
pub(super) struct Fresh<T> {
    p: AtomicPtr<T>,
    make: fn() -> T,
}

impl<T> Fresh<T> {
    pub const fn new(make: fn() -> T) -> Self {
        Fresh {
            p: AtomicPtr::new(std::ptr::null_mut()),
            make,
        }
    }
    pub fn get(&self) -> &T {
        let p = self.p.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: published objects are leaked, never freed.
            return unsafe { &*p };
        }
        let n = Box::into_raw(Box::new((self.make)()));
        match self
            .p
            .compare_exchange(std::ptr::null_mut(), n, Ordering::AcqRel, Ordering::Acquire)
        {
            // SAFETY: as above.
            Ok(_) => unsafe { &*n },
            Err(cur) => {
                // SAFETY: ours, never published; `cur` is published, hence leaked.
                drop(unsafe { Box::from_raw(n) });
                unsafe { &*cur }
            }
        }
    }
    pub fn forget(&self) {
        self.p.store(std::ptr::null_mut(), Ordering::Release);
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Linear allocations by device address (plain, pitched, managed, stream-ordered, pool).
pub(super) static PTRS: Fresh<Map> = Fresh::new(Map::new);

/// Whether this process ever recorded an allocation: until then frees pass straight through
/// (one load). Frees do not ask the current view, since memory reserved in an environment the
/// process has left must still go back to it.
static TRACKING: AtomicBool = AtomicBool::new(false);

pub(super) fn tracking() -> bool {
    TRACKING.load(Ordering::Relaxed)
}

fn track() {
    if !TRACKING.load(Ordering::Relaxed) {
        TRACKING.store(true, Ordering::Relaxed);
    }
}

/// The one allocation path: reserve `bytes` on the device `host()` names (refusing a device
/// outside the environment), run the allocation, and hand what was reserved to `record`; give
/// the reservation back if the driver fails. Outside an environment: just the call.
pub(super) fn alloc_with(
    bytes: u64,
    host: impl FnOnce(&View) -> Result<u32, CUresult>,
    call: impl FnOnce() -> CUresult,
    record: impl FnOnce(Entry),
) -> CUresult {
    let Some(v) = view::get() else {
        return call();
    };
    let host = match host(v) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let ticket = match v.reserve(host, bytes) {
        Ok(t) => t,
        Err(_) => return CUDA_ERROR_OUT_OF_MEMORY,
    };
    let r = call();
    if r != CUDA_SUCCESS {
        ledger::release(ticket, host, bytes);
        return r;
    }
    track();
    record(Entry {
        bytes,
        host,
        ticket: ticket.to_bits(),
    });
    r
}

/// [`alloc_with`] recorded in `map` under `key()` (read once the driver succeeded).
pub(super) fn alloc_in(
    map: &Fresh<Map>,
    bytes: u64,
    host: impl FnOnce(&View) -> Result<u32, CUresult>,
    call: impl FnOnce() -> CUresult,
    key: impl FnOnce() -> u64,
) -> CUresult {
    alloc_with(bytes, host, call, |e| map.get().insert(key(), e))
}

/// A linear allocation on the current context's device.
pub(super) fn alloc(
    bytes: u64,
    call: impl FnOnce() -> CUresult,
    key: impl FnOnce() -> u64,
) -> CUresult {
    alloc_in(&PTRS, bytes, devices::current_host, call, key)
}

/// Forget `key` before the free (so a reuse of the address by another thread cannot be
/// confused with it), run the free, and give the bytes back once the driver has freed them
/// (or put the record back if it refused). Keys never recorded: the driver's call alone.
pub(super) fn free_in(map: &Fresh<Map>, key: u64, call: impl FnOnce() -> CUresult) -> CUresult {
    if !tracking() {
        return call();
    }
    let m = map.get();
    let e = m.remove(key);
    let r = call();
    if let Some(e) = e {
        if r == CUDA_SUCCESS {
            e.release();
        } else {
            m.insert(key, e);
        }
    }
    r
}

/// A free of linear memory (plain, or stream-ordered: a stream-ordered free gives the bytes
/// back when it is enqueued; the pool may keep the memory cached for reuse, but it is no longer
/// the program's).
pub(super) fn free(key: u64, call: impl FnOnce() -> CUresult) -> CUresult {
    free_in(&PTRS, key, call)
}

/// The driver's usual pitch alignment: pitched rows are reserved padded to it.
const PITCH_ALIGN: u64 = 512;

/// Pitched allocations: the pitch is the driver's choice, so reserve rows padded to
/// [`PITCH_ALIGN`], then settle the difference with the pitch it chose (`result` reads the
/// pointer and pitch the driver wrote).
pub(super) fn pitched(
    width: u64,
    height: u64,
    call: impl FnOnce() -> CUresult,
    result: impl Fn() -> (u64, u64),
) -> CUresult {
    let est = width.saturating_add(PITCH_ALIGN - 1) & !(PITCH_ALIGN - 1);
    let est = est.saturating_mul(height);
    let mut got = None;
    let r = alloc(est, call, || {
        let (p, pitch) = result();
        got = Some((p, pitch));
        p
    });
    let (Some((p, pitch)), Some(v)) = (got, view::get()) else {
        return r;
    };
    let actual = pitch.saturating_mul(height);
    if actual == est {
        return r;
    }
    // Re-record under the actual size.
    let m = PTRS.get();
    let Some(e) = m.remove(p) else {
        return r;
    };
    // SAFETY: tickets come from View::reserve.
    let ticket = unsafe { Ticket::from_bits(e.ticket) };
    if actual < est {
        ledger::release(ticket, e.host, est - actual);
        m.insert(p, Entry { bytes: actual, ..e });
        return r;
    }
    if v.reserve_more(ticket, e.host, actual - est) {
        m.insert(p, Entry { bytes: actual, ..e });
        return r;
    }
    // The driver took more than the capacity allows: undo.
    m.insert(p, e);
    // SAFETY: the pointer the driver just gave us.
    free(p, || unsafe { cuMemFree_v2(p) });
    CUDA_ERROR_OUT_OF_MEMORY
}
