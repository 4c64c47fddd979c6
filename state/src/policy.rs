//! The policy of the person who runs the server, in the system configuration (mode.rs) beside
//! the mode and the service's limits: per-user quotas (`[quotas]`), which the service checks at
//! every change that could add to what a user holds (ops.rs), and what `genv enforce` acts on
//! (`[enforce]`, enforce.rs), which reads the same quotas.
//!
//! One file rather than a policy file beside it: it is already the one root-owned file every
//! genv and the service find (or `GENV_CONFIG` names), checked whole at start (unknown keys are
//! refused), so the quotas the service refuses an attach by and the ones `genv enforce` kills
//! by can never come from two files that disagree.
//!
//! ```toml
//! [quotas]                    # everyone's (root is never limited)
//! max_devices = 2
//! max_gpu_memory = "40gi"
//! [quotas.users]              # by user name (or uid); a field left out is everyone's
//! alice = { max_devices = 4, max_gpu_memory = "160gi" }
//!
//! [enforce]
//! outside = "allow"           # processes on a GPU outside any environment: allow | terminate
//! foreign_devices = "terminate"
//! over_capacity = "terminate"
//! over_quota = "terminate"
//! tolerance = "256mi"         # per environment and device, over its capacity
//! tolerance_per_process = "0" # more per process of it on the device (CUDA contexts)
//! grace_seconds = 10          # SIGTERM, then SIGKILL after this
//! interval_seconds = 10
//! nvml_timeout_seconds = 10   # a reading that takes longer: no action this pass
//! ```

use crate::layout::{EnvRec, Tables};
use crate::Error;
use serde::{Deserialize, Deserializer};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// An amount of memory as the configuration writes it: `"40gi"` (units.rs) or a number of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amount {
    pub bytes: u64,
    pub text: String,
}

impl Amount {
    pub fn zero() -> Amount {
        Amount {
            bytes: 0,
            text: "0".into(),
        }
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Amount, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(bytes) => Ok(Amount {
                bytes,
                text: bytes.to_string(),
            }),
            Raw::S(s) => crate::units::parse_amount(&s)
                .map(|bytes| Amount {
                    bytes,
                    text: s.clone(),
                })
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "invalid amount {s:?}: expected {}",
                        crate::units::UNITS_HELP
                    ))
                }),
        }
    }
}

/// One user's quota (or everyone's): what is not set is not limited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    #[serde(default)]
    pub max_devices: Option<u32>,
    #[serde(default)]
    pub max_gpu_memory: Option<Amount>,
}

/// `[quotas]`: everyone's quota and per-user ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    #[serde(default)]
    pub max_devices: Option<u32>,
    #[serde(default)]
    pub max_gpu_memory: Option<Amount>,
    #[serde(default)]
    pub users: BTreeMap<String, Quota>,
    /// The file they came from, for messages (set by mode.rs).
    #[serde(skip)]
    pub source: PathBuf,
}

impl Quotas {
    /// The quota of `uid` (named `name`): its own entry (by name, else by uid) over everyone's;
    /// root has none.
    pub fn of(&self, uid: u32, name: &str) -> Quota {
        if uid == 0 {
            return Quota::default();
        }
        let own = self
            .users
            .get(name)
            .or_else(|| self.users.get(&uid.to_string()));
        Quota {
            max_devices: own.and_then(|q| q.max_devices).or(self.max_devices),
            max_gpu_memory: own
                .and_then(|q| q.max_gpu_memory.clone())
                .or_else(|| self.max_gpu_memory.clone()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.max_devices.is_none() && self.max_gpu_memory.is_none() && self.users.is_empty()
    }

    /// Where a user's limit is written, for messages: `[quotas.users] alice` or `[quotas]`.
    fn where_set(&self, uid: u32, name: &str, field: &str) -> String {
        let own = self
            .users
            .get(name)
            .map(|q| (name.to_string(), q))
            .or_else(|| {
                self.users
                    .get(&uid.to_string())
                    .map(|q| (uid.to_string(), q))
            });
        let in_own = own.as_ref().is_some_and(|(_, q)| match field {
            "max_devices" => q.max_devices.is_some(),
            _ => q.max_gpu_memory.is_some(),
        });
        match own {
            Some((key, _)) if in_own => {
                format!(
                    "{field} of {key} in [quotas.users] of {}",
                    self.source.display()
                )
            }
            _ => format!("{field} in [quotas] of {}", self.source.display()),
        }
    }
}

/// What the quotas count of a user's environments: the devices they are attached to (a device
/// shared by two of them counts once) and the memory they reserve, each attachment its
/// capacity on the device (without a capacity, the whole device: `EnvRec::capacity_on`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holding {
    pub devices: BTreeSet<u32>,
    pub memory: u64,
    pub envs: Vec<String>,
}

/// What `uid` holds in `t`.
pub fn holding(t: &Tables, uid: u32) -> Holding {
    let mut h = Holding::default();
    for (_, e) in t.envs().filter(|(_, e)| e.uid == uid && e.n_attached > 0) {
        add(&mut h, t, e);
    }
    h
}

fn add(h: &mut Holding, t: &Tables, e: &EnvRec) {
    for a in e.attached() {
        if let Some(d) = t.devices().iter().find(|d| d.index == a.device) {
            h.devices.insert(a.device);
            h.memory = h.memory.saturating_add(e.capacity_on(d));
        }
    }
    h.envs.push(e.eid());
}

/// Memory for people: `512 MiB`, `3.5 GiB`.
pub fn bytes(n: u64) -> String {
    const GI: f64 = (1u64 << 30) as f64;
    if n >= 1 << 30 {
        let g = n as f64 / GI;
        if (g * 10.0).round() == (g.round() * 10.0) {
            format!("{} GiB", g.round())
        } else {
            format!("{g:.1} GiB")
        }
    } else if n >= 1 << 20 {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n} B")
    }
}

