//! The CUDA driver inside an environment: which devices a program sees, and the memory capacity.
//!
//! Device view. Before the real `cuInit`, the shim sets the real `CUDA_VISIBLE_DEVICES` to the
//! UUIDs of the environment's GPUs in attach order, so the driver itself sees only them and
//! numbers them 0..n in that order: ordinals, `cuDeviceGetByPCIBusId`, `cuDeviceGetUuid` and
//! every function taking a `CUdevice` need no wrapping, and a GPU outside the environment cannot
//! be reached at all (the driver does not know it). A `CUDA_VISIBLE_DEVICES` the user set inside
//! the environment selects among the environment's GPUs (indices into attach order, or UUIDs),
//! as in a container. The user's value is kept in `GENV_CUDA_VISIBLE_DEVICES_USER` (and ours in
//! `GENV_CUDA_VISIBLE_DEVICES_SET`) so that a child process interprets the user's value again
//! rather than ours. Consequence: the device set is fixed when CUDA initialises, as with the
//! real variable; GPUs attached later are seen by processes that initialise CUDA later.
//!
//! That restriction is made only in a process *started* in its environment. A process started
//! outside one may enter environments itself later (genv.sdk.activate(), see
//! docs/shim.md "In-process activation"), and the real driver reads `CUDA_VISIBLE_DEVICES` once:
//! there the driver keeps every GPU and the shim numbers the current environment's devices
//! itself (`cuDeviceGetCount`, `cuDeviceGet`, `cuDeviceGetByPCIBusId`, context creation refused
//! on other devices), following the view at call time. `cuInit` and context creation re-read
//! `GENV_ENVIRONMENT_ID` (`view::follow`).
//!
//! Capacity. Every allocation path reserves its bytes in the ledger (atomically, against the
//! environment's capacity on that device) *before* calling the driver, and gives them back if the
//! driver fails: `cuMemAlloc(_v2)`, `cuMemAllocPitch(_v2)`, `cuMemAllocManaged`,
//! `cuMemAllocAsync(_ptsz)`, `cuMemAllocFromPoolAsync(_ptsz)`, `cuMemCreate` (VMM), `cuArrayCreate`,
//! `cuArray3DCreate`, `cuMipmappedArrayCreate`. Over the capacity the answer is
//! `CUDA_ERROR_OUT_OF_MEMORY` and the driver is not called. The size of each allocation is kept
//! per pointer / handle in this process (sharded maps: no global lock) and given back when it is
//! freed; frees of pointers the shim never saw go to the driver unchanged. A VMM allocation is
//! given back when its last reference goes (`cuMemRelease` and every `cuMemUnmap` of it), since
//! programs release the handle right after mapping it (PyTorch's expandable segments).
//! `cuMemGetInfo(_v2)` and `cuDeviceTotalMem(_v2)` report total = min(capacity, physical) and
//! free = min(capacity - environment's use, what the device really has free).
//!
//! Every other entry point is the driver's own: `cuGetProcAddress` answers the real pointer for
//! names not wrapped here, so they cost nothing.

#![allow(non_snake_case, clippy::missing_safety_doc)]

use crate::hook::RealFn;
use crate::view::{self, Ticket};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Mutex, OnceLock};

// The variant table shared with the simulated driver: one copy of that knowledge.
#[allow(dead_code)]
#[path = "../../tests/sim/cuda/src/procaddr_table.rs"]
mod procaddr;

pub type CUresult = c_int;
pub type CUdevice = c_int;
pub type CUdeviceptr = u64;
pub type CUstream = *mut c_void;
pub type CUcontext = *mut c_void;

pub const CUDA_SUCCESS: CUresult = 0;
pub const CUDA_ERROR_OUT_OF_MEMORY: CUresult = 2;
pub const CUDA_ERROR_NO_DEVICE: CUresult = 100;
pub const CUDA_ERROR_INVALID_DEVICE: CUresult = 101;
pub const CUDA_ERROR_NOT_FOUND: CUresult = 500;
pub const CUDA_ERROR_UNKNOWN: CUresult = 999;

/// Runs a wrapper's body; a panic must not unwind into the C caller.
fn guard(body: impl FnOnce() -> CUresult) -> CUresult {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(CUDA_ERROR_UNKNOWN)
}

/// The real function behind `$slot` with C signature `fn($args) -> CUresult`; the enclosing
/// wrapper returns CUDA_ERROR_NOT_FOUND when the driver lacks it.
macro_rules! real {
    ($slot:ident as fn($($t:ty),*)) => {
        match $slot.get() {
            // SAFETY: the driver exports this name with this C signature.
            Some(a) => unsafe {
                std::mem::transmute::<usize, unsafe extern "C" fn($($t),*) -> CUresult>(a)
            },
            None => return CUDA_ERROR_NOT_FOUND,
        }
    };
}

/// Declares the real-function slots of the wrapped entry points, and the table from exported
/// name to (wrapper, slot) used by `dlsym` and `cuGetProcAddress`.
macro_rules! wrapped {
    ($($slot:ident = $name:ident;)*) => {
        $(static $slot: RealFn = RealFn::new({
            // SAFETY: a literal without interior NUL.
            unsafe { CStr::from_bytes_with_nul_unchecked(concat!(stringify!($name), "\0").as_bytes()) }
        });)*

        fn table(name: &[u8]) -> Option<(*mut c_void, &'static RealFn)> {
            match name {
                $(n if n == stringify!($name).as_bytes() => Some(($name as *const () as *mut c_void, &$slot)),)*
                _ => None,
            }
        }
    };
}

wrapped! {
    R_INIT = cuInit;
    R_COUNT = cuDeviceGetCount;
    R_DEVICE_GET = cuDeviceGet;
    R_BY_BUS_ID = cuDeviceGetByPCIBusId;
    R_PRIMARY_RETAIN = cuDevicePrimaryCtxRetain;
    R_CTX_CREATE = cuCtxCreate;
    R_CTX_CREATE_V2 = cuCtxCreate_v2;
    R_CTX_CREATE_V3 = cuCtxCreate_v3;
    R_CTX_CREATE_V4 = cuCtxCreate_v4;
    R_TOTAL_V2 = cuDeviceTotalMem_v2;
    R_TOTAL = cuDeviceTotalMem;
    R_INFO_V2 = cuMemGetInfo_v2;
    R_INFO = cuMemGetInfo;
    R_ALLOC_V2 = cuMemAlloc_v2;
    R_ALLOC = cuMemAlloc;
    R_PITCH_V2 = cuMemAllocPitch_v2;
    R_PITCH = cuMemAllocPitch;
    R_FREE_V2 = cuMemFree_v2;
    R_FREE = cuMemFree;
    R_MANAGED = cuMemAllocManaged;
    R_ASYNC = cuMemAllocAsync;
    R_ASYNC_PTSZ = cuMemAllocAsync_ptsz;
    R_POOL_ASYNC = cuMemAllocFromPoolAsync;
    R_POOL_ASYNC_PTSZ = cuMemAllocFromPoolAsync_ptsz;
    R_FREE_ASYNC = cuMemFreeAsync;
    R_FREE_ASYNC_PTSZ = cuMemFreeAsync_ptsz;
    R_POOL_CREATE = cuMemPoolCreate;
    R_POOL_DESTROY = cuMemPoolDestroy;
    R_DEFAULT_POOL = cuDeviceGetDefaultMemPool;
    R_GET_POOL = cuDeviceGetMemPool;
    R_CREATE = cuMemCreate;
    R_RELEASE = cuMemRelease;
    R_MAP = cuMemMap;
    R_UNMAP = cuMemUnmap;
    R_RETAIN = cuMemRetainAllocationHandle;
    R_ARRAY_V2 = cuArrayCreate_v2;
    R_ARRAY = cuArrayCreate;
    R_ARRAY3D_V2 = cuArray3DCreate_v2;
    R_ARRAY3D = cuArray3DCreate;
    R_ARRAY_DESTROY = cuArrayDestroy;
    R_MIPMAP = cuMipmappedArrayCreate;
    R_MIPMAP_DESTROY = cuMipmappedArrayDestroy;
    R_GPA = cuGetProcAddress;
    R_GPA_V2 = cuGetProcAddress_v2;
}

