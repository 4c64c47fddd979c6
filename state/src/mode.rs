//! Which mode genv runs in: decided by how genv was installed, never by a flag users must
//! remember.
//!
//! - **System mode**: `genv admin install` (run by root) wrote the system configuration
//!   `/etc/genv/genv.conf` with `mode = "system"`. The tables are written only by the root
//!   service `genv daemon`, which the CLI and the SDK talk to over its socket; each user's
//!   processes book memory in that user's own ledger file. See ARCHITECTURE.md, "System mode".
//! - **Shared mode** (no system configuration): the embedded default that needs no root — the
//!   state in `$GENV_TMPDIR` (default `/var/tmp/genv`), written by whichever genv process needs
//!   to, shared by every user of the machine; protects against accidents, not against hostile
//!   users (ARCHITECTURE.md, "Hostile files").
//!
//! `GENV_CONFIG` names another configuration file (a sandbox, the tests); set and empty, it
//! means "no configuration": shared mode. A user who points it elsewhere changes only what their
//! own processes do, which they could anyway (they can unset `LD_PRELOAD`); the service reads
//! only a configuration file owned by root that nobody else can write.

use crate::policy::{Enforce, Policy, Quotas};
use crate::Error;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where the system configuration is, unless `GENV_CONFIG` says otherwise.
pub const SYSTEM_CONFIG: &str = "/etc/genv/genv.conf";
/// The default paths `genv admin install` writes into it.
pub const SYSTEM_STATE_DIR: &str = "/var/lib/genv";
pub const SYSTEM_SOCKET: &str = "/run/genv/genv.sock";
/// The shared mode's default state directory.
pub const SHARED_STATE_DIR: &str = "/var/tmp/genv";

/// Per-user limits of system mode, so that no user can use up what everyone shares.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Environments one user may have at once (root is not limited).
    #[serde(default = "Limits::default_envs")]
    pub max_envs_per_user: u32,
    /// Connections one user may hold open to the service at once (`genv lock` holds one).
    #[serde(default = "Limits::default_connections")]
    pub max_connections_per_user: u32,
}

impl Limits {
    fn default_envs() -> u32 {
        64
    }
    fn default_connections() -> u32 {
        32
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_envs_per_user: Limits::default_envs(),
            max_connections_per_user: Limits::default_connections(),
        }
    }
}

/// The system configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub mode: ModeName,
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    #[serde(default)]
    pub socket: Option<PathBuf>,
    #[serde(default)]
    pub limits: Limits,
    /// Per-user quotas (policy.rs).
    #[serde(default)]
    pub quotas: Quotas,
    /// What `genv enforce` acts on (policy.rs).
    #[serde(default)]
    pub enforce: Enforce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeName {
    System,
    Shared,
}

/// The mode in force, with its paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Shared {
        dir: PathBuf,
    },
    System {
        /// The configuration file it came from.
        config: PathBuf,
        state_dir: PathBuf,
        socket: PathBuf,
        limits: Limits,
        /// Quotas and enforcement (policy.rs).
        policy: Box<Policy>,
    },
}

