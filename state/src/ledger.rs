//! The memory ledger: what the processes of each environment hold on each device, updated in
//! place with atomics and no lock, so that the capacity is enforced across processes in O(1).
//!
//! - `EnvUsage[env].used[dev]` is the environment's total. A reservation is a compare-and-swap
//!   loop that never lets it pass the capacity, so no interleaving of processes can exceed it.
//! - Each process owns a `ProcSlot` with its own share; it holds an open-file-description lock on
//!   the slot's byte (past the end of the file). The kernel drops that lock when the process dies,
//!   however it dies, so a dead owner is recognised without trusting pids (reuse, namespaces).
//! - Reaping a dead slot subtracts its shares from its environment exactly once: the reaper must
//!   win a compare-and-swap of the slot's pid to 0 first.

use crate::layout::*;
use crate::store::{ofd_lock, Store};
use std::sync::atomic::Ordering;

fn slot_lock(f: &std::fs::File, cmd: i32, ty: i32, slot: usize) -> Option<libc::flock> {
    ofd_lock(f, cmd, ty, PROC_LOCK_BASE + slot as i64)
}

/// Whether process slot `i` is owned by a live process (it holds the slot's lock).
pub fn slot_alive(store: &Store, i: usize) -> bool {
    match slot_lock(store.file(), libc::F_OFD_GETLK, libc::F_WRLCK, i) {
        Some(fl) => fl.l_type as i32 != libc::F_UNLCK,
        None => false,
    }
}

/// Returns a dead slot's shares to its environment, once. Returns true if this call reaped it.
fn reap_slot(l: &Ledger, i: usize, pid: u32) -> bool {
    let s = &l.procs[i];
    let env_slot = s.env_slot.load(Ordering::Acquire) as usize;
    let serial = s.env_serial.load(Ordering::Acquire);
    let shares: [u64; MAX_DEVICES] = std::array::from_fn(|d| s.used[d].load(Ordering::Acquire));
    if s.pid
        .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return false;
    }
    if env_slot < MAX_ENVS {
        let e = &l.envs[env_slot];
        if e.serial.load(Ordering::Acquire) == serial {
            for (d, &b) in shares.iter().enumerate() {
                if b > 0 {
                    let _ = e.used[d].fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                        Some(v.saturating_sub(b))
                    });
                }
            }
        }
    }
    for u in &s.used {
        u.store(0, Ordering::Release);
    }
    true
}

/// Reaps every dead process slot (of environment `serial` only, when given). O(slots): for the
/// CLI, the shim's out-of-memory slow path and its memory reports (at most every so often),
/// never per allocation. Nothing is written to a file opened read-only.
pub fn reap_dead(store: &Store, serial: Option<u64>) -> usize {
    if !store.writable() {
        return 0;
    }
    let l = store.ledger();
    let mut n = 0;
    for i in 0..MAX_PROCS {
        let s = &l.procs[i];
        let pid = s.pid.load(Ordering::Acquire);
        if pid == 0 {
            continue;
        }
        if let Some(want) = serial {
            if s.env_serial.load(Ordering::Acquire) != want {
                continue;
            }
        }
        if !slot_alive(store, i) && reap_slot(l, i, pid) {
            n += 1;
        }
    }
    n
}

/// Live processes registered by the shim for environment `serial`, as (pid, bytes per device).
pub fn env_processes(store: &Store, serial: u64) -> Vec<(u32, [u64; MAX_DEVICES])> {
    let l = store.ledger();
    (0..MAX_PROCS)
        .filter_map(|i| {
            let s = &l.procs[i];
            let pid = s.pid.load(Ordering::Acquire);
            if pid == 0 || s.env_serial.load(Ordering::Acquire) != serial || !slot_alive(store, i) {
                return None;
            }
            Some((
                pid,
                std::array::from_fn(|d| s.used[d].load(Ordering::Acquire)),
            ))
        })
        .collect()
}

/// Resets the usage of env slot `slot` for a new environment (called by the writer that creates
/// or removes the environment).
pub fn reset_env(store: &Store, slot: usize, serial: u64) {
    let e = &store.ledger().envs[slot];
    e.serial.store(0, Ordering::Release);
    for u in &e.used {
        u.store(0, Ordering::Release);
    }
    e.serial.store(serial, Ordering::Release);
}

/// The environment's use of NVML device `dev`.
pub fn env_used(store: &Store, slot: usize, serial: u64, dev: usize) -> u64 {
    if slot >= MAX_ENVS || dev >= MAX_DEVICES {
        return 0;
    }
    let e = &store.ledger().envs[slot];
    if e.serial.load(Ordering::Acquire) != serial {
        return 0;
    }
    e.used[dev].load(Ordering::Acquire)
}

