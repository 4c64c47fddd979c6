//! What users and scripts of the original genv (1.4.3) rely on, through the `genv` binary and
//! real bash, zsh and fish: `GENV_GPUS` & co. in activated shells, `GENV_PREACTIVATE`, the
//! `envs`/`devices` tables as CSV (parsed as scripts parse them) and their `ps`/`query` forms,
//! `attach --count`/`-o`, `config`/`home -q`, the original's `.genv/` files, memory spellings,
//! exit statuses of `exec`, help on stdout and tab completions.

use genv_tests::support;

use serde_json::json;
use std::process::Command;
use support::*;

fn installed(shell: &str) -> bool {
    if have(shell) {
        return true;
    }
    println!("SKIPPED: {shell} is not installed (apt-get install -y {shell})");
    false
}

#[track_caller]
fn val(out: &Out, key: &str) -> String {
    kv(&out.stdout, key).unwrap_or_else(|| panic!("no {key}= in {out:#?}"))
}

/// The shell's GENV_* variables through an activation, a reconfiguration and deactivation.
fn variables_story(shell: &str) {
    let sb = Sandbox::new();
    let (init, show) = if shell == "fish" {
        (
            "\"$GENV\" shell-init fish | source",
            r#"function show; for v in GENV_GPUS GENV_ENVIRONMENT_NAME GENV_GPU_MEMORY; if set -q $v; echo "$argv[1]_$v=$$v"; else; echo "$argv[1]_$v=<unset>"; end; end; end"#,
        )
    } else {
        (
            &*Box::leak(format!("eval \"$(\"$GENV\" shell-init {shell})\"").into_boxed_str()),
            r#"show() { for v in GENV_GPUS GENV_ENVIRONMENT_NAME GENV_GPU_MEMORY; do eval "echo \"$1_$v=\${$v-<unset>}\""; done; }"#,
        )
    };
    let script = format!(
        r#"{init}
{show}
genv activate --gpus 1 --name 'my env' --gpu-memory 4GiB
show act
echo "child=$(sh -c 'echo $GENV_GPUS')"
genv config gpus 2
show cfg
genv config gpu-memory --clear
show clr
genv attach --count 3
show cnt
genv config name
show read
genv deactivate
show deact
"#
    );
    let out = sb.shell(shell, &script);
    out.no_panic();
    let want = [
        ("act_GENV_GPUS", "1"),
        ("act_GENV_ENVIRONMENT_NAME", "my env"),
        ("act_GENV_GPU_MEMORY", "4GiB"),
        ("child", "1"),
        ("cfg_GENV_GPUS", "2"),
        ("cfg_GENV_GPU_MEMORY", "4GiB"),
        ("clr_GENV_GPUS", "2"),
        ("clr_GENV_GPU_MEMORY", "<unset>"),
        ("cnt_GENV_GPUS", "3"),
        ("read_GENV_ENVIRONMENT_NAME", "my env"),
        ("deact_GENV_GPUS", "<unset>"),
        ("deact_GENV_ENVIRONMENT_NAME", "<unset>"),
        ("deact_GENV_GPU_MEMORY", "<unset>"),
    ];
    for (k, v) in want {
        assert_eq!(val(&out, k), v, "{shell}: {k}\n{out:#?}");
    }
    assert_eq!(sb.eids(), Vec::<String>::new(), "{shell}");
}

#[test]
fn bash_exports_the_original_variables() {
    variables_story("bash");
}

#[test]
fn zsh_exports_the_original_variables() {
    if installed("zsh") {
        variables_story("zsh");
    }
}

#[test]
fn fish_exports_the_original_variables() {
    if installed("fish") {
        variables_story("fish");
    }
}

