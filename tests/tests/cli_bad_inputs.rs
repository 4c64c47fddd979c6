//! A table of bad inputs: each is refused with its message on one stderr line, a non-zero exit,
//! no panic, and the state exactly as before. Arguments are bytes: also ones that are not
//! UTF-8 or hold control characters, which messages show escaped (`'\xff'`, `'\x1b[31m'`).

use genv_tests::support;

use genv_state::layout::{EID_MAX, GPU_MEMORY_MAX, NAME_MAX};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use support::*;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Ctx {
    /// No environment.
    NoEnv,
    /// Inside environment A (attached to device 0; B holds device 1).
    InA,
    /// Through the shell integration (`--shell bash --shell-pid <a live pid>`), no environment.
    Shell,
    /// Through the shell integration, inside A.
    ShellInA,
    /// GENV_ENVIRONMENT_ID set to what genv never sets it to.
    BadEid(&'static [u8]),
    /// Through the shell integration, with that GENV_ENVIRONMENT_ID.
    ShellBadEid(&'static [u8]),
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Check {
    /// genv's own error: exactly one stderr line; the current tables byte-identical.
    Line,
    /// As `Line`, but compare what users see (envs/devices JSON) only: `exec` makes and removes
    /// its environment, which moves the serial counter.
    LineSameView,
    /// A usage error of the argument parser: exit 2 and, like genv's own errors, exactly one
    /// stderr line `genv: …` with the fragment.
    Usage,
    /// A bare `genv`: exit 2 with the full help, which is for reading.
    Help,
}

struct Case {
    ctx: Ctx,
    args: Vec<OsString>,
    fragment: String,
    check: Check,
}

fn case(ctx: Ctx, args: &[&str], fragment: &str) -> Case {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    bytes(ctx, &args, fragment)
}

/// A case whose arguments are bytes, not necessarily UTF-8.
fn bytes(ctx: Ctx, args: &[&[u8]], fragment: &str) -> Case {
    let check = if args.first() == Some(&&b"exec"[..]) {
        Check::LineSameView
    } else {
        Check::Line
    };
    Case {
        ctx,
        args: args
            .iter()
            .map(|a| OsString::from_vec(a.to_vec()))
            .collect(),
        fragment: fragment.to_string(),
        check,
    }
}

fn usage(ctx: Ctx, args: &[&str], fragment: &str) -> Case {
    Case {
        check: Check::Usage,
        ..case(ctx, args, fragment)
    }
}

fn usage_bytes(ctx: Ctx, args: &[&[u8]], fragment: &str) -> Case {
    Case {
        check: Check::Usage,
        ..bytes(ctx, args, fragment)
    }
}

/// `n` bytes of a GPU memory amount: `4g` after leading zeros.
fn long_gpu_memory(n: usize) -> String {
    format!("{}4g", "0".repeat(n - 2))
}

fn cases() -> Vec<Case> {
    use Ctx::*;
    let long = "n".repeat(NAME_MAX + 1);
    let long = long.as_str();
    const NOT_ACTIVE: &str = "Not running in an active environment";
    const SHELL: &str = "runs through the shell integration";
    vec![
        // config: fields and values
        case(InA, &["config", "foo"], "unknown configuration field 'foo'"),
        case(
            InA,
            &["config", "foo", "1"],
            "unknown configuration field 'foo'",
        ),
        case(InA, &["config", "gpus", "-1"], "invalid device count '-1'"),
        case(
            InA,
            &["config", "gpus", "abc"],
            "invalid device count 'abc'",
        ),
        case(
            InA,
            &["config", "gpus", "1.5"],
            "invalid device count '1.5'",
        ),
        case(InA, &["config", "gpus", "33"], "invalid device count '33'"),
        case(InA, &["config", "gpus", ""], "invalid device count ''"),
        case(
            InA,
            &["config", "gpu-memory", "4x"],
            "invalid GPU memory '4x'",
        ),
        case(
            InA,
            &["config", "gpu-memory", "0"],
            "invalid GPU memory '0'",
        ),
        case(
            InA,
            &["config", "gpu-memory", "0gi"],
            "invalid GPU memory '0gi'",
        ),
        case(
            InA,
            &["config", "gpu-memory", "4GB"],
            "invalid GPU memory '4GB': expected a number with an optional unit b, k, m, g, t (powers of 1000) or ki, mi, gi, ti",
        ),
        case(
            InA,
            &["config", "gpu-memory", "1.5b"],
            "invalid GPU memory '1.5b'",
        ),
        case(
            InA,
            &["config", "gpu-memory", "-1"],
            "invalid GPU memory '-1'",
        ),
        case(
            InA,
            &["config", "gpu-memory", "gi"],
            "invalid GPU memory 'gi'",
        ),
        case(InA, &["config", "gpu-memory", ""], "invalid GPU memory ''"),
        case(
            InA,
            &["config", "gpu-memory", "99999999999gi"],
            "invalid GPU memory '99999999999gi'",
        ),
        case(InA, &["config", "name", ""], "invalid name"),
        case(InA, &["config", "name", "   "], "invalid name"),
        case(InA, &["config", "name", long], "invalid name"),
        case(InA, &["config", "name", "a\nb"], "invalid name"),
        // config: options that do not go together, or need a .genv directory
        case(
            InA,
            &["config", "name", "x", "--clear"],
            "--clear takes no value",
        ),
        case(
            InA,
            &["config", "gpus", "2", "--clear"],
            "--clear takes no value",
        ),
        case(
            InA,
            &["config", "name", "--load"],
            "--load loads the whole saved",
        ),
        case(
            InA,
            &["config", "--load", "--clear"],
            "--load loads the whole saved",
        ),
        case(InA, &["config", "--load"], "no .genv directory"),
        case(InA, &["config", "--save"], "no .genv directory"),
        case(
            InA,
            &["config", "gpus", "3", "--save"],
            "no .genv directory",
        ),
        case(InA, &["config", "--clear", "--save"], "no .genv directory"),
        // attach / detach
        case(InA, &["attach", "--index", "4"], "invalid device index 4"),
        case(
            InA,
            &["attach", "--index", "-1"],
            "invalid device index '-1'",
        ),
        case(
            InA,
            &["attach", "--index", "abc"],
            "invalid device index 'abc'",
        ),
        case(
            InA,
            &["attach", "--index", "1"],
            "Device 1 is not available",
        ),
        case(
            InA,
            &["attach", "--index", "1", "--over-subscribe"],
            "Device 1 is not available",
        ),
        case(InA, &["detach", "--index", "9"], "invalid device index 9"),
        case(
            InA,
            &["detach", "--index", "-1"],
            "invalid device index '-1'",
        ),
        // no environment
        case(NoEnv, &["attach"], NOT_ACTIVE),
        case(NoEnv, &["attach", "--index", "0"], NOT_ACTIVE),
        case(NoEnv, &["detach"], NOT_ACTIVE),
        case(NoEnv, &["detach", "--index", "0"], NOT_ACTIVE),
        case(NoEnv, &["config"], NOT_ACTIVE),
        case(NoEnv, &["config", "gpus", "1"], NOT_ACTIVE),
        case(NoEnv, &["config", "--clear"], NOT_ACTIVE),
        case(Shell, &["deactivate"], NOT_ACTIVE),
        // activate / deactivate outside the shell integration
        case(NoEnv, &["activate"], SHELL),
        case(NoEnv, &["activate", "--gpus", "1"], SHELL),
        case(NoEnv, &["deactivate"], SHELL),
        case(InA, &["deactivate"], SHELL),
        // activate: bad values, and nothing half-made
        case(
            ShellInA,
            &["activate"],
            "Already running in an active environment",
        ),
        case(
            Shell,
            &["activate", "--gpus", "-1"],
            "invalid device count '-1'",
        ),
        case(
            Shell,
            &["activate", "--gpus", "x"],
            "invalid device count 'x'",
        ),
        case(Shell, &["activate", "--gpus", "5"], "No available devices"),
        case(Shell, &["activate", "--gpus", "3"], "No available devices"),
        case(
            Shell,
            &["activate", "--gpu-memory", "4x"],
            "invalid GPU memory '4x'",
        ),
        case(Shell, &["activate", "--name", long], "invalid name"),
        case(
            Shell,
            &["activate", "--id", "has space"],
            "invalid environment identifier",
        ),
        case(
            Shell,
            &["activate", "--id", ""],
            "invalid environment identifier",
        ),
        // exec
        case(
            NoEnv,
            &["exec", "--gpus", "abc", "--", "true"],
            "invalid device count 'abc'",
        ),
        case(
            NoEnv,
            &["exec", "--gpus", "5", "--", "true"],
            "No available devices",
        ),
        case(
            NoEnv,
            &["exec", "--gpu-memory", "0", "--", "true"],
            "invalid GPU memory '0'",
        ),
        case(
            NoEnv,
            &["exec", "--index", "9", "--", "true"],
            "invalid device index 9",
        ),
        case(
            NoEnv,
            &["exec", "--index", "x", "--", "true"],
            "invalid device index 'x'",
        ),
        case(
            NoEnv,
            &["exec", "--index", "1", "--", "true"],
            "Device 1 is not available",
        ),
        case(NoEnv, &["exec", "--name", "", "--", "true"], "invalid name"),
        case(
            NoEnv,
            &["exec", "--", "/no/such/program"],
            "/no/such/program",
        ),
        // the argument parser
        usage(NoEnv, &["exec"], "required arguments were not provided"),
        usage(
            NoEnv,
            &["exec", "--gpus", "1"],
            "required arguments were not provided",
        ),
        usage(NoEnv, &["shell-init", "tcsh"], "invalid value 'tcsh'"),
        usage(
            NoEnv,
            &["shell-init"],
            "required arguments were not provided",
        ),
        usage(
            NoEnv,
            &["frobnicate"],
            "unrecognized subcommand 'frobnicate'",
        ),
        usage(NoEnv, &["envs", "--bogus"], "unexpected argument '--bogus'"),
        usage(
            InA,
            &["attach", "--gpus", "2"],
            "unexpected argument '--gpus'",
        ),
        usage(
            InA,
            &["config", "gpus", "1", "2"],
            "unexpected argument '2'",
        ),
        Case {
            check: Check::Help,
            ..case(NoEnv, &[], "Usage")
        },
    ]
    .into_iter()
    .chain(odd_text_cases())
    .collect()
}

/// Text that is not UTF-8, over-long, or holds control characters, for every argument that
/// takes text; and a GENV_ENVIRONMENT_ID that genv never set.
fn odd_text_cases() -> Vec<Case> {
    use Ctx::*;
    const NOT_UTF8: &str = ": not valid UTF-8";
    let mem_past = long_gpu_memory(GPU_MEMORY_MAX + 1);
    let mem_past = mem_past.as_str();
    let mem_limit = format!("invalid GPU memory '{mem_past}': at most {GPU_MEMORY_MAX} bytes");
    // Two-byte characters: the limit is in bytes.
    let wide_past = "é".repeat(NAME_MAX / 2 + 1);
    let wide_past = wide_past.as_str();
    let eid_past = "e".repeat(EID_MAX + 1);
    let eid_past = eid_past.as_str();
    let bad_eid = |v: &str| format!("GENV_ENVIRONMENT_ID: invalid environment identifier '{v}'");
    vec![
        // Not UTF-8.
        bytes(
            InA,
            &[b"config", b"name", b"\xff"],
            &format!(r"invalid name '\xff'{NOT_UTF8}"),
        ),
        bytes(
            InA,
            &[b"config", b"gpus", b"1\xff"],
            &format!(r"invalid device count '1\xff'{NOT_UTF8}"),
        ),
        bytes(
            InA,
            &[b"config", b"gpu-memory", b"4\xffg"],
            &format!(r"invalid GPU memory '4\xffg'{NOT_UTF8}"),
        ),
        bytes(
            InA,
            &[b"config", b"\xff"],
            r"unknown configuration field '\xff': use gpus",
        ),
        bytes(
            InA,
            &[b"config", b"gpus\xe9", b"1"],
            r"unknown configuration field 'gpus\xe9'",
        ),
        bytes(
            InA,
            &[b"attach", b"--index", b"\xff"],
            &format!(r"invalid device index '\xff'{NOT_UTF8}"),
        ),
        bytes(
            InA,
            &[b"detach", b"--index=0\xff"],
            &format!(r"invalid device index '0\xff'{NOT_UTF8}"),
        ),
        bytes(
            Shell,
            &[b"activate", b"--name", b"\xff"],
            &format!(r"invalid name '\xff'{NOT_UTF8}"),
        ),
        bytes(
            Shell,
            &[b"activate", b"--gpus", b"\xff"],
            &format!(r"invalid device count '\xff'{NOT_UTF8}"),
        ),
        bytes(
            Shell,
            &[b"activate", b"--gpu-memory", b"\xff"],
            &format!(r"invalid GPU memory '\xff'{NOT_UTF8}"),
        ),
        bytes(
            Shell,
            &[b"activate", b"--id", b"a\xffb"],
            &format!(r"invalid environment identifier 'a\xffb'{NOT_UTF8}"),
        ),
        bytes(
            NoEnv,
            &[b"exec", b"--name", b"\xff", b"--", b"true"],
            &format!(r"invalid name '\xff'{NOT_UTF8}"),
        ),
        bytes(
            NoEnv,
            &[b"exec", b"--gpus", b"\xff", b"--", b"true"],
            &format!(r"invalid device count '\xff'{NOT_UTF8}"),
        ),
        bytes(
            NoEnv,
            &[b"exec", b"--gpu-memory", b"\xff", b"--", b"true"],
            &format!(r"invalid GPU memory '\xff'{NOT_UTF8}"),
        ),
        bytes(
            NoEnv,
            &[
                b"exec", b"--index", b"0", b"--index", b"\xff", b"--", b"true",
            ],
            &format!(r"invalid device index '\xff'{NOT_UTF8}"),
        ),
        bytes(
            NoEnv,
            &[b"exec", b"--", b"/no/such/\xff"],
            r"cannot run '/no/such/\xff'",
        ),
        usage_bytes(
            NoEnv,
            &[b"shell-init", b"\xff"],
            &format!(
                r"invalid value '\xff' for '<SHELL>'{NOT_UTF8} [possible values: bash, zsh, fish]"
            ),
        ),
        usage_bytes(
            NoEnv,
            &[b"activate", b"--shell", b"\xff", b"--shell-pid", b"1"],
            &format!(r"invalid value '\xff' for '--shell <SHELL>'{NOT_UTF8}"),
        ),
        usage_bytes(
            NoEnv,
            &[b"deactivate", b"--shell", b"bash", b"--shell-pid", b"\xff"],
            &format!(r"invalid value '\xff' for '--shell-pid <SHELL_PID>'{NOT_UTF8}"),
        ),
        usage_bytes(NoEnv, &[b"\xff"], r"unrecognized subcommand '\xff'"),
        // The shell integration is told apart from the raw arguments (this panicked).
        usage_bytes(Shell, &[b"\xff"], r"unrecognized subcommand '\xff'"),
        usage_bytes(
            NoEnv,
            &[b"envs", b"--\xff"],
            r"unexpected argument '--\xff'",
        ),
        usage_bytes(
            NoEnv,
            &[b"envs", b"--json=\xff"],
            r"unexpected value '\xff' for '--json'",
        ),
        // One past the limit of each stored text (at the limit: stored_text_at_the_limit).
        case(InA, &["config", "gpu-memory", mem_past], &mem_limit),
        case(Shell, &["activate", "--gpu-memory", mem_past], &mem_limit),
        case(
            NoEnv,
            &["exec", "--gpu-memory", mem_past, "--", "true"],
            &mem_limit,
        ),
        case(
            InA,
            &["config", "name", wide_past],
            &format!("invalid name '{wide_past}': use 1 to {NAME_MAX} bytes"),
        ),
        case(
            Shell,
            &["activate", "--name", wide_past],
            &format!("use 1 to {NAME_MAX} bytes"),
        ),
        case(
            NoEnv,
            &["exec", "--name", wide_past, "--", "true"],
            &format!("use 1 to {NAME_MAX} bytes"),
        ),
        case(
            Shell,
            &["activate", "--id", eid_past],
            &format!("invalid environment identifier '{eid_past}': use 1 to {EID_MAX}"),
        ),
        // Control characters, shown escaped.
        case(
            InA,
            &["config", "name", "a\x1b[31mb"],
            r"invalid name 'a\x1b[31mb'",
        ),
        case(InA, &["config", "name", "a\nb"], r"invalid name 'a\nb'"),
        case(InA, &["config", "name", "\u{85}"], r"invalid name '\u{85}'"),
        case(
            InA,
            &["config", "gpus", "1\x1b"],
            r"invalid device count '1\x1b'",
        ),
        case(
            InA,
            &["config", "gpu-memory", "4\x1b[31mg"],
            r"invalid GPU memory '4\x1b[31mg'",
        ),
        case(
            InA,
            &["config", "gp\x1bus"],
            r"unknown configuration field 'gp\x1bus'",
        ),
        case(
            InA,
            &["attach", "--index", "\x1b0"],
            r"invalid device index '\x1b0'",
        ),
        case(
            InA,
            &["detach", "--index", "0\x07"],
            r"invalid device index '0\x07'",
        ),
        case(
            Shell,
            &["activate", "--name", "\x1b[2J"],
            r"invalid name '\x1b[2J'",
        ),
        case(
            Shell,
            &["activate", "--gpus", "\x1b"],
            r"invalid device count '\x1b'",
        ),
        case(
            Shell,
            &["activate", "--gpu-memory", "4\rg"],
            r"invalid GPU memory '4\rg'",
        ),
        case(
            Shell,
            &["activate", "--id", "a\x1bb"],
            r"invalid environment identifier 'a\x1bb'",
        ),
        case(
            Shell,
            &["activate", "--id", "a\u{202e}b"],
            r"invalid environment identifier 'a\u{202e}b'",
        ),
        case(
            NoEnv,
            &["exec", "--gpus", "1\x1b", "--", "true"],
            r"invalid device count '1\x1b'",
        ),
        case(
            NoEnv,
            &["exec", "--", "/no/such/\x1b[31m"],
            r"cannot run '/no/such/\x1b[31m'",
        ),
        usage(
            NoEnv,
            &["shell-init", "\x1b[31m"],
            r"invalid value '\x1b[31m' for '<SHELL>'",
        ),
        usage(
            NoEnv,
            &["envs", "--\x1b[31m"],
            r"unexpected argument '--\x1b[31m'",
        ),
        usage(
            NoEnv,
            &["frob\nnicate"],
            r"unrecognized subcommand 'frob\nnicate'",
        ),
        usage(
            NoEnv,
            &["activate", "--shell", "bash", "--shell-pid", "1\x1b"],
            r"invalid value '1\x1b' for '--shell-pid <SHELL_PID>'",
        ),
        // A GENV_ENVIRONMENT_ID that genv never set: one line naming it, not "no environment".
        case(
            BadEid(b"\xff"),
            &["status"],
            &format!(r"{}{NOT_UTF8}", bad_eid(r"\xff")),
        ),
        case(BadEid(b"\xff"), &["config"], &bad_eid(r"\xff")),
        case(BadEid(b"\xff"), &["config", "gpus", "1"], &bad_eid(r"\xff")),
        case(BadEid(b"\xff"), &["attach"], &bad_eid(r"\xff")),
        case(BadEid(b"\xff"), &["detach"], &bad_eid(r"\xff")),
        case(BadEid(b"\xff"), &["lock", "--", "true"], &bad_eid(r"\xff")),
        case(ShellBadEid(b"\xff"), &["deactivate"], &bad_eid(r"\xff")),
        case(ShellBadEid(b"\xff"), &["activate"], &bad_eid(r"\xff")),
        case(BadEid(b"a\x1b[31m"), &["status"], &bad_eid(r"a\x1b[31m")),
        case(BadEid(b"has space"), &["config"], &bad_eid("has space")),
    ]
}

/// What users can see of the state.
fn view(sb: &Sandbox) -> (String, String) {
    (
        sb.genv(&["envs", "--json"]).ok().to_string(),
        sb.genv(&["devices", "--json"]).ok().to_string(),
    )
}

#[test]
fn bad_inputs_are_refused_without_change() {
    let sb = Sandbox::new();
    let a = sb.env(&["--name", "a", "--gpus", "1", "--gpu-memory", "8gi"]);
    let b = sb.env(&["--name", "b", "--gpus", "1"]);
    let shell = Holder::spawn();
    let shell_pid = shell.pid().to_string();
    let cases = cases();
    assert!(cases.len() >= 100);
    for c in &cases {
        let before = sb.tables_bytes();
        let before_view = view(&sb);
        let mut cmd = sb.genv_cmd(&[]);
        cmd.args(&c.args);
        if matches!(c.ctx, Ctx::Shell | Ctx::ShellInA | Ctx::ShellBadEid(_)) {
            cmd.args(["--shell", "bash", "--shell-pid", &shell_pid]);
        }
        match c.ctx {
            Ctx::InA | Ctx::ShellInA => {
                cmd.env("GENV_ENVIRONMENT_ID", &a.eid);
            }
            Ctx::BadEid(eid) | Ctx::ShellBadEid(eid) => {
                cmd.env("GENV_ENVIRONMENT_ID", OsStr::from_bytes(eid));
            }
            Ctx::NoEnv | Ctx::Shell => {}
        }
        let out = Sandbox::output(cmd);
        let what = format!("genv {:?} ({:?})", c.args, c.ctx);
        // Nothing a terminal would act on, and no byte lost (it would read as U+FFFD here).
        assert!(
            !out.stderr
                .chars()
                .any(|ch| (ch.is_control() && ch != '\n') || ch == '\u{fffd}'),
            "{what}: raw characters in {:?}",
            out.stderr
        );
        match c.check {
            Check::Line | Check::LineSameView => {
                let line = out.fails_with(&c.fragment);
                assert!(line.starts_with("genv: "), "{what}: {line:?}");
                // A shell function evals stdout: nothing may be there on failure.
                assert_eq!(out.stdout, "", "{what}");
            }
            Check::Usage => {
                assert_eq!(out.code, Some(2), "{what}: {out:?}");
                out.no_panic();
                let lines: Vec<&str> = out.stderr.lines().collect();
                assert_eq!(lines.len(), 1, "{what}: one line: {out:?}");
                assert!(lines[0].starts_with("genv: "), "{what}: {out:?}");
                assert!(lines[0].contains(&c.fragment), "{what}: {out:?}");
                assert_eq!(out.stdout, "", "{what}");
            }
            Check::Help => {
                assert_eq!(out.code, Some(2), "{what}: {out:?}");
                assert!(out.stderr.contains(&c.fragment), "{what}: {out:?}");
            }
        }
        if matches!(c.check, Check::Line | Check::Usage | Check::Help) {
            assert!(before == sb.tables_bytes(), "{what} changed the state");
        }
        assert_eq!(
            before_view,
            view(&sb),
            "{what} changed what envs/devices show"
        );
        assert!(!sb.work.join(".genv").exists(), "{what}");
    }
    // A and B are as they were made.
    let ja = sb.env_json(&a.eid).unwrap();
    assert_eq!(ja["attached"], serde_json::json!([0]));
    assert_eq!(
        ja["config"],
        serde_json::json!({"name": "a", "gpus": 1, "gpu_memory": "8gi"})
    );
    assert_eq!(
        sb.env_json(&b.eid).unwrap()["attached"],
        serde_json::json!([1])
    );
    assert_eq!(sb.eids().len(), 2);
}

#[test]
fn bad_saved_configuration() {
    let sb = Sandbox::new();
    let a = sb.env(&["--no-load"]);
    let genv_dir = sb.work.join(".genv");
    std::fs::create_dir_all(&genv_dir).unwrap();
    let holder = Holder::spawn();
    let pid = holder.pid().to_string();
    let mem_past = long_gpu_memory(GPU_MEMORY_MAX + 1);
    let wide_past = "é".repeat(NAME_MAX / 2 + 1);
    for (text, fragment) in [
        ("{not json".into(), "invalid saved configuration".into()),
        (
            "{\"gpus\": 99}".into(),
            "invalid saved configuration".into(),
        ),
        (
            "{\"gpus\": -1}".into(),
            "invalid saved configuration".into(),
        ),
        (
            "{\"gpu_memory\": \"4x\"}".into(),
            "invalid GPU memory '4x'".into(),
        ),
        ("{\"name\": \"\"}".into(), "invalid name".into()),
        ("[1, 2]".into(), "invalid saved configuration".into()),
        // The same limits and escaping as on the command line.
        (
            format!("{{\"gpu_memory\": \"{mem_past}\"}}"),
            format!("invalid GPU memory '{mem_past}': at most {GPU_MEMORY_MAX} bytes"),
        ),
        (
            format!("{{\"name\": \"{wide_past}\"}}"),
            format!("use 1 to {NAME_MAX} bytes"),
        ),
        (
            "{\"name\": \"a\\u001b[31mb\"}".into(),
            r"invalid name 'a\x1b[31mb'".into(),
        ),
        (
            "{\"gpu_memory\": \"4\\u001bg\"}".into(),
            r"invalid GPU memory '4\x1bg'".into(),
        ),
    ] as [(String, String); 10]
    {
        std::fs::write(genv_dir.join("config.json"), &text).unwrap();
        let before = sb.tables_bytes();
        let line = sb
            .genv_in(&a.eid, &["config", "--load"])
            .fails_with(&fragment);
        assert!(line.contains("config.json"), "{line}");
        assert!(!line.chars().any(char::is_control), "{line:?}");
        // Activation in the project refuses too and leaves no environment behind.
        let out = sb.genv(&["activate", "--shell", "bash", "--shell-pid", &pid]);
        out.fails_with(&fragment);
        assert_eq!(out.stdout, "");
        assert!(before == sb.tables_bytes(), "{text}: state changed");
        // --no-load gets past it.
        let ok = sb.genv(&[
            "activate",
            "--no-load",
            "--shell",
            "bash",
            "--shell-pid",
            &pid,
        ]);
        ok.ok();
        sb.genv_in(
            &pid,
            &["deactivate", "--shell", "bash", "--shell-pid", &pid],
        )
        .ok();
    }
    assert_eq!(sb.eids(), vec![a.eid.clone()]);
}

#[test]
fn failed_attach_in_activate_leaves_nothing() {
    let sb = Sandbox::new();
    let holder = Holder::spawn();
    let pid = holder.pid().to_string();
    // --gpus on the command line is all or nothing.
    let out = sb.genv(&activate_args(&pid, &["--gpus", "5"]));
    out.fails_with("No available devices");
    assert_eq!(sb.eids(), Vec::<String>::new());
    // A saved count is only tried: active and detached, status 3 (shells_lifetime.rs).
    std::fs::create_dir_all(sb.work.join(".genv")).unwrap();
    std::fs::write(sb.work.join(".genv/config.json"), "{\"gpus\": 5}").unwrap();
    let out = sb.genv(&["activate", "--shell", "bash", "--shell-pid", &pid]);
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(out.stderr.contains("No available devices"), "{out:?}");
    assert_eq!(sb.eids(), vec![pid.clone()]);
    sb.genv_in(
        &pid,
        &["deactivate", "--shell", "bash", "--shell-pid", &pid],
    )
    .ok();
    // With --no-attach the saved count is kept but nothing is attached.
    sb.genv(&[
        "activate",
        "--no-attach",
        "--shell",
        "bash",
        "--shell-pid",
        &pid,
    ])
    .ok();
    let j = sb.env_json(&pid).unwrap();
    assert_eq!(j["config"]["gpus"], 5);
    assert_eq!(j["attached"], serde_json::json!([]));
}

#[test]
fn stored_text_at_the_limit_is_kept_exactly() {
    let sb = Sandbox::new();
    let eid = "e".repeat(EID_MAX);
    // Two-byte characters up to the limit in bytes.
    let name = format!("{}n", "é".repeat(NAME_MAX / 2));
    assert_eq!(name.len(), NAME_MAX);
    let mem = long_gpu_memory(GPU_MEMORY_MAX);
    let a = sb.env(&["--id", &eid, "--name", &name, "--gpu-memory", &mem]);
    assert_eq!(a.eid, eid);
    let config = |sb: &Sandbox| sb.env_json(&eid).expect("environment")["config"].clone();
    assert_eq!(
        config(&sb),
        serde_json::json!({"name": name, "gpu_memory": mem})
    );
    // An unrelated change keeps the capacity as written (it used to be cut to 31 bytes and
    // re-parsed at the next `genv config`).
    sb.genv_in(&eid, &["config", "gpus", "0"]).ok();
    assert_eq!(sb.genv_in(&eid, &["config", "gpu-memory"]).ok().trim(), mem);
    let mem2 = format!("{}1gi", "0".repeat(GPU_MEMORY_MAX - 3));
    sb.genv_in(&eid, &["config", "gpu-memory", &mem2]).ok();
    sb.genv_in(&eid, &["config", "name", "x"]).ok();
    assert_eq!(
        config(&sb),
        serde_json::json!({"name": "x", "gpus": 0, "gpu_memory": mem2})
    );
    // A saved configuration at the limits loads as it is.
    std::fs::create_dir_all(sb.work.join(".genv")).unwrap();
    let saved = serde_json::json!({"name": name, "gpu_memory": mem});
    std::fs::write(sb.work.join(".genv/config.json"), saved.to_string()).unwrap();
    sb.genv_in(&eid, &["config", "--load"]).ok();
    assert_eq!(config(&sb), saved);
    // `exec` takes the same limits.
    let out = sb.genv(&[
        "exec",
        "--name",
        &name,
        "--gpu-memory",
        &mem,
        "--",
        "sh",
        "-c",
        "genv config --json",
    ]);
    let shown: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(shown["gpu_memory"], mem.as_str());
    assert_eq!(shown["name"], name.as_str());
}

#[test]
fn command_arguments_pass_through_byte_for_byte() {
    let sb = Sandbox::new();
    let a = sb.env(&["--gpus", "1"]);
    let odd = OsStr::from_bytes(b"\xff\xe9\x1b[0m");
    for (args, eid) in [
        (&["exec", "--", "printf", "%s"][..], None),
        (&["lock", "--", "printf", "%s"][..], None),
        (&["lock", "--", "printf", "%s"][..], Some(&a.eid)),
    ] {
        let mut cmd = sb.genv_cmd(args);
        cmd.arg(odd);
        if let Some(eid) = eid {
            cmd.env("GENV_ENVIRONMENT_ID", eid);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert_eq!(out.stdout, odd.as_bytes(), "{args:?}");
    }
}
