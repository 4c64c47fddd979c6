//! What genv does to the state: every operation of the CLI and the SDK, each one transaction.
//! Bad input is refused before anything changes (the transaction is dropped).

use crate::config::Config;
use crate::devices::Gpu;
use crate::input::{EnvId, Input};
use crate::layout::*;
use crate::ledger::{self, Access, LedgerFile};
use crate::liveness::Liveness;
use crate::mode::{Limits, Mode};
use crate::placement::{self, AttachOutcome};
use crate::policy::{self, Quotas};
use crate::procfs;
use crate::store::{Snapshot, Store};
use crate::system::client;
use crate::system::proto::Request;
use crate::system::server::Peer;
use crate::system::wire::Reply;
use crate::Error;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

// Named here too: callers outside the crate (tests, benchmarks) know it as `ops::now_ms`.
pub use crate::layout::now_ms;

/// Who is asking: the caller's uid decides which environments they may change.
#[derive(Debug, Clone)]
pub struct Caller {
    pub uid: u32,
    pub username: String,
}

impl Caller {
    /// The caller the kernel named for a connection to the service.
    pub(crate) fn of_peer(peer: &Peer) -> Caller {
        Caller {
            uid: peer.uid,
            username: procfs::user_name(peer.uid),
        }
    }

    pub fn current() -> Caller {
        let uid = procfs::current_uid();
        Caller {
            uid,
            username: procfs::user_name(uid),
        }
    }
}