fn devices_text(d: &BTreeSet<u32>) -> String {
    match d.len() {
        0 => "no GPU".into(),
        1 => format!("1 GPU ({})", d.iter().next().unwrap_or(&0)),
        n => format!(
            "{n} GPUs ({})",
            d.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Refuses the change from `before` to what `t` now holds for `uid` when it adds to a holding
/// that is past the user's quota (a change that takes nothing more is never refused, so a user
/// over a lowered quota can still detach and shrink).
pub fn check(
    quotas: &Quotas,
    t: &Tables,
    uid: u32,
    name: &str,
    before: &Holding,
) -> Result<(), Error> {
    let q = quotas.of(uid, name);
    if q.max_devices.is_none() && q.max_gpu_memory.is_none() {
        return Ok(());
    }
    let after = holding(t, uid);
    if let Some(max) = q.max_devices {
        if after.devices.len() > max as usize && after.devices.len() > before.devices.len() {
            return Err(Error::Unavailable(format!(
                "quota: you ({name}) may hold at most {max} GPU{} ({}) and hold {} now; this \
                 would make {}: detach first, or ask for a larger quota",
                if max == 1 { "" } else { "s" },
                quotas.where_set(uid, name, "max_devices"),
                devices_text(&before.devices),
                after.devices.len()
            )));
        }
    }
    if let Some(max) = &q.max_gpu_memory {
        if after.memory > max.bytes && after.memory > before.memory {
            return Err(Error::Unavailable(format!(
                "quota: you ({name}) may hold at most {} of GPU memory ({}) and hold {} now \
                 (the capacities of your environments on their GPUs; without a capacity, the \
                 whole GPU); this would make {}: set a smaller gpu-memory or detach first",
                max.text,
                quotas.where_set(uid, name, "max_gpu_memory"),
                bytes(before.memory),
                bytes(after.memory)
            )));
        }
    }
    Ok(())
}

/// What `genv enforce` does about one kind of breach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Act {
    Allow,
    Terminate,
}

/// `[enforce]`: what `genv enforce` acts on and how.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enforce {
    /// Processes using a GPU outside any environment (root's are never touched).
    #[serde(default = "Enforce::allow")]
    pub outside: Act,
    /// Processes of an environment on a device it is not attached to.
    #[serde(default = "Enforce::terminate")]
    pub foreign_devices: Act,
    /// Environments using more than their capacity on a device (NVML's figures: contexts count).
    #[serde(default = "Enforce::terminate")]
    pub over_capacity: Act,
    /// Users using more GPUs or memory than their quota.
    #[serde(default = "Enforce::terminate")]
    pub over_quota: Act,
    /// How far over its capacity an environment may go on a device.
    #[serde(default = "Amount::zero")]
    pub tolerance: Amount,
    /// More per process of the environment on the device (what a CUDA context takes).
    #[serde(default = "Amount::zero")]
    pub tolerance_per_process: Amount,
    #[serde(default = "Enforce::ten")]
    pub grace_seconds: u64,
    #[serde(default = "Enforce::ten")]
    pub interval_seconds: u64,
    #[serde(default = "Enforce::ten")]
    pub nvml_timeout_seconds: u64,
}

impl Enforce {
    fn allow() -> Act {
        Act::Allow
    }
    fn terminate() -> Act {
        Act::Terminate
    }
    fn ten() -> u64 {
        10
    }
}

impl Default for Enforce {
    fn default() -> Enforce {
        Enforce {
            outside: Act::Allow,
            foreign_devices: Act::Terminate,
            over_capacity: Act::Terminate,
            over_quota: Act::Terminate,
            tolerance: Amount::zero(),
            tolerance_per_process: Amount::zero(),
            grace_seconds: 10,
            interval_seconds: 10,
            nvml_timeout_seconds: 10,
        }
    }
}

/// The policy of the mode in force: the system configuration's, or (the shared mode, which has
/// no configuration) no quotas and the default enforcement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub quotas: Quotas,
    pub enforce: Enforce,
}

