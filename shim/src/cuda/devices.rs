//! Which devices a CUDA program sees, and what it is told about their memory.
//!
//! Before the real `cuInit` of a process *started* in its environment, the real
//! `CUDA_VISIBLE_DEVICES` is set to the UUIDs of the environment's GPUs in attach order, so the
//! driver itself sees only them and numbers them 0..n in that order: ordinals,
//! `cuDeviceGetByPCIBusId`, `cuDeviceGetUuid` and every function taking a `CUdevice` need no
//! wrapping, and a GPU outside the environment cannot be reached at all. A `CUDA_VISIBLE_DEVICES`
//! the user set inside the environment selects among the environment's GPUs (indices into attach
//! order, or UUIDs), as in a container. The user's value is kept in
//! `GENV_CUDA_VISIBLE_DEVICES_USER` (and ours in `GENV_CUDA_VISIBLE_DEVICES_SET`) so that a
//! child process interprets the user's value again rather than ours. The device set is thus
//! fixed when CUDA initialises, as with the real variable.
//!
//! A process started outside an environment may enter environments later (genv.sdk.activate(),
//! docs/shim.md "In-process activation"), and the real driver reads `CUDA_VISIBLE_DEVICES` once:
//! there the driver keeps every GPU and the shim numbers the current environment's devices
//! itself (`cuDeviceGetCount`, `cuDeviceGet`, `cuDeviceGetByPCIBusId`, context creation refused
//! on other devices), following the view at call time. `cuInit` and context creation re-read
//! `GENV_ENVIRONMENT_ID` (`view::follow`).

use super::*;

/// The 16 bytes of `CUuuid`.
const UUID_BYTES: usize = 16;

// Helpers the wrappers call; never handed out. SAFETY of each `Real::new`: the type given is
// the driver's C signature of that name.
type CtxFn = unsafe extern "C" fn(*mut CUcontext) -> CUresult;
type UuidFn = unsafe extern "C" fn(*mut [u8; UUID_BYTES], CUdevice) -> CUresult;
// SAFETY: see above.
static CTX_GET_DEVICE: Real<unsafe extern "C" fn(*mut CUdevice) -> CUresult> =
    unsafe { Real::new(&real::CUDA, c"cuCtxGetDevice") };
// SAFETY: see above.
static CTX_GET_CURRENT: Real<CtxFn> = unsafe { Real::new(&real::CUDA, c"cuCtxGetCurrent") };
// SAFETY: see above.
static CTX_PUSH: Real<unsafe extern "C" fn(CUcontext) -> CUresult> =
    unsafe { Real::new(&real::CUDA, c"cuCtxPushCurrent_v2") };
// SAFETY: see above.
static CTX_POP: Real<CtxFn> = unsafe { Real::new(&real::CUDA, c"cuCtxPopCurrent_v2") };
// SAFETY: see above.
static STREAM_GET_CTX: Real<unsafe extern "C" fn(CUstream, *mut CUcontext) -> CUresult> =
    unsafe { Real::new(&real::CUDA, c"cuStreamGetCtx") };
// SAFETY: see above.
static UUID_V2: Real<UuidFn> = unsafe { Real::new(&real::CUDA, c"cuDeviceGetUuid_v2") };
// SAFETY: see above.
static UUID: Real<UuidFn> = unsafe { Real::new(&real::CUDA, c"cuDeviceGetUuid") };

// ---------------------------------------------------------------------------------------------
// CUDA handle -> NVML host index, by UUID.

/// The real driver's devices as (handle, UUID), in its ordinal order: read once after the real
/// `cuInit`, since the driver enumerates its devices once per process.
static DRIVER_DEVS: AtomicPtr<Vec<(CUdevice, String)>> = AtomicPtr::new(std::ptr::null_mut());

