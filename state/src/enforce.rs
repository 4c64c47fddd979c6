//! `genv enforce`: the backstop for what the shim cannot see (a program run with `env -u
//! LD_PRELOAD`, a static or setuid one). Each pass reads the real usage from NVML (every
//! device's running processes and their memory, CUDA contexts included), finds each process's
//! environment, judges them by the policy (policy.rs, `[enforce]` and `[quotas]`) and acts:
//! SIGTERM, then SIGKILL after the grace period, one log line per action.
//!
//! Never on partial data: an NVML error on any device, a reading that takes longer than the
//! timeout, or a service that does not answer means no action in that pass. Never on a stale
//! reading: what the first reading condemns is read again and judged again, and only what both
//! readings condemn (the same process, by pid and start time, by the same rule) is acted on; the
//! signal goes through a pidfd opened after checking the start time, so a reused pid is never
//! signalled.

use crate::ops::{DeviceInfo, EnvInfo, Genv};
use crate::policy::{self, Act, Policy};
use crate::procfs;
use crate::Error;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long after the first reading the second one is taken.
const CONFIRM: Duration = Duration::from_millis(300);

/// One process on a GPU, as NVML reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuProc {
    pub pid: u32,
    /// Bytes, its CUDA context included.
    pub used: u64,
}

/// One GPU as NVML reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuReading {
    pub index: u32,
    pub uuid: String,
    pub total: u64,
    pub procs: Vec<GpuProc>,
}

/// A process NVML lists, as /proc tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub uid: u32,
    pub user: String,
    pub start: u64,
    /// `GENV_ENVIRONMENT_ID` it was started with.
    pub env_var: Option<String>,
}

/// Everything one judgement is made on.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub gpus: Vec<GpuReading>,
    pub envs: Vec<EnvInfo>,
    /// The state's devices (NVML index and UUID of what environments are attached to).
    pub devices: Vec<DeviceInfo>,
    pub procs: HashMap<u32, ProcInfo>,
}

/// Why a process is acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    Outside,
    ForeignDevice,
    OverCapacity,
    QuotaDevices,
    QuotaMemory,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::Outside => "outside",
            Rule::ForeignDevice => "foreign-device",
            Rule::OverCapacity => "over-capacity",
            Rule::QuotaDevices => "quota-devices",
            Rule::QuotaMemory => "quota-memory",
        }
    }
}

/// One process to act on, with what it was judged by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub pid: u32,
    pub start: u64,
    pub uid: u32,
    pub user: String,
    /// (identifier, name) of its environment.
    pub env: Option<(String, Option<String>)>,
    pub device: u32,
    /// What it holds on `device`.
    pub used: u64,
    pub rule: Rule,
    /// The figures the rule compared, for the log line.
    pub figures: String,
}

impl Decision {
    /// The log line of this action: `verb` is `SIGTERM`, `would SIGTERM`, `SIGKILL`.
    pub fn line(&self, verb: &str) -> String {
        let env = match &self.env {
            Some((eid, Some(name))) => format!("environment {eid} ({name})"),
            Some((eid, None)) => format!("environment {eid}"),
            None => "no environment".into(),
        };
        crate::text::printable(&format!(
            "genv enforce: {verb} pid {} of {}({}), {env}, GPU {}: {}: {}; the process holds {}",
            self.pid,
            self.user,
            self.uid,
            self.device,
            self.rule.name(),
            self.figures,
            policy::bytes(self.used)
        ))
    }

    fn key(&self) -> (u32, u64, Rule) {
        (self.pid, self.start, self.rule)
    }
}

/// What the pass is told from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    pub dry_run: bool,
    pub grace: Duration,
    pub nvml_timeout: Duration,
}

/// What one pass did.
#[derive(Debug, Clone, Default)]
pub struct Pass {
    /// Processes on GPUs in the (second) reading.
    pub processes: usize,
    pub gpus: usize,
    /// What was acted on (or would be, dry).
    pub decisions: Vec<Decision>,
    /// One line per action, in order (also printed as they happen).
    pub lines: Vec<String>,
}