impl Policy {
    /// The policy in `path` (a system configuration); see mode.rs.
    pub fn of_file(path: &Path) -> Result<Policy, Error> {
        match crate::mode::Mode::from_file(path, true)? {
            crate::mode::Mode::System { policy, .. } => Ok(*policy),
            crate::mode::Mode::Shared { .. } => Ok(Policy::default()),
        }
    }
}

impl Policy {
    /// The `[quotas]` and `[enforce]` tables of this policy, as the configuration writes them
    /// (empty quotas are left out; enforcement is written whole, so the file shows the
    /// defaults in force).
    pub fn to_toml(&self) -> String {
        use crate::mode::toml_str;
        let act = |a: Act| match a {
            Act::Allow => "\"allow\"",
            Act::Terminate => "\"terminate\"",
        };
        let quota = |d: Option<u32>, m: &Option<Amount>| {
            let mut v = Vec::new();
            if let Some(d) = d {
                v.push(format!("max_devices = {d}"));
            }
            if let Some(m) = m {
                v.push(format!("max_gpu_memory = {}", toml_str(&m.text)));
            }
            v
        };
        let q = &self.quotas;
        let mut s = String::new();
        if !q.is_empty() {
            s.push_str("\n[quotas]\n");
            for l in quota(q.max_devices, &q.max_gpu_memory) {
                s.push_str(&l);
                s.push('\n');
            }
            if !q.users.is_empty() {
                s.push_str("\n[quotas.users]\n");
                for (name, u) in &q.users {
                    s.push_str(&format!(
                        "{} = {{ {} }}\n",
                        toml_str(name),
                        quota(u.max_devices, &u.max_gpu_memory).join(", ")
                    ));
                }
            }
        }
        let e = &self.enforce;
        s.push_str(&format!(
            "\n[enforce]\noutside = {}\nforeign_devices = {}\nover_capacity = {}\n\
             over_quota = {}\ntolerance = {}\ntolerance_per_process = {}\ngrace_seconds = {}\n\
             interval_seconds = {}\nnvml_timeout_seconds = {}\n",
            act(e.outside),
            act(e.foreign_devices),
            act(e.over_capacity),
            act(e.over_quota),
            toml_str(&e.tolerance.text),
            toml_str(&e.tolerance_per_process.text),
            e.grace_seconds,
            e.interval_seconds,
            e.nvml_timeout_seconds
        ));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(text: &str) -> Quotas {
        let mut q: Quotas = toml::from_str(text).unwrap();
        q.source = PathBuf::from("/etc/genv/genv.conf");
        q
    }

    #[test]
    fn a_users_own_quota_overrides_everyones_field_by_field() {
        let q = quotas(
            "max_devices = 2\nmax_gpu_memory = \"40gi\"\n[users]\nalice = { max_devices = 4 }\n\
             1234 = { max_gpu_memory = 100 }\n",
        );
        let a = q.of(1001, "alice");
        assert_eq!(a.max_devices, Some(4));
        assert_eq!(a.max_gpu_memory.unwrap().bytes, 40 << 30);
        let b = q.of(1234, "1234");
        assert_eq!(
            (b.max_devices, b.max_gpu_memory.unwrap().bytes),
            (Some(2), 100)
        );
        assert_eq!(q.of(0, "root"), Quota::default());
        assert!(q
            .where_set(1001, "alice", "max_devices")
            .contains("of alice in [quotas.users]"));
        assert!(q
            .where_set(1001, "alice", "max_gpu_memory")
            .contains("in [quotas] of"));
    }

    #[test]
    fn bad_amounts_are_refused() {
        assert!(toml::from_str::<Quotas>("max_gpu_memory = \"4x\"").is_err());
        assert!(toml::from_str::<Quotas>("max_devices = -1").is_err());
        assert!(toml::from_str::<Quotas>("max_memory = 1").is_err());
        assert!(toml::from_str::<Enforce>("outside = \"maybe\"").is_err());
    }

    #[test]
    fn amounts_for_people() {
        assert_eq!(bytes(3 << 29), "1.5 GiB");
        assert_eq!(bytes(2 << 30), "2 GiB");
        assert_eq!(bytes(300 << 20), "300 MiB");
        assert_eq!(bytes(12), "12 B");
    }
}