// Helpers the wrappers call; never handed out.
static R_CTX_GET_DEVICE: RealFn = RealFn::new(c"cuCtxGetDevice");
static R_CTX_GET_CURRENT: RealFn = RealFn::new(c"cuCtxGetCurrent");
static R_CTX_PUSH: RealFn = RealFn::new(c"cuCtxPushCurrent_v2");
static R_CTX_POP: RealFn = RealFn::new(c"cuCtxPopCurrent_v2");
static R_STREAM_GET_CTX: RealFn = RealFn::new(c"cuStreamGetCtx");
static R_UUID_V2: RealFn = RealFn::new(c"cuDeviceGetUuid_v2");
static R_UUID: RealFn = RealFn::new(c"cuDeviceGetUuid");

/// The shim's wrapper for exported driver symbol `name`, when it has one (for `dlsym`).
pub fn wrapper(name: &[u8]) -> Option<*mut c_void> {
    table(name).map(|(w, _)| w)
}

// ---------------------------------------------------------------------------------------------
// Devices: CUDA handle -> NVML host index, by UUID.

/// The real driver's devices as (handle, UUID), in its ordinal order: read once after the real
/// `cuInit`, since the driver enumerates its devices once per process.
static DRIVER_DEVS: AtomicPtr<Vec<(CUdevice, String)>> = AtomicPtr::new(std::ptr::null_mut());

fn uuid_string(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn driver_devs() -> Option<&'static [(CUdevice, String)]> {
    let p = DRIVER_DEVS.load(Ordering::Acquire);
    if p.is_null() {
        return build_driver_devs();
    }
    // SAFETY: published lists are never freed.
    Some(unsafe { &*p })
}

/// None while the driver is not initialised (nothing is cached then).
#[cold]
fn build_driver_devs() -> Option<&'static [(CUdevice, String)]> {
    let count = match R_COUNT.get() {
        Some(a) => {
            // SAFETY: cuDeviceGetCount(int *).
            let f = unsafe {
                std::mem::transmute::<usize, unsafe extern "C" fn(*mut c_int) -> CUresult>(a)
            };
            let mut n: c_int = 0;
            if unsafe { f(&mut n) } != CUDA_SUCCESS {
                return None;
            }
            n
        }
        None => return None,
    };
    let get = R_DEVICE_GET.get()?;
    let uuid = R_UUID_V2.get().or_else(|| R_UUID.get())?;
    let mut out = Vec::new();
    for ord in 0..count {
        let mut h: CUdevice = 0;
        let mut u = [0u8; 16];
        // SAFETY: cuDeviceGet(CUdevice *, int) and cuDeviceGetUuid(CUuuid *, CUdevice).
        unsafe {
            let get = std::mem::transmute::<
                usize,
                unsafe extern "C" fn(*mut CUdevice, c_int) -> CUresult,
            >(get);
            let uuid = std::mem::transmute::<
                usize,
                unsafe extern "C" fn(*mut [u8; 16], CUdevice) -> CUresult,
            >(uuid);
            if get(&mut h, ord) != CUDA_SUCCESS || uuid(&mut u, h) != CUDA_SUCCESS {
                return None;
            }
        }
        let s = uuid_string(&u);
        crate::debug!("CUDA device {ord} (handle {h}) = {s}");
        out.push((h, s));
    }
    let p = Box::into_raw(Box::new(out));
    let cur = match DRIVER_DEVS.compare_exchange(
        std::ptr::null_mut(),
        p,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => p,
        Err(cur) => {
            // SAFETY: ours, never published.
            drop(unsafe { Box::from_raw(p) });
            cur
        }
    };
    // SAFETY: published lists are never freed.
    Some(unsafe { &*cur })
}

/// The environment for which the shim restricted the real driver with `CUDA_VISIBLE_DEVICES`
/// (a process started in it): there the driver's own numbering is the environment's.
static FIXED_FOR: OnceLock<String> = OnceLock::new();

/// Whether the driver's numbering is `v`'s own (see [`FIXED_FOR`]); otherwise the shim numbers
/// the environment's devices itself, among those the driver knows ([`DevTable::remap`]).
fn fixed(v: &view::View) -> bool {
    FIXED_FOR.get().is_some_and(|e| *e == v.eid)
}

/// How the driver's devices relate to one view.
struct DevTable {
    /// The view this table is for (its address: views are never freed, so never reused).
    view: usize,
    /// (driver handle, NVML host index) of the driver's devices that are the environment's.
    hosts: Vec<(CUdevice, u32)>,
    /// Virtual ordinal -> (real ordinal, handle): the environment's devices in attach order,
    /// those the driver knows. None when [`fixed`].
    remap: Option<Vec<(c_int, CUdevice)>>,
}

/// The table of the view last asked about; rebuilt when the view changes (superseded ones are
/// leaked, like views).
static TABLE: AtomicPtr<DevTable> = AtomicPtr::new(std::ptr::null_mut());

/// `v`'s device table; None while the driver is not initialised.
fn dev_table(v: &view::View) -> Option<&'static DevTable> {
    let p = TABLE.load(Ordering::Acquire);
    // SAFETY: published tables are never freed.
    match unsafe { p.as_ref() } {
        Some(t) if t.view == v as *const view::View as usize => Some(t),
        _ => build_table(v),
    }
}

#[cold]
fn build_table(v: &view::View) -> Option<&'static DevTable> {
    let devs = driver_devs()?;
    let uuid_is = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let hosts = devs
        .iter()
        .filter_map(|(h, u)| {
            let d = v.devices().iter().find(|d| uuid_is(&d.uuid, u))?;
            Some((*h, d.host_index))
        })
        .collect();
    let remap = (!fixed(v)).then(|| {
        v.devices()
            .iter()
            .filter_map(|d| {
                let i = devs.iter().position(|(_, u)| uuid_is(&d.uuid, u))?;
                Some((i as c_int, devs[i].0))
            })
            .collect::<Vec<_>>()
    });
    if let Some(m) = &remap {
        crate::debug!(
            "CUDA devices of {} numbered by the shim (the driver was initialised outside it): real ordinals {:?}",
            v.eid,
            m.iter().map(|(o, _)| *o).collect::<Vec<_>>()
        );
    }
    let t = Box::into_raw(Box::new(DevTable {
        view: v as *const view::View as usize,
        hosts,
        remap,
    }));
    // Whatever was there is superseded (or the same table, built by a racing thread): leaked.
    TABLE.store(t, Ordering::Release);
    // SAFETY: published tables are never freed.
    Some(unsafe { &*t })
}

