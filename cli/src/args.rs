//! The command line: clap's definitions, and [`parse`], which turns the arguments into a checked
//! [`Command`] without running anything or touching the state (so that it can be fuzzed in
//! process). Arguments are taken as the OS gives them: those that must be text are checked here
//! (one line naming the argument), and the command of `exec` / `lock` passes through unchanged,
//! whatever its bytes.

use crate::shell::Dialect;
use clap::builder::{PossibleValue, PossibleValuesParser, StyledStr, Styles, TypedValueParser};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use genv_state::text::{self, quote_os};
use genv_state::{Capacity, Config, DeviceCount, DeviceIndex, EnvId, Error, Input, Name};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

const DIALECTS: [&str; 3] = ["bash", "zsh", "fish"];

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
    #[arg(long, hide = true, value_parser = Utf8(PossibleValuesParser::new(DIALECTS)))]
    shell: Option<String>,
    /// The pid of the interactive shell (set by the shell integration).
    #[arg(long, hide = true, value_parser = Utf8(clap::value_parser!(u32)))]
    shell_pid: Option<u32>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Activate an environment in this shell (detached from all GPUs until attached)
    Activate {
        /// Environment identifier (default: the shell's pid); an existing one of yours is joined
        #[arg(long)]
        id: Option<OsString>,
        /// Environment name
        #[arg(long)]
        name: Option<OsString>,
        /// Device count
        #[arg(long, allow_hyphen_values = true)]
        gpus: Option<OsString>,
        /// GPU memory capacity per device, e.g. 4g, 42mi
        #[arg(long)]
        gpu_memory: Option<OsString>,
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
        field: Option<OsString>,
        /// New value for the field (prints the field when omitted)
        #[arg(allow_hyphen_values = true)]
        value: Option<OsString>,
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
        index: Option<OsString>,
        /// Allow sharing devices with other over-subscribed environments when their GPU memory
        /// capacities fit
        #[arg(long)]
        over_subscribe: bool,
    },
    /// Detach the current environment from devices
    Detach {
        /// Detach from this device only
        #[arg(long, allow_hyphen_values = true)]
        index: Option<OsString>,
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
        name: Option<OsString>,
        #[arg(long, allow_hyphen_values = true)]
        gpus: Option<OsString>,
        #[arg(long, allow_hyphen_values = true)]
        gpu_memory: Option<OsString>,
        /// Attach this device (repeatable)
        #[arg(long)]
        index: Vec<OsString>,
        #[arg(long)]
        over_subscribe: bool,
        /// The command and its arguments
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// Run a command with exclusive use of the attached devices among the environments sharing
    /// them (waits while another environment holds them; nothing to lock outside an environment)
    Lock {
        /// The command and its arguments
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// Print the shell integration for your rc file
    ShellInit {
        #[arg(value_parser = Utf8(PossibleValuesParser::new(DIALECTS)))]
        shell: String,
    },
}

/// One of clap's value parsers, with a message naming the argument for a value that is not
/// UTF-8 (clap's own says only "invalid UTF-8 was detected").
#[derive(Clone)]
struct Utf8<P>(P);

impl<P: TypedValueParser> TypedValueParser for Utf8<P> {
    type Value = P::Value;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<Self::Value, clap::Error> {
        if value.to_str().is_some() {
            return self.0.parse_ref(cmd, arg, value);
        }
        let name = arg.map_or_else(|| "argument".to_string(), |a| a.to_string());
        let mut msg = format!(
            "invalid value {} for '{name}': not valid UTF-8",
            quote_os(value)
        );
        if let Some(values) = self.0.possible_values() {
            let names: Vec<String> = values
                .filter(|v| !v.is_hide_set())
                .map(|v| v.get_name().to_string())
                .collect();
            msg += &format!(" [possible values: {}]", names.join(", "));
        }
        Err(cmd.clone().error(ErrorKind::InvalidValue, msg))
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        self.0.possible_values()
    }
}

/// A configuration field, as `genv config <field>` names it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Field {
    Gpus,
    GpuMemory,
    Name,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::Gpus => "gpus",
            Field::GpuMemory => "gpu-memory",
            Field::Name => "name",
        }
    }
}