pub(super) fn uuid_string(b: &[u8; UUID_BYTES]) -> String {
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
    let count = cuDeviceGetCount::REAL.get()?;
    let get = cuDeviceGet::REAL.get()?;
    let uuid = UUID_V2.get().or_else(|| UUID.get())?;
    let mut n: c_int = 0;
    // SAFETY: a valid out pointer.
    if unsafe { count(&mut n) } != CUDA_SUCCESS {
        return None;
    }
    let mut out = Vec::new();
    for ord in 0..n {
        let mut h: CUdevice = 0;
        let mut u = [0u8; UUID_BYTES];
        // SAFETY: valid out pointers.
        if unsafe { get(&mut h, ord) } != CUDA_SUCCESS || unsafe { uuid(&mut u, h) } != CUDA_SUCCESS
        {
            return None;
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
pub(super) fn fixed(v: &View) -> bool {
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
fn dev_table(v: &View) -> Option<&'static DevTable> {
    let p = TABLE.load(Ordering::Acquire);
    // SAFETY: published tables are never freed.
    match unsafe { p.as_ref() } {
        Some(t) if t.view == v as *const View as usize => Some(t),
        _ => build_table(v),
    }
}

#[cold]
fn build_table(v: &View) -> Option<&'static DevTable> {
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
        view: v as *const View as usize,
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
pub(super) fn host_of(v: &View, dev: CUdevice) -> Option<u32> {
    dev_table(v)?
        .hosts
        .iter()
        .find(|(h, _)| *h == dev)
        .map(|(_, host)| *host)
}

/// Whether a context may be made on `dev`: always where the driver's numbering is the
/// environment's (the driver knows no other device); otherwise only on the environment's
/// devices. `Err` is the answer to give.
fn device_allowed(v: &View, dev: CUdevice) -> Result<(), CUresult> {
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
pub(super) fn current_host(v: &View) -> Result<u32, CUresult> {
    let f = CTX_GET_DEVICE.get().ok_or(CUDA_ERROR_NOT_FOUND)?;
    let mut d: CUdevice = -1;
    // SAFETY: a valid out pointer.
    let r = unsafe { f(&mut d) };
    if r != CUDA_SUCCESS {
        return Err(r);
    }
    host_of(v, d).ok_or(CUDA_ERROR_OUT_OF_MEMORY)
}

/// The host index of the device a stream belongs to: the current context's for the default
/// streams, else the stream's context's (pushed for the question, then popped).
pub(super) fn stream_host(v: &View, s: CUstream) -> Result<u32, CUresult> {
    if s as usize <= LAST_SPECIAL_STREAM {
        return current_host(v);
    }
    let (Some(gc), Some(cur), Some(push), Some(pop)) = (
        STREAM_GET_CTX.get(),
        CTX_GET_CURRENT.get(),
        CTX_PUSH.get(),
        CTX_POP.get(),
    ) else {
        return current_host(v);
    };
    let mut sc: CUcontext = std::ptr::null_mut();
    let mut cc: CUcontext = std::ptr::null_mut();
    // SAFETY: the driver's functions with valid out pointers; the context pushed is popped
    // again before returning.
    unsafe {
        if gc(s, &mut sc) != CUDA_SUCCESS
            || cur(&mut cc) != CUDA_SUCCESS
            || sc == cc
            || sc.is_null()
        {
            return current_host(v);
        }
        if push(sc) != CUDA_SUCCESS {
            return current_host(v);
        }
        let r = current_host(v);
        let mut popped: CUcontext = std::ptr::null_mut();
        pop(&mut popped);
        r
    }
}

// ---------------------------------------------------------------------------------------------
// Initialisation.

/// Whether the real `cuInit` has been called: the driver reads `CUDA_VISIBLE_DEVICES` then, once
/// per process.
static REAL_INIT: AtomicBool = AtomicBool::new(false);

/// Which of the environment's devices a user's `CUDA_VISIBLE_DEVICES` selects: the one rule,
/// which `genv activate`/`exec` also explain to the user.
pub use genv_state::visible::select;

/// Restricts the real driver to the environment's devices, before the first real cuInit.
fn set_visible(v: &View) {
    const CVD: &CStr = c"CUDA_VISIBLE_DEVICES";
    const SET: &CStr = c"GENV_CUDA_VISIBLE_DEVICES_SET";
    const USER: &CStr = c"GENV_CUDA_VISIBLE_DEVICES_USER";
    let (cur, set, saved) = (
        env::get_string(CVD),
        env::get_string(SET),
        env::get_string(USER),
    );
    // Inherited from a parent under the shim: the user's value is the one it saved.
    let user = genv_state::visible::user_value(cur.as_deref(), set.as_deref(), saved.as_deref())
        .map(str::to_string);
    let uuids: Vec<&str> = v.devices().iter().map(|d| d.uuid.as_str()).collect();
    let sel = select(user.as_deref(), &uuids);
    let value = sel.iter().map(|&i| uuids[i]).collect::<Vec<_>>().join(",");
    crate::debug!(
        "CUDA_VISIBLE_DEVICES for the driver: {value:?} (user's: {user:?}; environment's GPUs in attach order: {uuids:?})"
    );
    env::set(CVD, &value);
    env::set(SET, &value);
    match &user {
        Some(u) => env::set(USER, u),
        None => env::unset(USER),
    }
}

pub(super) fn init(real: unsafe extern "C" fn(c_uint) -> CUresult, flags: c_uint) -> CUresult {
    // An initialisation point: follow the process into (or out of) an environment.
    let Some(v) = view::follow() else {
        REAL_INIT.store(true, Ordering::Release);
        // SAFETY: the caller's argument, unchanged.
        return unsafe { real(flags) };
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
    // SAFETY: the caller's argument, unchanged.
    let r = unsafe { real(flags) };
    crate::debug!("cuInit({flags}) = {r}");
    r
}

/// # Safety
/// `count` as `cuDeviceGetCount` takes it.
pub(super) unsafe fn count(
    real: unsafe extern "C" fn(*mut c_int) -> CUresult,
    count: *mut c_int,
) -> CUresult {
    let Some(v) = view::get() else {
        // SAFETY: the caller's argument, unchanged.
        return unsafe { real(count) };
    };
    if v.broken && !count.is_null() {
        // SAFETY: a non-NULL out pointer of the caller's.
        unsafe { *count = 0 };
        return CUDA_SUCCESS;
    }
    // SAFETY: the caller's argument, unchanged.
    let r = unsafe { real(count) };
    if r == CUDA_SUCCESS && !count.is_null() && !fixed(v) {
        // Fail closed if the driver's devices cannot be read.
        let n = dev_table(v)
            .and_then(|t| t.remap.as_ref())
            .map_or(0, |m| m.len() as c_int);
        // SAFETY: as above.
        unsafe { *count = n };
    }
    r
}

/// # Safety
/// The arguments as `cuDeviceGet` takes them.
pub(super) unsafe fn get(
    real: unsafe extern "C" fn(*mut CUdevice, c_int) -> CUresult,
    dev: *mut CUdevice,
    ordinal: c_int,
) -> CUresult {
    let Some(v) = view::get() else {
        // SAFETY: the caller's arguments, unchanged.
        return unsafe { real(dev, ordinal) };
    };
    if fixed(v) {
        // SAFETY: as above.
        return unsafe { real(dev, ordinal) };
    }
    let Some(m) = dev_table(v).and_then(|t| t.remap.as_ref()) else {
        // Not initialised (the driver says so), or devices unreadable (none).
        // SAFETY: as above.
        let r = unsafe { real(dev, ordinal) };
        return if r == CUDA_SUCCESS {
            CUDA_ERROR_INVALID_DEVICE
        } else {
            r
        };
    };
    match usize::try_from(ordinal).ok().and_then(|i| m.get(i)) {
        // SAFETY: the caller's out pointer, and an ordinal the driver knows.
        Some(&(real_ordinal, _)) => unsafe { real(dev, real_ordinal) },
        None => CUDA_ERROR_INVALID_DEVICE,
    }
}

/// After the real `cuDeviceGetByPCIBusId` answered `r` and `*dev`: a device outside the
/// environment is not found, where the shim numbers the devices itself.
///
/// # Safety
/// `dev` as `cuDeviceGetByPCIBusId` takes it.
pub(super) unsafe fn by_bus_id(r: CUresult, dev: *mut CUdevice) -> CUresult {
    if r != CUDA_SUCCESS || dev.is_null() {
        return r;
    }
    match view::get() {
        // SAFETY: written by the driver on success.
        Some(v) if !fixed(v) && host_of(v, unsafe { *dev }).is_none() => CUDA_ERROR_INVALID_DEVICE,
        _ => r,
    }
}

/// Context creation: an initialisation point (the real driver initialises once per process, so
/// for a process that entered an environment after its cuInit this is where it is followed),
/// and, where the shim numbers the devices itself, only on the environment's devices.
pub(super) fn ctx_create(dev: CUdevice, call: impl FnOnce() -> CUresult) -> CUresult {
    if let Some(v) = view::follow() {
        if let Err(e) = device_allowed(v, dev) {
            crate::debug!("context on CUDA device {dev} refused: not the environment's ({e})");
            return e;
        }
    }
    call()
}

// ---------------------------------------------------------------------------------------------
// Memory figures.

/// min(capacity, physical) for device handle `dev`.
pub(super) fn capped_total(dev: CUdevice, real_total: u64) -> u64 {
    match view::get() {
        Some(v) => match host_of(v, dev).and_then(|h| v.device(h)) {
            Some(d) => real_total.min(d.capacity),
            None => real_total,
        },
        None => real_total,
    }
}

/// (free, total) as the environment sees the current device, from the driver's figures.
pub(super) fn mem_info(free: u64, total: u64) -> (u64, u64) {
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
    match v.memory(host, free, total) {
        Some(m) => (m.free, m.total),
        None => (0, 0),
    }
}