/// `GENV_PREACTIVATE=1` (with `_GPUS`, `_ENVIRONMENT_NAME`, `_PROMPT=0`) activates the shell
/// that evals the init code, as the original's shell init did; not a shell already inside an
/// environment.
fn preactivate(shell: &str) {
    let mut sb = Sandbox::new();
    sb.set("GENV_PREACTIVATE", "1");
    sb.set("GENV_PREACTIVATE_GPUS", "1");
    sb.set("GENV_PREACTIVATE_ENVIRONMENT_NAME", "pre");
    sb.set("GENV_PREACTIVATE_PROMPT", "0");
    let init = if shell == "fish" {
        "\"$GENV\" shell-init fish | source".to_string()
    } else {
        format!("eval \"$(\"$GENV\" shell-init {shell})\"")
    };
    let script = format!(
        "{init}\necho \"eid=$GENV_ENVIRONMENT_ID\"\necho \"gpus=$GENV_GPUS\"\necho \"attached=$(genv status | sed -n 2p)\"\necho \"name=$(genv config name)\"\n{init}\necho \"envs=$(genv envs query --query eid | wc -l)\"\n"
    );
    let out = sb.shell(shell, &script);
    out.no_panic();
    assert!(!val(&out, "eid").is_empty(), "{shell}: {out:#?}");
    assert_eq!(val(&out, "gpus"), "1", "{shell}");
    assert_eq!(val(&out, "attached"), "Attached to GPUs at indices 0");
    assert_eq!(val(&out, "name"), "pre");
    // Evaluating the init code again inside the environment does not activate anew.
    assert_eq!(val(&out, "envs").trim(), "1", "{shell}: {out:#?}");
    assert!(!out.stderr.contains("Already"), "{shell}: {}", out.stderr);
}

#[test]
fn bash_preactivate() {
    preactivate("bash");
}

#[test]
fn zsh_preactivate() {
    if installed("zsh") {
        preactivate("zsh");
    }
}

#[test]
fn fish_preactivate() {
    if installed("fish") {
        preactivate("fish");
    }
}

/// `--help` through the shell function (which evals what `activate` prints) reaches stdout.
#[test]
fn help_through_the_shell_function_is_on_stdout() {
    let sb = Sandbox::new();
    for shell in ["bash", "zsh", "fish"] {
        if !installed(shell) {
            continue;
        }
        let init = if shell == "fish" {
            "\"$GENV\" shell-init fish | source".to_string()
        } else {
            format!("eval \"$(\"$GENV\" shell-init {shell})\"")
        };
        let out = sb.shell(
            shell,
            &format!("{init}\ngenv activate --help | grep -c 'Usage: genv activate'"),
        );
        assert!(out.stdout.starts_with("1\n"), "{shell}: {out:#?}");
        assert!(!out.stderr.contains("Usage"), "{shell}: {out:#?}");
        assert_eq!(sb.eids(), Vec::<String>::new());
    }
    // Without the shell function, every --help is on stdout too, --json described.
    for args in [
        &["envs", "--help"][..],
        &["devices", "--help"],
        &["config", "--help"],
        &["status", "--help"],
    ] {
        let out = sb.genv(args);
        assert!(out.ok().contains("--json"), "{args:?}: {out:#?}");
        assert!(out.stdout.contains("Print JSON"), "{args:?}: {out:#?}");
        assert_eq!(out.stderr, "");
    }
}