/// A checked value for a configuration field.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Value {
    Gpus(DeviceCount),
    GpuMemory(Capacity),
    Name(Name),
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ConfigCmd {
    pub field: Option<Field>,
    /// Set when a value was given (never with `clear` or `load`).
    pub value: Option<Value>,
    pub clear: bool,
    pub save: bool,
    pub load: bool,
    pub json: bool,
}

/// A command line that passed every check that needs neither the state nor the machine.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Command {
    Activate {
        id: Option<EnvId>,
        flags: Config,
        no_load: bool,
        no_attach: bool,
        no_prompt: bool,
        over_subscribe: bool,
        dialect: Dialect,
        shell_pid: u32,
    },
    Deactivate {
        dialect: Dialect,
        shell_pid: u32,
    },
    Status {
        json: bool,
    },
    Config(ConfigCmd),
    Home,
    Attach {
        index: Option<u32>,
        over_subscribe: bool,
    },
    Detach {
        index: Option<u32>,
    },
    Envs {
        json: bool,
    },
    Devices {
        json: bool,
    },
    Exec {
        config: Config,
        index: Vec<u32>,
        over_subscribe: bool,
        command: Vec<OsString>,
    },
    Lock {
        command: Vec<OsString>,
    },
    ShellInit {
        shell: String,
    },
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Outcome {
    Run(Command),
    /// Help or version, for reading: clap prints it (in colour on a terminal) and exits.
    Show(clap::Error),
    /// Help or version in shell mode, where the shell function evals stdout: for stderr, exit 0.
    ShowOnStderr(String),
    /// A refused command line: the one line for stderr, and the exit status (2 for what the
    /// argument parser refuses, 1 for a bad value, as for every other bad input).
    Refuse {
        line: String,
        code: u8,
    },
}

/// The stderr line of an error: one line, nothing in it a terminal would act on.
pub fn error_line(e: &Error) -> String {
    format!("genv: {}", text::printable(&e.to_string()))
}

/// Parses and checks `args` (the program name first, as `std::env::args_os` gives them).
pub fn parse(args: Vec<OsString>) -> Outcome {
    let shell_mode = args
        .iter()
        .skip(1)
        .any(|a| a == "--shell" || a.as_bytes().starts_with(b"--shell="));
    // Parsed without styling, clap's errors hold the arguments' characters as they are (styled,
    // its text drops escape sequences, taking them for its own styling).
    let parsed = Cli::command()
        .styles(Styles::plain())
        .try_get_matches_from(&args)
        .and_then(|mut m| Cli::from_arg_matches_mut(&mut m));
    let cli = match parsed {
        Ok(c) => c,
        Err(e) => {
            if shell_mode && !e.use_stderr() {
                return Outcome::ShowOnStderr(e.render().to_string());
            }
            // Help, version, and a bare `genv`, are for reading: clap's full text, in its
            // colours where the terminal has them.
            if !e.use_stderr() || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                let styled = Cli::try_parse_from(&args)
                    .err()
                    .filter(|s| s.kind() == e.kind());
                return Outcome::Show(styled.unwrap_or(e));
            }
            return Outcome::Refuse {
                line: usage_line(e, &args),
                code: 2,
            };
        }
    };
    match check(cli.cmd) {
        Ok(c) => Outcome::Run(c),
        Err(e) => Outcome::Refuse {
            line: error_line(&e),
            code: 1,
        },
    }
}