/// A process's membership in the ledger: its slot, held until the process exits (or `drop`).
pub struct ProcHandle {
    fd: std::fs::File,
    slot: usize,
    env_slot: usize,
    serial: u64,
}

/// Outcome of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    Ok,
    /// Would pass the capacity; carries the environment's current use.
    OverCap(u64),
}

impl ProcHandle {
    /// Claims a free (or dead) process slot for this process in environment (`env_slot`,
    /// `serial`). Opens its own descriptor of the state file, close-on-exec, so that the lock
    /// lives exactly as long as this process (a forked child must drop it: see `forget`).
    pub fn claim(store: &Store, env_slot: usize, serial: u64) -> Option<ProcHandle> {
        if env_slot >= MAX_ENVS {
            return None;
        }
        // Its own open file description of the very file mapped (not whatever the path names
        // now), so that the slot's lock lives exactly as long as this process.
        let fd = store.reopen()?;
        let l = store.ledger();
        let pid = std::process::id();
        // Start at a pid-dependent place so that concurrent claimers rarely collide; free slots
        // first, then slots whose owner may have died.
        let start = (pid as usize).wrapping_mul(2_654_435_761) % MAX_PROCS;
        for pass in 0..2 {
            for k in 0..MAX_PROCS {
                let i = (start + k) % MAX_PROCS;
                let s = &l.procs[i];
                let old = s.pid.load(Ordering::Acquire);
                if (pass == 0) != (old == 0) {
                    continue;
                }
                if slot_lock(&fd, libc::F_OFD_SETLK, libc::F_WRLCK, i).is_none() {
                    continue;
                }
                // We own the byte: the previous owner, if any, is dead. Give its shares back.
                if old != 0 {
                    reap_slot(l, i, old);
                }
                for u in &s.used {
                    u.store(0, Ordering::Release);
                }
                s.env_slot.store(env_slot as u32, Ordering::Release);
                s.env_serial.store(serial, Ordering::Release);
                s.pid.store(pid, Ordering::Release);
                return Some(ProcHandle {
                    fd,
                    slot: i,
                    env_slot,
                    serial,
                });
            }
        }
        None
    }

    pub fn slot(&self) -> usize {
        self.slot
    }

    /// Reserves `bytes` on device `dev` against capacity `cap` for the environment: atomic, O(1).
    pub fn reserve(&self, store: &Store, dev: usize, bytes: u64, cap: u64) -> Reserve {
        if dev >= MAX_DEVICES {
            return Reserve::OverCap(0);
        }
        let l = store.ledger();
        let env = &l.envs[self.env_slot];
        let mine = &l.procs[self.slot].used[dev];
        // The environment's total first, then our share: a process killed between the two leaves
        // those bytes counted against the environment (too strict, never too lax) until it ends.
        let r = env.used[dev].fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
            let next = cur.checked_add(bytes)?;
            (next <= cap).then_some(next)
        });
        match r {
            Ok(_) => {
                mine.fetch_add(bytes, Ordering::AcqRel);
                Reserve::Ok
            }
            Err(cur) => Reserve::OverCap(cur),
        }
    }

    /// Gives back `bytes` on device `dev` (after a free, or when the driver refused).
    pub fn release(&self, store: &Store, dev: usize, bytes: u64) {
        if dev >= MAX_DEVICES {
            return;
        }
        let l = store.ledger();
        let mine = &l.procs[self.slot].used[dev];
        let _ = mine.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            Some(v.saturating_sub(bytes))
        });
        let env = &l.envs[self.env_slot];
        if env.serial.load(Ordering::Acquire) == self.serial {
            let _ = env.used[dev].fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(bytes))
            });
        }
    }

    /// What this process holds on `dev`.
    pub fn held(&self, store: &Store, dev: usize) -> u64 {
        if dev >= MAX_DEVICES {
            return 0;
        }
        store.ledger().procs[self.slot].used[dev].load(Ordering::Acquire)
    }

    /// In a forked child: the slot (and its lock, shared through the inherited descriptor) is the
    /// parent's. Closing our copy of the descriptor leaves the parent's lock alone.
    pub fn forget(self) {
        drop(self.fd);
    }

    /// Gives the slot back, returning what it held to the environment.
    pub fn unregister(self, store: &Store) {
        let l = store.ledger();
        let pid = std::process::id();
        reap_slot(l, self.slot, pid);
        drop(self.fd);
    }
}