static READING: AtomicBool = AtomicBool::new(false);

/// Every GPU's processes from NVML, or an error when any part of it cannot be read or the
/// reading takes longer than `timeout` (a driver that hangs keeps that thread; the next pass
/// refuses to start another meanwhile).
pub fn read_nvml(timeout: Duration) -> Result<Vec<GpuReading>, Error> {
    if READING.swap(true, Ordering::AcqRel) {
        return Err(Error::Nvml(
            "the previous NVML reading has not returned yet".into(),
        ));
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = nvml_now();
        READING.store(false, Ordering::Release);
        let _ = tx.send(r);
    });
    match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(_) => Err(Error::Nvml(format!(
            "NVML did not answer within {} s",
            timeout.as_secs_f64()
        ))),
    }
}

fn nvml_now() -> Result<Vec<GpuReading>, Error> {
    use nvml_wrapper::enums::device::UsedGpuMemory;
    use nvml_wrapper::error::NvmlError;
    let nvml = nvml_wrapper::Nvml::init()
        .map_err(|e| Error::Nvml(format!("cannot initialise NVML (libnvidia-ml.so.1): {e}")))?;
    let count = nvml
        .device_count()
        .map_err(|e| Error::Nvml(format!("cannot count GPUs through NVML: {e}")))?;
    let mut out = Vec::with_capacity(count as usize);
    for index in 0..count {
        let err = |what: &str, e: NvmlError| Error::Nvml(format!("GPU {index}: {what}: {e}"));
        let d = nvml
            .device_by_index(index)
            .map_err(|e| err("cannot open it", e))?;
        let uuid = d.uuid().map_err(|e| err("cannot read its UUID", e))?;
        let total = d
            .memory_info()
            .map_err(|e| err("cannot read its memory", e))?
            .total;
        let mut list = d
            .running_compute_processes()
            .map_err(|e| err("cannot read its compute processes", e))?;
        // A device without graphics has no such list: that is not missing data.
        match d.running_graphics_processes() {
            Ok(g) => list.extend(g),
            Err(NvmlError::NotSupported) => {}
            Err(e) => return Err(err("cannot read its graphics processes", e)),
        }
        let mut procs: BTreeMap<u32, u64> = BTreeMap::new();
        for p in list {
            let used = match p.used_gpu_memory {
                UsedGpuMemory::Used(b) => b,
                UsedGpuMemory::Unavailable => {
                    return Err(Error::Nvml(format!(
                        "GPU {index}: NVML does not say how much memory process {} uses",
                        p.pid
                    )))
                }
            };
            *procs.entry(p.pid).or_default() += used;
        }
        out.push(GpuReading {
            index,
            uuid,
            total,
            procs: procs
                .into_iter()
                .map(|(pid, used)| GpuProc { pid, used })
                .collect(),
        });
    }
    Ok(out)
}

/// Reads the world once: NVML, the environments (from the state or the service), /proc.
pub fn gather(genv: &Genv, timeout: Duration) -> Result<World, Error> {
    let gpus = read_nvml(timeout)?;
    let envs = genv.try_envs()?;
    let devices = genv.try_devices()?;
    let mut procs = HashMap::new();
    for p in gpus.iter().flat_map(|g| &g.procs) {
        if procs.contains_key(&p.pid) {
            continue;
        }
        // A process that ended meanwhile (or another namespace's) is not judged.
        let (Some(uid), Some(start)) = (procfs::uid_of(p.pid), procfs::start_time(p.pid)) else {
            continue;
        };
        let env_var = procfs::env_value(p.pid, "GENV_ENVIRONMENT_ID")
            .and_then(|v| String::from_utf8(v).ok())
            .filter(|v| !v.is_empty());
        procs.insert(
            p.pid,
            ProcInfo {
                uid,
                user: procfs::user_name(uid),
                start,
                env_var,
            },
        );
    }
    Ok(World {
        gpus,
        envs,
        devices,
        procs,
    })
}