/// A bad command line is one line, like every other bad input.
fn usage_line(mut e: clap::Error, args: &[OsString]) -> String {
    // What clap quotes of the arguments is in the error's context: escape it there, before
    // clap's text is folded into one line (an argument may hold a newline).
    let shown: Vec<(ContextKind, ContextValue)> = e
        .context()
        .filter(|(k, _)| *k != ContextKind::Usage)
        .map(|(k, v)| (k, shown(v, args)))
        .collect();
    for (k, v) in shown {
        e.insert(k, v);
    }
    let msg = one_line(&e.render().ansi().to_string());
    format!("genv: {}", text::printable(&msg))
}

/// The parts of the arguments that are not UTF-8 (whole, or the name or the value of
/// `--name=value`), as clap shows them (lossy) and as their bytes escaped.
fn not_utf8_pieces(args: &[OsString]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for arg in args.iter().skip(1).filter(|a| a.to_str().is_none()) {
        let bytes = arg.as_bytes();
        let mut pieces = vec![bytes];
        if let Some(eq) = bytes.iter().position(|&b| b == b'=') {
            pieces.extend([&bytes[..eq], &bytes[eq + 1..]]);
        }
        for p in pieces
            .into_iter()
            .filter(|p| std::str::from_utf8(p).is_err())
        {
            out.push((
                String::from_utf8_lossy(p).into_owned(),
                text::escape_bytes(p),
            ));
        }
    }
    out
}