/// Tab completion from clap's definitions, installed by `shell-init`, in the real shells.
#[test]
fn completions_in_real_shells() {
    let sb = Sandbox::new();
    let bash = sb.shell(
        "bash",
        r#"eval "$("$GENV" shell-init bash)"
complete -p genv
COMP_WORDS=(genv envs --for); COMP_CWORD=2; COMP_LINE='genv envs --for'; COMP_POINT=${#COMP_LINE}
_genv genv --for envs; echo "reply=${COMPREPLY[*]}"
COMP_WORDS=(genv att); COMP_CWORD=1; COMP_LINE='genv att'; COMP_POINT=${#COMP_LINE}
_genv genv att genv; echo "sub=${COMPREPLY[*]}"
"#,
    );
    assert!(bash.stdout.contains("-F _genv genv"), "{bash:#?}");
    assert_eq!(val(&bash, "reply"), "--format");
    assert_eq!(val(&bash, "sub"), "attach");
    // Left out on request.
    let plain = sb.genv(&["shell-init", "bash", "--no-completions"]);
    assert!(!plain.ok().contains("complete -F"), "{plain:#?}");
    if installed("fish") {
        let fish = sb.shell(
            "fish",
            "\"$GENV\" shell-init fish | source\ncomplete -C 'genv envs --for'\ncomplete -C 'genv envs --format '\ncomplete -C 'genv att'",
        );
        assert_eq!(fish.stderr, "", "{fish:#?}");
        assert!(fish.stdout.contains("--format\t"), "{fish:#?}");
        assert!(fish.stdout.contains("csv\t"), "{fish:#?}");
        assert!(fish.stdout.contains("tui\t"), "{fish:#?}");
        assert!(fish.stdout.contains("attach\t"), "{fish:#?}");
    }
    if installed("zsh") {
        // After the user's compinit, the completion function is registered for genv.
        let zsh = sb.shell(
            "zsh",
            "autoload -Uz compinit && compinit -u -d \"$HOME/.zcompdump\"\neval \"$(\"$GENV\" shell-init zsh)\"\necho \"comp=${_comps[genv]}\"\nwhence -w _genv",
        );
        assert_eq!(val(&zsh, "comp"), "_genv", "{zsh:#?}");
        assert!(zsh.stdout.contains("_genv: function"), "{zsh:#?}");
        assert_eq!(zsh.stderr, "", "{zsh:#?}");
        // Without compinit nothing breaks.
        let bare = sb.shell("zsh", "eval \"$(\"$GENV\" shell-init zsh)\"; echo rc=$?");
        assert_eq!(val(&bare, "rc"), "0", "{bare:#?}");
        assert_eq!(bare.stderr, "", "{bare:#?}");
    }
}

/// CSV read back with Python's csv module, as the original's users' scripts read it.
fn python_csv(text: &str) -> Vec<Vec<String>> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import csv,json,sys; print(json.dumps(list(csv.reader(sys.stdin))))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(text.as_bytes())?;
            c.wait_with_output()
        })
        .expect("python3");
    serde_json::from_slice(&out.stdout).expect("csv rows")
}

fn is_timestamp(s: &str) -> bool {
    // dd/mm/yyyy hh:mm:ss
    let b = s.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            2 | 5 => *c == b'/',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn envs_and_devices_as_csv_and_queries() {
    let sb = Sandbox::new();
    let a = sb.env(&[
        "--name",
        "a,\"quoted\"",
        "--gpus",
        "1",
        "--gpu-memory",
        "4g",
    ]);
    let b = sb.env(&["--name", "b"]);
    let rows = python_csv(sb.genv(&["envs", "--format", "csv"]).ok());
    assert_eq!(rows[0], ["ID", "USER", "NAME", "CREATED", "PID(S)"]);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1][0], a.eid);
    assert_eq!(rows[1][2], "a,\"quoted\"");
    assert_eq!(rows[1][3], "just now");
    assert_eq!(rows[1][4], a.eid);
    assert_eq!(rows[2][2], "b");
    // ps is the same table; --no-header and --timestamp as the original.
    assert_eq!(
        sb.genv(&["envs", "ps", "--format", "csv"]).ok(),
        sb.genv(&["envs", "--format", "csv"]).ok()
    );
    let rows = python_csv(
        sb.genv(&[
            "envs",
            "ps",
            "--format",
            "csv",
            "--no-header",
            "--timestamp",
        ])
        .ok(),
    );
    assert_eq!(rows.len(), 2);
    assert!(is_timestamp(&rows[0][3]), "{rows:?}");
    let tui = sb.genv(&["envs", "--no-header"]);
    assert!(tui.ok().starts_with(&a.eid), "{tui:#?}");
    // query: fields by comma or as several values, only one environment with --eid.
    assert_eq!(
        sb.genv(&[
            "envs",
            "query",
            "--query",
            "eid,config.name,config.gpus,config.gpu_memory"
        ])
        .ok(),
        format!("{},\"a,\"\"quoted\"\"\",1,4g\n{},b,,\n", a.eid, b.eid)
    );
    let user = sb.env_json(&b.eid).unwrap()["username"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        sb.genv(&[
            "envs",
            "query",
            "--eid",
            &b.eid,
            "--queries",
            "eid",
            "pids",
            "username"
        ])
        .ok(),
        format!("{0},{0},{user}\n", b.eid)
    );
    let creation = sb.genv(&["envs", "query", "--query", "creation", "--eid", &a.eid]);
    assert!(is_timestamp(creation.ok().trim_end()), "{creation:#?}");
    sb.genv(&["envs", "query", "--query", "eid,bogus"])
        .fails_with("invalid value 'bogus'");
    sb.genv(&["envs", "query"]).fails_with("--query");

    let rows = python_csv(sb.genv(&["devices", "--format", "csv"]).ok());
    assert_eq!(rows[0], ["ID", "ENV ID", "ENV NAME", "ATTACHED"]);
    assert_eq!(rows[1], ["0", a.eid.as_str(), "a,\"quoted\"", "just now"]);
    assert_eq!(rows[2], ["1", "", "", ""]);
    assert_eq!(rows.len(), 5);
    let q = sb.genv(&[
        "devices",
        "query",
        "--query",
        "index,eids,total_memory,attachments",
    ]);
    let lines: Vec<&str> = q.ok().lines().collect();
    assert_eq!(lines.len(), 4);
    let first: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(&first[..2], ["0", a.eid.as_str()]);
    assert!(first[2].ends_with("mi"), "{first:?}");
    let (eid, rest) = first[3].split_once('+').unwrap();
    let (cap, time) = rest.split_once('+').unwrap();
    assert_eq!((eid, cap), (a.eid.as_str(), "4g"));
    assert!(is_timestamp(&time.replace('_', " ")), "{time}");
    assert!(lines[1].starts_with("1,,"), "{lines:?}");
    assert_eq!(
        sb.genv(&["devices", "ps", "--no-header"]).ok(),
        sb.genv(&["devices", "--no-header"]).ok()
    );
}

