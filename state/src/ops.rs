//! What genv does to the state: every operation of the CLI and the SDK, each one transaction.
//! Bad input is refused before anything changes (the transaction is dropped).

use crate::devices::Gpu;
use crate::layout::*;
use crate::ledger;
use crate::procfs;
use crate::store::{Snapshot, Store};
use crate::text::quote;
use crate::units;
use crate::Error;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// An environment's configuration, as the user wrote it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// E.g. `4g`; see [`units::parse_amount`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory: Option<String>,
}

impl Config {
    /// Checks every field; the error names the field, the value and what is allowed.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(n) = &self.name {
            validate_name(n)?;
        }
        if let Some(m) = &self.gpu_memory {
            parse_gpu_memory(m)?;
        }
        if let Some(g) = self.gpus {
            if g as usize > MAX_DEVICES {
                return Err(Error::Input(format!(
                    "invalid device count '{g}': at most {MAX_DEVICES} GPUs are supported"
                )));
            }
        }
        Ok(())
    }

    /// Fields of `other` that are set replace ours.
    pub fn overlay(&mut self, other: &Config) {
        if other.name.is_some() {
            self.name.clone_from(&other.name);
        }
        if other.gpus.is_some() {
            self.gpus = other.gpus;
        }
        if other.gpu_memory.is_some() {
            self.gpu_memory.clone_from(&other.gpu_memory);
        }
    }
}

pub fn validate_name(n: &str) -> Result<(), Error> {
    if n.trim().is_empty() || n.len() > NAME_MAX || n.chars().any(|c| c.is_control()) {
        return Err(Error::Input(format!(
            "invalid name {}: use 1 to {NAME_MAX} bytes of printable characters, not only spaces",
            quote(n)
        )));
    }
    Ok(())
}

/// Parses a device count such as `2`.
pub fn parse_gpus(s: &str) -> Result<u32, Error> {
    match s.trim().parse::<u32>() {
        Ok(g) if (g as usize) <= MAX_DEVICES => Ok(g),
        _ => Err(Error::Input(format!(
            "invalid device count {}: expected a whole number from 0 to {MAX_DEVICES}",
            quote(s)
        ))),
    }
}

/// Parses a GPU memory capacity such as `4g`; zero is refused (it would allow nothing), and so
/// is text longer than the state keeps of it (it is shown back as written).
pub fn parse_gpu_memory(s: &str) -> Result<u64, Error> {
    if s.len() > GPU_MEMORY_MAX {
        return Err(Error::Input(format!(
            "invalid GPU memory {}: at most {GPU_MEMORY_MAX} bytes, such as 42mi, 4g or 44040192",
            quote(s)
        )));
    }
    match units::parse_amount(s) {
        Some(b) if b > 0 => Ok(b),
        _ => Err(Error::Input(format!(
            "invalid GPU memory {}: expected {}",
            quote(s),
            units::UNITS_HELP
        ))),
    }
}

/// Who is asking: the caller's uid decides which environments they may change.
#[derive(Debug, Clone)]
pub struct Caller {
    pub uid: u32,
    pub username: String,
}

impl Caller {
    pub fn current() -> Caller {
        let uid = procfs::current_uid();
        Caller {
            uid,
            username: procfs::user_name(uid),
        }
    }
}

