//! The environment as this process sees it, and its membership in the memory ledger.
//!
//! API for the CUDA and NVML layers:
//! - [`get`] → `None` outside an environment, or when the shim is bypassed (`GENV_SHIM_BYPASS`,
//!   set by the genv CLI for itself); otherwise the current [`View`]. A view that could not be
//!   read (state file missing or unreadable, environment gone) is `broken`: it has no devices,
//!   and the layers expose no GPU. Bypassing is decided once, at the first call (not in a
//!   constructor), so a program that sets `GENV_SHIM_BYPASS` at the top of `main` is left alone.
//! - [`follow`]: the initialisation points (`cuInit`, context creation, `nvmlInit*`) re-read
//!   `GENV_ENVIRONMENT_ID`, so that a process which enters, leaves or changes environments
//!   itself (`genv.sdk.activate()`) is followed from its next initialisation on. Never per
//!   allocation: a getenv is a scan of the environment.
//! - A view is immutable. [`get`] costs one atomic load outside an environment, and one more of
//!   the state's write generation inside one; when that moved (`genv attach`,
//!   `genv config gpu-memory`, …) one caller re-reads the state (the others keep using the
//!   previous view meanwhile: no one waits) and publishes a new view if the environment's record
//!   changed. Superseded views are leaked on purpose: callers hold plain `&'static` references,
//!   and they change only when the user reconfigures or changes the environment.
//! - [`View::devices`]: the attached GPUs in attach order (the virtual numbering of both CUDA and
//!   NVML), each with its NVML host index, UUID, capacity (`min(gpu-memory, physical)`) and
//!   physical size. [`View::env_used`], [`View::env_pids`], [`View::pid_used`] read the ledger.
//! - [`View::memory`]: the environment's memory on a device, as CUDA and NVML both report it.
//!   `View::reserve` and the process's registrations in the ledger: ledger.rs.
//!
//! What the capacity counts: the device memory that the environment's programs allocate through
//! the driver (see cuda/mod.rs for the list of paths), not the memory of CUDA contexts themselves.
//! `cuMemGetInfo`, NVML's memory figures and the check all use this same ledger figure.

use genv_state::ledger::{self, LedgerFile};
use genv_state::Store;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, Ordering};

/// One attached GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewDev {
    /// NVML index (host numbering); the ledger is indexed by it.
    pub host_index: u32,
    /// `GPU-xxxxxxxx-…`, as NVML reported it.
    pub uuid: String,
    /// What the environment may hold here: `min(gpu-memory, physical_total)`.
    pub capacity: u64,
    pub physical_total: u64,
    /// The configured capacity, if any.
    pub cap: Option<u64>,
}

/// An environment's memory on one device (bytes), see [`View::memory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvMemory {
    pub total: u64,
    pub used: u64,
    pub free: u64,
}

/// The environment of this process.
pub struct View {
    /// The state could not be read: expose no GPU.
    pub broken: bool,
    pub eid: String,
    /// Environment slot and serial in the state file (the ledger's key).
    pub env_slot: usize,
    pub serial: u64,
    /// Attached GPUs in attach order.
    pub devices: Vec<ViewDev>,
    pub(crate) store: Option<&'static Store>,
    /// The environment's owner's ledger (mapped when this process may book memory in it).
    pub(crate) ledger: Option<&'static LedgerFile>,
    /// The state generation this view was last found current at.
    checked: AtomicU64,
}

impl View {
    pub fn devices(&self) -> &[ViewDev] {
        &self.devices
    }

    pub fn device(&self, host_index: u32) -> Option<&ViewDev> {
        self.devices.iter().find(|d| d.host_index == host_index)
    }

    /// The virtual index (attach order) of NVML device `host_index`.
    pub fn host_to_virtual(&self, host_index: u32) -> Option<u32> {
        self.devices
            .iter()
            .position(|d| d.host_index == host_index)
            .map(|i| i as u32)
    }