impl Mode {
    /// The mode this process runs in (read once; see the module documentation).
    pub fn current() -> Result<&'static Mode, Error> {
        static M: OnceLock<Result<Mode, Error>> = OnceLock::new();
        M.get_or_init(Mode::discover).as_ref().map_err(Clone::clone)
    }

    fn discover() -> Result<Mode, Error> {
        match std::env::var_os("GENV_CONFIG") {
            Some(p) if p.is_empty() => Ok(Mode::shared()),
            Some(p) => Mode::from_file(Path::new(&p), true),
            None => Mode::from_file(Path::new(SYSTEM_CONFIG), false),
        }
    }

    /// The shared mode with its directory from `GENV_TMPDIR`.
    pub fn shared() -> Mode {
        let dir = match std::env::var_os("GENV_TMPDIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => PathBuf::from(SHARED_STATE_DIR),
        };
        Mode::Shared { dir }
    }

    /// The mode configured in `path`; a missing file is the shared mode unless it `must` exist.
    pub fn from_file(path: &Path, must: bool) -> Result<Mode, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must => {
                return Ok(Mode::shared())
            }
            Err(e) => {
                return Err(Error::State(format!(
                    "cannot read the genv configuration {}: {e}",
                    crate::text::quote_path(path)
                )))
            }
        };
        Mode::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Mode, Error> {
        let mut f: ConfigFile = toml::from_str(text).map_err(|e| {
            Error::State(format!(
                "the genv configuration {} is not valid: {}",
                crate::text::quote_path(path),
                e.message()
            ))
        })?;
        f.quotas.source = path.to_path_buf();
        Ok(match f.mode {
            ModeName::Shared => Mode::shared(),
            ModeName::System => Mode::System {
                config: path.to_path_buf(),
                state_dir: f
                    .state_dir
                    .unwrap_or_else(|| PathBuf::from(SYSTEM_STATE_DIR)),
                socket: f.socket.unwrap_or_else(|| PathBuf::from(SYSTEM_SOCKET)),
                limits: f.limits,
                policy: Box::new(Policy {
                    quotas: f.quotas,
                    enforce: f.enforce,
                }),
            },
        })
    }

    /// The directory of the state file.
    pub fn state_dir(&self) -> &Path {
        match self {
            Mode::Shared { dir } => dir,
            Mode::System { state_dir, .. } => state_dir,
        }
    }

    pub fn is_system(&self) -> bool {
        matches!(self, Mode::System { .. })
    }

    /// "system" or "shared", as `genv status --json` says it.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Shared { .. } => "shared",
            Mode::System { .. } => "system",
        }
    }

    /// The policy of this mode (the shared mode has none: no quotas, the default enforcement).
    pub fn policy(&self) -> Policy {
        match self {
            Mode::System { policy, .. } => (**policy).clone(),
            Mode::Shared { .. } => Policy::default(),
        }
    }

    /// The text of a system configuration with these paths, limits and policy (what `genv
    /// admin install` writes; a reinstall keeps the policy it finds).
    pub fn system_config_text(
        state_dir: &Path,
        socket: &Path,
        limits: &Limits,
        policy: &Policy,
    ) -> String {
        let mut s = format!(
            "# genv system mode, written by `genv admin install`; `genv admin uninstall` removes it.\n\
             mode = \"system\"\n\
             state_dir = {}\n\
             socket = {}\n\
             \n\
             [limits]\n\
             max_envs_per_user = {}\n\
             max_connections_per_user = {}\n",
            toml_string(state_dir),
            toml_string(socket),
            limits.max_envs_per_user,
            limits.max_connections_per_user
        );
        s.push_str(&policy.to_toml());
        s
    }
}

/// A path as a TOML basic string.
fn toml_string(p: &Path) -> String {
    toml_str(&p.to_string_lossy())
}

/// Text as a TOML basic string.
pub(crate) fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_config_round_trips() {
        let text = Mode::system_config_text(
            Path::new("/var/lib/ge\"nv"),
            Path::new("/run/genv/genv.sock"),
            &Limits {
                max_envs_per_user: 7,
                max_connections_per_user: 3,
            },
            &Policy::default(),
        );
        let m = Mode::parse(Path::new("/etc/genv/genv.conf"), &text).unwrap();
        assert_eq!(
            m,
            Mode::System {
                config: PathBuf::from("/etc/genv/genv.conf"),
                state_dir: PathBuf::from("/var/lib/ge\"nv"),
                socket: PathBuf::from("/run/genv/genv.sock"),
                limits: Limits {
                    max_envs_per_user: 7,
                    max_connections_per_user: 3
                },
                policy: Box::new(Policy {
                    quotas: Quotas {
                        source: PathBuf::from("/etc/genv/genv.conf"),
                        ..Quotas::default()
                    },
                    enforce: Enforce::default(),
                }),
            }
        );
    }

    #[test]
    fn a_policy_round_trips() {
        let text = "mode = \"system\"\n[quotas]\nmax_devices = 2\n[quotas.users]\n\
                    \"al\\\"ice\" = { max_gpu_memory = \"4gi\" }\nbob = { max_devices = 3, \
                    max_gpu_memory = 1000 }\n[enforce]\noutside = \"terminate\"\n\
                    tolerance = \"256mi\"\ngrace_seconds = 1\n";
        let path = Path::new("/etc/genv/genv.conf");
        let policy = Mode::parse(path, text).unwrap().policy();
        assert_eq!(
            policy.quotas.of(5, "al\"ice").max_gpu_memory.unwrap().bytes,
            4 << 30
        );
        assert_eq!(policy.enforce.outside, crate::policy::Act::Terminate);
        assert_eq!(policy.enforce.tolerance.bytes, 256 << 20);
        let again = Mode::system_config_text(
            Path::new("/var/lib/genv"),
            Path::new("/run/genv/genv.sock"),
            &Limits::default(),
            &policy,
        );
        assert_eq!(Mode::parse(path, &again).unwrap().policy(), policy);
    }

    #[test]
    fn bad_configurations_are_one_line() {
        for bad in [
            "mode = \"sideways\"",
            "mode = \"system\"\nfoo = 1",
            "mode = ",
            "[limits]\nmax_envs_per_user = -1",
            "mode = \"system\"\n[quotas]\nmax_gpu_memory = \"lots\"",
            "mode = \"system\"\n[enforce]\nkill = true",
        ] {
            let e = Mode::parse(Path::new("/etc/genv/genv.conf"), bad)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("/etc/genv/genv.conf") && !e.contains('\n'),
                "{e}"
            );
        }
        let m = Mode::parse(Path::new("x"), "mode = \"shared\"").unwrap();
        assert!(!m.is_system());
    }
}