/// The environment of each process: a member or shim process of it (the kernel's locks, the
/// ledger's slots), else the one its `GENV_ENVIRONMENT_ID` names among its owner's (a program
/// run without the shim inherits the variable); root's process may name anyone's when only one
/// environment has that identifier.
fn environments(w: &World) -> HashMap<u32, usize> {
    let mut of: HashMap<u32, usize> = HashMap::new();
    for (i, e) in w.envs.iter().enumerate() {
        for &p in e.members.iter().chain(&e.processes) {
            of.entry(p).or_insert(i);
        }
    }
    for (&pid, p) in &w.procs {
        if of.contains_key(&pid) {
            continue;
        }
        let Some(v) = &p.env_var else { continue };
        let mut named = w.envs.iter().enumerate().filter(|(_, e)| &e.eid == v);
        let own = named.clone().find(|(_, e)| e.uid == p.uid);
        let found = own.or_else(|| {
            let first = named.next()?;
            (p.uid == 0 && named.next().is_none()).then_some(first)
        });
        if let Some((i, _)) = found {
            of.insert(pid, i);
        }
    }
    of
}

/// Judges `w` by `policy`: the processes to act on, each once (by the first rule that condemns
/// it), fewest first: processes the shim does not confine before its own, the largest first.
pub fn decide(w: &World, policy: &Policy) -> Vec<Decision> {
    let e = &policy.enforce;
    let env_of = environments(w);
    let mut out: Vec<Decision> = Vec::new();
    let mut condemned: BTreeSet<u32> = BTreeSet::new();
    let uuid_at: HashMap<u32, &str> = w
        .devices
        .iter()
        .map(|d| (d.index, d.uuid.as_str()))
        .collect();
    let env_desc = |i: usize| {
        let x = &w.envs[i];
        (x.eid.clone(), x.name.clone())
    };
    let decision = |pid: u32, dev: &GpuReading, used: u64, rule: Rule, figures: String| {
        let p = &w.procs[&pid];
        Decision {
            pid,
            start: p.start,
            uid: p.uid,
            user: p.user.clone(),
            env: env_of.get(&pid).map(|&i| env_desc(i)),
            device: dev.index,
            used,
            rule,
            figures,
        }
    };
    // Only processes /proc could tell about are judged.
    let judged = |g: &'_ GpuReading| -> Vec<GpuProc> {
        g.procs
            .iter()
            .filter(|p| w.procs.contains_key(&p.pid))
            .cloned()
            .collect()
    };
    // Outside any environment, and on devices the environment is not attached to (by UUID,
    // so an index that now holds another GPU does not count as attached).
    for g in &w.gpus {
        for p in judged(g) {
            if condemned.contains(&p.pid) {
                continue;
            }
            let info = &w.procs[&p.pid];
            match env_of.get(&p.pid) {
                None if e.outside == Act::Terminate && info.uid != 0 => {
                    condemned.insert(p.pid);
                    out.push(decision(
                        p.pid,
                        g,
                        p.used,
                        Rule::Outside,
                        "uses a GPU outside any environment".into(),
                    ));
                }
                Some(&i) if e.foreign_devices == Act::Terminate => {
                    let env = &w.envs[i];
                    let attached = env
                        .attached
                        .iter()
                        .any(|ix| uuid_at.get(ix).is_some_and(|u| *u == g.uuid));
                    if !attached {
                        condemned.insert(p.pid);
                        let list: Vec<String> =
                            env.attached.iter().map(|i| i.to_string()).collect();
                        out.push(decision(
                            p.pid,
                            g,
                            p.used,
                            Rule::ForeignDevice,
                            format!(
                                "the environment is attached to {}",
                                if list.is_empty() {
                                    "no GPU".into()
                                } else {
                                    format!("GPU(s) {}", list.join(", "))
                                }
                            ),
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    // Over capacity, per environment and device.
    if e.over_capacity == Act::Terminate {
        for g in &w.gpus {
            let mut by_env: BTreeMap<usize, Vec<GpuProc>> = BTreeMap::new();
            for p in judged(g) {
                if let Some(&i) = env_of.get(&p.pid) {
                    if !condemned.contains(&p.pid) {
                        by_env.entry(i).or_default().push(p);
                    }
                }
            }
            for (i, procs) in by_env {
                let env = &w.envs[i];
                let cap = env
                    .config
                    .gpu_memory
                    .as_ref()
                    .map_or(g.total, |c| c.bytes().min(g.total));
                let allowed = cap
                    .saturating_add(e.tolerance.bytes)
                    .saturating_add(e.tolerance_per_process.bytes * procs.len() as u64);
                let mut used: u64 = procs.iter().map(|p| p.used).sum();
                if used <= allowed {
                    continue;
                }
                let figures = format!(
                    "the environment uses {} on GPU {}, more than its capacity {} + tolerance {}",
                    policy::bytes(used),
                    g.index,
                    policy::bytes(cap),
                    policy::bytes(allowed - cap)
                );
                for p in victims(procs, &env.processes) {
                    if used <= allowed {
                        break;
                    }
                    used -= p.used;
                    condemned.insert(p.pid);
                    out.push(decision(
                        p.pid,
                        g,
                        p.used,
                        Rule::OverCapacity,
                        figures.clone(),
                    ));
                }
            }
        }
    }
    // Users over their quota, by NVML's figures: every process of theirs not condemned yet.
    if e.over_quota == Act::Terminate && !policy.quotas.is_empty() {
        let mut by_user: BTreeMap<u32, Vec<(usize, GpuProc)>> = BTreeMap::new();
        for (gi, g) in w.gpus.iter().enumerate() {
            for p in judged(g) {
                let uid = w.procs[&p.pid].uid;
                if uid != 0 && !condemned.contains(&p.pid) {
                    by_user.entry(uid).or_default().push((gi, p));
                }
            }
        }
        let shim: BTreeSet<u32> = w.envs.iter().flat_map(|e| e.processes.clone()).collect();
        for (uid, procs) in by_user {
            let user = w.procs[&procs[0].1.pid].user.clone();
            let q = policy.quotas.of(uid, &user);
            if let Some(max) = q.max_devices {
                let mut per_dev: BTreeMap<usize, u64> = BTreeMap::new();
                for (gi, p) in &procs {
                    *per_dev.entry(*gi).or_default() += p.used;
                }
                if per_dev.len() > max as usize {
                    // Keep the devices the user's environments are attached to, then the most
                    // used; the rest are given up.
                    let theirs: BTreeSet<&str> = w
                        .envs
                        .iter()
                        .filter(|e| e.uid == uid)
                        .flat_map(|e| e.attached.iter().filter_map(|i| uuid_at.get(i).copied()))
                        .collect();
                    let mut ranked: Vec<(usize, u64)> = per_dev.into_iter().collect();
                    ranked.sort_by_key(|&(gi, used)| {
                        (
                            !theirs.contains(w.gpus[gi].uuid.as_str()),
                            u64::MAX - used,
                            gi,
                        )
                    });
                    let n = ranked.len();
                    let figures = format!(
                        "the user uses {n} GPUs, more than their quota of {max} (max_devices)"
                    );
                    for &(gi, _) in &ranked[max as usize..] {
                        for (pgi, p) in &procs {
                            if *pgi == gi && condemned.insert(p.pid) {
                                out.push(decision(
                                    p.pid,
                                    &w.gpus[gi],
                                    p.used,
                                    Rule::QuotaDevices,
                                    figures.clone(),
                                ));
                            }
                        }
                    }
                }
            }
            if let Some(max) = &q.max_gpu_memory {
                let left: Vec<&(usize, GpuProc)> = procs
                    .iter()
                    .filter(|(_, p)| !condemned.contains(&p.pid))
                    .collect();
                let allowed = max
                    .bytes
                    .saturating_add(e.tolerance_per_process.bytes * left.len() as u64);
                let mut used: u64 = left.iter().map(|(_, p)| p.used).sum();
                if used > allowed {
                    let figures = format!(
                        "the user uses {} of GPU memory, more than their quota of {} \
                         (max_gpu_memory)",
                        policy::bytes(used),
                        max.text
                    );
                    let mut order: Vec<&(usize, GpuProc)> = left;
                    order.sort_by_key(|(gi, p)| (shim.contains(&p.pid), u64::MAX - p.used, *gi));
                    for (gi, p) in order {
                        if used <= allowed {
                            break;
                        }
                        if condemned.insert(p.pid) {
                            used = used.saturating_sub(
                                procs
                                    .iter()
                                    .filter(|(_, q)| q.pid == p.pid)
                                    .map(|(_, q)| q.used)
                                    .sum(),
                            );
                            out.push(decision(
                                p.pid,
                                &w.gpus[*gi],
                                p.used,
                                Rule::QuotaMemory,
                                figures.clone(),
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

/// The order in which an environment's processes on a device give way: those the shim does not
/// confine (not among its shim processes) first, the largest first.
fn victims(mut procs: Vec<GpuProc>, shim: &[u32]) -> Vec<GpuProc> {
    procs.sort_by_key(|p| (shim.contains(&p.pid), u64::MAX - p.used, p.pid));
    procs
}

/// One pass: read, judge, read again and judge again, act on what both condemn. `say` gets
/// each log line as it happens.
pub fn pass(
    genv: &Genv,
    policy: &Policy,
    o: &Options,
    say: &mut dyn FnMut(&str),
) -> Result<Pass, Error> {
    let first = gather(genv, o.nvml_timeout)?;
    let before = decide(&first, policy);
    let mut report = Pass {
        processes: first.procs.len(),
        gpus: first.gpus.len(),
        ..Pass::default()
    };
    if before.is_empty() {
        return Ok(report);
    }
    std::thread::sleep(CONFIRM);
    let second = gather(genv, o.nvml_timeout)?;
    let keys: BTreeSet<_> = before.iter().map(Decision::key).collect();
    let now: Vec<Decision> = decide(&second, policy)
        .into_iter()
        .filter(|d| keys.contains(&d.key()))
        .collect();
    report.processes = second.procs.len();
    report.gpus = second.gpus.len();
    let mut line = |l: String, r: &mut Pass| {
        say(&l);
        r.lines.push(l);
    };
    if o.dry_run {
        for d in &now {
            line(d.line("would SIGTERM"), &mut report);
        }
        report.decisions = now;
        return Ok(report);
    }
    let mut signalled = Vec::new();
    for d in &now {
        // Gone, or the pid is another process's now: nothing to do.
        let Some(fd) = pidfd(d) else { continue };
        if rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::TERM).is_ok() {
            line(d.line("SIGTERM"), &mut report);
            signalled.push((d, fd));
        }
    }
    let gone = |d: &Decision| !procfs::alive(d.pid, d.start);
    let t0 = Instant::now();
    while signalled.iter().any(|(d, _)| !gone(d)) && t0.elapsed() < o.grace {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut killed = Vec::new();
    for (d, fd) in &signalled {
        if !gone(d) && rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL).is_ok()
        {
            line(
                d.line(&format!(
                    "SIGKILL (alive {} s after SIGTERM)",
                    o.grace.as_secs_f64()
                )),
                &mut report,
            );
            killed.push(*d);
        }
    }
    let t1 = Instant::now();
    while killed.iter().any(|d| !gone(d)) && t1.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    report.decisions = now;
    Ok(report)
}

/// A pidfd of the process `d` was made about, when it still is that process.
fn pidfd(d: &Decision) -> Option<std::os::fd::OwnedFd> {
    let pid = rustix::process::Pid::from_raw(d.pid as i32)?;
    let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
    // Checked after opening: the pidfd names this very process from now on.
    (procfs::start_time(d.pid) == Some(d.start)).then_some(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::input::{Capacity, Input};

    const GI: u64 = 1 << 30;

    fn env(eid: &str, uid: u32, attached: &[u32], cap: Option<&str>, members: &[u32]) -> EnvInfo {
        EnvInfo {
            eid: eid.into(),
            uid,
            username: format!("u{uid}"),
            name: None,
            created_ms: 0,
            pids: vec![],
            processes: vec![],
            members: members.to_vec(),
            member: None,
            attached: attached.to_vec(),
            config: Config {
                gpu_memory: cap.map(|c| Capacity::parse(c).unwrap()),
                ..Config::default()
            },
            used_memory: vec![],
            slot: 0,
            serial: 0,
        }
    }

    fn world(gpus: &[&[(u32, u64)]], envs: Vec<EnvInfo>, procs: &[(u32, u32, &str)]) -> World {
        World {
            gpus: gpus
                .iter()
                .enumerate()
                .map(|(i, ps)| GpuReading {
                    index: i as u32,
                    uuid: format!("GPU-{i}"),
                    total: 80 * GI,
                    procs: ps
                        .iter()
                        .map(|&(pid, used)| GpuProc { pid, used })
                        .collect(),
                })
                .collect(),
            envs,
            devices: (0..gpus.len() as u32)
                .map(|i| DeviceInfo {
                    index: i,
                    uuid: format!("GPU-{i}"),
                    name: String::new(),
                    total_memory: 80 * GI,
                    attachments: vec![],
                })
                .collect(),
            procs: procs
                .iter()
                .map(|&(pid, uid, var)| {
                    (
                        pid,
                        ProcInfo {
                            uid,
                            user: format!("u{uid}"),
                            start: 1,
                            env_var: (!var.is_empty()).then(|| var.to_string()),
                        },
                    )
                })
                .collect(),
        }
    }

    fn rules(d: &[Decision]) -> Vec<(u32, Rule)> {
        d.iter().map(|d| (d.pid, d.rule)).collect()
    }

    #[test]
    fn each_rule_and_only_what_breaks_it() {
        // 10: over capacity without the shim (named by its variable); 11: within; 12: another
        // user's environment, same identifier, within; 13: outside; 14: on a foreign GPU.
        let w = world(
            &[
                &[(10, 3 * GI), (11, GI / 2), (12, GI), (13, GI)],
                &[(14, GI)],
            ],
            vec![
                env("a", 1000, &[0], Some("2gi"), &[11, 14]),
                env("a", 1001, &[0], Some("2gi"), &[]),
            ],
            &[
                (10, 1000, "a"),
                (11, 1000, "a"),
                (12, 1001, "a"),
                (13, 1000, ""),
                (14, 1000, "a"),
            ],
        );
        let mut p = Policy::default();
        assert_eq!(
            rules(&decide(&w, &p)),
            vec![(14, Rule::ForeignDevice), (10, Rule::OverCapacity)]
        );
        p.enforce.outside = Act::Terminate;
        p.enforce.foreign_devices = Act::Allow;
        assert_eq!(
            rules(&decide(&w, &p)),
            vec![(13, Rule::Outside), (10, Rule::OverCapacity)]
        );
        // Within the tolerance: nothing.
        p.enforce.tolerance = policy::Amount {
            bytes: 2 * GI,
            text: "2gi".into(),
        };
        assert_eq!(rules(&decide(&w, &p)), vec![(13, Rule::Outside)]);
    }

    #[test]
    fn quotas_by_real_usage() {
        let w = world(
            &[&[(20, 5 * GI)], &[(21, 2 * GI)], &[(22, GI)]],
            vec![env("b", 1000, &[1], None, &[21])],
            &[(20, 1000, ""), (21, 1000, "b"), (22, 1000, "")],
        );
        let mut p = Policy {
            quotas: toml::from_str("max_devices = 2").unwrap(),
            ..Policy::default()
        };
        // GPU 1 is attached: kept; then the most used (0); 2 goes.
        assert_eq!(rules(&decide(&w, &p)), vec![(22, Rule::QuotaDevices)]);
        p.quotas = toml::from_str("max_gpu_memory = \"4gi\"").unwrap();
        assert_eq!(rules(&decide(&w, &p)), vec![(20, Rule::QuotaMemory)]);
        // Root is never limited.
        let w = world(&[&[(30, 9 * GI)]], vec![], &[(30, 0, "")]);
        assert!(decide(&w, &p).is_empty());
    }
}