    /// What the environment's processes hold on NVML device `host_index` (the memory reports
    /// of CUDA and NVML). Memory of processes that ended is given back first, at most every
    /// [`REAP_EVERY_MS`]: a report is current to that, without a scan per call.
    pub fn env_used(&self, host_index: u32) -> u64 {
        match self.ledger {
            Some(l) => {
                self.reap_if_due(l);
                ledger::env_used(l, self.env_slot, self.serial, host_index as usize)
            }
            None => 0,
        }
    }

    fn reap_if_due(&self, lf: &LedgerFile) {
        // +1: 0 means "never reaped", so the first report of a process is always current.
        let now = coarse_ms() + 1;
        let last = LAST_REAP_MS.load(Ordering::Relaxed);
        if last != 0 && now.wrapping_sub(last) < REAP_EVERY_MS {
            return;
        }
        // One thread reaps; the others report what is there now.
        if LAST_REAP_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            let n = ledger::reap_dead(lf, Some(self.serial));
            if n > 0 {
                crate::debug!("gave back the memory of {n} processes that ended");
            }
        }
    }

    /// The environment's memory on NVML device `host_index`, as CUDA and NVML both report it,
    /// given the driver's figures: total = the capacity (never more than the driver's total),
    /// used = what the ledger says the environment holds, free = total - used but never more
    /// than the device really has free (0, never an error, when a capacity lowered meanwhile is
    /// passed). None when the device is not attached.
    pub fn memory(&self, host_index: u32, real_free: u64, real_total: u64) -> Option<EnvMemory> {
        let d = self.device(host_index)?;
        let used = self.env_used(host_index);
        let total = d.capacity.min(real_total);
        Some(EnvMemory {
            total,
            used,
            free: total.saturating_sub(used).min(real_free),
        })
    }

    /// Live processes of the environment that run under the shim. O(ledger slots).
    pub fn env_pids(&self) -> Vec<u32> {
        match self.ledger {
            Some(s) => ledger::env_processes(s, self.serial)
                .into_iter()
                .map(|(pid, _)| pid)
                .collect(),
            None => Vec::new(),
        }
    }

    /// What process `pid` of the environment holds on NVML device `host_index`. O(ledger slots).
    pub fn pid_used(&self, pid: u32, host_index: u32) -> u64 {
        let (Some(s), true) = (
            self.ledger,
            (host_index as usize) < genv_state::layout::MAX_DEVICES,
        ) else {
            return 0;
        };
        ledger::env_processes(s, self.serial)
            .into_iter()
            .filter(|(p, _)| *p == pid)
            .map(|(_, used)| used[host_index as usize])
            .sum()
    }
}

/// How often, at most, a memory report reaps the environment's dead processes (a scan of the
/// ledger's process slots).
const REAP_EVERY_MS: u64 = 100;
/// When this process last did (monotonic ms + 1; 0: never).
static LAST_REAP_MS: AtomicU64 = AtomicU64::new(0);

/// Milliseconds of a coarse monotonic clock (a vDSO read, no system call).
fn coarse_ms() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass; the clock id is valid on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut t) };
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}

// ---------------------------------------------------------------------------------------------
// Bypass, and whether the process started in an environment.

const UNKNOWN: u8 = 0;
const NO: u8 = 1;
const YES: u8 = 2;
static BYPASS: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Whether `GENV_SHIM_BYPASS` is set (the genv CLI sets it for itself): then the shim hands out
/// the real functions and acts in nothing. Read at the first call and fixed for the life of the
/// process, so that nothing the process does later can make the CLI see a partial view.
pub fn bypassed() -> bool {
    match BYPASS.load(Ordering::Relaxed) {
        YES => true,
        NO => false,
        _ => {
            let on = matches!(crate::env::get(c"GENV_SHIM_BYPASS"), Some(v) if !v.is_empty() && v != b"0");
            BYPASS.store(if on { YES } else { NO }, Ordering::Relaxed);
            if on {
                crate::debug!("GENV_SHIM_BYPASS is set: passing everything through");
            }
            on
        }
    }
}

static STARTED_IN_ENV: AtomicBool = AtomicBool::new(false);

