//! The shell integration in real bash, zsh and fish, run as interactive shells without rc files:
//! `activate` exports LD_PRELOAD (shim first), GENV_ENVIRONMENT_ID and prefixes the prompt;
//! `deactivate` restores exactly what was there; the wrapper returns genv's exit status; a failed
//! activation leaves nothing behind. A shell that is not installed is skipped with a message.

use genv_tests::support;

use support::*;

fn shim() -> String {
    shim_lib().canonicalize().unwrap().display().to_string()
}

fn installed(shell: &str) -> bool {
    if have(shell) {
        return true;
    }
    println!("SKIPPED: {shell} is not installed (apt-get install -y {shell})");
    false
}

/// Runs `script` and returns its stdout, failing with everything it printed if `key=value`
/// lines disagree with `want`.
#[track_caller]
fn check(sb: &Sandbox, shell: &str, script: &str, want: &[(&str, String)]) -> Out {
    let out = sb.shell(shell, script);
    out.no_panic();
    for (k, v) in want {
        assert_eq!(
            kv(&out.stdout, k).as_deref(),
            Some(v.as_str()),
            "{shell}: {k}\nstdout:\n{}\nstderr:\n{}",
            out.stdout,
            out.stderr
        );
    }
    out
}

/// The story of one activation in bash or zsh: variables and prompt before, during and after.
fn posix_activate_deactivate(shell: &str) {
    let sb = Sandbox::new();
    let script = format!(
        r#"eval "$("$GENV" shell-init {shell})"
PS1='orig> '
unset LD_PRELOAD
genv activate --name foo; echo "rc_act=$?"
echo "ld=${{LD_PRELOAD-<unset>}}"
echo "eid=${{GENV_ENVIRONMENT_ID-<unset>}}"
echo "shellpid=$$"
echo "ps1=$PS1"
echo "status=$(genv status | head -n 1)"
echo "child=$(sh -c 'genv status --json')"
genv activate; echo "rc_nested=$?"
echo "eid_nested=$GENV_ENVIRONMENT_ID"
genv attach --index 9; echo "rc_attach9=$?"
genv attach; echo "rc_attach_unconfigured=$?"
genv config gpus 2 && genv attach; echo "rc_attach=$?"
echo "attached=$(genv status | sed -n 2p)"
genv deactivate; echo "rc_deact=$?"
echo "ld_after=${{LD_PRELOAD-<unset>}}"
echo "eid_after=${{GENV_ENVIRONMENT_ID-<unset>}}"
echo "ps1_after=$PS1"
echo "saved=$(set | grep -c '^GENV__')"
echo "envs=$(genv envs --json | tr -d ' \n')"
genv deactivate; echo "rc_deact_again=$?"
"#
    );
    let out = check(&sb, shell, &script, &[("rc_act", "0".into())]);
    let pid = kv(&out.stdout, "shellpid").unwrap();
    check(
        &sb,
        shell,
        &script,
        &[
            ("rc_act", "0".into()),
            ("ld", shim()),
            ("ps1", "(genv:foo) orig> ".into()),
            ("rc_nested", "1".into()),
            ("rc_attach9", "1".into()),
            ("rc_attach_unconfigured", "1".into()),
            ("rc_attach", "0".into()),
            ("attached", "Attached to GPUs at indices 0,1".into()),
            ("rc_deact", "0".into()),
            ("ld_after", "<unset>".into()),
            ("eid_after", "<unset>".into()),
            ("ps1_after", "orig> ".into()),
            ("saved", "0".into()),
            ("envs", "[]".into()),
            ("rc_deact_again", "1".into()),
        ],
    );
    // The environment is the shell's, named after its pid, and child processes are in it.
    assert_eq!(kv(&out.stdout, "eid").unwrap(), pid);
    assert_eq!(
        kv(&out.stdout, "status").unwrap(),
        format!("Environment is active ({pid})")
    );
    let child: serde_json::Value =
        serde_json::from_str(&kv(&out.stdout, "child").unwrap()).unwrap();
    assert_eq!(child["eid"], pid.as_str());
    assert_eq!(kv(&out.stdout, "eid_nested").unwrap(), pid);
    assert!(
        out.stderr
            .contains("genv: Already running in an active environment"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("genv: invalid device index 9"),
        "{}",
        out.stderr
    );
    assert!(out
        .stderr
        .contains("genv: Not running in an active environment"));
}

/// LD_PRELOAD and PS1 set before (to a value, or empty) come back exactly.
fn posix_restores_previous_values(shell: &str) {
    let sb = Sandbox::new();
    let libc = libc_path();
    let script = format!(
        r#"eval "$("$GENV" shell-init {shell})"
export LD_PRELOAD='{libc}'
PS1='$ '
genv activate; echo "rc=$?"
echo "ld=$LD_PRELOAD"
echo "ps1=$PS1"
genv deactivate
echo "ld_after=$LD_PRELOAD"
echo "ps1_after=$PS1"
genv activate --no-prompt --name quiet
echo "ps1_noprompt=$PS1"
genv deactivate
echo "ps1_noprompt_after=$PS1"
export LD_PRELOAD=
genv activate
echo "ld_empty=$LD_PRELOAD"
genv deactivate
echo "ld_empty_after=${{LD_PRELOAD-<unset>}}|${{LD_PRELOAD+set}}"
"#
    );
    check(
        &sb,
        shell,
        &script,
        &[
            ("rc", "0".into()),
            ("ld", format!("{}:{libc}", shim())),
            ("ps1", "(genv) $ ".into()),
            ("ld_after", libc.clone()),
            ("ps1_after", "$ ".into()),
            ("ps1_noprompt", "$ ".into()),
            ("ps1_noprompt_after", "$ ".into()),
            ("ld_empty", shim()),
            ("ld_empty_after", "|set".into()),
        ],
    );
}

/// Failed activations return genv's status and change nothing in the shell or the state.
fn posix_failed_activation(shell: &str) {
    let sb = Sandbox::new();
    let script = format!(
        r#"eval "$("$GENV" shell-init {shell})"
PS1='p> '
unset LD_PRELOAD
genv activate --gpus x; echo "rc_bad=$?"
genv activate --gpus 5; echo "rc_five=$?"
genv activate --gpu-memory 4x --name n; echo "rc_mem=$?"
echo "ld=${{LD_PRELOAD-<unset>}}"
echo "eid=${{GENV_ENVIRONMENT_ID-<unset>}}"
echo "ps1=$PS1"
echo "envs=$(genv envs --json | tr -d ' \n')"
genv deactivate; echo "rc_deact=$?"
genv activate --gpus 4; echo "rc_four=$?"
echo "attached=$(genv status | sed -n 2p)"
genv deactivate; echo "rc_deact4=$?"
genv activate --help >/dev/null 2>&1; echo "rc_help=$?"
echo "eid_help=${{GENV_ENVIRONMENT_ID-<unset>}}"
"#
    );
    let out = check(
        &sb,
        shell,
        &script,
        &[
            ("rc_bad", "1".into()),
            ("rc_five", "1".into()),
            ("rc_mem", "1".into()),
            ("ld", "<unset>".into()),
            ("eid", "<unset>".into()),
            ("ps1", "p> ".into()),
            ("envs", "[]".into()),
            ("rc_deact", "1".into()),
            ("rc_four", "0".into()),
            ("attached", "Attached to GPUs at indices 0,1,2,3".into()),
            ("rc_deact4", "0".into()),
            ("rc_help", "0".into()),
            ("eid_help", "<unset>".into()),
        ],
    );
    assert!(out.stderr.contains("genv: No available devices"), "{out:?}");
    assert_eq!(sb.eids(), Vec::<String>::new());
}

#[test]
fn bash_activate_deactivate() {
    posix_activate_deactivate("bash");
}

#[test]
fn bash_restores_previous_values() {
    posix_restores_previous_values("bash");
}

#[test]
fn bash_failed_activation() {
    posix_failed_activation("bash");
}

#[test]
fn bash_unset_ps1_stays_unset() {
    let sb = Sandbox::new();
    let script = r#"eval "$("$GENV" shell-init bash)"
unset PS1
genv activate
echo "ps1=${PS1-<unset>}"
genv deactivate
echo "ps1_after=${PS1-<unset>}"
"#;
    check(
        &sb,
        "bash",
        script,
        &[("ps1", "(genv) ".into()), ("ps1_after", "<unset>".into())],
    );
}

#[test]
fn bash_set_u_and_quoting() {
    // Users with `set -u` and odd names: the integration must not trip on unset variables.
    let sb = Sandbox::new();
    let script = r#"set -u
eval "$("$GENV" shell-init bash)"
unset LD_PRELOAD
genv activate --name "it's \$HOME"; echo "rc=$?"
echo "ps1=$PS1"
genv deactivate; echo "rc_d=$?"
echo "ld=${LD_PRELOAD-<unset>}"
"#;
    check(
        &sb,
        "bash",
        script,
        &[
            ("rc", "0".into()),
            ("ps1", r"(genv:it's $HOME) \s-\v\$ ".into()),
            ("rc_d", "0".into()),
            ("ld", "<unset>".into()),
        ],
    );
}

#[test]
fn zsh_activate_deactivate() {
    if installed("zsh") {
        posix_activate_deactivate("zsh");
    }
}

#[test]
fn zsh_restores_previous_values() {
    if installed("zsh") {
        posix_restores_previous_values("zsh");
    }
}

#[test]
fn zsh_failed_activation() {
    if installed("zsh") {
        posix_failed_activation("zsh");
    }
}

#[test]
fn fish_activate_deactivate() {
    if !installed("fish") {
        return;
    }
    let sb = Sandbox::new();
    let libc = libc_path();
    let script = format!(
        r#"$GENV shell-init fish | source
function fish_prompt; echo -n 'orig> '; end
set -e LD_PRELOAD
genv activate --name foo; echo "rc_act=$status"
echo "ld=$LD_PRELOAD"
echo "eid=$GENV_ENVIRONMENT_ID"
echo "shellpid=$fish_pid"
echo "prompt="(fish_prompt)
echo "child="(sh -c 'genv status --json')
genv activate; echo "rc_nested=$status"
genv attach --index 9; echo "rc_attach9=$status"
genv config gpus 2; and genv attach; echo "rc_attach=$status"
echo "attached="(genv status | sed -n 2p)
genv deactivate; echo "rc_deact=$status"
if set -q LD_PRELOAD; echo "ld_after=$LD_PRELOAD"; else; echo "ld_after=<unset>"; end
if set -q GENV_ENVIRONMENT_ID; echo "eid_after=set"; else; echo "eid_after=<unset>"; end
echo "prompt_after="(fish_prompt)
echo "envs="(genv envs --json | string join '' | string replace -a ' ' '')
genv deactivate; echo "rc_deact_again=$status"
genv activate --gpus x; echo "rc_bad=$status"
genv activate --gpus 5; echo "rc_five=$status"
if set -q GENV_ENVIRONMENT_ID; echo "eid_failed=set"; else; echo "eid_failed=<unset>"; end
echo "prompt_failed="(fish_prompt)
set -gx LD_PRELOAD '{libc}'
genv activate --no-prompt; echo "rc_np=$status"
echo "ld_np=$LD_PRELOAD"
echo "prompt_np="(fish_prompt)
genv deactivate
echo "ld_np_after=$LD_PRELOAD"
"#
    );
    let out = check(
        &sb,
        "fish",
        &script,
        &[
            ("rc_act", "0".into()),
            ("ld", shim()),
            ("prompt", "(genv:foo) orig> ".into()),
            ("rc_nested", "1".into()),
            ("rc_attach9", "1".into()),
            ("rc_attach", "0".into()),
            ("attached", "Attached to GPUs at indices 0,1".into()),
            ("rc_deact", "0".into()),
            ("ld_after", "<unset>".into()),
            ("eid_after", "<unset>".into()),
            ("prompt_after", "orig> ".into()),
            ("envs", "[]".into()),
            ("rc_deact_again", "1".into()),
            ("rc_bad", "1".into()),
            ("rc_five", "1".into()),
            ("eid_failed", "<unset>".into()),
            ("prompt_failed", "orig> ".into()),
            ("rc_np", "0".into()),
            ("ld_np", format!("{}:{libc}", shim())),
            ("prompt_np", "orig> ".into()),
            ("ld_np_after", libc.clone()),
        ],
    );
    let pid = kv(&out.stdout, "shellpid").unwrap();
    assert_eq!(kv(&out.stdout, "eid").unwrap(), pid);
    let child: serde_json::Value =
        serde_json::from_str(&kv(&out.stdout, "child").unwrap()).unwrap();
    assert_eq!(child["eid"], pid.as_str());
    assert!(out
        .stderr
        .contains("genv: Already running in an active environment"));
    assert_eq!(sb.eids(), Vec::<String>::new());
}

#[test]
fn shell_init_prints_a_function() {
    let sb = Sandbox::new();
    for sh in ["bash", "zsh", "fish"] {
        let out = sb.genv(&["shell-init", sh]);
        let code = out.ok();
        assert!(code.contains(genv_bin().to_str().unwrap()), "{sh}: {code}");
        assert!(code.contains("activate"), "{sh}");
    }
    sb.genv(&["shell-init", "bash"]).ok();
    let out = sb.genv(&["shell-init", "tcsh"]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("tcsh"));
}

#[test]
fn scripted_shell_without_wrapper_is_told_how() {
    // Running the binary directly (no shell-init) explains the way.
    let sb = Sandbox::new();
    let out = sb.shell(
        "bash",
        r#""$GENV" activate; echo "rc=$?"; echo "eid=${GENV_ENVIRONMENT_ID-<unset>}""#,
    );
    assert_eq!(kv(&out.stdout, "rc").as_deref(), Some("1"));
    assert_eq!(kv(&out.stdout, "eid").as_deref(), Some("<unset>"));
    assert!(out.stderr.contains("shell-init bash"), "{out:?}");
}