/// A context value of clap's error made safe to print: an argument (a string) escaped as
/// [`text::quote`] escapes, with its bytes where it is not UTF-8; a sentence (a tip) with its
/// hidden characters escaped and the arguments in it shown by their bytes.
fn shown(v: &ContextValue, args: &[OsString]) -> ContextValue {
    let pieces = not_utf8_pieces(args);
    let arg = |s: &str| -> String {
        pieces
            .iter()
            .find(|(lossy, _)| lossy == s)
            .map_or_else(|| text::escape_bytes(s.as_bytes()), |(_, b)| b.clone())
    };
    let sentence = |s: &StyledStr| -> StyledStr {
        let mut s = s.ansi().to_string();
        for (lossy, bytes) in &pieces {
            // The lossy text holds U+FFFD, so it matches only where clap showed this argument.
            s = s.replace(lossy.as_str(), bytes);
        }
        text::printable(&s).into()
    };
    match v {
        ContextValue::String(s) => ContextValue::String(arg(s)),
        ContextValue::Strings(v) => ContextValue::Strings(v.iter().map(|s| arg(s)).collect()),
        ContextValue::StyledStr(s) => ContextValue::StyledStr(sentence(s)),
        ContextValue::StyledStrs(v) => ContextValue::StyledStrs(v.iter().map(sentence).collect()),
        other => other.clone(),
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

fn shell_args(sh: ShellArgs, what: &str) -> Result<(Dialect, u32), Error> {
    match (sh.shell, sh.shell_pid) {
        (Some(s), Some(pid)) => Ok((
            if s == "fish" {
                Dialect::Fish
            } else {
                Dialect::Posix
            },
            pid,
        )),
        _ => Err(Error::Input(format!(
            "`genv {what}` changes your shell, so it runs through the shell integration: add \
             `eval \"$(genv shell-init bash)\"` to ~/.bashrc (zsh: shell-init zsh; fish: \
             `genv shell-init fish | source`), or run one command with `genv exec`"
        ))),
    }
}

fn index_arg(s: OsString) -> Result<u32, Error> {
    DeviceIndex::parse_os(&s).map(DeviceIndex::get)
}

/// The config options of `activate` / `exec`.
fn config_from_flags(
    name: Option<OsString>,
    gpus: Option<OsString>,
    gpu_memory: Option<OsString>,
) -> Result<Config, Error> {
    Ok(Config {
        name: name.as_deref().map(Name::parse_os).transpose()?,
        gpus: gpus.as_deref().map(DeviceCount::parse_os).transpose()?,
        gpu_memory: gpu_memory.as_deref().map(Capacity::parse_os).transpose()?,
    })
}

fn config_args(
    field: Option<OsString>,
    value: Option<OsString>,
    clear: bool,
    save: bool,
    load: bool,
    json: bool,
) -> Result<ConfigCmd, Error> {
    let field = match field {
        None => None,
        Some(f) => Some(match f.to_str() {
            Some("gpus") => Field::Gpus,
            Some("gpu-memory") | Some("gpu_memory") => Field::GpuMemory,
            Some("name") => Field::Name,
            _ => {
                return Err(Error::Input(format!(
                    "unknown configuration field {}: use gpus, gpu-memory or name",
                    quote_os(&f)
                )))
            }
        }),
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
    let value = match (field, value) {
        (_, None) => None,
        (Some(Field::Gpus), Some(v)) => Some(Value::Gpus(DeviceCount::parse_os(&v)?)),
        (Some(Field::GpuMemory), Some(v)) => Some(Value::GpuMemory(Capacity::parse_os(&v)?)),
        (Some(Field::Name), Some(v)) => Some(Value::Name(Name::parse_os(&v)?)),
        (None, Some(_)) => unreachable!("clap gives a value only after a field"),
    };
    Ok(ConfigCmd {
        field,
        value,
        clear,
        save,
        load,
        json,
    })
}

fn check(cmd: Cmd) -> Result<Command, Error> {
    Ok(match cmd {
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
            let (dialect, shell_pid) = shell_args(sh, "activate")?;
            let id = id.as_deref().map(EnvId::parse_os).transpose()?;
            Command::Activate {
                id,
                flags: config_from_flags(name, gpus, gpu_memory)?,
                no_load,
                no_attach,
                no_prompt,
                over_subscribe,
                dialect,
                shell_pid,
            }
        }
        Cmd::Deactivate { sh } => {
            let (dialect, shell_pid) = shell_args(sh, "deactivate")?;
            Command::Deactivate { dialect, shell_pid }
        }
        Cmd::Status { json } => Command::Status { json },
        Cmd::Config {
            field,
            value,
            clear,
            save,
            load,
            json,
        } => Command::Config(config_args(field, value, clear, save, load, json)?),
        Cmd::Home => Command::Home,
        Cmd::Attach {
            index,
            over_subscribe,
        } => Command::Attach {
            index: index.map(index_arg).transpose()?,
            over_subscribe,
        },
        Cmd::Detach { index } => Command::Detach {
            index: index.map(index_arg).transpose()?,
        },
        Cmd::Envs { json } => Command::Envs { json },
        Cmd::Devices { json } => Command::Devices { json },
        Cmd::Exec {
            name,
            gpus,
            gpu_memory,
            index,
            over_subscribe,
            command,
        } => Command::Exec {
            config: config_from_flags(name, gpus, gpu_memory)?,
            index: index.into_iter().map(index_arg).collect::<Result<_, _>>()?,
            over_subscribe,
            command,
        },
        Cmd::Lock { command } => Command::Lock { command },
        Cmd::ShellInit { shell } => Command::ShellInit { shell },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::select;
    use std::os::unix::ffi::OsStringExt;

    fn os(b: &[u8]) -> OsString {
        OsString::from_vec(b.to_vec())
    }

    fn parse_args(args: &[&[u8]]) -> Outcome {
        let mut all = vec![OsString::from("genv")];
        all.extend(args.iter().map(|a| os(a)));
        parse(all)
    }

    fn refused(args: &[&[u8]]) -> (String, u8) {
        match parse_args(args) {
            Outcome::Refuse { line, code } => (line, code),
            other => panic!("{args:?} not refused: {other:?}"),
        }
    }

    #[test]
    fn valid_command_lines_become_typed_commands() {
        let Outcome::Run(c) = parse_args(&[b"config", b"gpu-memory", b"4g"]) else {
            panic!("config gpu-memory 4g")
        };
        assert_eq!(
            c,
            Command::Config(ConfigCmd {
                field: Some(Field::GpuMemory),
                value: Some(Value::GpuMemory(Capacity::parse("4g").unwrap())),
                clear: false,
                save: false,
                load: false,
                json: false,
            })
        );
        let Outcome::Run(c) = parse_args(&[
            b"activate",
            b"--gpus",
            b"1",
            b"--shell",
            b"fish",
            b"--shell-pid",
            b"7",
        ]) else {
            panic!("activate")
        };
        assert!(matches!(
            c,
            Command::Activate {
                dialect: Dialect::Fish,
                shell_pid: 7,
                ref flags,
                ..
            } if flags.gpus.map(DeviceCount::get) == Some(1)
        ));
    }

    #[test]
    fn the_command_of_exec_and_lock_keeps_its_bytes() {
        let Outcome::Run(Command::Exec { command, .. }) =
            parse_args(&[b"exec", b"--", b"printf", b"%s", b"\xff\x1b"])
        else {
            panic!("exec")
        };
        assert_eq!(command, [os(b"printf"), os(b"%s"), os(b"\xff\x1b")]);
        let Outcome::Run(Command::Lock { command }) = parse_args(&[b"lock", b"--", b"\xfe"]) else {
            panic!("lock")
        };
        assert_eq!(command, [os(b"\xfe")]);
    }

    #[test]
    fn text_arguments_that_are_not_utf8_are_named() {
        let cases: [(&[&[u8]], &str, u8); 8] = [
            (
                &[b"config", b"name", b"\xff"],
                r"genv: invalid name '\xff': not valid UTF-8",
                1,
            ),
            (
                &[b"config", b"\xff"],
                r"genv: unknown configuration field '\xff': use gpus, gpu-memory or name",
                1,
            ),
            (
                &[b"attach", b"--index", b"0\xff"],
                r"genv: invalid device index '0\xff': not valid UTF-8",
                1,
            ),
            (
                &[b"exec", b"--gpu-memory", b"4\xffg", b"--", b"true"],
                r"genv: invalid GPU memory '4\xffg': not valid UTF-8",
                1,
            ),
            (
                &[
                    b"activate",
                    b"--id",
                    b"\xff",
                    b"--shell",
                    b"bash",
                    b"--shell-pid",
                    b"1",
                ],
                r"genv: invalid environment identifier '\xff': not valid UTF-8",
                1,
            ),
            (
                &[b"shell-init", b"\xff"],
                r"genv: invalid value '\xff' for '<SHELL>': not valid UTF-8 [possible values: bash, zsh, fish] (usage: genv shell-init <SHELL>)",
                2,
            ),
            // The shell mode is told from the arguments without decoding them.
            (
                &[b"\xff", b"--shell", b"bash"],
                r"genv: unrecognized subcommand '\xff' (usage: genv <COMMAND>)",
                2,
            ),
            (
                &[b"envs", b"--\x1b[31m"],
                r"genv: unexpected argument '--\x1b[31m' found (usage: genv envs [OPTIONS])",
                2,
            ),
        ];
        for (args, want, code) in cases {
            assert_eq!(refused(args), (want.to_string(), code), "{args:?}");
        }
    }

    #[test]
    fn help_in_shell_mode_goes_to_stderr() {
        assert!(matches!(
            parse_args(&[b"activate", b"--help", b"--shell", b"bash"]),
            Outcome::ShowOnStderr(t) if t.contains("Usage: genv activate")
        ));
        assert!(matches!(parse_args(&[b"--version"]), Outcome::Show(_)));
    }

    /// Command lines that parse, to be mutated.
    const VALID: &[&[&str]] = &[
        &["config", "gpu-memory", "4g"],
        &["config", "name", "my-env"],
        &["config", "gpus", "2", "--save"],
        &["config", "--clear"],
        &["config", "--load"],
        &["attach", "--index", "0"],
        &["attach", "--over-subscribe"],
        &["detach", "--index", "1"],
        &[
            "activate",
            "--gpus",
            "1",
            "--shell",
            "bash",
            "--shell-pid",
            "1",
        ],
        &[
            "activate",
            "--id",
            "x",
            "--name",
            "n",
            "--gpu-memory",
            "4gi",
            "--no-load",
            "--shell=zsh",
            "--shell-pid=2",
        ],
        &["deactivate", "--shell", "fish", "--shell-pid", "3"],
        &[
            "exec",
            "--gpus",
            "1",
            "--index",
            "0",
            "--gpu-memory",
            "4g",
            "--",
            "printf",
            "%s",
        ],
        &["lock", "--", "true"],
        &["shell-init", "bash"],
        &["status", "--json"],
        &["envs"],
        &["devices", "--json"],
        &["home"],
    ];

    /// Words of the command line, for random ones that get past the first argument.
    const WORDS: &[&str] = &[
        "activate",
        "deactivate",
        "status",
        "config",
        "home",
        "attach",
        "detach",
        "envs",
        "devices",
        "exec",
        "lock",
        "shell-init",
        "help",
        "--help",
        "-h",
        "--version",
        "-V",
        "--",
        "-",
        "--json",
        "--id",
        "--name",
        "--gpus",
        "--gpu-memory",
        "--index",
        "--over-subscribe",
        "--no-load",
        "--no-attach",
        "--no-prompt",
        "--shell",
        "--shell-pid",
        "--clear",
        "--save",
        "--load",
        "gpus",
        "gpu-memory",
        "gpu_memory",
        "name",
        "bash",
        "zsh",
        "fish",
        "4g",
        "0",
        "1",
        "-1",
        "33",
        "",
        " ",
    ];

    /// Bytes weighted towards what breaks text: control characters, ESC, non-UTF-8 bytes.
    fn byte() -> impl Strategy<Value = u8> {
        prop_oneof![
            any::<u8>(),
            0u8..0x20,
            Just(0x1b),
            Just(0x7f),
            0x80u8..=0xff,
            select(b"-=:' \\".to_vec()),
        ]
    }

    fn junk() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(byte(), 0..8)
    }

    fn arg() -> impl Strategy<Value = OsString> {
        prop_oneof![
            3 => select(WORDS).prop_map(OsString::from),
            2 => junk().prop_map(OsString::from_vec),
            2 => (select(WORDS), junk(), any::<bool>()).prop_map(|(w, j, front)| {
                let mut b = w.as_bytes().to_vec();
                if front {
                    b.splice(0..0, j);
                } else {
                    b.extend(j);
                }
                OsString::from_vec(b)
            }),
            // `--option=value` with a junk value.
            1 => (select(WORDS), junk()).prop_map(|(w, j)| {
                let mut b = format!("{w}=").into_bytes();
                b.extend(j);
                OsString::from_vec(b)
            }),
            // Multi-byte characters that are hidden or wide, whole.
            1 => select(vec!["\u{202e}", "\u{85}", "\u{2028}", "é", "\u{fffd}"]).prop_map(OsString::from),
        ]
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Replace(usize, OsString),
        Insert(usize, OsString),
        Remove(usize),
        /// Puts bytes into an argument at a position.
        Splice(usize, usize, Vec<u8>),
        Truncate(usize, usize),
        Swap(usize, usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let ix = any::<usize>();
        prop_oneof![
            (ix, arg()).prop_map(|(i, a)| Mutation::Replace(i, a)),
            (ix, arg()).prop_map(|(i, a)| Mutation::Insert(i, a)),
            ix.prop_map(Mutation::Remove),
            (ix, any::<usize>(), junk()).prop_map(|(i, p, j)| Mutation::Splice(i, p, j)),
            (ix, any::<usize>()).prop_map(|(i, n)| Mutation::Truncate(i, n)),
            (ix, any::<usize>()).prop_map(|(i, j)| Mutation::Swap(i, j)),
        ]
    }

    fn mutate(args: &mut Vec<Vec<u8>>, m: Mutation) {
        let n = args.len();
        match m {
            Mutation::Insert(i, a) => args.insert(i % (n + 1), a.into_vec()),
            _ if n == 0 => {}
            Mutation::Replace(i, a) => args[i % n] = a.into_vec(),
            Mutation::Remove(i) => {
                args.remove(i % n);
            }
            Mutation::Splice(i, p, j) => {
                let a = &mut args[i % n];
                let p = p % (a.len() + 1);
                a.splice(p..p, j);
            }
            Mutation::Truncate(i, k) => {
                let a = &mut args[i % n];
                a.truncate(k % (a.len() + 1));
            }
            Mutation::Swap(i, j) => args.swap(i % n, j % n),
        }
    }

    fn command_line() -> impl Strategy<Value = Vec<OsString>> {
        prop_oneof![
            proptest::collection::vec(arg(), 0..8),
            (select(VALID), proptest::collection::vec(mutation(), 0..4)).prop_map(|(v, ms)| {
                let mut args: Vec<Vec<u8>> = v.iter().map(|a| a.as_bytes().to_vec()).collect();
                for m in ms {
                    mutate(&mut args, m);
                }
                args.into_iter().map(OsString::from_vec).collect()
            }),
        ]
    }

    /// Nothing in `s` that a terminal would act on, other than the newlines in `newlines` mode.
    fn assert_printable(s: &str, newlines: bool) -> Result<(), TestCaseError> {
        for c in s.chars() {
            let hidden = (c.is_control() && !(newlines && c == '\n'))
                || matches!(c, '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            prop_assert!(!hidden, "raw {:?} in {:?}", c, s);
        }
        Ok(())
    }

    fn cases() -> ProptestConfig {
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(2000);
        ProptestConfig {
            cases,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(cases())]

        /// Whatever the arguments: no panic, and a refusal is one `genv: …` line with nothing
        /// a terminal would act on, its bytes shown where they are not UTF-8.
        #[test]
        fn any_command_line_runs_or_is_refused_in_one_printable_line(args in command_line()) {
            // U+FFFD in a message is a lost byte, unless the arguments hold one as typed.
            let typed_fffd = args
                .iter()
                .any(|a| a.as_bytes().windows(3).any(|w| w == "\u{fffd}".as_bytes()));
            let mut all = vec![OsString::from("genv")];
            all.extend(args);
            match parse(all) {
                Outcome::Run(_) => {}
                Outcome::Refuse { line, code } => {
                    prop_assert!(code == 1 || code == 2, "exit {}", code);
                    prop_assert!(line.starts_with("genv: "), "{:?}", line);
                    prop_assert!(!line.contains('\n'), "{:?}", line);
                    assert_printable(&line, false)?;
                    if !typed_fffd {
                        prop_assert!(!line.contains('\u{fffd}'), "bytes lost in {:?}", line);
                    }
                }
                Outcome::Show(e) => {
                    prop_assert!(matches!(
                        e.kind(),
                        ErrorKind::DisplayHelp
                            | ErrorKind::DisplayVersion
                            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                    ), "{:?}", e.kind());
                    assert_printable(&e.render().to_string(), true)?;
                }
                Outcome::ShowOnStderr(text) => assert_printable(&text, true)?,
            }
        }

        /// Every error genv reports at run time is one printable line too, whatever it quotes.
        #[test]
        fn any_error_message_is_one_printable_line(msg in proptest::collection::vec(any::<char>(), 0..40)) {
            let msg: String = msg.into_iter().collect();
            let line = error_line(&Error::Input(msg));
            prop_assert!(!line.contains('\n'));
            assert_printable(&line, false)?;
        }
    }
}