/// A device attachment as listed by `genv devices`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachmentInfo {
    pub eid: String,
    pub env_name: Option<String>,
    pub attached_ms: u64,
    pub over_subscribed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub total_memory: u64,
    pub attachments: Vec<AttachmentInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvInfo {
    pub eid: String,
    pub uid: u32,
    pub username: String,
    pub name: Option<String>,
    pub created_ms: u64,
    /// Processes that activated the environment (shells, `genv exec`, SDK users).
    pub pids: Vec<u32>,
    /// Processes running under the shim in this environment that use a GPU.
    pub processes: Vec<u32>,
    /// Every process started in the environment that runs (the shim's members, see
    /// `members.rs`), whether or not it has touched CUDA.
    #[serde(default)]
    pub members: Vec<u32>,
    /// For the processes this activation starts: the value of `GENV_MEMBER` (`members.rs`),
    /// set by `activate` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
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

/// The genv state of this machine, as the CLI and the SDK use it: the state file itself (the
/// shared mode, and the service in system mode), or the service over its socket (the CLI and
/// the SDK in system mode). Every operation is one code path: the service runs the very same
/// operations, for the caller the kernel names (see `system::service`).
pub struct Genv {
    backend: Backend,
}

enum Backend {
    Local(Local),
    Remote { socket: PathBuf },
}

/// The rules only the service applies, for callers it cannot trust.
#[derive(Debug, Clone)]
pub struct ServiceRules {
    pub limits: Limits,
    /// Per-user quotas (policy.rs), checked at every change that could add to a user's holding.
    pub quotas: Box<Quotas>,
}

/// The operations on the state file.
struct Local {
    store: Store,
    service: Option<ServiceRules>,
}

impl Genv {
    /// The state of the mode in force (see mode.rs).
    pub fn open() -> Result<Genv, Error> {
        let backend = match Mode::current()? {
            Mode::System { socket, .. } => Backend::Remote {
                socket: socket.clone(),
            },
            Mode::Shared { .. } => Backend::Local(Local {
                store: Store::open()?,
                service: None,
            }),
        };
        Ok(Genv { backend })
    }

    /// The state of `store`, written by this process (the shared mode's way).
    pub fn with_store(store: Store) -> Genv {
        Genv {
            backend: Backend::Local(Local {
                store,
                service: None,
            }),
        }
    }

    /// The service's state: `store` written for callers it checks by `rules`.
    pub fn service(store: Store, rules: ServiceRules) -> Genv {
        Genv {
            backend: Backend::Local(Local {
                store,
                service: Some(rules),
            }),
        }
    }

    /// The state file, when this process uses it directly.
    pub fn store(&self) -> Option<&Store> {
        match &self.backend {
            Backend::Local(l) => Some(&l.store),
            Backend::Remote { .. } => None,
        }
    }

    /// Whether the operations need the machine's GPUs from the caller (the service reads them
    /// itself: a caller could send any list).
    pub fn needs_gpus(&self) -> bool {
        matches!(&self.backend, Backend::Local(_))
    }

    /// The machine's GPUs for the operations that take them: read from NVML here, or nothing
    /// where the service reads them itself.
    pub fn machine_gpus(&self) -> Result<Vec<Gpu>, Error> {
        if self.needs_gpus() {
            crate::devices::read_gpus()
        } else {
            Ok(Vec::new())
        }
    }

    fn call<T: for<'de> serde::Deserialize<'de>>(socket: &Path, r: Request) -> Result<T, Error> {
        client::call(socket, &r)
    }

    /// Replaces the device list with what NVML reports; attachments to a device that is gone
    /// (or whose index now holds another GPU) are dropped.
    pub fn refresh_devices(&self, gpus: &[Gpu]) -> Result<(), Error> {
        match &self.backend {
            Backend::Local(l) => l.refresh_devices(gpus),
            Backend::Remote { socket } => Self::call(socket, Request::RefreshDevices),
        }
    }

    /// Creates environment `eid` for process `pid` (or adds `pid` to it when it exists and is
    /// the caller's), applies `config`, and attaches when `attach` and a device count is set.
    /// All or nothing: if the attach fails, no environment is left behind.
    pub fn activate(
        &self,
        caller: &Caller,
        eid: &EnvId,
        pid: u32,
        config: &Config,
        attach: Option<(&[Gpu], bool)>,
    ) -> Result<EnvInfo, Error> {
        match &self.backend {
            Backend::Local(l) => l.activate(caller, eid, pid, config, attach),
            Backend::Remote { socket } => Self::call(
                socket,
                Request::Activate {
                    eid: eid.to_string(),
                    pid,
                    config: config.clone(),
                    attach: attach.map(|a| a.1),
                },
            ),
        }
    }

    /// Removes `pid` from environment `eid`; the environment ends when no activating process and
    /// no shim process of it is left.
    pub fn deactivate(&self, caller: &Caller, eid: &str, pid: u32) -> Result<(), Error> {
        match &self.backend {
            Backend::Local(l) => l.deactivate(caller, eid, pid),
            Backend::Remote { socket } => Self::call(
                socket,
                Request::Deactivate {
                    eid: eid.into(),
                    pid,
                },
            ),
        }
    }

    /// Ends environment `eid` now, whatever still runs in it (`genv exec` when its command ends).
    pub fn remove(&self, caller: &Caller, eid: &str) -> Result<(), Error> {
        match &self.backend {
            Backend::Local(l) => l.remove(caller, eid),
            Backend::Remote { socket } => Self::call(socket, Request::Remove { eid: eid.into() }),
        }
    }

    /// Replaces the configuration of `eid` with `config`.
    pub fn set_config(&self, caller: &Caller, eid: &str, config: &Config) -> Result<(), Error> {
        match &self.backend {
            Backend::Local(l) => l.set_config(caller, eid, config),
            Backend::Remote { socket } => Self::call(
                socket,
                Request::SetConfig {
                    eid: eid.into(),
                    config: config.clone(),
                },
            ),
        }
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
        match &self.backend {
            Backend::Local(l) => l.attach(caller, eid, gpus, index, over_subscribe),
            Backend::Remote { socket } => Self::call(
                socket,
                Request::Attach {
                    eid: eid.into(),
                    index,
                    over_subscribe,
                },
            ),
        }
    }

    /// Detaches from every device, or from device `index` only.
    pub fn detach(&self, caller: &Caller, eid: &str, index: Option<u32>) -> Result<(), Error> {
        match &self.backend {
            Backend::Local(l) => l.detach(caller, eid, index),
            Backend::Remote { socket } => Self::call(
                socket,
                Request::Detach {
                    eid: eid.into(),
                    index,
                },
            ),
        }
    }

    /// Environment `eid` (the caller's own, else another user's of that identifier), if it
    /// exists and is alive. A service that cannot be reached answers None (and says why once
    /// on stderr: the question has no error to carry it).
    pub fn env(&self, eid: &str) -> Option<EnvInfo> {
        match &self.backend {
            Backend::Local(l) => l.env(procfs::current_uid(), eid),
            Backend::Remote { socket } => {
                Self::call(socket, Request::Env { eid: eid.into() }).unwrap_or_else(report)
            }
        }
    }

    /// Every live environment, oldest first; an error when the service cannot be reached
    /// (`genv enforce` must not take "no answer" for "no environments").
    pub fn try_envs(&self) -> Result<Vec<EnvInfo>, Error> {
        match &self.backend {
            Backend::Local(l) => Ok(l.envs()),
            Backend::Remote { socket } => Self::call(socket, Request::Envs),
        }
    }

    /// Every device with the live environments attached to it; an error when the service
    /// cannot be reached.
    pub fn try_devices(&self) -> Result<Vec<DeviceInfo>, Error> {
        match &self.backend {
            Backend::Local(l) => Ok(l.devices()),
            Backend::Remote { socket } => Self::call(socket, Request::Devices),
        }
    }

    /// Every live environment, oldest first.
    pub fn envs(&self) -> Vec<EnvInfo> {
        match &self.backend {
            Backend::Local(l) => l.envs(),
            Backend::Remote { socket } => Self::call(socket, Request::Envs).unwrap_or_else(report),
        }
    }

    /// Every device with the live environments attached to it.
    pub fn devices(&self) -> Vec<DeviceInfo> {
        match &self.backend {
            Backend::Local(l) => l.devices(),
            Backend::Remote { socket } => {
                Self::call(socket, Request::Devices).unwrap_or_else(report)
            }
        }
    }

    /// The socket of the service, in system mode.
    pub fn socket(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Remote { socket } => Some(socket),
            Backend::Local(_) => None,
        }
    }

    /// Runs one request of `peer` (the service).
    pub(crate) fn serve(
        &self,
        peer: &Peer,
        gpus: &dyn Fn() -> Result<Vec<Gpu>, Error>,
        r: Request,
    ) -> Reply {
        let Backend::Local(l) = &self.backend else {
            return Reply::from_result::<()>(Err(Error::State("not the service".into())));
        };
        let caller = Caller::of_peer(peer);
        match r {
            Request::Activate {
                eid,
                pid,
                config,
                attach,
            } => Reply::from_result((|| {
                let eid = EnvId::parse(&eid)?;
                let list = match attach {
                    Some(_) => gpus()?,
                    None => Vec::new(),
                };
                l.activate(
                    &caller,
                    &eid,
                    pid,
                    &config,
                    attach.map(|o| (list.as_slice(), o)),
                )
            })()),
            Request::Deactivate { eid, pid } => {
                Reply::from_result(l.deactivate(&caller, &eid, pid))
            }
            Request::Remove { eid } => Reply::from_result(l.remove(&caller, &eid)),
            Request::SetConfig { eid, config } => {
                Reply::from_result(l.set_config(&caller, &eid, &config))
            }
            Request::Attach {
                eid,
                index,
                over_subscribe,
            } => Reply::from_result(
                gpus().and_then(|g| l.attach(&caller, &eid, &g, index, over_subscribe)),
            ),
            Request::Detach { eid, index } => Reply::from_result(l.detach(&caller, &eid, index)),
            Request::Env { eid } => Reply::from_result(Ok(l.env(caller.uid, &eid))),
            Request::Envs => Reply::from_result(Ok(l.envs())),
            Request::Devices => Reply::from_result(Ok(l.devices())),
            Request::RefreshDevices => {
                Reply::from_result(gpus().and_then(|g| l.refresh_devices(&g)))
            }
            Request::Lock { .. } | Request::Hello => {
                Reply::from_result::<()>(Err(Error::State("answered by the connection".into())))
            }
        }
    }

    /// The key of environment `eid` of `peer` (its owner and identifier) and the devices
    /// (NVML index, UUID) it may lock, for the service.
    #[allow(clippy::type_complexity)]
    pub(crate) fn lockable(
        &self,
        peer: &Peer,
        eid: &str,
    ) -> Result<(String, Vec<(u32, String)>), Error> {
        let Backend::Local(l) = &self.backend else {
            return Err(Error::State("not the service".into()));
        };
        let caller = Caller::of_peer(peer);
        let snap = l.store.snapshot();
        let Some(i) = Local::find(&snap, &caller, eid)? else {
            return Ok((String::new(), Vec::new()));
        };
        let e = &snap.envs[i];
        let key = format!("{}/{}", e.uid, e.eid());
        let devices = e
            .attached()
            .iter()
            .filter_map(|a| {
                snap.devices()
                    .iter()
                    .find(|d| d.index == a.device)
                    .map(|d| (a.device, d.uuid()))
            })
            .collect();
        Ok((key, devices))
    }
}

