//! The `genv` command line: thin presentation over `genv_state` (every state change lives there).

mod exec;
mod lock;
mod output;
mod shell;

use clap::{Args, Parser, Subcommand};
use genv_state::ops::{parse_gpu_memory, parse_gpus, validate_name};
use genv_state::{devices, home, AttachOutcome, Caller, Config, Error, Genv};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "genv",
    version,
    about = "GPU environments: share the GPUs of one machine between shells, scripts and users",
    after_help = "Shell integration (activate/deactivate): add `eval \"$(genv shell-init bash)\"` to ~/.bashrc \
                  (zsh: `shell-init zsh`; fish: `genv shell-init fish | source`)."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone, Default)]
struct ShellArgs {
    /// Shell dialect to print code for (set by the shell integration).
    #[arg(long, hide = true, value_parser = ["bash", "zsh", "fish"])]
    shell: Option<String>,
    /// The pid of the interactive shell (set by the shell integration).
    #[arg(long, hide = true)]
    shell_pid: Option<u32>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Activate an environment in this shell (detached from all GPUs until attached)
    Activate {
        /// Environment identifier (default: the shell's pid); an existing one of yours is joined
        #[arg(long)]
        id: Option<String>,
        /// Environment name
        #[arg(long)]
        name: Option<String>,
        /// Device count
        #[arg(long, allow_hyphen_values = true)]
        gpus: Option<String>,
        /// GPU memory capacity per device, e.g. 4g, 42mi
        #[arg(long)]
        gpu_memory: Option<String>,
        /// Do not load the configuration saved in .genv/
        #[arg(long)]
        no_load: bool,
        /// Do not attach devices even when a device count is configured
        #[arg(long)]
        no_attach: bool,
        /// Leave the shell prompt alone
        #[arg(long)]
        no_prompt: bool,
        /// Allow sharing devices with other over-subscribed environments
        #[arg(long)]
        over_subscribe: bool,
        #[command(flatten)]
        sh: ShellArgs,
    },
    /// Deactivate the environment of this shell
    Deactivate {
        #[command(flatten)]
        sh: ShellArgs,
    },
    /// Print the status of the current environment
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Print or change the configuration of the current environment
    Config {
        /// One of: gpus, gpu-memory, name (all fields when omitted)
        field: Option<String>,
        /// New value for the field (prints the field when omitted)
        #[arg(allow_hyphen_values = true)]
        value: Option<String>,
        /// Clear the field (or the whole configuration)
        #[arg(long)]
        clear: bool,
        /// Also save the configuration to the .genv/ directory
        #[arg(long)]
        save: bool,
        /// Load the configuration saved in the .genv/ directory
        #[arg(long)]
        load: bool,
        #[arg(long)]
        json: bool,
    },
    /// Print the .genv/ directory that applies here
    Home,
    /// Attach the current environment to devices
    Attach {
        /// Attach this device (NVML index) only
        #[arg(long, allow_hyphen_values = true)]
        index: Option<String>,
        /// Allow sharing devices with other over-subscribed environments when their GPU memory
        /// capacities fit
        #[arg(long)]
        over_subscribe: bool,
    },
    /// Detach the current environment from devices
    Detach {
        /// Detach from this device only
        #[arg(long, allow_hyphen_values = true)]
        index: Option<String>,
    },
    /// List the active environments
    Envs {
        #[arg(long)]
        json: bool,
    },
    /// List the devices and their attachments
    Devices {
        #[arg(long)]
        json: bool,
    },
    /// Run one command in a fresh environment, removed when the command exits
    Exec {
        #[arg(long)]
        name: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        gpus: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        gpu_memory: Option<String>,
        /// Attach this device (repeatable)
        #[arg(long)]
        index: Vec<String>,
        #[arg(long)]
        over_subscribe: bool,
        /// The command and its arguments
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Run a command with exclusive use of the attached devices among the environments sharing
    /// them (waits while another environment holds them; nothing to lock outside an environment)
    Lock {
        /// The command and its arguments
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Print the shell integration for your rc file
    ShellInit {
        #[arg(value_parser = ["bash", "zsh", "fish"])]
        shell: String,
    },
}

pub(crate) fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("genv: {e}");
    ExitCode::FAILURE
}

fn current_eid() -> Option<String> {
    std::env::var("GENV_ENVIRONMENT_ID")
        .ok()
        .filter(|s| !s.is_empty())
}

fn require_eid() -> Result<String, Error> {
    current_eid().ok_or(Error::NotActive)
}

fn parse_index(s: &str) -> Result<u32, Error> {
    s.trim().parse::<u32>().map_err(|_| {
        Error::Input(format!(
            "invalid device index '{s}': expected a whole number (0 for the first GPU)"
        ))
    })
}

/// Validates the config options of `activate` / `exec`.
fn config_from_flags(
    name: Option<String>,
    gpus: Option<String>,
    gpu_memory: Option<String>,
) -> Result<Config, Error> {
    if let Some(n) = &name {
        validate_name(n)?;
    }
    let gpus = gpus.as_deref().map(parse_gpus).transpose()?;
    if let Some(m) = &gpu_memory {
        parse_gpu_memory(m)?;
    }
    Ok(Config {
        name,
        gpus,
        gpu_memory,
    })
}

fn main() -> ExitCode {
    // The shim must leave the genv CLI alone: it sees the real machine, also inside an
    // environment. The shim checks this lazily, so setting it before any NVML use suffices.
    std::env::set_var("GENV_SHIM_BYPASS", "1");
    // Like other Unix tools, end quietly when the reader of our output goes away (`| head`).
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let shell_mode = std::env::args().any(|a| a == "--shell" || a.starts_with("--shell="));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // In shell mode stdout is eval'd by the shell function: help goes to stderr there.
            if shell_mode && !e.use_stderr() {
                eprint!("{}", e.render());
                return ExitCode::SUCCESS;
            }
            // Help, version, and a bare `genv`, are for reading: clap's full text.
            if !e.use_stderr()
                || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            {
                e.exit();
            }
            // A bad command line is one line, like every other bad input.
            eprintln!("genv: {}", one_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    match run(cli.cmd) {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

/// Folds clap's multi-line error into one line: the message, its tips, and the usage it names.
fn one_line(rendered: &str) -> String {
    let mut msg = String::new();
    let mut usage = None;
    for l in rendered.lines().map(str::trim) {
        if let Some(u) = l.strip_prefix("Usage: ") {
            usage = Some(u.to_string());
        } else if !l.is_empty() && !l.starts_with("For more information") {
            if !msg.is_empty() {
                msg.push_str(if l.starts_with("tip:") { "; " } else { " " });
            }
            msg.push_str(l.strip_prefix("error: ").unwrap_or(l));
        }
    }
    match usage {
        Some(u) => format!("{msg} (usage: {u})"),
        None => msg,
    }
}

fn run(cmd: Cmd) -> Result<ExitCode, Error> {
    let caller = Caller::current();
    match cmd {
        Cmd::Activate {
            id,
            name,
            gpus,
            gpu_memory,
            no_load,
            no_attach,
            no_prompt,
            over_subscribe,
            sh,
        } => {
            let (dialect, shell_pid) = shell::require(&sh, "activate")?;
            if current_eid().is_some() {
                return Err(Error::AlreadyActive);
            }
            let flags = config_from_flags(name, gpus, gpu_memory)?;
            let mut config = Config::default();
            if !no_load {
                if let Some(h) = std::env::current_dir()
                    .ok()
                    .and_then(|d| home::find_home(&d))
                {
                    config = home::load(&h)?;
                }
            }
            config.overlay(&flags);
            let eid = id.unwrap_or_else(|| shell_pid.to_string());
            let shim = shell::shim_path()?;
            let genv = Genv::open()?;
            let gpus_list;
            let attach = if !no_attach && config.gpus.is_some() {
                gpus_list = devices::read_gpus()?;
                Some((gpus_list.as_slice(), over_subscribe))
            } else {
                None
            };
            let env = genv.activate(&caller, &eid, shell_pid, &config, attach)?;
            print!(
                "{}",
                shell::activate_code(dialect, &env.eid, &shim, env.name.as_deref(), !no_prompt)
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Deactivate { sh } => {
            let (dialect, shell_pid) = shell::require(&sh, "deactivate")?;
            let eid = require_eid()?;
            let genv = Genv::open()?;
            genv.deactivate(&caller, &eid, shell_pid)?;
            print!("{}", shell::deactivate_code(dialect));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { json } => {
            let env = match current_eid() {
                Some(eid) => Some((eid.clone(), Genv::open()?.env(&eid))),
                None => None,
            };
            output::status(env, json);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Config {
            field,
            value,
            clear,
            save,
            load,
            json,
        } => config_cmd(&caller, field, value, clear, save, load, json),
        Cmd::Home => {
            let cwd = std::env::current_dir()
                .map_err(|e| Error::Input(format!("cannot read the working directory: {e}")))?;
            match home::find_home(&cwd) {
                Some(h) => {
                    println!("{}", h.display());
                    Ok(ExitCode::SUCCESS)
                }
                None => Err(Error::Input(format!(
                    "no .genv directory in {} or its parents, nor in ~: create one with `mkdir -p .genv`",
                    cwd.display()
                ))),
            }
        }
        Cmd::Attach {
            index,
            over_subscribe,
        } => {
            let index = index.as_deref().map(parse_index).transpose()?;
            let eid = require_eid()?;
            let genv = Genv::open()?;
            let gpus = devices::read_gpus()?;
            match genv.attach(&caller, &eid, &gpus, index, over_subscribe)? {
                AttachOutcome::Attached(_) => Ok(ExitCode::SUCCESS),
                AttachOutcome::Failed(msg) => Err(Error::Unavailable(msg)),
            }
        }
        Cmd::Detach { index } => {
            let index = index.as_deref().map(parse_index).transpose()?;
            let eid = require_eid()?;
            Genv::open()?.detach(&caller, &eid, index)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Envs { json } => {
            let genv = Genv::open()?;
            output::envs(&genv.envs(), json);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Devices { json } => {
            let genv = Genv::open()?;
            // Re-read the machine's GPUs so that a changed machine shows; without NVML the last
            // known list is shown.
            match devices::read_gpus() {
                Ok(gpus) => genv.refresh_devices(&gpus)?,
                Err(e) => eprintln!("genv: {e}; showing the devices last seen"),
            }
            output::devices(&genv.devices(), json);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Exec {
            name,
            gpus,
            gpu_memory,
            index,
            over_subscribe,
            command,
        } => {
            let config = config_from_flags(name, gpus, gpu_memory)?;
            let index: Vec<u32> = index
                .iter()
                .map(|s| parse_index(s))
                .collect::<Result<_, _>>()?;
            exec::run(&caller, config, index, over_subscribe, command)
        }
        Cmd::Lock { command } => lock::run(current_eid(), command),
        Cmd::ShellInit { shell: s } => {
            print!("{}", shell::init_code(&s)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn config_cmd(
    caller: &Caller,
    field: Option<String>,
    value: Option<String>,
    clear: bool,
    save: bool,
    load: bool,
    json: bool,
) -> Result<ExitCode, Error> {
    #[derive(Clone, Copy, PartialEq)]
    enum Field {
        Gpus,
        GpuMemory,
        Name,
    }
    let field = match field.as_deref() {
        None => None,
        Some("gpus") => Some(Field::Gpus),
        Some("gpu-memory") | Some("gpu_memory") => Some(Field::GpuMemory),
        Some("name") => Some(Field::Name),
        Some(f) => {
            return Err(Error::Input(format!(
                "unknown configuration field '{f}': use gpus, gpu-memory or name"
            )))
        }
    };
    if clear && value.is_some() {
        return Err(Error::Input(
            "--clear takes no value: use `genv config <field> --clear`".into(),
        ));
    }
    if load && (clear || value.is_some() || field.is_some()) {
        return Err(Error::Input(
            "--load loads the whole saved configuration: use it alone (`genv config --load`)"
                .into(),
        ));
    }
    let eid = require_eid()?;
    let genv = Genv::open()?;
    let env = genv.env(&eid).ok_or_else(|| {
        Error::State(format!(
            "environment {eid} no longer exists; run `genv deactivate` and activate again"
        ))
    })?;
    let mut config = env.config.clone();
    let cwd = std::env::current_dir().ok();
    let find_home = || -> Result<std::path::PathBuf, Error> {
        cwd.as_deref().and_then(home::find_home).ok_or_else(|| {
            Error::Input(
                "no .genv directory here or in a parent directory, nor in ~: create one with `mkdir -p .genv`"
                    .into(),
            )
        })
    };
    if load {
        let h = find_home()?;
        config = home::load(&h)?;
        genv.set_config(caller, &eid, &config)?;
        return Ok(ExitCode::SUCCESS);
    }
    let changed = clear || value.is_some();
    if clear {
        match field {
            None => config = Config::default(),
            Some(Field::Gpus) => config.gpus = None,
            Some(Field::GpuMemory) => config.gpu_memory = None,
            Some(Field::Name) => config.name = None,
        }
    } else if let Some(v) = value {
        match field {
            Some(Field::Gpus) => config.gpus = Some(parse_gpus(&v)?),
            Some(Field::GpuMemory) => {
                parse_gpu_memory(&v)?;
                config.gpu_memory = Some(v);
            }
            Some(Field::Name) => {
                validate_name(&v)?;
                config.name = Some(v);
            }
            None => unreachable!("clap gives a value only after a field"),
        }
    }
    // Find the home before changing anything, so that `--save` without one changes nothing.
    let save_home = if save { Some(find_home()?) } else { None };
    if changed {
        genv.set_config(caller, &eid, &config)?;
    }
    if let Some(h) = save_home {
        home::save(&h, &config)?;
    }
    if !changed && !save {
        output::config(
            &config,
            field.map(|f| match f {
                Field::Gpus => "gpus",
                Field::GpuMemory => "gpu-memory",
                Field::Name => "name",
            }),
            json,
        );
    }
    Ok(ExitCode::SUCCESS)
}
