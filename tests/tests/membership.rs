//! An environment lives as long as its work: every process started in it is a member from the
//! moment the shim loads (whether or not it touches CUDA), across fork, exec, setsid, nohup, fd
//! closing spawners and tmux, and the environment ends promptly when the last one ends (kill -9
//! included). `genv envs` PID(S) lists the members. Before membership, each of these cases lost
//! the environment (and gave its GPU to the next user) when the shell or `genv exec` ended.

use genv_tests::support;
use std::time::Duration;

use support::*;

const WAIT: Duration = Duration::from_secs(10);

/// Kills the processes of a test on every path out (they outlive the shells that started them).
struct Reaper(Vec<u32>);

impl Reaper {
    fn add(&mut self, pid: u32) -> u32 {
        self.0.push(pid);
        pid
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for &p in &self.0 {
            kill9(p);
        }
    }
}

fn kill9(pid: u32) {
    // SAFETY: kill(2) on a pid this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

fn env_of(sb: &Sandbox, eid: &str) -> Option<serde_json::Value> {
    sb.envs_json()
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["eid"] == eid)
        .cloned()
}

fn members(sb: &Sandbox, eid: &str) -> Vec<u64> {
    env_of(sb, eid)
        .map(|e| {
            e["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_u64().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// `genv exec --gpus 1 -- sh -c SCRIPT ARGS…`.
fn exec_sh(sb: &Sandbox, script: &str, args: &[&str]) -> Out {
    let mut all = vec!["exec", "--gpus", "1", "--", "sh", "-c", script];
    all.extend_from_slice(args);
    sb.genv(&all)
}

fn pid_of(out: &Out, key: &str) -> u32 {
    kv(&out.stdout, key)
        .unwrap_or_else(|| panic!("no {key}= in {out:#?}"))
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a pid: {out:#?}"))
}

/// The GPU of the environment is held: another user of the machine cannot take it.
#[track_caller]
fn gpu_held(sb: &Sandbox) {
    sb.genv(&["exec", "--gpus", "1", "--", "true"])
        .fails_with("No available devices");
}

#[track_caller]
fn gpu_free(sb: &Sandbox) {
    sb.genv(&["exec", "--gpus", "1", "--", "true"]).ok();
}

/// The story of a batch job in `shell`: activate, `nohup … &`, exit the shell. The job keeps the
/// environment and its GPU, `genv envs` lists it, and its end (kill -9) frees both. (The script
/// waits until `nohup` has become `sleep`: the shell itself runs without the shim, so its child
/// is a member from its exec on, and an interactive zsh or fish hangs up its jobs on exit.)
fn batch_job_outlives_its_shell(shell: &str) {
    if !have(shell) {
        println!("SKIPPED: {shell} is not installed");
        return;
    }
    let sb = Sandbox::with_gpus(1);
    let script = match shell {
        "fish" => r#"$GENV shell-init fish | source
genv activate --gpus 1 --name job >/dev/null
nohup sleep 300 >/dev/null 2>&1 &
set bg $last_pid
while test (cat /proc/$bg/comm) != sleep; sleep 0.02; end
echo "bg=$bg"
echo "eid=$GENV_ENVIRONMENT_ID"
exit 0"#
            .to_string(),
        _ => format!(
            r#"eval "$("$GENV" shell-init {shell})"
genv activate --gpus 1 --name job >/dev/null
nohup sleep 300 >/dev/null 2>&1 &
bg=$!
while [ "$(cat /proc/$bg/comm)" != sleep ]; do sleep 0.02; done
echo "bg=$bg"
echo "eid=$GENV_ENVIRONMENT_ID"
exit 0"#
        ),
    };
    let out = sb.shell(shell, &script);
    out.no_panic();
    let mut reaper = Reaper(Vec::new());
    let bg = reaper.add(pid_of(&out, "bg"));
    let eid = kv(&out.stdout, "eid").expect("eid");
    // The shell is gone; its job is not.
    assert!(
        wait_for(WAIT, || members(&sb, &eid) == vec![bg as u64]),
        "{shell}: the job is not the environment's member: {:#?} {out:#?}",
        sb.envs_json()
    );
    let e = env_of(&sb, &eid).unwrap();
    assert_eq!(e["attached"].as_array().unwrap().len(), 1, "{e:#?}");
    gpu_held(&sb);
    let table = sb.genv(&["envs"]);
    let row = table
        .ok()
        .lines()
        .find(|l| l.starts_with(&eid))
        .unwrap_or_else(|| panic!("{table:#?}"));
    assert!(
        row.ends_with(&bg.to_string()),
        "PID(S) lacks the job: {row}"
    );
    kill9(bg);
    assert!(
        wait_for(WAIT, || env_of(&sb, &eid).is_none()),
        "{shell}: the environment outlived its last member"
    );
    gpu_free(&sb);
}

#[test]
fn bash_batch_job_outlives_its_shell() {
    batch_job_outlives_its_shell("bash");
}

#[test]
fn zsh_batch_job_outlives_its_shell() {
    batch_job_outlives_its_shell("zsh");
}

#[test]
fn fish_batch_job_outlives_its_shell() {
    batch_job_outlives_its_shell("fish");
}

/// `genv exec` whose command leaves a child running: the environment stays with the child.
#[test]
fn exec_ends_with_its_last_member() {
    let sb = Sandbox::with_gpus(1);
    let mut reaper = Reaper(Vec::new());
    let out = exec_sh(&sb, "sleep 300 >/dev/null 2>&1 & echo child=$!", &[]);
    let child = reaper.add(pid_of(&out, "child"));
    // The environment never lapsed (the child shares its parent's open members file from its
    // first instant); its pid shows once it has taken its own lock.
    let has_child = |envs: &serde_json::Value| {
        envs.as_array()
            .unwrap()
            .iter()
            .find(|e| e["members"].as_array().unwrap().iter().any(|p| *p == child))
            .cloned()
    };
    assert!(wait_for(WAIT, || has_child(&sb.envs_json()).is_some()));
    let e = has_child(&sb.envs_json()).unwrap();
    assert!(e["eid"].as_str().unwrap().starts_with("exec-"));
    assert_eq!(
        e["pids"].as_array().unwrap().len(),
        0,
        "exec is gone: {e:#?}"
    );
    gpu_held(&sb);
    kill9(child);
    assert!(wait_for(WAIT, || sb
        .envs_json()
        .as_array()
        .unwrap()
        .is_empty()));
    gpu_free(&sb);

    // A command that leaves nothing behind ends its environment at once.
    sb.genv(&["exec", "--gpus", "1", "--", "true"]).ok();
    assert!(sb.envs_json().as_array().unwrap().is_empty());
}

/// `genv exec` killed (SIGTERM, as `Popen.terminate()` does) while its command runs: the command
/// keeps the environment, and the next `genv exec` does not get its GPU.
#[test]
fn exec_killed_leaves_its_command_the_environment() {
    let sb = Sandbox::with_gpus(1);
    let mut reaper = Reaper(Vec::new());
    let pidfile = sb.work.join("pid");
    let mut exec = sb
        .genv_cmd(&[
            "exec",
            "--gpus",
            "1",
            "--",
            "sh",
            "-c",
            &format!("echo $$ > {}; exec sleep 300", pidfile.display()),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    reaper.add(exec.id());
    assert!(wait_for(WAIT, || std::fs::read_to_string(&pidfile)
        .is_ok_and(|s| s.ends_with('\n'))));
    let cmd: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    reaper.add(cmd);
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(exec.id() as i32, libc::SIGTERM) };
    exec.wait().unwrap();
    let eid = format!("exec-{}", exec.id());
    // `sh` exec'd `sleep`: the same process, a member all along (the lock survives exec).
    assert_eq!(
        members(&sb, &eid),
        vec![cmd as u64],
        "{:#?}",
        sb.envs_json()
    );
    gpu_held(&sb);
    kill9(cmd);
    assert!(wait_for(WAIT, || env_of(&sb, &eid).is_none()));
    gpu_free(&sb);
}

/// fork without exec (the parent exits, the child runs on: a daemon), a `setsid` child, and a
/// child of a spawner that closes every descriptor it did not mean to pass on (Python's
/// `subprocess` does by default): each is a member.
#[test]
fn fork_setsid_and_closed_descriptors_keep_membership() {
    let sb = Sandbox::with_gpus(1);
    let mut reaper = Reaper(Vec::new());
    let py = "import os, subprocess, sys, time\n\
              p = subprocess.Popen(['sleep', '300'], close_fds=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n\
              print('spawned=%d' % p.pid, flush=True)\n\
              r, w = os.pipe()\n\
              pid = os.fork()\n\
              if pid == 0:\n\
              \x20   n = os.open('/dev/null', os.O_RDWR); os.dup2(n, 1); os.dup2(n, 2)\n\
              \x20   os.close(r); os.setsid(); os.write(w, b'x'); os.close(w); time.sleep(300); os._exit(0)\n\
              os.close(w); os.read(r, 1)\n\
              print('forked=%d' % pid, flush=True)\n";
    let out = exec_sh(
        &sb,
        "setsid sleep 300 >/dev/null 2>&1 & echo setsid=$!; python3 -c \"$0\"",
        &[py],
    );
    let spawned = reaper.add(pid_of(&out, "spawned"));
    let forked = reaper.add(pid_of(&out, "forked"));
    let setsid = reaper.add(pid_of(&out, "setsid"));
    let envs = sb.envs_json();
    let e = &envs.as_array().unwrap()[0];
    let mut got: Vec<u64> = e["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    got.sort();
    let mut want = vec![spawned as u64, forked as u64];
    // setsid(1) forks when it leads a process group; either way it ends as `sleep`.
    let setsid_alive = std::path::Path::new(&format!("/proc/{setsid}")).exists();
    if setsid_alive {
        want.push(setsid as u64);
    }
    want.sort();
    assert!(
        want.iter().all(|p| got.contains(p)),
        "members {got:?}, want {want:?}: {out:#?}"
    );
    gpu_held(&sb);
    let eid = e["eid"].as_str().unwrap().to_string();
    for p in got {
        kill9(p as u32);
    }
    assert!(wait_for(WAIT, || env_of(&sb, &eid).is_none()));
    gpu_free(&sb);
}

/// A tmux server started from an activated shell: the session's programs keep the environment
/// after the shell ends, and killing the server ends it.
#[test]
fn tmux_session_keeps_the_environment() {
    if !have("tmux") {
        println!("SKIPPED: tmux is not installed");
        return;
    }
    let sb = Sandbox::with_gpus(1);
    let sock = sb.root.join("tmux.sock");
    let script = format!(
        r#"eval "$("$GENV" shell-init bash)"
genv activate --gpus 1 >/dev/null
tmux -S {sock} -f /dev/null new-session -d 'sleep 300'
echo "eid=$GENV_ENVIRONMENT_ID"
exit 0"#,
        sock = sock.display()
    );
    let out = sb.shell("bash", &script);
    let eid = kv(&out.stdout, "eid").expect("eid");
    let kill_server = || {
        let _ = std::process::Command::new("tmux")
            .arg("-S")
            .arg(&sock)
            .arg("kill-server")
            .status();
    };
    struct Server<F: Fn()>(F);
    impl<F: Fn()> Drop for Server<F> {
        fn drop(&mut self) {
            (self.0)()
        }
    }
    let _server = Server(kill_server);
    assert!(
        wait_for(WAIT, || !members(&sb, &eid).is_empty()),
        "{out:#?} {:#?}",
        sb.envs_json()
    );
    gpu_held(&sb);
    kill_server();
    assert!(wait_for(WAIT, || env_of(&sb, &eid).is_none()));
    gpu_free(&sb);
}

/// Membership costs nothing outside an environment and does not need CUDA: a plain `sleep`
/// started in one is a member, listed by pid; one started outside is not.
#[test]
fn only_processes_started_in_the_environment_are_members() {
    let sb = Sandbox::with_gpus(2);
    let e = sb.env(&["--gpus", "1"]);
    let mut reaper = Reaper(Vec::new());
    let shim = shim_lib();
    let token = sb.env_json(&e.eid).unwrap();
    assert!(token["members"].as_array().unwrap().is_empty());
    // A process with the shim but no environment, and one in the environment.
    let mut outside = sb.command("sleep");
    outside.env("LD_PRELOAD", &shim);
    let outside = Holder::spawn_cmd(outside);
    let out = sb.shell(
        "bash",
        &format!(
            r#"eval "$("$GENV" shell-init bash)"
genv activate --id {} >/dev/null
sleep 300 >/dev/null 2>&1 &
echo "bg=$!"
sleep 0.2"#,
            e.eid
        ),
    );
    let bg = reaper.add(pid_of(&out, "bg"));
    assert!(wait_for(WAIT, || members(&sb, &e.eid) == vec![bg as u64]));
    assert!(std::path::Path::new(&format!("/proc/{}", outside.pid())).exists());
}

/// Another user can neither keep someone's environment alive (their members file is 0600; a
/// lock on one's own file at their serial is one's own) nor plant a members file for them.
#[test]
fn other_users_cannot_keep_or_plant_membership() {
    if !can_switch_users() {
        return;
    }
    let sb = Sandbox::with_gpus(1);
    let a = user("genv-mem-a", 61001);
    let b = user("genv-mem-b", 61002);
    let c = user("genv-mem-c", 61003);
    let d = user("genv-mem-d", 61004);
    // The shared directory, made as a machine's first user of genv would (root here).
    sb.genv(&["envs"]).ok();
    let mut ea = env_as(&sb, &a, &["--gpus", "1"]);
    // A's token, as a shell of A's would get it (joining the environment again).
    let pid = ea.holder.pid().to_string();
    let code = genv_as(&sb, &a, None, &activate_args(&pid, &["--id", &ea.eid]));
    let token = code
        .ok()
        .lines()
        .find_map(|l| l.strip_prefix("export GENV_MEMBER='"))
        .and_then(|l| l.strip_suffix('\''))
        .unwrap_or_else(|| panic!("no GENV_MEMBER in {code:#?}"))
        .to_string();
    let serial = token.split(':').next().unwrap().to_string();
    // B's own members file, made by B's own activation.
    let _eb = env_as(&sb, &b, &[]);
    let bfile = sb.tmpdir.join("members").join(b.uid.to_string());
    let md = std::fs::metadata(&bfile).unwrap();
    use std::os::unix::fs::MetadataExt;
    let forged = format!("{serial}:{}:{}:-1:{}", md.dev(), md.ino(), bfile.display());
    let mut holders = Vec::new();
    for t in [token.as_str(), forged.as_str()] {
        // The shim is loaded by B's `sleep` only, after the switch to B (`env` runs as B).
        let mut cmd = as_user(&sb, &b, "env");
        cmd.arg(format!("LD_PRELOAD={}", shim_lib().display()))
            .arg(format!("GENV_ENVIRONMENT_ID={}", ea.eid))
            .arg(format!("GENV_MEMBER={t}"))
            .arg("sleep");
        holders.push(Holder::spawn_cmd(cmd));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(members(&sb, &ea.eid).is_empty(), "{:#?}", sb.envs_json());
    ea.holder.kill();
    assert!(wait_for(WAIT, || env_of(&sb, &ea.eid).is_none()));
    gpu_free(&sb);

    // C plants D's members file before D's first activation: D is refused with one line, and
    // the planted file is left as it was.
    let dfile = sb.tmpdir.join("members").join(d.uid.to_string());
    let mut touch = as_user(&sb, &c, "touch");
    touch.arg(&dfile);
    assert!(Sandbox::output(touch).success());
    let holder = holder_as(&sb, &d);
    let pid = holder.pid().to_string();
    genv_as(&sb, &d, None, &activate_args(&pid, &[]))
        .fails_with(&format!("belongs to {}({})", c.name, c.uid));
    assert_eq!(std::fs::metadata(&dfile).unwrap().uid(), c.uid);
    assert!(sb
        .envs_json()
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["uid"] != d.uid));
}

/// System mode: the service makes a user's members file (theirs, 0600, in its own directory),
/// and a user's `genv exec` job that outlives the command keeps its environment there too.
#[test]
fn system_mode_membership() {
    if !can_switch_users() {
        return;
    }
    let Some(sys) = SystemSandbox::start(8) else {
        return;
    };
    let sb = &sys.sb;
    let u = user("genv-mem-sys", 61005);
    let mut c = as_user(sb, &u, genv_bin().to_str().unwrap());
    c.args([
        "exec",
        "--gpus",
        "1",
        "--",
        "sh",
        "-c",
        "sleep 300 >/dev/null 2>&1 & echo child=$!",
    ]);
    let out = Sandbox::output(c);
    let mut reaper = Reaper(Vec::new());
    let child = reaper.add(pid_of(&out, "child"));
    use std::os::unix::fs::MetadataExt;
    let file = sys.state_dir.join("members").join(u.uid.to_string());
    let md = std::fs::metadata(&file).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o7777), (u.uid, 0o600));
    let dir = std::fs::metadata(sys.state_dir.join("members")).unwrap();
    assert_eq!((dir.uid(), dir.mode() & 0o7777), (0, 0o755));
    let has_child = || {
        sb.envs_json()
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["uid"] == u.uid && e["members"] == serde_json::json!([child]))
    };
    assert!(wait_for(WAIT, has_child), "{:#?}", sb.envs_json());
    kill9(child);
    assert!(wait_for(WAIT, || sb
        .envs_json()
        .as_array()
        .unwrap()
        .is_empty()));
}

/// The genv CLI run in an activated shell is not work of the environment: `genv envs` does not
/// list itself, and `genv deactivate` ends an environment nothing else runs in at once (the
/// record is gone from the file, not merely dead).
#[test]
fn the_cli_is_no_member() {
    let sb = Sandbox::with_gpus(1);
    let out = sb.shell(
        "bash",
        r#"eval "$("$GENV" shell-init bash)"
genv activate --gpus 1 >/dev/null
echo "eid=$GENV_ENVIRONMENT_ID"
genv envs --json > envs.json
echo "members=$(python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["members"])' < envs.json)"
genv deactivate"#,
    );
    assert_eq!(
        kv(&out.stdout, "members").as_deref(),
        Some("[]"),
        "{out:#?}"
    );
    let eid = kv(&out.stdout, "eid").unwrap();
    assert!(
        sb.store().snapshot().env_by_eid(&eid).is_none(),
        "deactivate left the environment's record: {out:#?}"
    );
}

/// A symbolic link or a FIFO planted under a user's members name is refused with one line at
/// that user's first activation (nothing followed, nothing opened that could hang), and left as
/// it was.
#[test]
fn planted_links_and_fifos_are_not_members_files() {
    if !can_switch_users() {
        return;
    }
    let sb = Sandbox::with_gpus(1);
    sb.genv(&["envs"]).ok();
    let _root = sb.env(&[]); // makes the members directory, as a first user would
    let c = user("genv-mem-c", 61003);
    let victims = [user("genv-mem-e", 61006), user("genv-mem-f", 61007)];
    let dir = sb.tmpdir.join("members");
    let target = sb.root.join("target");
    std::fs::write(&target, "untouched").unwrap();
    let link = dir.join(victims[0].uid.to_string());
    let fifo = dir.join(victims[1].uid.to_string());
    let mut ln = as_user(&sb, &c, "ln");
    ln.arg("-s").arg(&target).arg(&link);
    assert!(Sandbox::output(ln).success());
    let mut mk = as_user(&sb, &c, "mkfifo");
    mk.args(["-m", "666"]).arg(&fifo);
    assert!(Sandbox::output(mk).success());
    for (u, what) in [(&victims[0], "symbolic link"), (&victims[1], "FIFO")] {
        let holder = holder_as(&sb, u);
        let pid = holder.pid().to_string();
        genv_as(&sb, u, None, &activate_args(&pid, &[])).fails_with(what);
        assert!(sb
            .envs_json()
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["uid"] != u.uid));
    }
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
}