/// Notes whether the process was started inside an environment (as `genv exec`, an activated
/// shell or `genv.sdk` children are), and makes it a member of that environment (`member.rs`).
/// Only this reads the environment at load time: cuda/devices.rs
/// restricts the real driver with `CUDA_VISIBLE_DEVICES` for such processes only, since a
/// process started outside one may still enter and leave environments itself.
extern "C" fn at_load() {
    let set = matches!(crate::env::get(c"GENV_ENVIRONMENT_ID"), Some(v) if !v.is_empty());
    STARTED_IN_ENV.store(set, Ordering::Relaxed);
    if set {
        // Nothing in join panics; should it, the program must still start.
        let _ = std::panic::catch_unwind(crate::member::join);
    }
}

#[used]
#[link_section = ".init_array"]
static AT_LOAD: extern "C" fn() = at_load;

/// Whether `GENV_ENVIRONMENT_ID` was set when the process started (see `at_load`).
pub fn started_in_env() -> bool {
    STARTED_IN_ENV.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------------
// The current view.

/// Null: not decided yet; [`no_env`]: no environment (or bypassed); else the current view.
static CUR: AtomicPtr<View> = AtomicPtr::new(std::ptr::null_mut());
static REFRESHING: AtomicBool = AtomicBool::new(false);
static STORE: AtomicPtr<Store> = AtomicPtr::new(std::ptr::null_mut());

/// The "no environment" marker in `CUR`: aligned, never a real allocation.
fn no_env() -> *mut View {
    std::ptr::NonNull::<View>::dangling().as_ptr()
}

/// The environment's view; `None` outside an environment. See the module documentation.
#[inline]
pub fn get() -> Option<&'static View> {
    let p = CUR.load(Ordering::Acquire);
    if p == no_env() {
        return None;
    }
    if p.is_null() {
        return init();
    }
    // SAFETY: published views are leaked, never freed.
    let v = unsafe { &*p };
    if let Some(s) = v.store {
        let g = s.generation();
        if g != v.checked.load(Ordering::Relaxed) {
            return refresh(v, s, g);
        }
    }
    Some(v)
}

/// Called at the initialisation points (`cuInit`, context creation, `nvmlInit*`): re-reads
/// `GENV_ENVIRONMENT_ID` and, when it changed since the view was made (set, unset, or another
/// environment), publishes the view of the new environment, or none. Then as [`get`].
pub fn follow() -> Option<&'static View> {
    let p = CUR.load(Ordering::Acquire);
    if p.is_null() || bypassed() {
        return get();
    }
    check_replaced();
    let want = wanted_eid();
    let have: Option<&[u8]> = if p == no_env() {
        None
    } else {
        // SAFETY: published views are leaked, never freed.
        Some(unsafe { &*p }.eid.as_bytes())
    };
    if have == want {
        return get();
    }
    switch(p, want);
    get()
}

/// The environment this process asks for now: `GENV_ENVIRONMENT_ID` when set and not empty.
fn wanted_eid() -> Option<&'static [u8]> {
    crate::env::get(c"GENV_ENVIRONMENT_ID").filter(|v| !v.is_empty())
}

#[cold]
fn switch(old: *mut View, want: Option<&[u8]>) {
    let new = match want {
        Some(e) => {
            let v = make(String::from_utf8_lossy(e).into_owned());
            describe(&v);
            Box::into_raw(Box::new(v))
        }
        None => no_env(),
    };
    crate::debug!(
        "GENV_ENVIRONMENT_ID changed: now {}",
        want.map_or("unset (passing everything through)".into(), |e| {
            String::from_utf8_lossy(e).into_owned()
        })
    );
    match CUR.compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            // SAFETY: just published (or the marker); published views are leaked.
            let serial = (new != no_env()).then(|| unsafe { &*new }.serial);
            crate::ledger::supersede_others(serial);
        }
        Err(_) => {
            // Another thread switched or refreshed first; its view stands (the next
            // initialisation point looks again).
            if new != no_env() {
                // SAFETY: ours, never published.
                drop(unsafe { Box::from_raw(new) });
            }
        }
    }
}

