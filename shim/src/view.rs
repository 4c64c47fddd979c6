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
//! - [`View::reserve`] / [`release`]: the capacity check, atomic across all the processes of the
//!   environment (one compare-and-swap; on refusal, dead processes of the environment are reaped
//!   and the reservation retried once). This process registers in the ledger, per environment,
//!   at its first reservation there; a forked child registers again (see [`after_fork_child`]).
//!   A [`Ticket`] names the registration its bytes went to, so memory reserved in an environment
//!   the process has since left is given back to that environment; a registration of a left
//!   environment is given up as soon as it holds nothing.
//!
//! What the capacity counts: the device memory that the environment's programs allocate through
//! the driver (see cuda.rs for the list of paths), not the memory of CUDA contexts themselves.
//! `cuMemGetInfo`, NVML's memory figures and the check all use this same ledger figure.

use genv_state::ledger::{self, ProcHandle};
use genv_state::Store;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering};

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
    store: Option<&'static Store>,
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
        match self.store {
            Some(s) => {
                self.reap_if_due(s);
                ledger::env_used(s, self.env_slot, self.serial, host_index as usize)
            }
            None => 0,
        }
    }

    fn reap_if_due(&self, store: &Store) {
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
            let n = ledger::reap_dead(store, Some(self.serial));
            if n > 0 {
                crate::debug!("gave back the memory of {n} processes that ended");
            }
        }
    }

    /// Live processes of the environment that run under the shim. O(ledger slots).
    pub fn env_pids(&self) -> Vec<u32> {
        match self.store {
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
            self.store,
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

    /// Reserves `bytes` on NVML device `host_index` against the environment's capacity there.
    /// `Err(current use)` when it would pass the capacity, when the device is not attached, or
    /// when this process cannot be registered in the ledger (fail closed).
    pub fn reserve(&self, host_index: u32, bytes: u64) -> Result<Ticket, u64> {
        let (Some(store), Some(dev)) = (self.store, self.device(host_index)) else {
            crate::debug!("refuse {bytes} bytes on host GPU {host_index}: not attached");
            return Err(0);
        };
        // A registration being given up (see `reclaim`) refuses new users; the next lookup then
        // finds or makes a live one. Bounded, in case of a pathological race.
        for _ in 0..4 {
            let p = proc_for(self, store).ok_or(0u64)?;
            p.users.fetch_add(1, Ordering::SeqCst);
            if p.state.load(Ordering::SeqCst) != LIVE {
                p.users.fetch_sub(1, Ordering::SeqCst);
                let _ = PROC.compare_exchange(
                    p as *const Proc as *mut Proc,
                    std::ptr::null_mut(),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
                continue;
            }
            let r = self.reserve_on(p, host_index, dev, bytes);
            p.users.fetch_sub(1, Ordering::SeqCst);
            return r;
        }
        Err(0)
    }

    /// Reserves `bytes` more on the registration of ticket `t` (a pitched allocation settling
    /// the pitch the driver chose). Refused when `t` belongs to another environment (this
    /// process changed environments in between). No `users` count is needed: `t`'s own bytes
    /// are held on that registration until the caller is done, so it cannot be given up.
    pub fn reserve_more(&self, t: Ticket, host_index: u32, bytes: u64) -> bool {
        match self.device(host_index) {
            Some(dev) if t.0.serial == self.serial && t.0.pid == my_pid() => {
                self.reserve_on(t.0, host_index, dev, bytes).is_ok()
            }
            _ => false,
        }
    }

    fn reserve_on(
        &self,
        p: &'static Proc,
        host_index: u32,
        dev: &ViewDev,
        bytes: u64,
    ) -> Result<Ticket, u64> {
        let store = p.store;
        let d = host_index as usize;
        match p.handle.reserve(store, d, bytes, dev.capacity) {
            ledger::Reserve::Ok => Ok(Ticket(p)),
            ledger::Reserve::OverCap(_) => {
                // Slow path only: a process of the environment killed with -9 may still be
                // counted; give its memory back and try once more.
                let reaped = ledger::reap_dead(store, Some(self.serial));
                match p.handle.reserve(store, d, bytes, dev.capacity) {
                    ledger::Reserve::Ok => Ok(Ticket(p)),
                    ledger::Reserve::OverCap(cur) => {
                        crate::debug!(
                            "out of memory: {bytes} bytes on host GPU {host_index}: environment uses {cur} of {} (reaped {reaped} dead processes)",
                            dev.capacity
                        );
                        Err(cur)
                    }
                }
            }
        }
    }
}

/// Proof of a reservation, to give it back with [`release`] (it names this process's ledger
/// registration at the time, so a release always goes where the reservation went, also after
/// the process changed environments).
#[derive(Clone, Copy)]
pub struct Ticket(&'static Proc);

impl Ticket {
    /// A word-sized form, for the allocation maps.
    pub fn to_bits(self) -> usize {
        self.0 as *const Proc as usize
    }
    /// # Safety
    /// `bits` must come from [`Ticket::to_bits`] (registrations are never freed).
    pub unsafe fn from_bits(bits: usize) -> Ticket {
        Ticket(&*(bits as *const Proc))
    }
}

/// Gives back a reservation (after the free, or when the driver refused the allocation).
pub fn release(t: Ticket, host_index: u32, bytes: u64) {
    t.0.handle.release(t.0.store, host_index as usize, bytes);
    // Memory of an environment this process has left: its registration goes once empty.
    if t.0.superseded.load(Ordering::Relaxed) {
        reclaim(t.0);
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
            let on = matches!(crate::log::getenv(c"GENV_SHIM_BYPASS"), Some(v) if !v.is_empty() && v != b"0");
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
/// shell or `genv.sdk` children are). Only this reads the environment at load time: cuda.rs
/// restricts the real driver with `CUDA_VISIBLE_DEVICES` for such processes only, since a
/// process started outside one may still enter and leave environments itself.
extern "C" fn at_load() {
    let set = matches!(crate::log::getenv(c"GENV_ENVIRONMENT_ID"), Some(v) if !v.is_empty());
    STARTED_IN_ENV.store(set, Ordering::Relaxed);
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
    crate::log::getenv(c"GENV_ENVIRONMENT_ID").filter(|v| !v.is_empty())
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
            supersede_others(serial);
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
    let Some((slot, e)) = snap.env_by_eid(&eid) else {
        return View {
            store: Some(store),
            checked: AtomicU64::new(snap.generation),
            ..broken(
                eid.clone(),
                format_args!(
                    "environment {eid} does not exist in {} (it ended, or GENV_TMPDIR differs)",
                    store.path().display()
                ),
            )
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
                capacity: cap.map_or(d.total_memory, |c| c.min(d.total_memory)),
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
        checked: AtomicU64::new(snap.generation),
    }
}

fn same(a: &View, b: &View) -> bool {
    a.broken == b.broken
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
            supersede_others(Some(serial));
        }
        out
    };
    REFRESHING.store(false, Ordering::Release);
    out
}

// ---------------------------------------------------------------------------------------------
// This process's registrations in the ledger: one per environment it reserved memory in.
//
// A process that changes environments (genv.sdk.activate() in a process started under the shim)
// keeps the registration of the environment it left while memory reserved there is not freed:
// those bytes stay that environment's until freed, and go back to it. Once such a registration
// holds nothing it is given up (`reclaim`), so a long-lived process that activates many
// environments in turn (a reused Ray worker) does not use up the ledger's process slots.

const LIVE: u8 = 0;
/// A reclaimer is checking whether the registration is idle; reservations keep off it.
const CLOSING: u8 = 1;
/// Given back to the ledger; never used again.
const GONE: u8 = 2;

struct Proc {
    pid: u32,
    serial: u64,
    store: &'static Store,
    handle: ProcHandle,
    /// Reservations in progress through this registration.
    users: AtomicU32,
    state: AtomicU8,
    /// Its environment is not this process's current one any more.
    superseded: AtomicBool,
    /// The next (older) registration of this process.
    next: AtomicPtr<Proc>,
}

/// Every registration of this process, newest first (leaked; a reclaimed one stays, `GONE`).
static REGS: AtomicPtr<Proc> = AtomicPtr::new(std::ptr::null_mut());
/// The registration used last: the fast path of [`proc_for`].
static PROC: AtomicPtr<Proc> = AtomicPtr::new(std::ptr::null_mut());
/// Serialises registering (cold), so that threads do not register twice for one environment.
/// A spin flag rather than a mutex, so that a forked child can reset it.
static CLAIMING: AtomicBool = AtomicBool::new(false);
/// This process's pid, kept current by the fork handler (getpid is a system call: too slow for
/// every allocation).
static MY_PID: AtomicU32 = AtomicU32::new(0);

fn my_pid() -> u32 {
    let p = MY_PID.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    let p = std::process::id();
    MY_PID.store(p, Ordering::Relaxed);
    p
}

fn regs() -> impl Iterator<Item = &'static Proc> {
    let mut p = REGS.load(Ordering::Acquire);
    std::iter::from_fn(move || {
        // SAFETY: registrations are leaked, never freed.
        let r = unsafe { p.as_ref()? };
        p = r.next.load(Ordering::Acquire);
        Some(r)
    })
}

fn proc_for(v: &View, store: &'static Store) -> Option<&'static Proc> {
    let p = PROC.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: registrations are leaked, never freed.
        let p = unsafe { &*p };
        if p.pid == my_pid() && p.serial == v.serial {
            return Some(p);
        }
    }
    claim(v, store)
}

#[cold]
fn claim(v: &View, store: &'static Store) -> Option<&'static Proc> {
    while CLAIMING
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::thread::yield_now();
    }
    let r = claim_locked(v, store);
    CLAIMING.store(false, Ordering::Release);
    r
}

fn claim_locked(v: &View, store: &'static Store) -> Option<&'static Proc> {
    // Compare with the kernel's pid here, on the slow path, in case a fork bypassed the handler.
    let pid = std::process::id();
    if MY_PID.swap(pid, Ordering::Relaxed) != pid {
        // A child made without fork handlers: the registrations are the parent's.
        REGS.store(std::ptr::null_mut(), Ordering::Release);
        PROC.store(std::ptr::null_mut(), Ordering::Release);
    }
    if let Some(p) = regs()
        .find(|p| p.pid == pid && p.serial == v.serial && p.state.load(Ordering::Acquire) == LIVE)
    {
        PROC.store(p as *const Proc as *mut Proc, Ordering::Release);
        return Some(p);
    }
    let Some(handle) = ProcHandle::claim(store, v.env_slot, v.serial) else {
        crate::log::error_once(format_args!(
            "cannot register process {pid} in the genv memory ledger ({}): allocations are refused",
            store.path().display()
        ));
        return None;
    };
    crate::debug!(
        "registered in the ledger: slot {} of environment {} (serial {})",
        handle.slot(),
        v.eid,
        v.serial
    );
    let p = Box::into_raw(Box::new(Proc {
        pid,
        serial: v.serial,
        store,
        handle,
        users: AtomicU32::new(0),
        state: AtomicU8::new(LIVE),
        superseded: AtomicBool::new(false),
        next: AtomicPtr::new(REGS.load(Ordering::Acquire)),
    }));
    // Only claimers (serialised) push; the fork handler only clears.
    REGS.store(p, Ordering::Release);
    PROC.store(p, Ordering::Release);
    // SAFETY: published registrations are leaked.
    Some(unsafe { &*p })
}

/// After the process switched to the environment of `serial` (None: no environment): marks the
/// registrations of other environments superseded, and gives up those that hold nothing.
fn supersede_others(serial: Option<u64>) {
    for p in regs() {
        let other = Some(p.serial) != serial;
        p.superseded.store(other, Ordering::SeqCst);
        if other {
            reclaim(p);
        }
    }
}

/// Gives registration `p` back to the ledger when it is superseded, holds nothing and no
/// reservation is in progress through it. The `users` / `state` handshake (both sides write
/// one, then read the other, sequentially consistent) guarantees that a reservation either
/// sees `CLOSING` / `GONE` and goes elsewhere, or is seen here.
fn reclaim(p: &'static Proc) {
    if p.pid != my_pid()
        || p.state
            .compare_exchange(LIVE, CLOSING, Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let idle = p.users.load(Ordering::SeqCst) == 0
        && p.superseded.load(Ordering::SeqCst)
        && (0..genv_state::layout::MAX_DEVICES).all(|d| p.handle.held(p.store, d) == 0);
    if !idle {
        p.state.store(LIVE, Ordering::SeqCst);
        return;
    }
    p.state.store(GONE, Ordering::SeqCst);
    let _ = PROC.compare_exchange(
        p as *const Proc as *mut Proc,
        std::ptr::null_mut(),
        Ordering::AcqRel,
        Ordering::Relaxed,
    );
    crate::debug!(
        "left environment serial {}: ledger slot {} given back",
        p.serial,
        p.handle.slot()
    );
    // SAFETY: GONE is final and no reader touches the handle of a GONE registration again (no
    // reservation starts on it, and none is outstanding: it holds nothing); the box is leaked,
    // so this is the handle's only drop.
    let h = unsafe { std::ptr::read(&p.handle) };
    h.unregister(p.store);
}

/// Runs in a forked child (from `pthread_atfork`, before the child returns from fork): the
/// registrations are the parent's. Close our copies of their descriptors, so that the parent's
/// slots die with the parent rather than with us, and forget them; the child registers again at
/// its first reservation. Only atomics and close(2): safe in a child of a threaded process.
pub(crate) fn after_fork_child() {
    // SAFETY: getpid has no preconditions.
    MY_PID.store(unsafe { libc::getpid() } as u32, Ordering::Relaxed);
    REFRESHING.store(false, Ordering::Relaxed);
    CLAIMING.store(false, Ordering::Relaxed);
    PROC.store(std::ptr::null_mut(), Ordering::Release);
    let mut p = REGS.swap(std::ptr::null_mut(), Ordering::AcqRel);
    while !p.is_null() {
        // SAFETY: registrations are leaked; unreachable from now on in this child, so moving a
        // handle out to close its descriptor leaves nothing that could use it. A GONE one was
        // already closed (by the parent, before the fork).
        unsafe {
            if (*p).state.load(Ordering::Relaxed) != GONE {
                std::ptr::read(&(*p).handle).forget();
            }
            p = (*p).next.load(Ordering::Relaxed);
        }
    }
}