/// The NVML host index of CUDA device handle `dev`; None when the driver has not been
/// initialised yet or the device is not the environment's.
fn host_of(v: &view::View, dev: CUdevice) -> Option<u32> {
    dev_table(v)?
        .hosts
        .iter()
        .find(|(h, _)| *h == dev)
        .map(|(_, host)| *host)
}

/// Whether a context may be made on `dev`: always where the driver's numbering is the
/// environment's (the driver knows no other device); otherwise only on the environment's
/// devices. `Err` is the answer to give.
fn device_allowed(v: &view::View, dev: CUdevice) -> Result<(), CUresult> {
    if v.broken {
        return Err(CUDA_ERROR_NO_DEVICE);
    }
    if fixed(v) {
        return Ok(());
    }
    match dev_table(v) {
        Some(t) if t.hosts.iter().any(|(h, _)| *h == dev) => Ok(()),
        Some(_) => Err(CUDA_ERROR_INVALID_DEVICE),
        // Not initialised: the driver's own answer.
        None => Ok(()),
    }
}

/// The host index of the current context's device. `Err` carries the answer to give the caller:
/// the driver's error when there is no usable context, OUT_OF_MEMORY for a device outside the
/// environment (a thread without a context never reaches the ledger with a garbage index).
fn current_host(v: &view::View) -> Result<u32, CUresult> {
    let f = match R_CTX_GET_DEVICE.get() {
        // SAFETY: cuCtxGetDevice(CUdevice *).
        Some(a) => unsafe {
            std::mem::transmute::<usize, unsafe extern "C" fn(*mut CUdevice) -> CUresult>(a)
        },
        None => return Err(CUDA_ERROR_NOT_FOUND),
    };
    let mut d: CUdevice = -1;
    // SAFETY: valid out pointer.
    let r = unsafe { f(&mut d) };
    if r != CUDA_SUCCESS {
        return Err(r);
    }
    host_of(v, d).ok_or(CUDA_ERROR_OUT_OF_MEMORY)
}

/// The host index of the device a stream belongs to: the current context's for the default
/// streams, else the stream's context's (pushed for the question, then popped).
fn stream_host(v: &view::View, s: CUstream) -> Result<u32, CUresult> {
    let h = s as usize;
    if h <= 2 {
        return current_host(v);
    }
    let (Some(gc), Some(cur), Some(push), Some(pop)) = (
        R_STREAM_GET_CTX.get(),
        R_CTX_GET_CURRENT.get(),
        R_CTX_PUSH.get(),
        R_CTX_POP.get(),
    ) else {
        return current_host(v);
    };
    type GetCtx = unsafe extern "C" fn(CUstream, *mut CUcontext) -> CUresult;
    type Cur = unsafe extern "C" fn(*mut CUcontext) -> CUresult;
    type Push = unsafe extern "C" fn(CUcontext) -> CUresult;
    // SAFETY: the driver's signatures for these names; out pointers are valid.
    unsafe {
        let mut sc: CUcontext = std::ptr::null_mut();
        let mut cc: CUcontext = std::ptr::null_mut();
        if std::mem::transmute::<usize, GetCtx>(gc)(s, &mut sc) != CUDA_SUCCESS
            || std::mem::transmute::<usize, Cur>(cur)(&mut cc) != CUDA_SUCCESS
            || sc == cc
            || sc.is_null()
        {
            return current_host(v);
        }
        if std::mem::transmute::<usize, Push>(push)(sc) != CUDA_SUCCESS {
            return current_host(v);
        }
        let r = current_host(v);
        let mut popped: CUcontext = std::ptr::null_mut();
        std::mem::transmute::<usize, Cur>(pop)(&mut popped);
        r
    }
}

// ---------------------------------------------------------------------------------------------
// Per-process bookkeeping: pointer / handle -> what was reserved for it.

#[derive(Clone, Copy)]
struct Entry {
    bytes: u64,
    host: u32,
    ticket: usize,
}

impl Entry {
    fn release(self) {
        // SAFETY: tickets come from view::reserve.
        view::release(
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
const SHARDS: usize = 64;

/// A map sharded by key, so that threads allocating at once rarely meet on a lock. The locks
/// are held only for the map operation itself, never across a driver call.
struct Map {
    shards: Vec<Shard>,
}

impl Map {
    fn new() -> Map {
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
        let i = (h.finish() >> 58) as usize % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }
    fn insert(&self, k: u64, e: Entry) {
        if let Some(old) = self.shard(k).insert(k, e) {
            // The driver reused a key we still held: it was freed behind our back (a path we do
            // not see); give its reservation back rather than leak it.
            old.release();
        }
    }
    fn remove(&self, k: u64) -> Option<Entry> {
        self.shard(k).remove(&k)
    }
}

/// A per-process object created on first use and replaced (never touched again) in a forked
/// child, whose copies of the parent's locks may be held by threads that do not exist there.
struct Fresh<T> {
    p: AtomicPtr<T>,
    make: fn() -> T,
}

impl<T> Fresh<T> {
    const fn new(make: fn() -> T) -> Self {
        Fresh {
            p: AtomicPtr::new(std::ptr::null_mut()),
            make,
        }
    }
    fn get(&self) -> &T {
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
                // SAFETY: ours, never published.
                drop(unsafe { Box::from_raw(n) });
                unsafe { &*cur }
            }
        }
    }
    fn forget(&self) {
        self.p.store(std::ptr::null_mut(), Ordering::Release);
    }
}

/// Linear allocations by device address (plain, pitched, managed, stream-ordered, pool).
static PTRS: Fresh<Map> = Fresh::new(Map::new);
static ARRAYS: Fresh<Map> = Fresh::new(Map::new);
static MIPMAPS: Fresh<Map> = Fresh::new(Map::new);

/// VMM physical allocations: reservation and references (the handle plus each mapping).
#[derive(Default)]
struct Vmm {
    handles: HashMap<u64, (Entry, u32)>,
    /// Mapped address -> (size, handle).
    maps: BTreeMap<u64, (u64, u64)>,
}
static VMM: Fresh<Mutex<Vmm>> = Fresh::new(|| Mutex::new(Vmm::default()));

/// Memory pools -> the CUDA device they allocate on.
static POOLS: Fresh<Mutex<HashMap<usize, CUdevice>>> = Fresh::new(|| Mutex::new(HashMap::new()));

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn after_fork_child() {
    // The parent's allocations are not the child's to free, and its registration in the
    // ledger is dropped by view::after_fork_child: start empty.
    PTRS.forget();
    ARRAYS.forget();
    MIPMAPS.forget();
    VMM.forget();
    POOLS.forget();
}

/// Whether this process ever recorded an allocation: until then frees pass straight through
/// (one load). Frees do not ask the current view, since memory reserved in an environment the
/// process has left must still go back to it.
static TRACKING: AtomicBool = AtomicBool::new(false);

fn tracking() -> bool {
    TRACKING.load(Ordering::Relaxed)
}

fn track() {
    if !TRACKING.load(Ordering::Relaxed) {
        TRACKING.store(true, Ordering::Relaxed);
    }
}

/// Reserve `bytes` on the device `host()` names, run the allocation, record it under `key()`;
/// give the reservation back if the driver fails. Outside an environment: just the call.
fn alloc_with(
    map: &Fresh<Map>,
    bytes: u64,
    host: impl FnOnce(&view::View) -> Result<u32, CUresult>,
    call: impl FnOnce() -> CUresult,
    key: impl FnOnce() -> u64,
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
        view::release(ticket, host, bytes);
        return r;
    }
    track();
    map.get().insert(
        key(),
        Entry {
            bytes,
            host,
            ticket: ticket.to_bits(),
        },
    );
    r
}

