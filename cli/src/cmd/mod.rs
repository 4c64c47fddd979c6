//! One module per command: its arguments (clap) and what it does.

pub mod activate;
pub mod admin;
pub mod attach;
pub mod config;
pub mod daemon;
pub mod deactivate;
pub mod detach;
pub mod devices;
pub mod envs;
pub mod exec;
pub mod home;
pub mod lock;
pub mod shell_init;
pub mod status;

use crate::exit::Exit;
use crate::shell::ShellCall;
use crate::values::Checked;
use clap::Subcommand;
use genv_state::{Caller, Capacity, Config, DeviceCount, DeviceIndex, EnvId, Error, Input, Name};

#[derive(Subcommand)]
pub enum Cmd {
    /// Activate an environment in this shell (detached from all GPUs until attached)
    Activate(activate::Args),
    /// Deactivate the environment of this shell
    Deactivate(deactivate::Args),
    /// Print the status of the current environment
    Status(status::Args),
    /// Print or change the configuration of the current environment
    Config(config::Args),
    /// Print the .genv/ directory that applies here
    Home,
    /// Attach the current environment to devices
    Attach(attach::Args),
    /// Detach the current environment from devices
    Detach(detach::Args),
    /// List the active environments
    Envs(envs::Args),
    /// List the devices and their attachments
    Devices(devices::Args),
    /// Run one command in a fresh environment, removed when the command exits
    Exec(exec::Args),
    /// Run a command with exclusive use of the attached devices among the environments sharing
    /// them (waits while another environment holds them; nothing to lock outside an environment)
    Lock(lock::Args),
    /// Print the shell integration for your rc file
    ShellInit(shell_init::Args),
    /// Install or remove the system mode (root)
    #[command(subcommand)]
    Admin(admin::Args),
    /// The system mode's service (started by its systemd unit)
    #[command(hide = true)]
    Daemon(daemon::Args),
}

/// A command line that passed every check that needs neither the state nor the machine.
#[derive(Debug)]
pub enum Command {
    Activate(activate::Request),
    Deactivate(ShellCall),
    Status(status::Args),
    Config(config::Request),
    Home,
    Attach(attach::Request),
    Detach(Option<DeviceIndex>),
    Envs(envs::Args),
    Devices(devices::Args),
    Exec(exec::Request),
    Lock(lock::Args),
    ShellInit(shell_init::Args),
    Admin(admin::Args),
    Daemon(daemon::Args),
}

impl Cmd {
    /// What clap cannot check: the arguments that must or must not go together.
    pub fn check(self) -> Result<Command, Error> {
        Ok(match self {
            Cmd::Activate(a) => Command::Activate(a.check()?),
            Cmd::Deactivate(a) => Command::Deactivate(a.check()?),
            Cmd::Status(a) => Command::Status(a),
            Cmd::Config(a) => Command::Config(a.check()?),
            Cmd::Home => Command::Home,
            Cmd::Attach(a) => Command::Attach(a.check()?),
            Cmd::Detach(a) => Command::Detach(a.check()?),
            Cmd::Envs(a) => Command::Envs(a),
            Cmd::Devices(a) => Command::Devices(a),
            Cmd::Exec(a) => Command::Exec(a.check()?),
            Cmd::Lock(a) => Command::Lock(a),
            Cmd::ShellInit(a) => Command::ShellInit(a),
            Cmd::Admin(a) => Command::Admin(a),
            Cmd::Daemon(a) => Command::Daemon(a),
        })
    }
}

pub fn run(cmd: Command) -> Result<Exit, Error> {
    let caller = Caller::current();
    match cmd {
        Command::Activate(r) => activate::run(&caller, r),
        Command::Deactivate(sh) => deactivate::run(&caller, sh),
        Command::Status(a) => status::run(a),
        Command::Config(r) => config::run(&caller, r),
        Command::Home => home::run(),
        Command::Attach(r) => attach::run(&caller, r),
        Command::Detach(index) => detach::run(&caller, index),
        Command::Envs(a) => envs::run(a),
        Command::Devices(a) => devices::run(a),
        Command::Exec(r) => exec::run(&caller, r),
        Command::Lock(a) => lock::run(a),
        Command::ShellInit(a) => shell_init::run(a),
        Command::Admin(a) => admin::run(a),
        Command::Daemon(a) => daemon::run(a),
    }
}

/// The environment this process runs in, from `GENV_ENVIRONMENT_ID`. genv only ever sets it to
/// an environment identifier, so anything else there is refused with a line naming the
/// variable, not taken for "no environment".
fn current_eid() -> Result<Option<EnvId>, Error> {
    let Some(v) = std::env::var_os("GENV_ENVIRONMENT_ID").filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    EnvId::parse_os(&v)
        .map(Some)
        .map_err(|e| Error::Input(format!("GENV_ENVIRONMENT_ID: {e}")))
}

fn require_eid() -> Result<EnvId, Error> {
    current_eid()?.ok_or(Error::NotActive)
}

/// The configuration options of `activate` and `exec`, checked in this order.
fn config(
    name: Option<Checked<Name>>,
    gpus: Option<Checked<DeviceCount>>,
    gpu_memory: Option<Checked<Capacity>>,
) -> Result<Config, Error> {
    Ok(Config {
        name: Checked::opt(name)?,
        gpus: Checked::opt(gpus)?,
        gpu_memory: Checked::opt(gpu_memory)?,
    })
}