/// A 52-character id (Ray's) widens its column: every column starts where its header does.
#[test]
fn long_ids_keep_the_columns_aligned() {
    let sb = Sandbox::new();
    let long = "raylet-0123456789abcdef0123456789abcdef0123456789abc";
    assert_eq!(long.len(), 52);
    let _a = sb.env(&["--id", long, "--name", "nm-long", "--gpus", "1"]);
    let _b = sb.env(&["--name", "nm-short", "--gpus", "1"]);
    for (args, col) in [(&["envs"][..], "NAME"), (&["devices"], "ENV NAME")] {
        let out = sb.genv(args);
        let lines: Vec<&str> = out.ok().lines().collect();
        let at = lines[0].find(col).unwrap();
        let mut seen = 0;
        for l in &lines[1..] {
            if let Some(i) = l.find("nm-") {
                assert_eq!(i, at, "{args:?}\n{}", out.stdout);
                seen += 1;
            }
        }
        assert_eq!(seen, 2, "{}", out.stdout);
    }
}

#[test]
fn attach_count_and_short_over_subscribe() {
    let sb = Sandbox::new();
    let env = sb.env(&[]);
    let e = env.eid.as_str();
    sb.genv_in(e, &["attach", "--count", "2"]).ok();
    let j = sb.env_json(e).unwrap();
    assert_eq!(j["attached"], json!([0, 1]));
    assert_eq!(j["config"]["gpus"], 2);
    // More than the machine has: one line, count and devices as they were.
    sb.genv_in(e, &["attach", "--count", "9"])
        .fails_with("No available devices");
    let j = sb.env_json(e).unwrap();
    assert_eq!(j["config"]["gpus"], 2);
    sb.genv_in(e, &["attach", "--count", "x"])
        .fails_with("invalid device count 'x'");
    sb.genv_in(e, &["attach", "--count", "1", "--index", "0"])
        .fails_with("cannot be used with");
    sb.genv_in(e, &["attach", "--count", "1"]).ok();
    assert_eq!(sb.env_json(e).unwrap()["attached"], json!([0]));

    // -o is --over-subscribe: two environments share the single device.
    let sb = Sandbox::with_gpus(1);
    let a = sb.env(&["--gpu-memory", "1gi"]);
    let b = sb.env(&["--gpu-memory", "1gi"]);
    sb.genv_in(&a.eid, &["attach", "-o", "--count", "1"]).ok();
    sb.genv_in(&b.eid, &["attach", "--count", "1"])
        .fails_with("No available devices");
    sb.genv_in(&b.eid, &["attach", "-o", "--count", "1"]).ok();
    assert_eq!(sb.attachments(), [(0, vec![a.eid.clone(), b.eid.clone()])]);
}

