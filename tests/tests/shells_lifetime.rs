//! Whose an activation is and what it does around the edges, in real bash, zsh and fish: an
//! activation in a subshell, a command substitution or a pipeline belongs to that process and
//! ends with it; a saved device count that cannot be met leaves the shell active and detached;
//! `genv exec` loads `.genv/` like `activate`; `genv lock` says what it waits for; an inherited
//! `CUDA_VISIBLE_DEVICES` is explained. A shell that is not installed is skipped with a message.

use genv_tests::support;

use std::process::Stdio;
use std::time::{Duration, Instant};
use support::*;

fn installed(shell: &str) -> bool {
    if have(shell) {
        return true;
    }
    println!("SKIPPED: {shell} is not installed (apt-get install -y {shell})");
    false
}

#[track_caller]
fn want(out: &Out, shell: &str, pairs: &[(&str, &str)]) {
    for (k, v) in pairs {
        assert_eq!(
            kv(&out.stdout, k).as_deref(),
            Some(*v),
            "{shell}: {k}\nstdout:\n{}\nstderr:\n{}",
            out.stdout,
            out.stderr
        );
    }
}

/// `.genv/config.json` in the sandbox's working directory (what `genv config --save` writes).
fn save_project(sb: &Sandbox, json: &str) {
    let dir = sb.work.join(".genv");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), json).unwrap();
}

/// How a script of this shell names its own process (not `$$`, which is the main shell's).
fn self_pid(shell: &str) -> &'static str {
    match shell {
        "bash" => "$BASHPID",
        _ => "$(exec sh -c 'echo $PPID')",
    }
}

/// bash/zsh: activations in `( … )`, `$( … )` and a pipeline element are that process's: they
/// end with it, leave the main shell alone (it joins nothing later), and a `genv deactivate` in
/// a subshell of an activated shell leaves the shell's environment alone.
fn posix_subshells(shell: &str, prelude: &str) {
    let sb = Sandbox::new();
    let script = format!(
        r#"eval "$("$GENV" shell-init {shell})"
{prelude}
echo "main=$$"
(
  genv activate --gpus 1 --name sub; echo "sub_rc=$?"
  echo "sub_eid=$GENV_ENVIRONMENT_ID"
  echo "sub_pids=$(genv envs --json | tr -d ' \n')"
  echo "sub_self={self_pid}"
)
echo "after_sub=$(genv envs --json | tr -d ' \n')"
echo "free_after_sub=$(genv devices --json | tr -d ' \n' | grep -c '"eid"')"
x=$(genv activate --gpus 1 --name cs; echo "inner=$GENV_ENVIRONMENT_ID")
echo "cs_inner=${{x#inner=}}"
echo "after_cs=$(genv envs --json | tr -d ' \n')"
genv activate --gpus 1 --name pipe | cat
echo "after_pipe=$(genv envs --json | tr -d ' \n')"
echo "main_eid=${{GENV_ENVIRONMENT_ID-<unset>}}"
genv activate; echo "main_rc=$?"
echo "main_status=$(genv status --json)"
(genv deactivate; echo "subdeact_rc=$?"; echo "subdeact_eid=${{GENV_ENVIRONMENT_ID-<unset>}}")
echo "main_after_subdeact=$(genv status | head -n 1)"
echo "main_envs=$(genv envs --json | tr -d ' \n' | grep -o '"eid"' | wc -l)"
genv deactivate; echo "deact_rc=$?"
echo "envs_end=$(genv envs --json | tr -d ' \n')"
"#,
        self_pid = self_pid(shell)
    );
    let out = sb.shell(shell, &script);
    out.no_panic();
    assert!(
        !out.stdout.contains("LOADED"),
        "the fallback was not exercised"
    );
    let main = kv(&out.stdout, "main").unwrap();
    let sub = kv(&out.stdout, "sub_eid").unwrap();
    assert_eq!(sub, kv(&out.stdout, "sub_self").unwrap(), "{out:?}");
    assert_ne!(
        sub, main,
        "{shell}: the subshell's activation is the main shell's\n{out:?}"
    );
    // While the subshell ran, its environment was there, held by the subshell.
    assert!(
        kv(&out.stdout, "sub_pids")
            .unwrap()
            .contains(&format!("\"pids\":[{sub}]")),
        "{out:?}"
    );
    let cs = kv(&out.stdout, "cs_inner").unwrap();
    assert!(!cs.is_empty() && cs != main, "{shell}: {out:?}");
    want(
        &out,
        shell,
        &[
            ("sub_rc", "0"),
            ("after_sub", "[]"),
            ("free_after_sub", "0"),
            ("after_cs", "[]"),
            ("after_pipe", "[]"),
            ("main_eid", "<unset>"),
            ("main_rc", "0"),
            ("subdeact_rc", "0"),
            ("subdeact_eid", "<unset>"),
            (
                "main_after_subdeact",
                &format!("Environment is active ({main})"),
            ),
            ("main_envs", "1"),
            ("deact_rc", "0"),
            ("envs_end", "[]"),
        ],
    );
    // The main shell's own environment: fresh, joined nothing the subshells left.
    let st: serde_json::Value =
        serde_json::from_str(&kv(&out.stdout, "main_status").unwrap()).unwrap();
    assert_eq!(st["eid"], main.as_str(), "{out:?}");
    assert_eq!(st["attached"], serde_json::json!([]), "{out:?}");
    assert!(st["config"].get("name").is_none(), "{out:?}");
}