/// A read whose service could not be reached: nothing to show, and one line saying why.
fn report<T: Default>(e: Error) -> T {
    eprintln!("genv: {}", crate::text::printable(&e.to_string()));
    T::default()
}

impl Local {
    /// Every user's ledger, each mapped when this process may write it (its own; all of them
    /// for root), read through `pread` otherwise. Dead processes' memory is given back in those
    /// it maps.
    fn ledgers(&self) -> Vec<LedgerFile> {
        let Ok(dir) = self.store.ledger_dir(None) else {
            return Vec::new();
        };
        let me = procfs::current_uid();
        let mut out = Vec::new();
        for name in dir.names().unwrap_or_default() {
            let Some(uid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            // The service never maps a file a user may shrink under it: it reads them all.
            let access =
                if self.service.is_none() && self.store.writable() && (uid == me || me == 0) {
                    Access::Map
                } else {
                    Access::Read
                };
            let lf = LedgerFile::open(&dir, uid, access, ledger::Create::No)
                .or_else(|_| LedgerFile::open(&dir, uid, Access::Read, ledger::Create::No));
            if let Ok(lf) = lf {
                ledger::reap_dead(&lf, None);
                out.push(lf);
            }
        }
        out
    }

    /// Who is alive now: `ledgers`' shim processes and every environment's members.
    fn liveness(&self, ledgers: &[LedgerFile]) -> Liveness {
        Liveness::new(ledgers, crate::members::scan(&self.store))
    }

    /// A transaction that first forgets dead shim processes, and dead environments that hold
    /// devices (so that placement sees them free). Other dead environments cost nothing here:
    /// readers hide them and `envs` removes them, having checked every environment anyway.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut Tables, &Liveness) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let live = self.liveness(&self.ledgers());
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

    /// Drops environment `i`. Its ledger entry stays behind, unused: it is its owner's, and
    /// the next environment of that owner in slot `i` starts it afresh (see `activate`).
    fn forget(&self, t: &mut Tables, i: usize) {
        t.envs[i].serial = 0;
    }

    /// The quotas the caller's changes are checked against: the service's, for everyone but root.
    fn quotas_for(&self, caller: &Caller) -> Option<&Quotas> {
        self.service
            .as_ref()
            .map(|r| &*r.quotas)
            .filter(|q| caller.uid != 0 && !q.is_empty())
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
    fn live_snapshot(&self) -> (Snapshot, Liveness, Vec<LedgerFile>) {
        let ledgers = self.ledgers();
        let live = self.liveness(&ledgers);
        (self.store.snapshot(), live, ledgers)
    }

    fn refresh_devices(&self, gpus: &[Gpu]) -> Result<(), Error> {
        let snap = self.store.snapshot();
        if placement::devices_match(&snap, gpus) {
            return Ok(());
        }
        self.write(|t, _| {
            placement::apply_devices(t, gpus);
            Ok(())
        })
    }

    fn not_yours(e: &EnvRec, caller: &Caller) -> Error {
        Error::Permission(format!(
            "environment {} belongs to {}({}); you ({}) cannot change it",
            e.eid(),
            e.username(),
            e.uid,
            caller.username
        ))
    }

    /// The caller's environment `eid` (see `Tables::env_for`); when only another user has one
    /// of that identifier, the error says whose it is.
    fn find(t: &Tables, caller: &Caller, eid: &str) -> Result<Option<usize>, Error> {
        if let Some((i, _)) = t.env_for(caller.uid, eid) {
            return Ok(Some(i));
        }
        match t.foreign_env(caller.uid, eid) {
            Some((_, e)) => Err(Self::not_yours(e, caller)),
            None => Ok(None),
        }
    }

    /// Creates environment `eid` for process `pid` (or adds `pid` to it when it exists and is
    /// the caller's), applies `config`, and attaches when `attach` and a device count is set.
    /// All or nothing: if the attach fails, no environment is left behind.
    pub fn activate(
        &self,
        caller: &Caller,
        eid: &EnvId,
        pid: u32,
        config: &Config,
        attach: Option<(&[Gpu], bool)>,
    ) -> Result<EnvInfo, Error> {
        let eid = eid.as_str();
        let start = procfs::start_time(pid)
            .ok_or_else(|| Error::Input(format!("process {pid} does not exist")))?;
        // The service acts for callers it cannot trust: a process of theirs only (no pinning
        // GPUs to pid 1 or to another user's shell).
        if self.service.is_some() && caller.uid != 0 && procfs::uid_of(pid) != Some(caller.uid) {
            return Err(Error::Permission(format!(
                "process {pid} is not yours ({}): an environment lives as long as processes of \
                 its owner",
                caller.username
            )));
        }
        // The memory of the caller's environments is booked in the caller's own ledger (made
        // only when the state may be changed at all): by the caller in the shared mode, for
        // them by the service (owned by them, private to them).
        self.store.check_writable()?;
        let own = match &self.service {
            None => self
                .store
                .ledger(caller.uid, Access::Map, ledger::Create::Own)?,
            Some(_) => self.store.ledger(
                caller.uid,
                Access::Write,
                ledger::Create::ForUser {
                    uid: caller.uid,
                    gid: procfs::user_gid(caller.uid),
                },
            )?,
        };
        // The file its processes will lock to be members (made before the transaction, so that
        // a planted file refuses the activation without changing anything).
        let members = crate::members::open(
            &self.store,
            caller.uid,
            match &self.service {
                None => crate::members::Make::Own,
                Some(_) => crate::members::Make::ForUser {
                    uid: caller.uid,
                    gid: procfs::user_gid(caller.uid),
                },
            },
        )?;
        let max_envs = self.service.as_ref().map(|r| r.limits.max_envs_per_user);
        let quotas = self.quotas_for(caller);
        let slot = self.write(|t, live| {
            let before = quotas.map(|_| policy::holding(t, caller.uid));
            if let Some(gpus) = attach.map(|a| a.0) {
                placement::apply_devices(t, gpus);
            }
            // A dead environment of the same identifier (a reused shell pid) is not joined.
            if let Some((i, e)) = t.env_for(caller.uid, eid) {
                if !live.alive(e) {
                    self.forget(t, i);
                }
            }
            if !t.envs.iter().any(|e| !e.is_used()) {
                self.reap_all(t, live);
            }
            // Another user's environment of the same identifier is theirs: this one is made
            // beside it (identifiers are per user).
            let slot = match t.env_for(caller.uid, eid).map(|(i, _)| i) {
                Some(i) => {
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
                    let mut c = Config::of(e);
                    c.overlay(config);
                    c.record(e);
                    i
                }
                None => {
                    if let Some(max) = max_envs.filter(|_| caller.uid != 0) {
                        let mine = t.envs().filter(|(_, e)| e.uid == caller.uid).count();
                        if mine >= max as usize {
                            return Err(Error::Unavailable(format!(
                                "you ({}) have {mine} environments, the most one user may have \
                                 (max_envs_per_user in the genv configuration): end one first",
                                caller.username
                            )));
                        }
                    }
                    let i = t.envs.iter().position(|e| !e.is_used()).ok_or_else(|| {
                        Error::State(format!("no room for more than {MAX_ENVS} environments"))
                    })?;
                    t.next_serial = t.next_serial.max(1) + 1;
                    let e = &mut t.envs[i];
                    *e = EnvRec::empty();
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
                    config.record(e);
                    // A fresh environment starts with an empty ledger entry (the slot was free,
                    // so this is harmless should the transaction fail below).
                    ledger::reset_env(&own, i, e.serial)?;
                    t.env_hwm = t.env_hwm.max(i as u32 + 1);
                    i
                }
            };
            if let Some((_, over)) = attach {
                if t.envs[slot].gpus().is_some() {
                    if let AttachOutcome::Failed(msg) = placement::attach_count(t, slot, over) {
                        return Err(Error::Unavailable(msg));
                    }
                }
            }
            if let (Some(q), Some(b)) = (quotas, &before) {
                policy::check(q, t, caller.uid, &caller.username, b)?;
            }
            Ok(slot)
        })?;
        let mut info = self
            .env_at(slot)
            .ok_or_else(|| Error::State("environment vanished".into()))?;
        info.member = members.token(info.serial);
        Ok(info)
    }

    /// Removes `pid` from environment `eid`; the environment ends when no activating process and
    /// no shim process of it is left.
    pub fn deactivate(&self, caller: &Caller, eid: &str, pid: u32) -> Result<(), Error> {
        // Children `pid` started in the environment a moment ago may not have loaded the shim
        // yet (`with activate(): Popen(…)` then the block's end): they are members, let them say
        // so before the environment is judged.
        let snap = self.store.snapshot();
        if let Ok(Some(i)) = Self::find(&snap, caller, eid) {
            let (uid, serial) = (snap.envs[i].uid, snap.envs[i].serial);
            drop(snap);
            crate::members::await_joining(&self.store, pid, uid, serial);
        }
        self.write(|t, live| {
            let Some(i) = Self::find(t, caller, eid)? else {
                return Ok(());
            };
            let e = &mut t.envs[i];
            e.retain_pids(|p| p.pid != pid && procfs::alive(p.pid, p.start_time));
            // The deactivating process itself (an SDK user runs under the shim) does not keep
            // the environment alive; its other programs do.
            if e.n_pids == 0 && !live.process_besides(e, pid) {
                self.forget(t, i);
            }
            Ok(())
        })
    }

    /// Ends environment `eid` now, whatever still runs in it (`genv exec` when its command ends).
    pub fn remove(&self, caller: &Caller, eid: &str) -> Result<(), Error> {
        self.write(|t, _| {
            if let Some(i) = Self::find(t, caller, eid)? {
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
        let quotas = self.quotas_for(caller);
        self.write(|t, live| {
            let i = Self::find(t, caller, eid)?
                .filter(|&i| live.alive(&t.envs[i]))
                .ok_or(Error::NotActive)?;
            let before = quotas.map(|_| policy::holding(t, caller.uid));
            let out = f(t, i)?;
            // Attaching, and raising a capacity, add to what the caller holds.
            if let (Some(q), Some(b)) = (quotas, &before) {
                policy::check(q, t, caller.uid, &caller.username, b)?;
            }
            Ok(out)
        })
    }

    /// Replaces the configuration of `eid` with `config`.
    pub fn set_config(&self, caller: &Caller, eid: &str, config: &Config) -> Result<(), Error> {
        self.with_env(caller, eid, |t, i| {
            config.record(&mut t.envs[i]);
            Ok(())
        })
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
            placement::apply_devices(t, gpus);
            match index {
                Some(ix) => placement::attach_index(t, i, ix, over_subscribe),
                None => {
                    if t.envs[i].gpus().is_none() {
                        return Err(Error::NotConfigured(
                            "the device count is not configured: run `genv config gpus <count>` first, or pass --index".into(),
                        ));
                    }
                    Ok(placement::attach_count(t, i, over_subscribe))
                }
            }
        })
    }

    /// Detaches from every device, or from device `index` only.
    pub fn detach(&self, caller: &Caller, eid: &str, index: Option<u32>) -> Result<(), Error> {
        self.with_env(caller, eid, |t, i| {
            if let Some(ix) = index {
                placement::check_index(t, ix)?;
            }
            t.envs[i].retain_attached(|a| index.is_some_and(|ix| a.device != ix));
            Ok(())
        })
    }

    fn info(
        &self,
        t: &Tables,
        slot: usize,
        live: Option<&Liveness>,
        ledgers: &[LedgerFile],
    ) -> EnvInfo {
        let e = &t.envs[slot];
        let lf = ledgers.iter().find(|l| l.uid() == e.uid);
        let procs = match lf {
            Some(lf) if live.is_none_or(|l| l.has_shim_processes(e)) => {
                ledger::env_processes(lf, e.serial)
            }
            _ => Vec::new(),
        };
        let processes: Vec<u32> = procs.iter().map(|(p, _)| *p).collect();
        // Dead processes were reaped before in the ledgers this process maps (see
        // `ledgers`); in the others, what the live ones hold is the figure.
        let used = |dev: u32| match lf {
            Some(lf) => ledger::env_used(lf, slot, e.serial, dev as usize),
            None => 0,
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
            members: match live {
                Some(l) => l.members(e).to_vec(),
                None => Vec::new(),
            },
            member: None,
            attached: e.attached().iter().map(|a| a.device).collect(),
            used_memory: e.attached().iter().map(|a| used(a.device)).collect(),
            config: Config::of(e),
            slot,
            serial: e.serial,
        }
    }

    fn env_at(&self, slot: usize) -> Option<EnvInfo> {
        let snap = self.store.snapshot();
        let ledgers = self.ledgers();
        snap.envs[slot]
            .is_used()
            .then(|| self.info(&snap, slot, None, &ledgers))
    }

    /// Environment `eid` as user `me` names it, if it exists and is alive.
    fn env(&self, me: u32, eid: &str) -> Option<EnvInfo> {
        let (snap, live, ledgers) = self.live_snapshot();
        // Reading another user's environment is fine: the caller's own first.
        let (i, e) = snap
            .env_for(me, eid)
            .or_else(|| snap.foreign_env(me, eid))?;
        live.alive(e)
            .then(|| self.info(&snap, i, Some(&live), &ledgers))
    }

    /// Every live environment, oldest first. Having checked them all, it also removes the dead
    /// ones from the file (best effort: a reader that cannot write still gets its list).
    pub fn envs(&self) -> Vec<EnvInfo> {
        let (snap, live, ledgers) = self.live_snapshot();
        live.prefetch(&snap);
        let mut dead = false;
        let mut v: Vec<EnvInfo> = snap
            .envs()
            .filter(|(_, e)| {
                let a = live.alive(e);
                dead |= !a;
                a
            })
            .map(|(i, _)| self.info(&snap, i, Some(&live), &ledgers))
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
        let (snap, live, _) = self.live_snapshot();
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