fn broken(eid: String, why: std::fmt::Arguments<'_>) -> View {
    crate::log::error_once(format_args!(
        "{why}; no GPU is exposed to this process (environment {eid})"
    ));
    View {
        broken: true,
        eid,
        env_slot: usize::MAX,
        serial: 0,
        devices: Vec::new(),
        store: None,
        ledger: None,
        checked: AtomicU64::new(0),
    }
}

/// At the initialisation points: says once when the state file this process uses was removed
/// or replaced meanwhile. The process keeps to the file it has (its environment and the
/// memory booked there stay consistent with the other processes that use it); new processes
/// will not find the environment, and the CLI refuses to hand out GPUs while this one runs.
fn check_replaced() {
    // SAFETY: published stores are leaked, never freed.
    let Some(s) = (unsafe { STORE.load(Ordering::Acquire).as_ref() }) else {
        return;
    };
    if s.replaced() {
        crate::log::error_once(format_args!(
            "the state file {} was removed or replaced while this process ran; it keeps to its \
             environment as it was, but new processes will not find it",
            s.path().display()
        ));
    }
}

fn open_store() -> Result<&'static Store, genv_state::Error> {
    let p = STORE.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: leaked below, never freed.
        return Ok(unsafe { &*p });
    }
    let s = Box::into_raw(Box::new(Store::open_at(&genv_state::state_path(), false)?));
    match STORE.compare_exchange(std::ptr::null_mut(), s, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: just published; leaked from now on.
        Ok(_) => Ok(unsafe { &*s }),
        Err(cur) => {
            // SAFETY: ours, never published.
            drop(unsafe { Box::from_raw(s) });
            Ok(unsafe { &*cur })
        }
    }
}

fn build(store: &'static Store, eid: String) -> View {
    let snap = store.snapshot();
    // Identifiers are per user: another user's environment of this name is not this process's
    // (it could otherwise spend that environment's capacity).
    let me = my_uid();
    let Some((slot, e)) = snap.env_for(me, &eid) else {
        let why = match snap.foreign_env(me, &eid) {
            Some((_, e)) => format!(
                "environment {eid} belongs to {}({}), not to this process's user ({me})",
                e.username(),
                e.uid
            ),
            None => format!(
                "environment {eid} does not exist in {} (it ended, or GENV_TMPDIR differs)",
                store.path().display()
            ),
        };
        return View {
            store: Some(store),
            checked: AtomicU64::new(snap.generation),
            ..broken(eid.clone(), format_args!("{why}"))
        };
    };
    let devices = e
        .attached()
        .iter()
        .filter_map(|a| {
            let d = snap.devices().iter().find(|d| d.index == a.device)?;
            let cap = e.gpu_memory();
            Some(ViewDev {
                host_index: a.device,
                uuid: d.uuid(),
                capacity: e.capacity_on(d),
                physical_total: d.total_memory,
                cap,
            })
        })
        .collect();
    View {
        broken: false,
        eid,
        env_slot: slot,
        serial: e.serial,
        devices,
        store: Some(store),
        ledger: ledger_of(store, e.uid),
        checked: AtomicU64::new(snap.generation),
    }
}

