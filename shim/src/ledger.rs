//! This process's side of the memory ledger (`genv_state::ledger`): its registrations, one per
//! environment it reserved memory in, and the reservations themselves.
//!
//! - [`View::reserve`] / [`release`]: the capacity check, atomic across all the processes of the
//!   environment (one compare-and-swap; on refusal, dead processes of the environment are
//!   reaped and the reservation retried once). This process registers in the ledger, per
//!   environment, at its first reservation there; a forked child registers again (see
//!   [`after_fork_child`]).
//! - A [`Ticket`] names the registration its bytes went to, so memory reserved in an
//!   environment the process has since left is given back to that environment; a registration
//!   of a left environment is given up as soon as it holds nothing.

use crate::view::{View, ViewDev};
use genv_state::ledger::{self, LedgerFile, ProcHandle};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU8, Ordering};

impl View {
    /// Reserves `bytes` on NVML device `host_index` against the environment's capacity there.
    /// `Err(current use)` when it would pass the capacity, when the device is not attached, or
    /// when this process cannot be registered in the ledger (fail closed).
    pub fn reserve(&self, host_index: u32, bytes: u64) -> Result<Ticket, u64> {
        let (Some(lf), Some(dev)) = (self.ledger, self.device(host_index)) else {
            crate::debug!("refuse {bytes} bytes on host GPU {host_index}: not attached");
            return Err(0);
        };
        // A registration being given up (see `reclaim`) refuses new users; the next lookup then
        // finds or makes a live one. Bounded, in case of a pathological race.
        for _ in 0..4 {
            let p = proc_for(self, lf).ok_or(0u64)?;
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
        let lf = p.ledger;
        let d = host_index as usize;
        match p.handle.reserve(lf, d, bytes, dev.capacity) {
            ledger::Reserve::Ok => Ok(Ticket(p)),
            ledger::Reserve::OverCap(_) => {
                // Slow path only: a process of the environment killed with -9 may still be
                // counted; give its memory back and try once more.
                let reaped = ledger::reap_dead(lf, Some(self.serial));
                match p.handle.reserve(lf, d, bytes, dev.capacity) {
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
        // SAFETY: a Proc address from `to_bits`; registrations are leaked, never freed.
        Ticket(unsafe { &*(bits as *const Proc) })
    }
}

/// Gives back a reservation (after the free, or when the driver refused the allocation).
pub fn release(t: Ticket, host_index: u32, bytes: u64) {
    t.0.handle.release(t.0.ledger, host_index as usize, bytes);
    // Memory of an environment this process has left: its registration goes once empty.
    if t.0.superseded.load(Ordering::Relaxed) {
        reclaim(t.0);
    }
}

// ---------------------------------------------------------------------------------------------
// The registrations.
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
    /// The ledger the registration is in (its environment's owner's).
    ledger: &'static LedgerFile,
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

fn proc_for(v: &View, lf: &'static LedgerFile) -> Option<&'static Proc> {
    let p = PROC.load(Ordering::Acquire);
    if !p.is_null() {
        // SAFETY: registrations are leaked, never freed.
        let p = unsafe { &*p };
        if p.pid == my_pid() && p.serial == v.serial {
            return Some(p);
        }
    }
    claim(v, lf)
}

#[cold]
fn claim(v: &View, lf: &'static LedgerFile) -> Option<&'static Proc> {
    while CLAIMING
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::thread::yield_now();
    }
    let r = claim_locked(v, lf);
    CLAIMING.store(false, Ordering::Release);
    r
}

fn claim_locked(v: &View, lf: &'static LedgerFile) -> Option<&'static Proc> {
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
    let Some(handle) = ProcHandle::claim(lf, v.env_slot, v.serial) else {
        crate::log::error_once(format_args!(
            "cannot register process {pid} in the genv memory ledger ({}): allocations are refused",
            lf.path().display()
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
        ledger: lf,
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
pub(crate) fn supersede_others(serial: Option<u64>) {
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
        && (0..genv_state::layout::MAX_DEVICES).all(|d| p.handle.held(p.ledger, d) == 0);
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
    h.unregister(p.ledger);
}

/// Runs in a forked child (from `pthread_atfork`, before the child returns from fork): the
/// registrations are the parent's. Close our copies of their descriptors, so that the parent's
/// slots die with the parent rather than with us, and forget them; the child registers again at
/// its first reservation. Only atomics and close(2): safe in a child of a threaded process.
pub(crate) fn after_fork_child() {
    // SAFETY: getpid has no preconditions.
    MY_PID.store(unsafe { libc::getpid() } as u32, Ordering::Relaxed);
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
