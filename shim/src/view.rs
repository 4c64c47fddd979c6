//! The environment as this process sees it, and its membership in the memory ledger.
//!
//! API for the CUDA and NVML layers:
//! - [`get`] → `None` outside an environment, or when the shim is bypassed (`GENV_SHIM_BYPASS`,
//!   set by the genv CLI for itself); otherwise the current [`View`]. A view that could not be
//!   read (state file missing or unreadable, environment gone) is `broken`: it has no devices,
//!   and the layers expose no GPU. The decision to be active is taken at the first call (not in
//!   a constructor), so a program that sets `GENV_SHIM_BYPASS` at the top of `main` is left alone.
//! - A view is immutable. [`get`] costs one atomic load of the state's write generation; when it
//!   moved (`genv attach`, `genv config gpu-memory`, …) one caller re-reads the state (the others
//!   keep using the previous view meanwhile: no one waits) and publishes a new view if the
//!   environment's record changed. Superseded views are leaked on purpose: callers hold plain
//!   `&'static` references, and they change only when the user reconfigures the environment.
//! - [`View::devices`]: the attached GPUs in attach order (the virtual numbering of both CUDA and
//!   NVML), each with its NVML host index, UUID, capacity (`min(gpu-memory, physical)`) and
//!   physical size. [`View::env_used`], [`View::env_pids`], [`View::pid_used`] read the ledger.
//! - [`View::reserve`] / [`release`]: the capacity check, atomic across all the processes of the
//!   environment (one compare-and-swap; on refusal, dead processes of the environment are reaped
//!   and the reservation retried once). This process registers in the ledger at its first
//!   reservation; a forked child registers again (see [`after_fork_child`]).
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

    /// What the environment's processes hold on NVML device `host_index`.
    pub fn env_used(&self, host_index: u32) -> u64 {
        match self.store {
            Some(s) => ledger::env_used(s, self.env_slot, self.serial, host_index as usize),
            None => 0,
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
        let Some(p) = proc_for(self, store) else {
            return Err(0);
        };
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
/// registration at the time, so a release always goes where the reservation went).
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
}

// ---------------------------------------------------------------------------------------------
// Whether this process is in an environment.

const UNKNOWN: u8 = 0;
const INACTIVE: u8 = 1;
const ACTIVE: u8 = 2;
static ACTIVE_STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Whether the shim acts in this process: `GENV_ENVIRONMENT_ID` set and `GENV_SHIM_BYPASS`
/// not. Read at the first call and then fixed for the life of the process.
pub fn active() -> bool {
    match ACTIVE_STATE.load(Ordering::Relaxed) {
        ACTIVE => true,
        INACTIVE => false,
        _ => {
            let bypass = matches!(crate::log::getenv(c"GENV_SHIM_BYPASS"), Some(v) if !v.is_empty() && v != b"0");
            let eid = crate::log::getenv(c"GENV_ENVIRONMENT_ID").unwrap_or_default();
            let on = !bypass && !eid.is_empty();
            ACTIVE_STATE.store(if on { ACTIVE } else { INACTIVE }, Ordering::Relaxed);
            crate::debug!(
                "{}",
                if bypass {
                    "GENV_SHIM_BYPASS is set: passing everything through".to_string()
                } else if eid.is_empty() {
                    "not in an environment (GENV_ENVIRONMENT_ID unset): passing everything through"
                        .to_string()
                } else {
                    format!("in environment {}", String::from_utf8_lossy(eid))
                }
            );
            on
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The current view.

static CUR: AtomicPtr<View> = AtomicPtr::new(std::ptr::null_mut());
static REFRESHING: AtomicBool = AtomicBool::new(false);
static STORE: AtomicPtr<Store> = AtomicPtr::new(std::ptr::null_mut());

/// The environment's view; `None` outside an environment. See the module documentation.
pub fn get() -> Option<&'static View> {
    if !active() {
        return None;
    }
    let p = CUR.load(Ordering::Acquire);
    if p.is_null() {
        return Some(init());
    }
    // SAFETY: published views are leaked, never freed.
    let v = unsafe { &*p };
    if let Some(s) = v.store {
        let g = s.generation();
        if g != v.checked.load(Ordering::Relaxed) {
            return Some(refresh(v, s, g));
        }
    }
    Some(v)
}

fn eid() -> String {
    String::from_utf8_lossy(crate::log::getenv(c"GENV_ENVIRONMENT_ID").unwrap_or_default())
        .into_owned()
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

fn publish(old: *mut View, v: View) -> &'static View {
    describe(&v);
    let p = Box::into_raw(Box::new(v));
    match CUR.compare_exchange(old, p, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: published views are leaked.
        Ok(_) => unsafe { &*p },
        Err(cur) => {
            // SAFETY: ours, never published.
            drop(unsafe { Box::from_raw(p) });
            unsafe { &*cur }
        }
    }
}

#[cold]
fn init() -> &'static View {
    crate::fork::register();
    let eid = eid();
    let v = match open_store() {
        Ok(store) => build(store, eid),
        Err(e) => broken(eid, format_args!("cannot read the genv state ({e})")),
    };
    publish(std::ptr::null_mut(), v)
}

#[cold]
fn refresh(cur: &'static View, store: &'static Store, g: u64) -> &'static View {
    // One refresher at a time; the others go on with the current view rather than wait.
    if REFRESHING.swap(true, Ordering::Acquire) {
        return cur;
    }
    let v = build(store, cur.eid.clone());
    let out = if same(cur, &v) {
        cur.checked
            .store(g.max(v.checked.load(Ordering::Relaxed)), Ordering::Relaxed);
        cur
    } else {
        publish(cur as *const View as *mut View, v)
    };
    REFRESHING.store(false, Ordering::Release);
    out
}

// ---------------------------------------------------------------------------------------------
// This process's registration in the ledger.

struct Proc {
    pid: u32,
    serial: u64,
    store: &'static Store,
    handle: ProcHandle,
}

static PROC: AtomicPtr<Proc> = AtomicPtr::new(std::ptr::null_mut());
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

fn proc_for(v: &View, store: &'static Store) -> Option<&'static Proc> {
    let p = PROC.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: registrations are leaked, never freed.
        let p = unsafe { &*p };
        if p.pid == my_pid() && p.serial == v.serial {
            return Some(p);
        }
    }
    claim(v, store, p)
}

#[cold]
fn claim(v: &View, store: &'static Store, old: *mut Proc) -> Option<&'static Proc> {
    // Compare with the kernel's pid here, on the slow path, in case a fork bypassed the handler.
    let pid = std::process::id();
    MY_PID.store(pid, Ordering::Relaxed);
    if !old.is_null() {
        // SAFETY: leaked registration.
        let o = unsafe { &*old };
        if o.pid == pid && o.serial == v.serial {
            return Some(o);
        }
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
    }));
    match PROC.compare_exchange(old, p, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: published registrations are leaked.
        Ok(_) => Some(unsafe { &*p }),
        Err(cur) => {
            // Another thread registered first: give our slot back and use theirs.
            // SAFETY: ours, never published.
            let mine = unsafe { Box::from_raw(p) };
            mine.handle.unregister(store);
            // SAFETY: leaked registration.
            let c = unsafe { &*cur };
            (c.pid == pid && c.serial == v.serial).then_some(c)
        }
    }
}

/// Runs in a forked child (from `pthread_atfork`, before the child returns from fork): the
/// registration is the parent's. Close our copy of its descriptor, so that the parent's slot
/// dies with the parent rather than with us, and forget it; the child registers again at its
/// first reservation. Only atomics and close(2): safe in a child of a threaded process.
pub(crate) fn after_fork_child() {
    // SAFETY: getpid has no preconditions.
    MY_PID.store(unsafe { libc::getpid() } as u32, Ordering::Relaxed);
    REFRESHING.store(false, Ordering::Relaxed);
    let p = PROC.swap(std::ptr::null_mut(), Ordering::AcqRel);
    if !p.is_null() {
        // SAFETY: the registration is leaked and, PROC being cleared, never used again here; we
        // move its handle out to close the descriptor and leave the rest of the box untouched.
        let h = unsafe { std::ptr::read(&(*p).handle) };
        h.forget();
    }
}
