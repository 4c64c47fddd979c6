//! `genv admin install | uninstall`: system mode, installed and removed by root in one command
//! each (see ARCHITECTURE.md, "System mode").

use crate::exit::Exit;
use genv_state::mode::{Limits, Mode, SYSTEM_CONFIG, SYSTEM_SOCKET, SYSTEM_STATE_DIR};
use genv_state::system::service;
use genv_state::text::quote_path;
use genv_state::Error;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(clap::Subcommand, Clone, Debug)]
pub enum Args {
    /// Install system mode: the configuration, the state directory, and the service's systemd
    /// unit (enabled and started); every genv on the machine then uses it
    Install(Install),
    /// Remove system mode (the service, its unit and the configuration); genv falls back to the
    /// shared mode
    Uninstall(Uninstall),
}

#[derive(clap::Args, Clone, Debug)]
pub struct Install {
    /// Where the configuration goes (genv reads it from there, or from $GENV_CONFIG)
    #[arg(long, default_value = SYSTEM_CONFIG)]
    config: PathBuf,
    /// The state directory (root's)
    #[arg(long, default_value = SYSTEM_STATE_DIR)]
    state_dir: PathBuf,
    /// The service's socket
    #[arg(long, default_value = SYSTEM_SOCKET)]
    socket: PathBuf,
    /// Environments one user may have at once
    #[arg(long, default_value_t = Limits::default().max_envs_per_user)]
    max_envs_per_user: u32,
    /// Connections one user may hold open to the service at once
    #[arg(long, default_value_t = Limits::default().max_connections_per_user)]
    max_connections_per_user: u32,
    /// Where the systemd unit goes
    #[arg(long, default_value = SYSTEMD_DIR)]
    systemd_dir: PathBuf,
    /// Do not install or start the systemd unit (start `genv daemon` yourself)
    #[arg(long)]
    no_systemd: bool,
    /// Also enable and start the enforcement backstop, genv-enforce.service (`genv enforce`;
    /// its unit is written either way)
    #[arg(long)]
    enforce: bool,
}

#[derive(clap::Args, Clone, Debug)]
pub struct Uninstall {
    #[arg(long, default_value = SYSTEM_CONFIG)]
    config: PathBuf,
    #[arg(long, default_value = SYSTEMD_DIR)]
    systemd_dir: PathBuf,
    /// Also remove the state directory (every environment's record)
    #[arg(long)]
    purge: bool,
}

const SYSTEMD_DIR: &str = "/etc/systemd/system";
const UNIT: &str = "genv.service";
const ENFORCE_UNIT: &str = "genv-enforce.service";

pub fn run(a: Args) -> Result<Exit, Error> {
    if rustix::process::geteuid().as_raw() != 0 {
        return Err(Error::Permission(
            "genv admin installs and removes the system mode, which only root may do".into(),
        ));
    }
    match a {
        Args::Install(i) => install(i),
        Args::Uninstall(u) => uninstall(u),
    }
}

fn io(what: &str, p: &Path, e: std::io::Error) -> Error {
    Error::State(format!("cannot {what} {}: {e}", quote_path(p)))
}

/// Writes `text` to `path` (mode `mode`, root's) all at once: a reader sees the old file or the
/// new one.
fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), Error> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
    let tmp = parent.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("genv"),
        std::process::id()
    ));
    std::fs::write(&tmp, text).map_err(|e| io("write", &tmp, e))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io("set the mode of", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("write", path, e))
}

fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn systemctl(args: &[&str]) -> Result<(), Error> {
    let st = Command::new("systemctl")
        .args(args)
        .status()
        .map_err(|e| Error::State(format!("cannot run systemctl: {e}")))?;
    if !st.success() {
        return Err(Error::State(format!(
            "`systemctl {}` failed ({st})",
            args.join(" ")
        )));
    }
    Ok(())
}

fn install(i: Install) -> Result<Exit, Error> {
    let limits = Limits {
        max_envs_per_user: i.max_envs_per_user,
        max_connections_per_user: i.max_connections_per_user,
    };
    // A reinstall keeps the quotas and enforcement the administrator wrote.
    let policy = match Mode::from_file(&i.config, false)? {
        m @ Mode::System { .. } => m.policy(),
        Mode::Shared { .. } => Default::default(),
    };
    let text = Mode::system_config_text(&i.state_dir, &i.socket, &limits, &policy);
    // The configuration must read back as written.
    Mode::parse(&i.config, &text)?;
    service::root_dir(&i.state_dir)?;
    write_file(&i.config, &text, 0o644)?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::State(format!("cannot find genv itself: {e}")))?;
    let start = format!("{} daemon --config {}", exe.display(), i.config.display());
    if i.no_systemd {
        println!(
            "genv system mode installed ({}); start the service: {start}",
            i.config.display()
        );
        return Ok(Exit::Success);
    }
    let unit = format!(
        "[Unit]\n\
         Description=genv: GPU environments (the system mode's service)\n\
         After=local-fs.target\n\
         \n\
         [Service]\n\
         ExecStart={start}\n\
         Restart=on-failure\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    );
    write_file(&i.systemd_dir.join(UNIT), &unit, 0o644)?;
    let enforcer =
        super::enforce::unit(&exe.display().to_string(), &i.config.display().to_string());
    write_file(&i.systemd_dir.join(ENFORCE_UNIT), &enforcer, 0o644)?;
    if systemd_running() {
        systemctl(&["daemon-reload"])?;
        systemctl(&["enable", "--now", UNIT])?;
        if i.enforce {
            systemctl(&["enable", "--now", ENFORCE_UNIT])?;
        }
        println!("genv system mode installed and its service started ({UNIT})");
    } else {
        println!(
            "genv system mode installed; systemd does not run here: start the service yourself: {start}"
        );
    }
    Ok(Exit::Success)
}

fn uninstall(u: Uninstall) -> Result<Exit, Error> {
    let mode = Mode::from_file(&u.config, false)?;
    for name in [ENFORCE_UNIT, UNIT] {
        let unit = u.systemd_dir.join(name);
        if unit.exists() {
            if systemd_running() {
                let _ = systemctl(&["disable", "--now", name]);
            }
            std::fs::remove_file(&unit).map_err(|e| io("remove", &unit, e))?;
            if systemd_running() {
                let _ = systemctl(&["daemon-reload"]);
            }
        }
    }
    if u.config.exists() {
        std::fs::remove_file(&u.config).map_err(|e| io("remove", &u.config, e))?;
    }
    if let Mode::System {
        state_dir, socket, ..
    } = &mode
    {
        let _ = std::fs::remove_file(socket);
        if u.purge {
            std::fs::remove_dir_all(state_dir).map_err(|e| io("remove", state_dir, e))?;
        }
    }
    println!("genv system mode removed; genv uses the shared mode now");
    Ok(Exit::Success)
}