/// A device attachment as listed by `genv devices`.
#[derive(Debug, Clone, Serialize)]
pub struct AttachmentInfo {
    pub eid: String,
    pub env_name: Option<String>,
    pub attached_ms: u64,
    pub over_subscribed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub total_memory: u64,
    pub attachments: Vec<AttachmentInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvInfo {
    pub eid: String,
    pub uid: u32,
    pub username: String,
    pub name: Option<String>,
    pub created_ms: u64,
    /// Processes that activated the environment (shells, `genv exec`, SDK users).
    pub pids: Vec<u32>,
    /// Processes running under the shim in this environment.
    pub processes: Vec<u32>,
    /// NVML indices, in attach order.
    pub attached: Vec<u32>,
    pub config: Config,
    /// Bytes the environment's processes hold per attached device (same order as `attached`).
    pub used_memory: Vec<u64>,
    #[serde(skip)]
    pub slot: usize,
    #[serde(skip)]
    pub serial: u64,
}

/// What `attach` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachOutcome {
    /// Attached (indices in attach order).
    Attached(Vec<u32>),
    /// Not enough devices: the environment is now detached, as usage.rst says; carries the message.
    Failed(String),
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn env_config(e: &EnvRec) -> Config {
    let name = e.name();
    Config {
        name: (!name.is_empty()).then_some(name),
        gpus: e.gpus(),
        gpu_memory: (e.cfg_mem_text[0] != 0).then(|| get_str(&e.cfg_mem_text)),
    }
}

fn set_env_config(e: &mut EnvRec, c: &Config) -> Result<(), Error> {
    c.validate()?;
    put_str(&mut e.name, c.name.as_deref().unwrap_or(""));
    e.cfg_gpus = c.gpus.map(|g| g as i32).unwrap_or(-1);
    match &c.gpu_memory {
        Some(m) => {
            e.cfg_mem_bytes = parse_gpu_memory(m)?;
            put_str(&mut e.cfg_mem_text, m);
        }
        None => {
            e.cfg_mem_bytes = 0;
            e.cfg_mem_text.fill(0);
        }
    }
    Ok(())
}

/// The genv state of this machine.
pub struct Genv {
    store: Store,
}

/// Which environments are alive, computed once per command: an environment lives while one of
/// its activating processes (pid + start time) or one of its shim processes runs.
struct Liveness {
    shim_serials: HashSet<u64>,
    /// (environment serial, pid) of every live shim process.
    shim_pids: HashSet<(u64, u32)>,
    /// (pid, start time) -> alive: each process is looked up in /proc once per command.
    pids: std::cell::RefCell<std::collections::HashMap<(u32, u64), bool>>,
}

impl Liveness {
    fn new(store: &Store) -> Liveness {
        let l = store.ledger();
        let mut shim_serials = HashSet::new();
        let mut shim_pids = HashSet::new();
        for i in 0..MAX_PROCS {
            let s = &l.procs[i];
            if s.pid.load(std::sync::atomic::Ordering::Acquire) != 0 && ledger::slot_alive(store, i)
            {
                let serial = s.env_serial.load(std::sync::atomic::Ordering::Acquire);
                shim_serials.insert(serial);
                shim_pids.insert((serial, s.pid.load(std::sync::atomic::Ordering::Acquire)));
            }
        }
        Liveness {
            shim_serials,
            shim_pids,
            pids: Default::default(),
        }
    }

    fn pid_alive(&self, p: &PidRec) -> bool {
        *self
            .pids
            .borrow_mut()
            .entry((p.pid, p.start_time))
            .or_insert_with(|| procfs::alive(p.pid, p.start_time))
    }

    fn alive(&self, e: &EnvRec) -> bool {
        self.shim_serials.contains(&e.serial) || e.pids().iter().any(|p| self.pid_alive(p))
    }

