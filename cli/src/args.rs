//! The command line: clap's definitions (one module per command, in cmd/), and [`parse`], which
//! turns the arguments into a checked [`Command`] without running anything or touching the
//! state (so that it can be fuzzed in process). Arguments are taken as the OS gives them: those
//! that must be text are checked by their value parsers (one line naming the argument), and
//! the command of `exec` / `lock` passes through unchanged, whatever its bytes.

use crate::cmd::{Cmd, Command};
use crate::exit::Exit;
use crate::shell::Dialect;
use clap::builder::{StyledStr, Styles};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches, Parser};
use genv_state::text;
use genv_state::Error;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

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

/// The command line's definition (for the completions).
pub fn command() -> clap::Command {
    Cli::command()
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Outcome {
    Run(Command),
    /// Help or version, for reading: clap prints it (in colour on a terminal).
    Show(clap::Error),
    /// Help or version in shell mode, where the shell function evals stdout: code for it that
    /// prints the text (on stderr when the dialect is not known).
    ShowAsCode(Option<Dialect>, String),
    /// A refused command line: the one line for stderr, and how genv ends ([`Exit::Usage`]
    /// for what the argument parser refuses, [`Exit::Failure`] for a bad value, as for every
    /// other bad input).
    Refuse {
        line: String,
        exit: Exit,
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
    // The dialect the shell function names, read without clap (which refused the line).
    let dialect = || {
        let mut it = args.iter().skip(1);
        while let Some(a) = it.next() {
            let v = if a == "--shell" {
                it.next().and_then(|v| v.to_str())
            } else {
                a.to_str().and_then(|a| a.strip_prefix("--shell="))
            };
            if let Some(d) = v.and_then(|v| <Dialect as clap::ValueEnum>::from_str(v, false).ok()) {
                return Some(d);
            }
        }
        None
    };
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
                return Outcome::ShowAsCode(dialect(), e.render().to_string());
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
                exit: Exit::Usage,
            };
        }
    };
    match cli.cmd.check() {
        Ok(c) => Outcome::Run(c),
        Err(e) => Outcome::Refuse {
            line: error_line(&e),
            exit: Exit::Failure,
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
    let mut usage: Option<String> = None;
    let mut in_usage = false;
    for l in rendered.lines().map(str::trim) {
        if let Some(u) = l.strip_prefix("Usage: ") {
            usage = Some(u.to_string());
            in_usage = true;
        } else if l.is_empty() {
            in_usage = false;
        } else if in_usage && l.starts_with("genv ") {
            // A command with subcommands has a usage line for each form.
            if let Some(u) = usage.as_mut() {
                u.push_str(" | ");
                u.push_str(l);
            }
        } else if !l.starts_with("For more information") {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::config::{Field, Request, Value};
    use crate::shell::{Dialect, ShellCall};
    use genv_state::{Capacity, DeviceCount, Input};
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

    fn refused(args: &[&[u8]]) -> (String, Exit) {
        match parse_args(args) {
            Outcome::Refuse { line, exit } => (line, exit),
            other => panic!("{args:?} not refused: {other:?}"),
        }
    }

    #[test]
    fn valid_command_lines_become_typed_commands() {
        let Outcome::Run(c) = parse_args(&[b"config", b"gpu-memory", b"4g"]) else {
            panic!("config gpu-memory 4g")
        };
        assert!(matches!(
            c,
            Command::Config(r) if r == Request {
                field: Some(Field::GpuMemory),
                value: Some(Value::GpuMemory(Capacity::parse("4g").unwrap())),
                clear: false,
                save: false,
                load: false,
                json: false,
                quiet: false,
            }
        ));
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
            Command::Activate(r)
                if r.shell == ShellCall { dialect: Dialect::Fish, pid: 7 }
                    && r.flags.gpus.map(DeviceCount::get) == Some(1)
        ));
    }

    #[test]
    fn the_command_of_exec_and_lock_keeps_its_bytes() {
        let Outcome::Run(Command::Exec(a)) =
            parse_args(&[b"exec", b"--", b"printf", b"%s", b"\xff\x1b"])
        else {
            panic!("exec")
        };
        assert_eq!(a.command, [os(b"printf"), os(b"%s"), os(b"\xff\x1b")]);
        let Outcome::Run(Command::Lock(a)) = parse_args(&[b"lock", b"--", b"\xfe"]) else {
            panic!("lock")
        };
        assert_eq!(a.command, [os(b"\xfe")]);
    }

    #[test]
    fn text_arguments_that_are_not_utf8_are_named() {
        use Exit::{Failure, Usage};
        let cases: [(&[&[u8]], &str, Exit); 8] = [
            (
                &[b"config", b"name", b"\xff"],
                r"genv: invalid name '\xff': not valid UTF-8",
                Failure,
            ),
            (
                &[b"config", b"\xff"],
                r"genv: unknown configuration field '\xff': use gpus, gpu-memory or name",
                Failure,
            ),
            (
                &[b"attach", b"--index", b"0\xff"],
                r"genv: invalid device index '0\xff': not valid UTF-8",
                Failure,
            ),
            (
                &[b"exec", b"--gpu-memory", b"4\xffg", b"--", b"true"],
                r"genv: invalid GPU memory '4\xffg': not valid UTF-8",
                Failure,
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
                Failure,
            ),
            (
                &[b"shell-init", b"\xff"],
                r"genv: invalid value '\xff' for '<SHELL>': not valid UTF-8 [possible values: bash, zsh, fish] (usage: genv shell-init [OPTIONS] <SHELL>)",
                Usage,
            ),
            // The shell mode is told from the arguments without decoding them.
            (
                &[b"\xff", b"--shell", b"bash"],
                r"genv: unrecognized subcommand '\xff' (usage: genv <COMMAND>)",
                Usage,
            ),
            (
                &[b"envs", b"--\x1b[31m"],
                r"genv: unexpected argument '--\x1b[31m' found (usage: genv envs [OPTIONS] | genv envs <COMMAND>)",
                Usage,
            ),
        ];
        for (args, want, exit) in cases {
            assert_eq!(refused(args), (want.to_string(), exit), "{args:?}");
        }
    }

    #[test]
    fn help_in_shell_mode_is_code_that_prints_it() {
        assert!(matches!(
            parse_args(&[b"activate", b"--help", b"--shell", b"bash"]),
            Outcome::ShowAsCode(Some(Dialect::Bash), t) if t.contains("Usage: genv activate")
        ));
        assert!(matches!(
            parse_args(&[b"deactivate", b"-h", b"--shell=fish"]),
            Outcome::ShowAsCode(Some(Dialect::Fish), _)
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
                Outcome::Refuse { line, exit } => {
                    prop_assert!(matches!(exit, Exit::Failure | Exit::Usage), "exit {:?}", exit);
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
                Outcome::ShowAsCode(_, text) => assert_printable(&text, true)?,
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