#[test]
fn bash_subshell_activation_is_the_subshells() {
    posix_subshells("bash", "");
}

#[test]
fn zsh_subshell_activation_is_the_subshells() {
    if installed("zsh") {
        posix_subshells("zsh", "");
    }
}

#[test]
fn zsh_subshell_activation_without_zsh_system() {
    // The fallback when zsh/system cannot be loaded: the shell process's own /proc/self/stat.
    if installed("zsh") {
        posix_subshells(
            "zsh",
            "module_path=(/nonexistent); zmodload zsh/system 2>/dev/null && echo LOADED",
        );
    }
}

/// fish runs command substitutions and functions in pipelines in its own process: an activation
/// there is the shell's (`$fish_pid`), and a child fish's is the child's.
#[test]
fn fish_activation_belongs_to_the_fish_process() {
    if !installed("fish") {
        return;
    }
    let sb = Sandbox::new();
    let script = r#"$GENV shell-init fish | source
echo "main=$fish_pid"
set -l x (genv activate --name cs; echo "inner=$GENV_ENVIRONMENT_ID")
echo "cs_eid=$GENV_ENVIRONMENT_ID"
genv deactivate; echo "cs_deact=$status"
genv activate --name pipe | cat
echo "pipe_eid=$GENV_ENVIRONMENT_ID"
genv deactivate; echo "pipe_deact=$status"
fish --no-config -c "$GENV shell-init fish | source; genv activate --gpus 1 --name child; echo child_eid=\$GENV_ENVIRONMENT_ID; echo child_pid=\$fish_pid"
echo "after_child="(genv envs --json | string join '' | string replace -a ' ' '')
"#;
    let out = sb.shell("fish", script);
    out.no_panic();
    let main = kv(&out.stdout, "main").unwrap();
    assert_eq!(
        kv(&out.stdout, "child_eid").unwrap(),
        kv(&out.stdout, "child_pid").unwrap()
    );
    want(
        &out,
        "fish",
        &[
            ("cs_eid", &main),
            ("cs_deact", "0"),
            ("pipe_eid", &main),
            ("pipe_deact", "0"),
            ("after_child", "[]"),
        ],
    );
}