    /// Looks up every activating process of `t` at once, spread over the machine's cores: with
    /// many environments the /proc reads are the cost of `genv envs`, and they are independent.
    fn prefetch(&self, t: &Tables) {
        let todo: Vec<(u32, u64)> = t
            .envs()
            .filter(|(_, e)| !self.shim_serials.contains(&e.serial))
            .flat_map(|(_, e)| e.pids().iter().map(|p| (p.pid, p.start_time)))
            .collect();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        if todo.len() < 64 || threads < 2 {
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

impl Genv {
    pub fn open() -> Result<Genv, Error> {
        Ok(Genv {
            store: Store::open()?,
        })
    }

    pub fn with_store(store: Store) -> Genv {
        Genv { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A transaction that first forgets dead shim processes, and dead environments that hold
    /// devices (so that placement sees them free). Other dead environments cost nothing here:
    /// readers hide them and `envs` removes them, having checked every environment anyway.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut Tables, &Liveness) -> Result<T, Error>,
    ) -> Result<T, Error> {
        ledger::reap_dead(&self.store, None);
        let live = Liveness::new(&self.store);
        self.write_live(&live, f)
    }

    fn write_live<T>(
        &self,
        live: &Liveness,
        f: impl FnOnce(&mut Tables, &Liveness) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.store.transaction(|t| {
            for i in 0..(t.env_hwm as usize).min(MAX_ENVS) {
                let e = &t.envs[i];
                if e.is_used() && e.n_attached > 0 && !live.alive(e) {
                    self.forget(t, i);
                }
            }
            f(t, live)
        })
    }

    fn forget(&self, t: &mut Tables, i: usize) {
        ledger::reset_env(&self.store, i, 0);
        t.envs[i].serial = 0;
    }

    /// Forgets every dead environment (all are checked).
    fn reap_all(&self, t: &mut Tables, live: &Liveness) {
        for i in 0..(t.env_hwm as usize).min(MAX_ENVS) {
            if t.envs[i].is_used() && !live.alive(&t.envs[i]) {
                self.forget(t, i);
            }
        }
    }

    /// The tables and who is alive, for the commands that report; memory of processes that
    /// ended is given back first, so that what they show is what is held.
    fn live_snapshot(&self) -> (Snapshot, Liveness) {
        ledger::reap_dead(&self.store, None);
        let live = Liveness::new(&self.store);
        (self.store.snapshot(), live)
    }

    /// Replaces the device list with what NVML reports; attachments to a device that is gone
    /// (or whose index now holds another GPU) are dropped.
    pub fn refresh_devices(&self, gpus: &[Gpu]) -> Result<(), Error> {
        let snap = self.store.snapshot();
        if devices_match(&snap, gpus) {
            return Ok(());
        }
        self.write(|t, _| {
            apply_devices(t, gpus);
            Ok(())
        })
    }

    fn check_owner(e: &EnvRec, caller: &Caller) -> Result<(), Error> {
        if e.uid != caller.uid && caller.uid != 0 {
            return Err(Error::Permission(format!(
                "environment {} belongs to {}({}); you ({}) cannot change it",
                e.eid(),
                e.username(),
                e.uid,
                caller.username
            )));
        }
        Ok(())
    }

    /// Creates environment `eid` for process `pid` (or adds `pid` to it when it exists and is
    /// the caller's), applies `config`, and attaches when `attach` and a device count is set.
    /// All or nothing: if the attach fails, no environment is left behind.
    pub fn activate(
        &self,
        caller: &Caller,
        eid: &str,
        pid: u32,
        config: &Config,
        attach: Option<(&[Gpu], bool)>,
    ) -> Result<EnvInfo, Error> {
        validate_eid(eid)?;
        config.validate()?;
        let start = procfs::start_time(pid)
            .ok_or_else(|| Error::Input(format!("process {pid} does not exist")))?;
        let slot = self.write(|t, live| {
            if let Some(gpus) = attach.map(|a| a.0) {
                apply_devices(t, gpus);
            }
            // A dead environment of the same identifier (a reused shell pid) is not joined.
            if let Some((i, e)) = t.env_by_eid(eid) {
                if !live.alive(e) {
                    self.forget(t, i);
                }
            }
            if !t.envs.iter().any(|e| !e.is_used()) {
                self.reap_all(t, live);
            }
            let slot = match t.env_by_eid(eid).map(|(i, _)| i) {
                Some(i) => {
                    Self::check_owner(&t.envs[i], caller)?;
                    let e = &mut t.envs[i];
                    if !e
                        .pids()
                        .iter()
                        .any(|p| p.pid == pid && p.start_time == start)
                    {
                        // Drop dead members first so that a long-lived environment has room.
                        e.retain_pids(|p| procfs::alive(p.pid, p.start_time));
                        let n = e.n_pids as usize;
                        if n >= MAX_PIDS {
                            return Err(Error::Input(format!(
                                "environment {eid} already has {MAX_PIDS} activating processes"
                            )));
                        }
                        e.pids[n] = PidRec {
                            pid,
                            _pad: 0,
                            start_time: start,
                        };
                        e.n_pids += 1;
                    }
                    let mut c = env_config(e);
                    c.overlay(config);
                    set_env_config(e, &c)?;
                    i
                }
                None => {
                    let i = t.envs.iter().position(|e| !e.is_used()).ok_or_else(|| {
                        Error::State(format!("no room for more than {MAX_ENVS} environments"))
                    })?;
                    t.next_serial = t.next_serial.max(1) + 1;
                    let e = &mut t.envs[i];
                    // SAFETY: EnvRec is plain data; all-zero is a valid empty record.
                    *e = unsafe { std::mem::zeroed() };
                    e.serial = t.next_serial;
                    put_str(&mut e.eid, eid);
                    e.uid = caller.uid;
                    put_str(&mut e.username, &caller.username);
                    e.created_ms = now_ms();
                    e.n_pids = 1;
                    e.pids[0] = PidRec {
                        pid,
                        _pad: 0,
                        start_time: start,
                    };
                    set_env_config(e, config)?;
                    // A fresh environment starts with an empty ledger (the slot was free, so
                    // this is harmless should the transaction fail below).
                    ledger::reset_env(&self.store, i, e.serial);
                    t.env_hwm = t.env_hwm.max(i as u32 + 1);
                    i
                }
            };
            if let Some((_, over)) = attach {
                if t.envs[slot].gpus().is_some() {
                    if let AttachOutcome::Failed(msg) = attach_count(t, slot, over) {
                        return Err(Error::Unavailable(msg));
                    }
                }
            }
            Ok(slot)
        })?;
        self.env_at(slot)
            .ok_or_else(|| Error::State("environment vanished".into()))
    }

    /// Removes `pid` from environment `eid`; the environment ends when no activating process and
    /// no shim process of it is left.
    pub fn deactivate(&self, caller: &Caller, eid: &str, pid: u32) -> Result<(), Error> {
        self.write(|t, live| {
            let Some((i, _)) = t.env_by_eid(eid) else {
                return Ok(());
            };
            Self::check_owner(&t.envs[i], caller)?;
            let e = &mut t.envs[i];
            e.retain_pids(|p| p.pid != pid && procfs::alive(p.pid, p.start_time));
            // The deactivating process itself (an SDK user runs under the shim) does not keep
            // the environment alive; its other programs do.
            let others_run = live
                .shim_pids
                .iter()
                .any(|&(serial, p)| serial == e.serial && p != pid);
            if e.n_pids == 0 && !others_run {
                self.forget(t, i);
            }
            Ok(())
        })
    }

    /// Ends environment `eid` now, whatever still runs in it (`genv exec` when its command ends).
    pub fn remove(&self, caller: &Caller, eid: &str) -> Result<(), Error> {
        self.write(|t, _| {
            if let Some((i, _)) = t.env_by_eid(eid) {
                Self::check_owner(&t.envs[i], caller)?;
                self.forget(t, i);
            }
            Ok(())
        })
    }

    fn with_env<T>(
        &self,
        caller: &Caller,
        eid: &str,
        f: impl FnOnce(&mut Tables, usize) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.write(|t, live| {
            let (i, e) = t
                .env_by_eid(eid)
                .filter(|(_, e)| live.alive(e))
                .ok_or(Error::NotActive)?;
            Self::check_owner(e, caller)?;
            f(t, i)
        })
    }

    /// Replaces the configuration of `eid` with `config`.
    pub fn set_config(&self, caller: &Caller, eid: &str, config: &Config) -> Result<(), Error> {
        config.validate()?;
        self.with_env(caller, eid, |t, i| set_env_config(&mut t.envs[i], config))
    }

    /// Attaches per the configured device count (or the one device `index`). The device list is
    /// refreshed from `gpus` in the same transaction, so placement sees the machine as it is.
    pub fn attach(
        &self,
        caller: &Caller,
        eid: &str,
        gpus: &[Gpu],
        index: Option<u32>,
        over_subscribe: bool,
    ) -> Result<AttachOutcome, Error> {
        self.with_env(caller, eid, |t, i| {
            apply_devices(t, gpus);
            match index {
                Some(ix) => attach_index(t, i, ix, over_subscribe),
                None => {
                    if t.envs[i].gpus().is_none() {
                        return Err(Error::NotConfigured(
                            "the device count is not configured: run `genv config gpus <count>` first, or pass --index".into(),
                        ));
                    }
                    Ok(attach_count(t, i, over_subscribe))
                }
            }
        })
    }

    /// Detaches from every device, or from device `index` only.
    pub fn detach(&self, caller: &Caller, eid: &str, index: Option<u32>) -> Result<(), Error> {
        self.with_env(caller, eid, |t, i| {
            if let Some(ix) = index {
                if ix >= t.n_devices {
                    return Err(out_of_range(t, ix));
                }
            }
            t.envs[i].retain_attached(|a| index.is_some_and(|ix| a.device != ix));
            Ok(())
        })
    }

    fn info(&self, t: &Tables, slot: usize, live: Option<&Liveness>) -> EnvInfo {
        let e = &t.envs[slot];
        let procs = if live.is_none_or(|l| l.shim_serials.contains(&e.serial)) {
            ledger::env_processes(&self.store, e.serial)
        } else {
            Vec::new()
        };
        let processes: Vec<u32> = procs.iter().map(|(p, _)| *p).collect();
        // Dead processes were reaped before (see `live_snapshot`), unless the file is read-only
        // for us: then what the live ones hold is the figure.
        let used = |dev: u32| {
            if self.store.writable() {
                ledger::env_used(&self.store, slot, e.serial, dev as usize)
            } else {
                procs
                    .iter()
                    .map(|(_, u)| u.get(dev as usize).copied().unwrap_or(0))
                    .sum()
            }
        };
        let name = e.name();
        EnvInfo {
            eid: e.eid(),
            uid: e.uid,
            username: e.username(),
            name: (!name.is_empty()).then_some(name),
            created_ms: e.created_ms,
            pids: e
                .pids()
                .iter()
                .filter(|p| match live {
                    Some(l) => l.pid_alive(p),
                    None => procfs::alive(p.pid, p.start_time),
                })
                .map(|p| p.pid)
                .collect(),
            processes,
            attached: e.attached().iter().map(|a| a.device).collect(),
            used_memory: e.attached().iter().map(|a| used(a.device)).collect(),
            config: env_config(e),
            slot,
            serial: e.serial,
        }
    }

    fn env_at(&self, slot: usize) -> Option<EnvInfo> {
        let snap = self.store.snapshot();
        snap.envs[slot]
            .is_used()
            .then(|| self.info(&snap, slot, None))
    }

    /// Environment `eid`, if it exists and is alive.
    pub fn env(&self, eid: &str) -> Option<EnvInfo> {
        let (snap, live) = self.live_snapshot();
        let (i, e) = snap.env_by_eid(eid)?;
        live.alive(e).then(|| self.info(&snap, i, Some(&live)))
    }

    /// Every live environment, oldest first. Having checked them all, it also removes the dead
    /// ones from the file (best effort: a reader that cannot write still gets its list).
    pub fn envs(&self) -> Vec<EnvInfo> {
        let (snap, live) = self.live_snapshot();
        live.prefetch(&snap);
        let mut dead = false;
        let mut v: Vec<EnvInfo> = snap
            .envs()
            .filter(|(_, e)| {
                let a = live.alive(e);
                dead |= !a;
                a
            })
            .map(|(i, _)| self.info(&snap, i, Some(&live)))
            .collect();
        if dead {
            let _ = self.write_live(&live, |t, live| {
                self.reap_all(t, live);
                Ok(())
            });
        }
        v.sort_by_key(|e| (e.created_ms, e.serial));
        v
    }

    /// Every device with the live environments attached to it.
    pub fn devices(&self) -> Vec<DeviceInfo> {
        let (snap, live) = self.live_snapshot();
        let mut out: Vec<DeviceInfo> = snap
            .devices()
            .iter()
            .map(|d| DeviceInfo {
                index: d.index,
                uuid: d.uuid(),
                name: d.name(),
                total_memory: d.total_memory,
                attachments: Vec::new(),
            })
            .collect();
        // Only environments holding devices matter here: check just those.
        for (_, e) in snap
            .envs()
            .filter(|(_, e)| e.n_attached > 0 && live.alive(e))
        {
            for a in e.attached() {
                if let Some(d) = out.get_mut(a.device as usize) {
                    let name = e.name();
                    d.attachments.push(AttachmentInfo {
                        eid: e.eid(),
                        env_name: (!name.is_empty()).then_some(name),
                        attached_ms: a.time_ms,
                        over_subscribed: a.shared != 0,
                    });
                }
            }
        }
        for d in &mut out {
            d.attachments.sort_by_key(|a| a.attached_ms);
        }
        out
    }
}

pub fn validate_eid(eid: &str) -> Result<(), Error> {
    if eid.is_empty() || eid.len() > EID_MAX || !eid.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Error::Input(format!(
            "invalid environment identifier {}: use 1 to {EID_MAX} printable ASCII characters \
             without spaces",
            quote(eid)
        )));
    }
    Ok(())
}

fn devices_match(t: &Tables, gpus: &[Gpu]) -> bool {
    t.devices().len() == gpus.len()
        && t.devices_read_ms != 0
        && t.devices().iter().zip(gpus).all(|(d, g)| {
            d.uuid() == g.uuid && d.total_memory == g.total_memory && d.name() == g.name
        })
}

fn apply_devices(t: &mut Tables, gpus: &[Gpu]) {
    if devices_match(t, gpus) {
        return;
    }
    let old: Vec<String> = t.devices().iter().map(|d| d.uuid()).collect();
    let n = gpus.len().min(MAX_DEVICES);
    for (i, g) in gpus.iter().take(n).enumerate() {
        let d = &mut t.devices[i];
        d.present = 1;
        d.index = i as u32;
        d.total_memory = g.total_memory;
        put_str(&mut d.uuid, &g.uuid);
        put_str(&mut d.name, &g.name);
    }
    for d in &mut t.devices[n..] {
        d.present = 0;
    }
    t.n_devices = n as u32;
    t.devices_read_ms = now_ms();
    // An attachment stays only where the same GPU still sits at that index.
    let still = |ix: u32| -> bool {
        (ix as usize) < n
            && old
                .get(ix as usize)
                .is_some_and(|u| *u == gpus[ix as usize].uuid)
    };
    for e in t.envs.iter_mut().filter(|e| e.is_used()) {
        e.retain_attached(|a| still(a.device));
    }
}

fn out_of_range(t: &Tables, ix: u32) -> Error {
    Error::Input(match t.n_devices {
        0 => format!("invalid device index {ix}: this machine has no GPUs"),
        1 => format!("invalid device index {ix}: this machine has one GPU, index 0"),
        n => format!(
            "invalid device index {ix}: this machine has GPUs 0 to {}",
            n - 1
        ),
    })
}

/// Whether device `dev` can take environment `slot`: exclusively (nobody else on it), or with
/// `over` shared among over-subscribed environments whose capacities fit in the device memory
/// (an environment without a capacity counts as the whole device).
fn can_take(t: &Tables, slot: usize, dev: u32, over: bool) -> Option<u64> {
    let d = &t.devices[dev as usize];
    let need = |e: &EnvRec| e.gpu_memory().unwrap_or(d.total_memory).min(d.total_memory);
    let mut taken = 0u64;
    for (i, e) in t.envs() {
        if i == slot {
            continue;
        }
        for a in e.attached().iter().filter(|a| a.device == dev) {
            if !over || a.shared == 0 {
                return None;
            }
            taken = taken.saturating_add(need(e));
        }
    }
    let mine = need(&t.envs[slot]);
    let left = d.total_memory.checked_sub(taken)?.checked_sub(mine)?;
    Some(left)
}

fn push_attach(t: &mut Tables, slot: usize, dev: u32, over: bool) {
    let e = &mut t.envs[slot];
    let n = e.n_attached as usize;
    if n < MAX_DEVICES {
        e.attached[n] = AttachRec {
            device: dev,
            shared: over as u32,
            time_ms: now_ms(),
        };
        e.n_attached += 1;
    }
}

fn attach_index(t: &mut Tables, slot: usize, ix: u32, over: bool) -> Result<AttachOutcome, Error> {
    if ix >= t.n_devices {
        return Err(out_of_range(t, ix));
    }
    if !t.envs[slot].attached().iter().any(|a| a.device == ix) {
        if can_take(t, slot, ix, over).is_none() {
            return Err(Error::Unavailable(format!("Device {ix} is not available")));
        }
        push_attach(t, slot, ix, over);
    }
    Ok(AttachOutcome::Attached(
        t.envs[slot].attached().iter().map(|a| a.device).collect(),
    ))
}

fn attach_count(t: &mut Tables, slot: usize, over: bool) -> AttachOutcome {
    let want = t.envs[slot].gpus().unwrap_or(0) as usize;
    let have = t.envs[slot].n_attached as usize;
    let n_devices = t.n_devices as usize;
    if want > n_devices {
        t.envs[slot].n_attached = 0;
        return AttachOutcome::Failed(format!(
            "No available devices: {want} requested but this machine has {n_devices}"
        ));
    }
    if have > want {
        // Keep the earliest attachments: the CUDA ordinals of running programs stay valid.
        t.envs[slot].n_attached = want as u32;
    } else if have < want {
        let mine: Vec<u32> = t.envs[slot].attached().iter().map(|a| a.device).collect();
        let mut cands: Vec<(u64, u32)> = (0..n_devices as u32)
            .filter(|d| !mine.contains(d))
            .filter_map(|d| can_take(t, slot, d, over).map(|left| (left, d)))
            .collect();
        // Exclusive: lowest index first. Shared: tightest fit first, keeping whole GPUs free.
        if over {
            cands.sort();
        } else {
            cands.sort_by_key(|c| c.1);
        }
        if cands.len() < want - have {
            t.envs[slot].n_attached = 0;
            return AttachOutcome::Failed(format!(
                "No available devices: {want} requested, {} available",
                have + cands.len()
            ));
        }
        for (_, d) in cands.into_iter().take(want - have) {
            push_attach(t, slot, d, over);
        }
    }
    AttachOutcome::Attached(t.envs[slot].attached().iter().map(|a| a.device).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_rec() -> EnvRec {
        // SAFETY: EnvRec is plain data; all-zero is a valid empty record.
        unsafe { std::mem::zeroed() }
    }

    #[test]
    fn limits_are_the_layout_fields_less_the_nul() {
        let e = empty_rec();
        assert_eq!(EID_MAX, e.eid.len() - 1);
        assert_eq!(NAME_MAX, e.name.len() - 1);
        assert_eq!(GPU_MEMORY_MAX, e.cfg_mem_text.len() - 1);
    }

    #[test]
    fn limits_count_bytes_and_refuse_one_past() {
        validate_name(&"n".repeat(NAME_MAX)).unwrap();
        assert!(validate_name(&"n".repeat(NAME_MAX + 1)).is_err());
        // Two-byte characters: the limit is in bytes, as the field holds them.
        let wide = "é".repeat(NAME_MAX / 2);
        validate_name(&format!("{wide}n")).unwrap();
        let err = validate_name(&format!("{wide}é")).unwrap_err().to_string();
        assert!(err.contains(&format!("1 to {NAME_MAX} bytes")), "{err}");

        validate_eid(&"e".repeat(EID_MAX)).unwrap();
        assert!(validate_eid(&"e".repeat(EID_MAX + 1)).is_err());

        let at = format!("{}4g", "0".repeat(GPU_MEMORY_MAX - 2));
        assert_eq!(parse_gpu_memory(&at), Ok(4_000_000_000));
        let err = parse_gpu_memory(&format!("0{at}")).unwrap_err().to_string();
        assert!(
            err.contains(&format!("at most {GPU_MEMORY_MAX} bytes")),
            "{err}"
        );
    }

    #[test]
    fn stored_text_at_the_limit_round_trips_and_one_past_changes_nothing() {
        let mut e = empty_rec();
        let at = Config {
            name: Some(format!("{}n", "é".repeat(NAME_MAX / 2))),
            gpus: Some(1),
            gpu_memory: Some(format!("{}4g", "0".repeat(GPU_MEMORY_MAX - 2))),
        };
        set_env_config(&mut e, &at).unwrap();
        assert_eq!(env_config(&e), at);
        for past in [
            Config {
                name: Some("n".repeat(NAME_MAX + 1)),
                ..at.clone()
            },
            Config {
                gpu_memory: Some(format!("0{}", at.gpu_memory.as_deref().unwrap())),
                ..at.clone()
            },
        ] {
            assert!(matches!(
                set_env_config(&mut e, &past),
                Err(Error::Input(_))
            ));
            assert_eq!(
                env_config(&e),
                at,
                "a refused config left the record as it was"
            );
        }
    }

    #[test]
    fn messages_escape_the_input() {
        let err = parse_gpu_memory("4\x1b[31mg").unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid GPU memory '4\\x1b[31mg': expected a number with an optional unit b, k, m, g, \
             ki, mi or gi (e.g. 42mi, 4g, 44040192)"
        );
        let err = validate_name("a\nb").unwrap_err().to_string();
        assert!(err.starts_with("invalid name 'a\\nb': "), "{err}");
        let err = validate_eid("x\u{202e}y").unwrap_err().to_string();
        assert!(
            err.starts_with("invalid environment identifier 'x\\u{202e}y': "),
            "{err}"
        );
        let err = parse_gpus("\t").unwrap_err().to_string();
        assert!(err.starts_with("invalid device count '\\t': "), "{err}");
    }
}