/// Forget `key` before the free (so a reuse of the address by another thread cannot be
/// confused with it), run the free, and give the bytes back once the driver has freed them
/// (or put the record back if it refused). Keys never recorded: the driver's call alone.
fn free_with(map: &Fresh<Map>, key: u64, call: impl FnOnce() -> CUresult) -> CUresult {
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

// ---------------------------------------------------------------------------------------------
// Initialisation and the device view.

/// Whether the real `cuInit` has been called: the driver reads `CUDA_VISIBLE_DEVICES` then, once
/// per process.
static REAL_INIT: AtomicBool = AtomicBool::new(false);

fn env_str(name: &CStr) -> Option<String> {
    crate::log::getenv(name).map(|b| String::from_utf8_lossy(b).into_owned())
}

fn setenv(name: &CStr, value: &str) {
    let v = std::ffi::CString::new(value).unwrap_or_default();
    // SAFETY: NUL-terminated strings; glibc copies them.
    unsafe { libc::setenv(name.as_ptr(), v.as_ptr(), 1) };
}

/// Which of the environment's devices a user's `CUDA_VISIBLE_DEVICES` selects: indices into
/// attach order or (prefixes of) UUIDs; like the driver, the list stops at the first entry that
/// names no device or one already named. `None` (unset) selects all.
pub fn select(user: Option<&str>, uuids: &[&str]) -> Vec<usize> {
    let Some(spec) = user else {
        return (0..uuids.len()).collect();
    };
    let mut out = Vec::new();
    for tok in spec.split(',') {
        let t = tok.trim();
        let found = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            t.parse::<usize>().ok().filter(|&i| i < uuids.len())
        } else if t.len() > 4 && t[..4].eq_ignore_ascii_case("GPU-") {
            let want = t.to_ascii_lowercase();
            let hits: Vec<usize> = (0..uuids.len())
                .filter(|&i| uuids[i].to_ascii_lowercase().starts_with(&want))
                .collect();
            (hits.len() == 1).then(|| hits[0])
        } else {
            None
        };
        match found {
            Some(i) if !out.contains(&i) => out.push(i),
            _ => break,
        }
    }
    out
}

