//! Which environments are alive, computed once per command: an environment lives while one of
//! its activating processes (pid + start time, so a reused pid does not count), one of its
//! members (`members.rs`: every process started in it, through the shim's lock) or one of its
//! shim processes runs.

use crate::layout::{EnvRec, PidRec, Tables};
use crate::ledger::{self, LedgerFile};
use crate::members::Held;
use crate::procfs;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

/// Below this many processes to look up, one thread does it faster than starting others.
const PARALLEL_MIN: usize = 64;
/// /proc reads stop scaling past this many threads.
const THREADS_MAX: usize = 8;

pub(crate) struct Liveness {
    shim_serials: HashSet<u64>,
    /// (environment serial, pid) of every live shim process.
    shim_pids: HashSet<(u64, u32)>,
    /// (owner, serial) -> its members, from one read of /proc/locks.
    members: HashMap<(u32, u64), Held>,
    /// (pid, start time) -> alive: each process is looked up in /proc once per command.
    pids: RefCell<HashMap<(u32, u64), bool>>,
}

impl Liveness {
    /// From the live process slots of every user's ledger and the members' locks.
    pub(crate) fn new(ledgers: &[LedgerFile], members: HashMap<(u32, u64), Held>) -> Liveness {
        let mut shim_serials = HashSet::new();
        let mut shim_pids = HashSet::new();
        for lf in ledgers {
            for (_, pid, serial) in ledger::live_slots(lf) {
                shim_serials.insert(serial);
                shim_pids.insert((serial, pid));
            }
        }
        Liveness {
            shim_serials,
            shim_pids,
            members,
            pids: Default::default(),
        }
    }

    pub(crate) fn pid_alive(&self, p: &PidRec) -> bool {
        *self
            .pids
            .borrow_mut()
            .entry((p.pid, p.start_time))
            .or_insert_with(|| procfs::alive(p.pid, p.start_time))
    }

    pub(crate) fn alive(&self, e: &EnvRec) -> bool {
        self.has_shim_processes(e)
            || self.has_members(e)
            || e.pids().iter().any(|p| self.pid_alive(p))
    }

    /// Whether programs run under the shim in `e`.
    pub(crate) fn has_shim_processes(&self, e: &EnvRec) -> bool {
        self.shim_serials.contains(&e.serial)
    }

    /// Whether processes started in `e` run.
    pub(crate) fn has_members(&self, e: &EnvRec) -> bool {
        self.members.contains_key(&(e.uid, e.serial))
    }

    /// The processes started in `e` that run, by pid.
    pub(crate) fn members(&self, e: &EnvRec) -> &[u32] {
        self.members
            .get(&(e.uid, e.serial))
            .map_or(&[], |h| h.pids.as_slice())
    }

    /// Whether a process of `e` other than `pid` (a member or a shim process) runs. An open
    /// file of the members without a pid counts unless `pid` is itself a listed member (then
    /// it is taken to be `pid`'s).
    pub(crate) fn process_besides(&self, e: &EnvRec, pid: u32) -> bool {
        let held = self.members.get(&(e.uid, e.serial));
        held.is_some_and(|h| {
            h.pids.iter().any(|&p| p != pid) || (h.shared && !h.pids.contains(&pid))
        }) || self
            .shim_pids
            .iter()
            .any(|&(serial, p)| serial == e.serial && p != pid)
    }

    /// Looks up every activating process of `t` at once, spread over the machine's cores: with
    /// many environments the /proc reads are the cost of `genv envs`, and they are independent.
    pub(crate) fn prefetch(&self, t: &Tables) {
        let todo: Vec<(u32, u64)> = t
            .envs()
            .filter(|(_, e)| !self.has_shim_processes(e) && !self.has_members(e))
            .flat_map(|(_, e)| e.pids().iter().map(|p| (p.pid, p.start_time)))
            .collect();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(THREADS_MAX));
        if todo.len() < PARALLEL_MIN || threads < 2 {
            return;
        }
        let chunk = todo.len().div_ceil(threads);
        let found: Vec<((u32, u64), bool)> = std::thread::scope(|s| {
            let parts: Vec<_> = todo
                .chunks(chunk)
                .map(|c| {
                    s.spawn(move || {
                        c.iter()
                            .map(|&(pid, st)| ((pid, st), procfs::alive(pid, st)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            parts
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        self.pids.borrow_mut().extend(found);
    }
}