/// A saved `gpus: 2` with one GPU free: the shell is active and detached (status 3), one line
/// says why and what to do; `--gpus 2` on the command line stays all or nothing.
fn failed_auto_attach(shell: &str) {
    let sb = Sandbox::new();
    let _busy = sb.env(&["--gpus", "3"]);
    save_project(&sb, r#"{"name": "proj", "gpus": 2}"#);
    let (rc, st) = match shell {
        "fish" => ("$status", r#""(genv status --json)""#),
        _ => ("$?", "$(genv status --json)"),
    };
    let eid = match shell {
        "fish" => "$GENV_ENVIRONMENT_ID",
        _ => "${GENV_ENVIRONMENT_ID-<unset>}",
    };
    let init = match shell {
        "fish" => "$GENV shell-init fish | source".to_string(),
        _ => format!(r#"eval "$("$GENV" shell-init {shell})""#),
    };
    let script = format!(
        r#"{init}
genv activate; echo "rc={rc}"
echo "eid={eid}"
echo "status={st}"
genv deactivate; echo "deact={rc}"
genv activate --gpus 2; echo "rc_explicit={rc}"
echo "eid_explicit={eid}"
genv activate --no-attach; echo "rc_noattach={rc}"
genv deactivate
"#
    );
    let out = sb.shell(shell, &script);
    out.no_panic();
    let empty = if shell == "fish" { "" } else { "<unset>" };
    want(
        &out,
        shell,
        &[
            ("rc", "3"),
            ("deact", "0"),
            ("rc_explicit", "1"),
            ("eid_explicit", empty),
            ("rc_noattach", "0"),
        ],
    );
    assert_ne!(kv(&out.stdout, "eid").unwrap(), empty, "{out:?}");
    let st: serde_json::Value = serde_json::from_str(&kv(&out.stdout, "status").unwrap()).unwrap();
    assert_eq!(st["attached"], serde_json::json!([]), "{out:?}");
    assert_eq!(st["config"]["name"], "proj", "{out:?}");
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("No available devices"))
        .collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert!(
        lines[0].contains("active and detached")
            && lines[0].contains("genv devices")
            && lines[0].contains("--no-attach"),
        "{out:?}"
    );
    assert!(!lines[1].contains("active and detached"), "{out:?}");
    // Only the 3-GPU holder is left.
    assert_eq!(sb.eids().len(), 1);
}

#[test]
fn bash_failed_auto_attach_stays_active_detached() {
    failed_auto_attach("bash");
}

#[test]
fn zsh_failed_auto_attach_stays_active_detached() {
    if installed("zsh") {
        failed_auto_attach("zsh");
    }
}

#[test]
fn fish_failed_auto_attach_stays_active_detached() {
    if installed("fish") {
        failed_auto_attach("fish");
    }
}

/// `genv exec` loads `.genv/` as `activate` does; `--no-load` skips it; options override it.
#[test]
fn exec_loads_the_project_configuration() {
    let sb = Sandbox::new();
    save_project(&sb, r#"{"name": "proj", "gpus": 2, "gpu_memory": "1g"}"#);
    let status = |args: &[&str]| -> serde_json::Value {
        let mut a = vec!["exec"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--", "genv", "status", "--json"]);
        serde_json::from_str(sb.genv(&a).ok()).unwrap()
    };
    let s = status(&[]);
    assert_eq!(s["config"]["name"], "proj", "{s}");
    assert_eq!(s["config"]["gpu_memory"], "1g", "{s}");
    assert_eq!(s["attached"], serde_json::json!([0, 1]), "{s}");
    let s = status(&["--no-load"]);
    assert!(s["config"].get("name").is_none(), "{s}");
    assert_eq!(s["attached"], serde_json::json!([]), "{s}");
    let s = status(&["--gpus", "1", "--name", "mine"]);
    assert_eq!(s["config"]["name"], "mine", "{s}");
    assert_eq!(s["config"]["gpu_memory"], "1g", "{s}");
    assert_eq!(s["attached"], serde_json::json!([0]), "{s}");
    // Devices named on the command line replace the saved count.
    let s = status(&["--index", "3"]);
    assert_eq!(s["attached"], serde_json::json!([3]), "{s}");
    // A saved count that cannot be met: the command does not run, nothing is left.
    let _busy = sb.env(&["--gpus", "3"]);
    let out = sb.genv(&["exec", "--", "echo", "ran"]);
    out.fails_with("No available devices");
    assert!(!out.stdout.contains("ran"));
    assert_eq!(sb.eids().len(), 1);
    // A broken saved file is one line, as for activate.
    save_project(&sb, r#"{"gpus": "two"}"#);
    sb.genv(&["exec", "--", "true"]).fails_with("config.json");
    sb.genv(&["exec", "--no-load", "--", "true"]).ok();
}

/// `genv lock` waiting for another environment says, once, for which GPU and whose environment;
/// without a wait it says nothing.
#[test]
fn lock_says_what_it_waits_for() {
    let sb = Sandbox::new();
    let shared = ["--gpus", "1", "--gpu-memory", "1gi", "--over-subscribe"];
    let mut a_args = shared.to_vec();
    a_args.extend_from_slice(&["--name", "alpha"]);
    let a = sb.env(&a_args);
    let b = sb.env(&shared);
    let quiet = sb.genv_in(&b.eid, &["lock", "--", "true"]);
    quiet.ok();
    assert_eq!(quiet.stderr, "", "no wait, no word");
    let mut holder = sb.genv_cmd(&["lock", "--", "sleep", "1.5"]);
    holder
        .env("GENV_ENVIRONMENT_ID", &a.eid)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut holder = holder.spawn().unwrap();
    // a holds the lock once its lock file is held.
    let uuid = sb.devices_json()[0]["uuid"].as_str().unwrap().to_string();
    let hex: String = a.eid.bytes().map(|b| format!("{b:02x}")).collect();
    let file = sb
        .tmpdir
        .join("locks")
        .join(format!("device-{uuid}.env-{hex}.lock"));
    assert!(wait_for(Duration::from_secs(10), || file.exists()));
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    let out = sb.genv_in(&b.eid, &["lock", "--", "true"]);
    out.ok();
    assert!(t0.elapsed() >= Duration::from_millis(300), "b did not wait");
    let user = genv_state::procfs::user_name(genv_state::procfs::current_uid());
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines,
        vec![format!(
            "genv: waiting for GPU 0 (held by environment '{}' 'alpha' of {user})",
            a.eid
        )],
        "{out:?}"
    );
    assert!(holder.wait().unwrap().success());
}

/// An inherited CUDA_VISIBLE_DEVICES: one line at `activate` and `exec` saying which of the
/// machine's GPUs CUDA will see inside (it chooses among the environment's GPUs).
#[test]
fn inherited_cuda_visible_devices_is_explained() {
    let sb = Sandbox::new();
    let script = r#"eval "$("$GENV" shell-init bash)"
export CUDA_VISIBLE_DEVICES=1
genv activate --gpus 2 --name two 2>act.err; echo "rc=$?"
genv deactivate
CUDA_VISIBLE_DEVICES=3 genv activate --gpus 2 2>none.err; genv deactivate
genv activate 2>detached.err; genv deactivate
unset CUDA_VISIBLE_DEVICES
genv activate --gpus 1 2>unset.err; genv deactivate
"#;
    let out = sb.shell("bash", script);
    out.no_panic();
    want(&out, "bash", &[("rc", "0")]);
    let read = |f: &str| std::fs::read_to_string(sb.work.join(f)).unwrap();
    let act = read("act.err");
    assert_eq!(act.lines().count(), 1, "{act}");
    assert!(
        act.starts_with("genv: CUDA_VISIBLE_DEVICES='1' is inherited: inside the environment it chooses among the environment's GPUs")
            && act.contains("CUDA will see the machine's GPU(s) 1 of the 2 attached (0,1)"),
        "{act}"
    );
    let none = read("none.err");
    assert!(
        none.contains("CUDA_VISIBLE_DEVICES='3'")
            && none.contains(
                "names none of the 2 attached (GPUs 0,1 of the machine): CUDA will see no device"
            ),
        "{none}"
    );
    assert!(read("detached.err").contains("no GPU attached yet"));
    assert_eq!(read("unset.err"), "");

    let mut c = sb.genv_cmd(&["exec", "--gpus", "2", "--", "true"]);
    c.env("CUDA_VISIBLE_DEVICES", "GPU-nope,0");
    let out = Sandbox::output(c);
    out.ok();
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("CUDA will see no device"), "{out:?}");
    let out = sb.genv(&["exec", "--gpus", "2", "--", "true"]);
    assert_eq!(out.stderr, "");
}