#[test]
fn config_and_home_quiet_and_the_original_field_lines() {
    let sb = Sandbox::new();
    let env = sb.env(&["--name", "n", "--gpus", "1", "--gpu-memory", "4g"]);
    let e = env.eid.as_str();
    assert_eq!(
        sb.genv_in(e, &["config"]).ok(),
        "gpu-memory: 4g\ngpus: 1\nname: n\n"
    );
    assert_eq!(sb.genv_in(e, &["config", "-q"]).ok(), "");
    assert_eq!(sb.genv_in(e, &["config", "gpus", "--quiet"]).ok(), "");
    // A field and -q: set, nothing printed.
    assert_eq!(sb.genv_in(e, &["config", "gpus", "2", "-q"]).ok(), "");
    assert_eq!(sb.genv_in(e, &["config", "gpus"]).ok(), "2\n");
    // home -q: no message, the status says there is none.
    let q = sb.genv(&["home", "-q"]);
    assert_eq!(
        (q.code, q.stdout.as_str(), q.stderr.as_str()),
        (Some(1), "", "")
    );
    std::fs::create_dir(sb.work.join(".genv")).unwrap();
    assert_eq!(
        sb.genv(&["home", "--quiet"]).ok(),
        format!("{}\n", sb.work.join(".genv").display())
    );
}

#[test]
fn genv_home_in_the_original_form() {
    let sb = Sandbox::new();
    let home = sb.work.join(".genv");
    std::fs::create_dir(&home).unwrap();
    // As the original genv's `config --save` writes them: the value, no newline.
    std::fs::write(home.join("name"), "orig-proj").unwrap();
    std::fs::write(home.join("gpus"), "2").unwrap();
    std::fs::write(home.join("gpu-memory"), "4g").unwrap();
    let env = sb.env(&[]);
    let j = sb.env_json(&env.eid).unwrap();
    assert_eq!(
        j["config"],
        json!({"name": "orig-proj", "gpus": 2, "gpu_memory": "4g"})
    );
    assert_eq!(j["attached"], json!([0, 1]));
    // exec loads it too, and tells the command.
    assert_eq!(
        sb.genv(&[
            "exec",
            "--",
            "sh",
            "-c",
            "echo $GENV_GPUS,$GENV_ENVIRONMENT_NAME"
        ])
        .ok(),
        "2,orig-proj\n"
    );
    // Saving writes the same form (and only it).
    sb.genv_in(&env.eid, &["config", "gpus", "1", "--save"])
        .ok();
    assert_eq!(std::fs::read_to_string(home.join("gpus")).unwrap(), "1\n");
    sb.genv_in(&env.eid, &["config", "name", "--clear", "--save"])
        .ok();
    assert!(!home.join("name").exists());
    // An older genv's config.json beside the original's files: refused, nothing activated.
    std::fs::write(home.join("config.json"), "{\"gpus\": 3}").unwrap();
    let before = sb.eids();
    let line = sb
        .activate_for(std::process::id(), &[])
        .fails_with("holds both");
    assert!(
        line.contains("config.json") && line.contains("gpus"),
        "{line}"
    );
    assert_eq!(sb.eids(), before);
    // config.json alone is read, and a save turns it into the per-field files.
    for f in ["gpus", "gpu-memory"] {
        std::fs::remove_file(home.join(f)).unwrap();
    }
    let old = sb.env(&["--no-attach"]);
    assert_eq!(sb.env_json(&old.eid).unwrap()["config"], json!({"gpus": 3}));
    sb.genv_in(&old.eid, &["config", "--save"]).ok();
    assert!(!home.join("config.json").exists());
    assert_eq!(std::fs::read_to_string(home.join("gpus")).unwrap(), "3\n");
    // A bad value in a field file is one line naming the file.
    std::fs::write(home.join("gpus"), "lots\n").unwrap();
    sb.activate_for(std::process::id(), &[])
        .fails_with("invalid saved configuration");
}