/// Restricts the real driver to the environment's devices, before the first real cuInit.
fn set_visible(v: &view::View) {
    const CVD: &CStr = c"CUDA_VISIBLE_DEVICES";
    const SET: &CStr = c"GENV_CUDA_VISIBLE_DEVICES_SET";
    const USER: &CStr = c"GENV_CUDA_VISIBLE_DEVICES_USER";
    let cur = env_str(CVD);
    // Inherited from a parent under the shim: the user's value is the one it saved.
    let user = if cur.is_some() && cur == env_str(SET) {
        env_str(USER)
    } else {
        cur
    };
    let uuids: Vec<&str> = v.devices().iter().map(|d| d.uuid.as_str()).collect();
    let sel = select(user.as_deref(), &uuids);
    let value = sel.iter().map(|&i| uuids[i]).collect::<Vec<_>>().join(",");
    crate::debug!(
        "CUDA_VISIBLE_DEVICES for the driver: {value:?} (user's: {user:?}; environment's GPUs in attach order: {uuids:?})"
    );
    setenv(CVD, &value);
    setenv(SET, &value);
    match &user {
        Some(u) => setenv(USER, u),
        // SAFETY: NUL-terminated name.
        None => unsafe {
            libc::unsetenv(USER.as_ptr());
        },
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuInit(flags: c_uint) -> CUresult {
    let real = real!(R_INIT as fn(c_uint));
    guard(|| {
        // An initialisation point: follow the process into (or out of) an environment.
        let Some(v) = view::follow() else {
            REAL_INIT.store(true, Ordering::Release);
            return real(flags);
        };
        if v.broken {
            crate::debug!("cuInit: the environment could not be read: CUDA_ERROR_NO_DEVICE");
            return CUDA_ERROR_NO_DEVICE;
        }
        // Only a process started in its environment has the driver restricted to it: one that
        // started outside may leave again, and the driver's device set is fixed at its first
        // cuInit (the shim then numbers the environment's devices itself).
        if !REAL_INIT.swap(true, Ordering::AcqRel) && view::started_in_env() {
            set_visible(v);
            let _ = FIXED_FOR.set(v.eid.clone());
        }
        let r = real(flags);
        crate::debug!("cuInit({flags}) = {r}");
        r
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetCount(count: *mut c_int) -> CUresult {
    let real = real!(R_COUNT as fn(*mut c_int));
    guard(|| {
        let Some(v) = view::get() else {
            return real(count);
        };
        if v.broken && !count.is_null() {
            *count = 0;
            return CUDA_SUCCESS;
        }
        let r = real(count);
        if r == CUDA_SUCCESS && !count.is_null() && !fixed(v) {
            // Fail closed if the driver's devices cannot be read.
            *count = dev_table(v)
                .and_then(|t| t.remap.as_ref())
                .map_or(0, |m| m.len() as c_int);
        }
        r
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGet(dev: *mut CUdevice, ordinal: c_int) -> CUresult {
    let real = real!(R_DEVICE_GET as fn(*mut CUdevice, c_int));
    guard(|| {
        let Some(v) = view::get() else {
            return real(dev, ordinal);
        };
        if fixed(v) {
            return real(dev, ordinal);
        }
        let Some(m) = dev_table(v).and_then(|t| t.remap.as_ref()) else {
            // Not initialised (the driver says so), or devices unreadable (none).
            let r = real(dev, ordinal);
            return if r == CUDA_SUCCESS {
                CUDA_ERROR_INVALID_DEVICE
            } else {
                r
            };
        };
        match usize::try_from(ordinal).ok().and_then(|i| m.get(i)) {
            Some(&(real_ordinal, _)) => real(dev, real_ordinal),
            None => CUDA_ERROR_INVALID_DEVICE,
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetByPCIBusId(
    dev: *mut CUdevice,
    bus_id: *const c_char,
) -> CUresult {
    let real = real!(R_BY_BUS_ID as fn(*mut CUdevice, *const c_char));
    guard(|| {
        let r = real(dev, bus_id);
        if r != CUDA_SUCCESS || dev.is_null() {
            return r;
        }
        match view::get() {
            Some(v) if !fixed(v) && host_of(v, *dev).is_none() => CUDA_ERROR_INVALID_DEVICE,
            _ => r,
        }
    })
}

/// Context creation: an initialisation point (the real driver initialises once per process, so
/// for a process that entered an environment after its cuInit this is where it is followed),
/// and, where the shim numbers the devices itself, only on the environment's devices.
fn ctx_create(dev: CUdevice, call: impl FnOnce() -> CUresult) -> CUresult {
    guard(|| {
        if let Some(v) = view::follow() {
            if let Err(e) = device_allowed(v, dev) {
                crate::debug!("context on CUDA device {dev} refused: not the environment's ({e})");
                return e;
            }
        }
        call()
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxRetain(pctx: *mut CUcontext, dev: CUdevice) -> CUresult {
    let real = real!(R_PRIMARY_RETAIN as fn(*mut CUcontext, CUdevice));
    ctx_create(dev, || real(pctx, dev))
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxCreate(
    pctx: *mut CUcontext,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    let real = real!(R_CTX_CREATE as fn(*mut CUcontext, c_uint, CUdevice));
    ctx_create(dev, || real(pctx, flags, dev))
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxCreate_v2(
    pctx: *mut CUcontext,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    let real = real!(R_CTX_CREATE_V2 as fn(*mut CUcontext, c_uint, CUdevice));
    ctx_create(dev, || real(pctx, flags, dev))
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxCreate_v3(
    pctx: *mut CUcontext,
    params: *mut c_void,
    num_params: c_int,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    let real = real!(R_CTX_CREATE_V3 as fn(*mut CUcontext, *mut c_void, c_int, c_uint, CUdevice));
    ctx_create(dev, || real(pctx, params, num_params, flags, dev))
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxCreate_v4(
    pctx: *mut CUcontext,
    params: *const c_void,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    let real = real!(R_CTX_CREATE_V4 as fn(*mut CUcontext, *const c_void, c_uint, CUdevice));
    ctx_create(dev, || real(pctx, params, flags, dev))
}

/// min(capacity, physical) for device handle `dev`.
fn capped_total(dev: CUdevice, real_total: u64) -> u64 {
    match view::get() {
        Some(v) => match host_of(v, dev).and_then(|h| v.device(h)) {
            Some(d) => real_total.min(d.capacity),
            None => real_total,
        },
        None => real_total,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: CUdevice) -> CUresult {
    let real = real!(R_TOTAL_V2 as fn(*mut usize, CUdevice));
    guard(|| {
        let r = real(bytes, dev);
        if r == CUDA_SUCCESS && !bytes.is_null() {
            *bytes = capped_total(dev, *bytes as u64) as usize;
        }
        r
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceTotalMem(bytes: *mut c_uint, dev: CUdevice) -> CUresult {
    let real = real!(R_TOTAL as fn(*mut c_uint, CUdevice));
    guard(|| {
        let r = real(bytes, dev);
        if r == CUDA_SUCCESS && !bytes.is_null() {
            *bytes = capped_total(dev, *bytes as u64) as c_uint;
        }
        r
    })
}

/// (free, total) as the environment sees the current device, from the driver's figures.
fn env_mem_info(free: u64, total: u64) -> (u64, u64) {
    let Some(v) = view::get() else {
        return (free, total);
    };
    // A device that is no longer the environment's (detached, or the state became unreadable)
    // offers nothing; without a usable context the driver's own answer stands.
    let host = match current_host(v) {
        Ok(h) => h,
        Err(CUDA_ERROR_OUT_OF_MEMORY) => return (0, 0),
        Err(_) => return (free, total),
    };
    let Some(d) = v.device(host) else {
        return (0, 0);
    };
    let used = v.env_used(host);
    // Over the capacity (it was lowered while memory was held): free is 0, never an error.
    (
        free.min(d.capacity.saturating_sub(used)),
        total.min(d.capacity),
    )
}

#[no_mangle]
pub unsafe extern "C" fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CUresult {
    let real = real!(R_INFO_V2 as fn(*mut usize, *mut usize));
    guard(|| {
        let r = real(free, total);
        if r == CUDA_SUCCESS && !free.is_null() && !total.is_null() {
            let (f, t) = env_mem_info(*free as u64, *total as u64);
            *free = f as usize;
            *total = t as usize;
        }
        r
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemGetInfo(free: *mut c_uint, total: *mut c_uint) -> CUresult {
    let real = real!(R_INFO as fn(*mut c_uint, *mut c_uint));
    guard(|| {
        let r = real(free, total);
        if r == CUDA_SUCCESS && !free.is_null() && !total.is_null() {
            let (f, t) = env_mem_info(*free as u64, *total as u64);
            *free = f as c_uint;
            *total = t as c_uint;
        }
        r
    })
}

// ---------------------------------------------------------------------------------------------
// Linear memory.

#[no_mangle]
pub unsafe extern "C" fn cuMemAlloc_v2(dptr: *mut CUdeviceptr, size: usize) -> CUresult {
    let real = real!(R_ALLOC_V2 as fn(*mut CUdeviceptr, usize));
    guard(|| {
        alloc_with(
            &PTRS,
            size as u64,
            current_host,
            || real(dptr, size),
            || *dptr,
        )
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAlloc(dptr: *mut u32, size: c_uint) -> CUresult {
    let real = real!(R_ALLOC as fn(*mut u32, c_uint));
    guard(|| {
        alloc_with(
            &PTRS,
            size as u64,
            current_host,
            || real(dptr, size),
            || *dptr as u64,
        )
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemFree_v2(dptr: CUdeviceptr) -> CUresult {
    let real = real!(R_FREE_V2 as fn(CUdeviceptr));
    guard(|| free_with(&PTRS, dptr, || real(dptr)))
}

#[no_mangle]
pub unsafe extern "C" fn cuMemFree(dptr: u32) -> CUresult {
    let real = real!(R_FREE as fn(u32));
    guard(|| free_with(&PTRS, dptr as u64, || real(dptr)))
}

/// Pitched allocations: the pitch is the driver's choice, so reserve rows padded to 512 bytes
/// (the driver's usual alignment), then settle the difference with the pitch it chose.
fn pitched(
    width: u64,
    height: u64,
    call: impl FnOnce() -> CUresult,
    result: impl Fn() -> (u64, u64),
) -> CUresult {
    let est = width.saturating_add(511) & !511;
    let est = est.saturating_mul(height);
    let mut got = None;
    let r = alloc_with(&PTRS, est, current_host, call, || {
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
    if actual < est {
        // SAFETY: tickets come from view::reserve.
        view::release(unsafe { Ticket::from_bits(e.ticket) }, e.host, est - actual);
        m.insert(p, Entry { bytes: actual, ..e });
        return r;
    }
    // SAFETY: tickets come from view::reserve.
    match v.reserve_more(unsafe { Ticket::from_bits(e.ticket) }, e.host, actual - est) {
        true => {
            m.insert(p, Entry { bytes: actual, ..e });
            r
        }
        false => {
            // The driver took more than the capacity allows: undo.
            m.insert(p, e);
            free_with(&PTRS, p, || unsafe { cuMemFree_v2(p) });
            CUDA_ERROR_OUT_OF_MEMORY
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocPitch_v2(
    dptr: *mut CUdeviceptr,
    pitch: *mut usize,
    width: usize,
    height: usize,
    elem: c_uint,
) -> CUresult {
    let real = real!(R_PITCH_V2 as fn(*mut CUdeviceptr, *mut usize, usize, usize, c_uint));
    guard(|| {
        pitched(
            width as u64,
            height as u64,
            || real(dptr, pitch, width, height, elem),
            || (*dptr, *pitch as u64),
        )
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocPitch(
    dptr: *mut u32,
    pitch: *mut c_uint,
    width: c_uint,
    height: c_uint,
    elem: c_uint,
) -> CUresult {
    let real = real!(R_PITCH as fn(*mut u32, *mut c_uint, c_uint, c_uint, c_uint));
    guard(|| {
        pitched(
            width as u64,
            height as u64,
            || real(dptr, pitch, width, height, elem),
            || (*dptr as u64, *pitch as u64),
        )
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocManaged(
    dptr: *mut CUdeviceptr,
    size: usize,
    flags: c_uint,
) -> CUresult {
    let real = real!(R_MANAGED as fn(*mut CUdeviceptr, usize, c_uint));
    guard(|| {
        alloc_with(
            &PTRS,
            size as u64,
            current_host,
            || real(dptr, size, flags),
            || *dptr,
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Stream-ordered allocation and pools.

type AllocAsync = unsafe extern "C" fn(*mut CUdeviceptr, usize, CUstream) -> CUresult;

fn alloc_async(real: AllocAsync, dptr: *mut CUdeviceptr, size: usize, s: CUstream) -> CUresult {
    alloc_with(
        &PTRS,
        size as u64,
        |v| stream_host(v, s),
        // SAFETY: the caller's arguments, unchanged.
        || unsafe { real(dptr, size, s) },
        // SAFETY: written by the driver on success.
        || unsafe { *dptr },
    )
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocAsync(
    dptr: *mut CUdeviceptr,
    size: usize,
    s: CUstream,
) -> CUresult {
    let real = real!(R_ASYNC as fn(*mut CUdeviceptr, usize, CUstream));
    guard(|| alloc_async(real, dptr, size, s))
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocAsync_ptsz(
    dptr: *mut CUdeviceptr,
    size: usize,
    s: CUstream,
) -> CUresult {
    let real = real!(R_ASYNC_PTSZ as fn(*mut CUdeviceptr, usize, CUstream));
    guard(|| alloc_async(real, dptr, size, s))
}

type FromPool = unsafe extern "C" fn(*mut CUdeviceptr, usize, *mut c_void, CUstream) -> CUresult;

fn alloc_from_pool(
    real: FromPool,
    dptr: *mut CUdeviceptr,
    size: usize,
    pool: *mut c_void,
    s: CUstream,
) -> CUresult {
    alloc_with(
        &PTRS,
        size as u64,
        |v| {
            // The pool's device when we saw the pool made; else the stream's.
            let dev = lock(POOLS.get()).get(&(pool as usize)).copied();
            match dev {
                Some(d) => host_of(v, d).ok_or(CUDA_ERROR_OUT_OF_MEMORY),
                None => stream_host(v, s),
            }
        },
        // SAFETY: the caller's arguments, unchanged.
        || unsafe { real(dptr, size, pool, s) },
        // SAFETY: written by the driver on success.
        || unsafe { *dptr },
    )
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocFromPoolAsync(
    dptr: *mut CUdeviceptr,
    size: usize,
    pool: *mut c_void,
    s: CUstream,
) -> CUresult {
    let real = real!(R_POOL_ASYNC as fn(*mut CUdeviceptr, usize, *mut c_void, CUstream));
    guard(|| alloc_from_pool(real, dptr, size, pool, s))
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocFromPoolAsync_ptsz(
    dptr: *mut CUdeviceptr,
    size: usize,
    pool: *mut c_void,
    s: CUstream,
) -> CUresult {
    let real = real!(R_POOL_ASYNC_PTSZ as fn(*mut CUdeviceptr, usize, *mut c_void, CUstream));
    guard(|| alloc_from_pool(real, dptr, size, pool, s))
}

/// A stream-ordered free gives the bytes back when it is enqueued: the pool may keep the
/// memory cached for reuse, but it is no longer the program's.
#[no_mangle]
pub unsafe extern "C" fn cuMemFreeAsync(dptr: CUdeviceptr, s: CUstream) -> CUresult {
    let real = real!(R_FREE_ASYNC as fn(CUdeviceptr, CUstream));
    guard(|| free_with(&PTRS, dptr, || real(dptr, s)))
}

#[no_mangle]
pub unsafe extern "C" fn cuMemFreeAsync_ptsz(dptr: CUdeviceptr, s: CUstream) -> CUresult {
    let real = real!(R_FREE_ASYNC_PTSZ as fn(CUdeviceptr, CUstream));
    guard(|| free_with(&PTRS, dptr, || real(dptr, s)))
}

/// `CUmemPoolProps` starts with allocType, handleTypes, then `CUmemLocation { type, id }`.
#[repr(C)]
pub struct PoolPropsHead {
    alloc_type: c_uint,
    handle_types: c_uint,
    loc_type: c_uint,
    loc_id: c_int,
}

const CU_MEM_LOCATION_TYPE_DEVICE: c_uint = 1;

/// Noted also outside an environment (pools are made rarely): a pool made before the process
/// entered one may allocate inside it.
fn note_pool(pool: *mut c_void, dev: CUdevice) {
    if !pool.is_null() {
        lock(POOLS.get()).insert(pool as usize, dev);
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuMemPoolCreate(
    pool: *mut *mut c_void,
    props: *const PoolPropsHead,
) -> CUresult {
    let real = real!(R_POOL_CREATE as fn(*mut *mut c_void, *const PoolPropsHead));
    guard(|| {
        let r = real(pool, props);
        if r == CUDA_SUCCESS && !props.is_null() && (*props).loc_type == CU_MEM_LOCATION_TYPE_DEVICE
        {
            note_pool(*pool, (*props).loc_id);
        }
        r
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemPoolDestroy(pool: *mut c_void) -> CUresult {
    let real = real!(R_POOL_DESTROY as fn(*mut c_void));
    guard(|| {
        let r = real(pool);
        if r == CUDA_SUCCESS {
            lock(POOLS.get()).remove(&(pool as usize));
        }
        r
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetDefaultMemPool(
    pool: *mut *mut c_void,
    dev: CUdevice,
) -> CUresult {
    let real = real!(R_DEFAULT_POOL as fn(*mut *mut c_void, CUdevice));
    guard(|| {
        let r = real(pool, dev);
        if r == CUDA_SUCCESS {
            note_pool(*pool, dev);
        }
        r
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetMemPool(pool: *mut *mut c_void, dev: CUdevice) -> CUresult {
    let real = real!(R_GET_POOL as fn(*mut *mut c_void, CUdevice));
    guard(|| {
        let r = real(pool, dev);
        if r == CUDA_SUCCESS {
            note_pool(*pool, dev);
        }
        r
    })
}

// ---------------------------------------------------------------------------------------------
// Virtual memory management (cuMemCreate / cuMemMap / cuMemRelease).

/// The leading fields of `CUmemAllocationProp`: type, requestedHandleTypes, location.
#[repr(C)]
pub struct AllocPropHead {
    kind: c_uint,
    handle_types: c_uint,
    loc_type: c_uint,
    loc_id: c_int,
}

/// Drops one reference of VMM allocation `h`; returns its reservation when it was the last.
fn vmm_unref(vmm: &mut Vmm, h: u64) -> Option<Entry> {
    let (_, refs) = vmm.handles.get_mut(&h)?;
    *refs = refs.saturating_sub(1);
    if *refs == 0 {
        vmm.handles.remove(&h).map(|(e, _)| e)
    } else {
        None
    }
}

fn vmm_ref(vmm: &mut Vmm, h: u64) {
    if let Some((_, refs)) = vmm.handles.get_mut(&h) {
        *refs += 1;
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuMemCreate(
    handle: *mut u64,
    size: usize,
    prop: *const AllocPropHead,
    flags: u64,
) -> CUresult {
    let real = real!(R_CREATE as fn(*mut u64, usize, *const AllocPropHead, u64));
    guard(|| {
        let Some(v) = view::get() else {
            return real(handle, size, prop, flags);
        };
        // Only device memory counts; host (NUMA) allocations and invalid props go to the driver.
        if prop.is_null() || (*prop).loc_type != CU_MEM_LOCATION_TYPE_DEVICE {
            return real(handle, size, prop, flags);
        }
        let Some(host) = host_of(v, (*prop).loc_id) else {
            return real(handle, size, prop, flags);
        };
        let bytes = size as u64;
        let ticket = match v.reserve(host, bytes) {
            Ok(t) => t,
            Err(_) => return CUDA_ERROR_OUT_OF_MEMORY,
        };
        let r = real(handle, size, prop, flags);
        if r != CUDA_SUCCESS {
            view::release(ticket, host, bytes);
            return r;
        }
        let e = Entry {
            bytes,
            host,
            ticket: ticket.to_bits(),
        };
        track();
        if let Some((old, _)) = lock(VMM.get()).handles.insert(*handle, (e, 1)) {
            old.release();
        }
        r
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemRelease(handle: u64) -> CUresult {
    let real = real!(R_RELEASE as fn(u64));
    guard(|| {
        if !tracking() {
            return real(handle);
        }
        let (snapshot, gone) = {
            let mut g = lock(VMM.get());
            let s = g.handles.get(&handle).copied();
            (s, vmm_unref(&mut g, handle))
        };
        let r = real(handle);
        if r == CUDA_SUCCESS {
            if let Some(e) = gone {
                e.release();
            }
        } else if let Some(s) = snapshot {
            // The driver refused: put the reference back as it was.
            let mut g = lock(VMM.get());
            match g.handles.get_mut(&handle) {
                Some(x) => x.1 += 1,
                None => {
                    g.handles.insert(handle, s);
                }
            }
        }
        r
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemMap(
    ptr: CUdeviceptr,
    size: usize,
    offset: usize,
    handle: u64,
    flags: u64,
) -> CUresult {
    let real = real!(R_MAP as fn(CUdeviceptr, usize, usize, u64, u64));
    guard(|| {
        let r = real(ptr, size, offset, handle, flags);
        if r == CUDA_SUCCESS && tracking() {
            let mut g = lock(VMM.get());
            if g.handles.contains_key(&handle) {
                vmm_ref(&mut g, handle);
                g.maps.insert(ptr, (size as u64, handle));
            }
        }
        r
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemUnmap(ptr: CUdeviceptr, size: usize) -> CUresult {
    let real = real!(R_UNMAP as fn(CUdeviceptr, usize));
    guard(|| {
        if !tracking() {
            return real(ptr, size);
        }
        let end = ptr.saturating_add(size as u64);
        let inside: Vec<(u64, (u64, u64))> = {
            let mut g = lock(VMM.get());
            let keys: Vec<u64> = g.maps.range(ptr..end).map(|(k, _)| *k).collect();
            keys.into_iter()
                .filter_map(|k| g.maps.remove(&k).map(|m| (k, m)))
                .collect()
        };
        let r = real(ptr, size);
        let mut g = lock(VMM.get());
        if r != CUDA_SUCCESS {
            for (k, m) in inside {
                g.maps.insert(k, m);
            }
            return r;
        }
        let gone: Vec<Entry> = inside
            .iter()
            .filter_map(|(_, (_, h))| vmm_unref(&mut g, *h))
            .collect();
        drop(g);
        for e in gone {
            e.release();
        }
        r
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemRetainAllocationHandle(
    handle: *mut u64,
    addr: *mut c_void,
) -> CUresult {
    let real = real!(R_RETAIN as fn(*mut u64, *mut c_void));
    guard(|| {
        let r = real(handle, addr);
        if r == CUDA_SUCCESS && tracking() && !handle.is_null() {
            vmm_ref(&mut lock(VMM.get()), *handle);
        }
        r
    })
}

// ---------------------------------------------------------------------------------------------
// Arrays.

/// Bytes per channel of a `CUarray_format`; unknown (newer) formats count 4.
fn format_bytes(format: c_uint) -> u64 {
    match format {
        0x01 | 0x08 | 0xc0 | 0xc6 => 1,
        0x02 | 0x09 | 0x10 | 0xc1 | 0xc7 | 0xc3 | 0xc9 => 2,
        0x03 | 0x0a | 0x20 | 0x50 | 0xc2 | 0xc8 | 0xc4 | 0xca => 4,
        0xc5 | 0xcb => 8,
        _ => 4,
    }
}

const CUDA_ARRAY3D_LAYERED: c_uint = 1;
const CUDA_ARRAY3D_CUBEMAP: c_uint = 4;

/// Bytes of an array with `levels` mipmap levels (1 for a plain array). Layers and cube faces
/// (the depth of a layered / cubemap array) do not shrink with the level.
pub fn array_bytes(
    w: u64,
    h: u64,
    d: u64,
    format: c_uint,
    channels: c_uint,
    flags: c_uint,
    levels: u32,
) -> u64 {
    let texel = format_bytes(format).saturating_mul(channels.max(1) as u64);
    let layers = flags & (CUDA_ARRAY3D_LAYERED | CUDA_ARRAY3D_CUBEMAP) != 0;
    (0..levels.clamp(1, 64)).fold(0u64, |acc, l| {
        let sw = (w >> l).max(1);
        let sh = if h == 0 { 1 } else { (h >> l).max(1) };
        let sd = if d == 0 {
            1
        } else if layers {
            d
        } else {
            (d >> l).max(1)
        };
        acc.saturating_add(
            texel
                .saturating_mul(sw)
                .saturating_mul(sh)
                .saturating_mul(sd),
        )
    })
}

#[repr(C)]
pub struct ArrayDesc {
    width: usize,
    height: usize,
    format: c_uint,
    channels: c_uint,
}

#[repr(C)]
pub struct ArrayDescV1 {
    width: c_uint,
    height: c_uint,
    format: c_uint,
    channels: c_uint,
}

#[repr(C)]
pub struct Array3dDesc {
    width: usize,
    height: usize,
    depth: usize,
    format: c_uint,
    channels: c_uint,
    flags: c_uint,
}

#[repr(C)]
pub struct Array3dDescV1 {
    width: c_uint,
    height: c_uint,
    depth: c_uint,
    format: c_uint,
    channels: c_uint,
    flags: c_uint,
}

fn array_with(
    map: &Fresh<Map>,
    bytes: Option<u64>,
    call: impl FnOnce() -> CUresult,
    key: impl FnOnce() -> u64,
) -> CUresult {
    match bytes {
        Some(b) => alloc_with(map, b, current_host, call, key),
        // No descriptor: the driver refuses it.
        None => call(),
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuArrayCreate_v2(
    handle: *mut *mut c_void,
    desc: *const ArrayDesc,
) -> CUresult {
    let real = real!(R_ARRAY_V2 as fn(*mut *mut c_void, *const ArrayDesc));
    guard(|| {
        let b = desc.as_ref().map(|d| {
            array_bytes(
                d.width as u64,
                d.height as u64,
                0,
                d.format,
                d.channels,
                0,
                1,
            )
        });
        array_with(&ARRAYS, b, || real(handle, desc), || *handle as u64)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuArrayCreate(
    handle: *mut *mut c_void,
    desc: *const ArrayDescV1,
) -> CUresult {
    let real = real!(R_ARRAY as fn(*mut *mut c_void, *const ArrayDescV1));
    guard(|| {
        let b = desc.as_ref().map(|d| {
            array_bytes(
                d.width as u64,
                d.height as u64,
                0,
                d.format,
                d.channels,
                0,
                1,
            )
        });
        array_with(&ARRAYS, b, || real(handle, desc), || *handle as u64)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuArray3DCreate_v2(
    handle: *mut *mut c_void,
    desc: *const Array3dDesc,
) -> CUresult {
    let real = real!(R_ARRAY3D_V2 as fn(*mut *mut c_void, *const Array3dDesc));
    guard(|| {
        let b = desc.as_ref().map(|d| {
            array_bytes(
                d.width as u64,
                d.height as u64,
                d.depth as u64,
                d.format,
                d.channels,
                d.flags,
                1,
            )
        });
        array_with(&ARRAYS, b, || real(handle, desc), || *handle as u64)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuArray3DCreate(
    handle: *mut *mut c_void,
    desc: *const Array3dDescV1,
) -> CUresult {
    let real = real!(R_ARRAY3D as fn(*mut *mut c_void, *const Array3dDescV1));
    guard(|| {
        let b = desc.as_ref().map(|d| {
            array_bytes(
                d.width as u64,
                d.height as u64,
                d.depth as u64,
                d.format,
                d.channels,
                d.flags,
                1,
            )
        });
        array_with(&ARRAYS, b, || real(handle, desc), || *handle as u64)
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuArrayDestroy(handle: *mut c_void) -> CUresult {
    let real = real!(R_ARRAY_DESTROY as fn(*mut c_void));
    guard(|| free_with(&ARRAYS, handle as u64, || real(handle)))
}

#[no_mangle]
pub unsafe extern "C" fn cuMipmappedArrayCreate(
    handle: *mut *mut c_void,
    desc: *const Array3dDesc,
    levels: c_uint,
) -> CUresult {
    let real = real!(R_MIPMAP as fn(*mut *mut c_void, *const Array3dDesc, c_uint));
    guard(|| {
        let b = desc.as_ref().map(|d| {
            array_bytes(
                d.width as u64,
                d.height as u64,
                d.depth as u64,
                d.format,
                d.channels,
                d.flags,
                levels,
            )
        });
        array_with(
            &MIPMAPS,
            b,
            || real(handle, desc, levels),
            || *handle as u64,
        )
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMipmappedArrayDestroy(handle: *mut c_void) -> CUresult {
    let real = real!(R_MIPMAP_DESTROY as fn(*mut c_void));
    guard(|| free_with(&MIPMAPS, handle as u64, || real(handle)))
}

// ---------------------------------------------------------------------------------------------
// cuGetProcAddress.

/// After the real `cuGetProcAddress` answered `*pfn` for (`symbol`, `version`, `flags`): when the
/// variant table says that answer is an entry point we wrap, hand back our wrapper of exactly
/// that variant instead. Names the table does not know (newer drivers), unknown flags, and
/// everything not wrapped keep the driver's pointer.
unsafe fn wrap_proc(symbol: *const c_char, pfn: *mut *mut c_void, version: c_int, flags: u64) {
    if symbol.is_null() || pfn.is_null() || (*pfn).is_null() || flags > 2 || view::bypassed() {
        return;
    }
    let Ok(name) = CStr::from_ptr(symbol).to_str() else {
        return;
    };
    let Ok(sym) = procaddr::resolve(name, version, flags) else {
        return;
    };
    if let Some((w, slot)) = table(sym.as_bytes()) {
        slot.offer(*pfn);
        crate::debug!("cuGetProcAddress({name}, {version}, {flags}) -> shim's {sym}");
        *pfn = w;
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuGetProcAddress(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: u64,
) -> CUresult {
    let real = real!(R_GPA as fn(*const c_char, *mut *mut c_void, c_int, u64));
    guard(|| {
        let r = real(symbol, pfn, version, flags);
        if r == CUDA_SUCCESS {
            wrap_proc(symbol, pfn, version, flags);
        }
        r
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuGetProcAddress_v2(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: u64,
    status: *mut c_int,
) -> CUresult {
    let real = real!(R_GPA_V2 as fn(*const c_char, *mut *mut c_void, c_int, u64, *mut c_int));
    guard(|| {
        let r = real(symbol, pfn, version, flags, status);
        if r == CUDA_SUCCESS {
            wrap_proc(symbol, pfn, version, flags);
        }
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection() {
        let u = ["GPU-aaaa1111", "GPU-bbbb2222", "GPU-cccc3333"];
        assert_eq!(select(None, &u), vec![0, 1, 2]);
        assert_eq!(select(Some(""), &u), Vec::<usize>::new());
        assert_eq!(select(Some("2,0"), &u), vec![2, 0]);
        assert_eq!(select(Some("1,7,0"), &u), vec![1]);
        assert_eq!(select(Some("GPU-bbbb,0"), &u), vec![1, 0]);
        assert_eq!(select(Some("1,1"), &u), vec![1]);
        assert_eq!(select(Some("GPU-"), &u), Vec::<usize>::new());
    }

    #[test]
    fn arrays() {
        // 2D float4 256x256: 1 MiB.
        assert_eq!(array_bytes(256, 256, 0, 0x20, 4, 0, 1), 1 << 20);
        // 1D uint8.
        assert_eq!(array_bytes(100, 0, 0, 0x01, 1, 0, 1), 100);
        // Mipmaps of 4x4 uint8: 16 + 4 + 1.
        assert_eq!(array_bytes(4, 4, 0, 0x01, 1, 0, 3), 21);
        // Layered: 3 layers of 4x4 with 2 levels: 3 * (16 + 4).
        assert_eq!(array_bytes(4, 4, 3, 0x01, 1, CUDA_ARRAY3D_LAYERED, 2), 60);
    }

    #[test]
    fn variants_are_wrapped_exactly() {
        assert_eq!(
            procaddr::resolve("cuMemAlloc", 3020, 0),
            Ok("cuMemAlloc_v2")
        );
        assert!(table(b"cuMemAlloc_v2").is_some());
        assert!(table(b"cuLaunchKernel").is_none());
        assert_eq!(
            wrapper(b"cuMemAllocAsync_ptsz"),
            Some(cuMemAllocAsync_ptsz as *mut c_void)
        );
    }

    #[test]
    fn uuid_format() {
        let b = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ];
        assert_eq!(uuid_string(&b), "GPU-12345678-9abc-def0-0123-456789abcdef");
    }
}
