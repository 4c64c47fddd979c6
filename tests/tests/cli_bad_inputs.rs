//! A table of bad inputs: each is refused with its message on one stderr line, a non-zero exit,
//! no panic, and the state exactly as before.

#[path = "../support/genv.rs"]
mod support;

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
    args: Vec<String>,
    fragment: &'static str,
    check: Check,
}

fn case(ctx: Ctx, args: &[&str], fragment: &'static str) -> Case {
    let check = if args.first() == Some(&"exec") {
        Check::LineSameView
    } else {
        Check::Line
    };
    Case {
        ctx,
        args: args.iter().map(|s| s.to_string()).collect(),
        fragment,
        check,
    }
}

fn usage(ctx: Ctx, args: &[&str], fragment: &'static str) -> Case {
    Case {
        check: Check::Usage,
        ..case(ctx, args, fragment)
    }
}

fn cases() -> Vec<Case> {
    use Ctx::*;
    let long = "n".repeat(64);
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
            &["config", "gpu-memory", "4G"],
            "invalid GPU memory '4G'",
        ),
        case(
            InA,
            &["config", "gpu-memory", "1.5g"],
            "invalid GPU memory '1.5g'",
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
    assert!(cases.len() >= 30);
    for c in &cases {
        let before = sb.tables_bytes();
        let before_view = view(&sb);
        let mut args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        if matches!(c.ctx, Ctx::Shell | Ctx::ShellInA) {
            args.extend_from_slice(&["--shell", "bash", "--shell-pid", &shell_pid]);
        }
        let out = match c.ctx {
            Ctx::InA | Ctx::ShellInA => sb.genv_in(&a.eid, &args),
            Ctx::NoEnv | Ctx::Shell => sb.genv(&args),
        };
        let what = format!("genv {:?} ({:?})", c.args, c.ctx);
        match c.check {
            Check::Line | Check::LineSameView => {
                let line = out.fails_with(c.fragment);
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
                assert!(lines[0].contains(c.fragment), "{what}: {out:?}");
                assert_eq!(out.stdout, "", "{what}");
            }
            Check::Help => {
                assert_eq!(out.code, Some(2), "{what}: {out:?}");
                assert!(out.stderr.contains(c.fragment), "{what}: {out:?}");
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
    for (text, fragment) in [
        ("{not json", "invalid saved configuration"),
        ("{\"gpus\": 99}", "invalid saved configuration"),
        ("{\"gpus\": -1}", "invalid saved configuration"),
        ("{\"gpu_memory\": \"4x\"}", "invalid GPU memory '4x'"),
        ("{\"name\": \"\"}", "invalid name"),
        ("[1, 2]", "invalid saved configuration"),
    ] {
        std::fs::write(genv_dir.join("config.json"), text).unwrap();
        let before = sb.tables_bytes();
        let line = sb
            .genv_in(&a.eid, &["config", "--load"])
            .fails_with(fragment);
        assert!(line.contains("config.json"), "{line}");
        // Activation in the project refuses too and leaves no environment behind.
        let out = sb.genv(&["activate", "--shell", "bash", "--shell-pid", &pid]);
        out.fails_with(fragment);
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
    std::fs::create_dir_all(sb.work.join(".genv")).unwrap();
    std::fs::write(sb.work.join(".genv/config.json"), "{\"gpus\": 5}").unwrap();
    let out = sb.genv(&["activate", "--shell", "bash", "--shell-pid", &pid]);
    out.fails_with("No available devices");
    assert_eq!(sb.eids(), Vec::<String>::new());
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