#[test]
fn memory_spellings() {
    let sb = Sandbox::new();
    let env = sb.env(&[]);
    for v in ["4G", "4GiB", "1.5g", "4gib", "512MiB", "2T"] {
        sb.genv_in(&env.eid, &["config", "gpu-memory", v]).ok();
        assert_eq!(
            sb.genv_in(&env.eid, &["config", "gpu-memory"]).ok(),
            format!("{v}\n")
        );
    }
    for v in ["4GB", "1.5", "1.5b", "4 g"] {
        let line = sb
            .genv_in(&env.eid, &["config", "gpu-memory", v])
            .fails_with("invalid GPU memory");
        assert!(
            line.contains("4GiB") && line.contains("powers of 1024"),
            "{line}"
        );
    }
    // The bytes are the unit's: under the shim, 1.5g is a device of 1500000000 bytes.
    let cuda = genv_tests::shim::shim_cuda();
    let out = sb.genv(&[
        "exec",
        "--gpus",
        "1",
        "--gpu-memory",
        "1.5g",
        "--",
        cuda.to_str().unwrap(),
        "link",
        "view",
    ]);
    let dev = genv_tests::shim::field(out.ok(), "dev").unwrap_or_default();
    assert_eq!(dev.last(), Some(&"1500000000"), "{out:#?}");
}

#[test]
fn exec_exit_statuses_of_a_command_it_cannot_run() {
    let sb = Sandbox::new();
    let out = sb.genv(&["exec", "--", "genv-no-such-command"]);
    assert_eq!(out.code, Some(127), "{out:#?}");
    out.fails_with("cannot run 'genv-no-such-command'");
    let file = sb.work.join("not-executable");
    std::fs::write(&file, "#!/bin/sh\n").unwrap();
    let out = sb.genv(&["exec", "--", file.to_str().unwrap()]);
    assert_eq!(out.code, Some(126), "{out:#?}");
    out.fails_with("Permission denied");
    let out = sb.genv(&["exec", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.code, Some(7));
    assert_eq!(sb.eids(), Vec::<String>::new());
}

/// What `make install` prints (scripts/install-hint.sh): the PATH line when its bin/ is not on
/// PATH, and rc lines that find `genv` on PATH, which work once pasted (tried in bash).
#[test]
fn install_says_what_to_add_to_path_and_the_rc_file() {
    let sb = Sandbox::new();
    let prefix = sb.root.join("prefix");
    std::fs::create_dir_all(prefix.join("bin")).unwrap();
    std::os::unix::fs::symlink(genv_bin(), prefix.join("bin/genv")).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-hint.sh");
    let run = |path: &str| {
        let mut c = sb.command(&script);
        c.arg(&prefix).env("PATH", path);
        Sandbox::output(c)
    };
    let off = run("/usr/bin:/bin");
    let text = off.ok();
    let bin = prefix.join("bin").canonicalize().unwrap();
    let export = format!("export PATH=\"{}:$PATH\"", bin.display());
    assert!(text.contains(&export), "{text}");
    assert!(text.contains("eval \"$(genv shell-init bash)\""), "{text}");
    assert!(text.contains("genv shell-init fish | source"), "{text}");
    let on = run(&format!("{}:/usr/bin:/bin", bin.display()));
    assert!(!on.ok().contains("export PATH"), "{on:#?}");
    // The two lines, pasted into a bash rc, give a working `genv` function.
    let rc = format!(
        "{export}\neval \"$(genv shell-init bash)\"\ngenv activate --name pasted && echo \"eid=$GENV_ENVIRONMENT_ID\"\ntype -t genv"
    );
    let mut c = sb.command("bash");
    c.args(["--norc", "--noprofile", "-c", &rc])
        .env("PATH", "/usr/bin:/bin");
    let out = Sandbox::output(c);
    assert!(out.ok().ends_with("function\n"), "{out:#?}");
    assert!(!val(&out, "eid").is_empty());
}