/// The ledger of user `uid` (the environment's owner), opened once and kept: mapped when this
/// process may write it, read-only otherwise (its memory figures still read; allocations are
/// refused, see `View::reserve`). Kept per uid; one is all a process normally needs.
fn ledger_of(store: &'static Store, uid: u32) -> Option<&'static LedgerFile> {
    // SAFETY: published ledgers are leaked, never freed.
    if let Some(l) = unsafe { LEDGER.load(Ordering::Acquire).as_ref() } {
        if l.uid() == uid {
            return Some(l);
        }
    }
    let lf = store
        .ledger(uid, ledger::Access::Map, ledger::Create::No)
        .or_else(|_| store.ledger(uid, ledger::Access::Read, ledger::Create::No));
    let lf = match lf {
        Ok(l) => l,
        Err(e) => {
            crate::log::error_once(format_args!(
                "cannot open the genv memory ledger of uid {uid} ({e}): allocations are refused"
            ));
            return None;
        }
    };
    let p = Box::into_raw(Box::new(lf));
    // Whatever was there stays valid (leaked) for the views that use it.
    LEDGER.store(p, Ordering::Release);
    // SAFETY: just published; leaked from now on.
    Some(unsafe { &*p })
}

/// This process's real uid (the one the CLI records as an environment's owner).
fn my_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// The ledger opened last (see `ledger_of`).
static LEDGER: AtomicPtr<LedgerFile> = AtomicPtr::new(std::ptr::null_mut());

fn same(a: &View, b: &View) -> bool {
    a.broken == b.broken
        && a.ledger.map(|l| l as *const LedgerFile) == b.ledger.map(|l| l as *const LedgerFile)
        && a.env_slot == b.env_slot
        && a.serial == b.serial
        && a.devices == b.devices
}

fn describe(v: &View) {
    if v.broken {
        crate::debug!("view of {}: broken, no GPU", v.eid);
        return;
    }
    crate::debug!(
        "view of {} (slot {}, serial {}): {}",
        v.eid,
        v.env_slot,
        v.serial,
        if v.devices.is_empty() {
            "no GPU attached".to_string()
        } else {
            v.devices
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    format!(
                        "[{i}] host {} {} capacity {}{}",
                        d.host_index,
                        d.uuid,
                        d.capacity,
                        if d.cap.is_none() { " (no limit)" } else { "" }
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
}

/// The view behind a value of `CUR`.
fn as_view(p: *mut View) -> Option<&'static View> {
    // SAFETY: published views are leaked, never freed.
    (!p.is_null() && p != no_env()).then(|| unsafe { &*p })
}

/// Installs `v` in place of `old`; returns what is current afterwards (another thread's view,
/// or none, when it replaced `old` first).
fn publish(old: *mut View, v: View) -> Option<&'static View> {
    describe(&v);
    let p = Box::into_raw(Box::new(v));
    match CUR.compare_exchange(old, p, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => as_view(p),
        Err(cur) => {
            // SAFETY: ours, never published.
            drop(unsafe { Box::from_raw(p) });
            as_view(cur)
        }
    }
}

/// The view of environment `eid`, read from the state.
fn make(eid: String) -> View {
    match open_store() {
        Ok(store) => build(store, eid),
        Err(e) => broken(eid, format_args!("cannot read the genv state ({e})")),
    }
}

#[cold]
fn init() -> Option<&'static View> {
    crate::fork::register();
    match (bypassed(), wanted_eid()) {
        (false, Some(e)) => {
            let eid = String::from_utf8_lossy(e).into_owned();
            crate::debug!("in environment {eid}");
            publish(std::ptr::null_mut(), make(eid))
        }
        (bypass, _) => {
            if !bypass {
                crate::debug!(
                    "not in an environment (GENV_ENVIRONMENT_ID unset): passing through until one is set"
                );
            }
            let cur = match CUR.compare_exchange(
                std::ptr::null_mut(),
                no_env(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => no_env(),
                Err(cur) => cur,
            };
            as_view(cur)
        }
    }
}

#[cold]
fn refresh(cur: &'static View, store: &'static Store, g: u64) -> Option<&'static View> {
    // One refresher at a time; the others go on with the current view rather than wait.
    if REFRESHING.swap(true, Ordering::Acquire) {
        return Some(cur);
    }
    let v = build(store, cur.eid.clone());
    let out = if same(cur, &v) {
        cur.checked
            .store(g.max(v.checked.load(Ordering::Relaxed)), Ordering::Relaxed);
        Some(cur)
    } else {
        let serial = v.serial;
        let out = publish(cur as *const View as *mut View, v);
        // The same id, another environment (it ended and was made again): as a switch.
        if serial != cur.serial && out.is_some_and(|n| n.serial == serial) {
            crate::ledger::supersede_others(Some(serial));
        }
        out
    };
    REFRESHING.store(false, Ordering::Release);
    out
}

/// In a forked child (see `ledger::after_fork_child`): a refresh the parent had in progress is
/// not the child's.
pub(crate) fn after_fork_child() {
    REFRESHING.store(false, Ordering::Relaxed);
}
