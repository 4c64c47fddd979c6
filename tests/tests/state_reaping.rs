//! Environments whose processes are gone are forgotten without `deactivate`: a shell killed
//! with SIGKILL, a zombie, a pid that now names another process.

use genv_tests::support;

use serde_json::json;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use support::*;

/// Rewrites the start time recorded for every pid of environment `eid`, as if each pid had
/// been reused by a process started later.
fn forge_start_time(sb: &Sandbox, eid: &str) {
    sb.store()
        .transaction(|t| {
            let (i, _) = t.env_by_eid(eid).expect("env present");
            let e = &mut t.envs[i];
            for p in &mut e.pids[..e.n_pids as usize] {
                p.start_time += 1;
            }
            Ok(())
        })
        .unwrap();
}

/// Whether the state file still holds a record for `eid`, dead or alive.
fn has_record(sb: &Sandbox, eid: &str) -> bool {
    sb.store().snapshot().env_by_eid(eid).is_some()
}

#[test]
fn killed_shell_is_reaped() {
    let sb = Sandbox::new();
    let script = r#"eval "$("$GENV" shell-init bash)"
genv activate --gpus 2 || exit 9
echo "eid=$GENV_ENVIRONMENT_ID"
sleep 3600 &
wait"#;
    let mut c = sb.command("bash");
    c.args(["--norc", "--noprofile", "-c", script])
        .env("GENV", genv_bin())
        .stdout(Stdio::piped())
        .process_group(0);
    let mut shell = c.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(shell.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let eid = line
        .trim()
        .strip_prefix("eid=")
        .expect("eid line")
        .to_string();
    assert_eq!(eid, shell.id().to_string());
    assert_eq!(sb.eids(), vec![eid.clone()]);
    assert_eq!(sb.env_json(&eid).unwrap()["attached"], json!([0, 1]));

    // The terminal goes away: SIGKILL to the shell only, no deactivate. Its background sleep
    // lives on, a member started in the environment: it keeps it and its devices (see
    // membership.rs); when it is killed too, the environment goes.
    shell.kill().unwrap();
    shell.wait().unwrap();
    assert_eq!(sb.eids(), vec![eid.clone()]);
    assert_eq!(sb.env_json(&eid).unwrap()["pids"], json!([]));
    assert_eq!(
        sb.env_json(&eid).unwrap()["members"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let pgid = shell.id() as i32;
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    assert!(wait_for(std::time::Duration::from_secs(10), || sb
        .eids()
        .is_empty()));
    assert!(sb.attachments().iter().all(|(_, e)| e.is_empty()));
    // The devices can be had by someone else, and the record is freed on that write.
    let other = sb.env(&["--gpus", "4"]);
    assert_eq!(
        sb.env_json(&other.eid).unwrap()["attached"],
        json!([0, 1, 2, 3])
    );
    assert!(!has_record(&sb, &eid));
}

#[test]
fn zombie_shell_counts_as_dead() {
    let sb = Sandbox::new();
    let mut env = sb.env(&["--gpus", "1"]);
    // Killed but not yet waited for by its parent: a zombie keeps its pid and start time.
    unsafe { libc::kill(env.holder.pid() as i32, libc::SIGKILL) };
    assert!(wait_for(std::time::Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{}/stat", env.holder.pid()))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
    }));
    assert_eq!(sb.eids(), Vec::<String>::new());
    assert!(sb.attachments().iter().all(|(_, e)| e.is_empty()));
    env.holder.kill();
}

#[test]
fn reused_pid_does_not_keep_an_environment_alive() {
    let sb = Sandbox::new();
    let env = sb.env(&["--gpus", "2", "--name", "ghost"]);
    let keep = sb.env(&["--gpus", "1"]);
    assert_eq!(sb.eids().len(), 2);
    // The pid still runs (the holder), but the record says it started at another time: the
    // pid belongs to a different process now.
    forge_start_time(&sb, &env.eid);
    assert_eq!(sb.eids(), vec![keep.eid.clone()]);
    assert_eq!(
        sb.attachments(),
        vec![
            (0, vec![]),
            (1, vec![]),
            (2, vec![keep.eid.clone()]),
            (3, vec![])
        ]
    );
    // Through the state API too, as the SDK reads it.
    let genv = genv_state::Genv::with_store(sb.store());
    assert!(genv.env(&env.eid).is_none());
    assert!(genv.envs().iter().all(|e| e.eid != env.eid));
    // The stale environment cannot be used: commands say it is gone.
    sb.genv_in(&env.eid, &["attach"])
        .fails_with("Not running in an active environment");
    assert!(sb
        .genv_in(&env.eid, &["status"])
        .ok()
        .contains("not active"));
    // Its devices go to the next taker.
    let next = sb.env(&["--gpus", "2"]);
    assert_eq!(sb.env_json(&next.eid).unwrap()["attached"], json!([0, 1]));
    assert!(!has_record(&sb, &env.eid));
}

#[test]
fn pid_that_no_longer_exists() {
    let sb = Sandbox::new();
    let mut env = sb.env(&["--gpus", "1"]);
    env.holder.kill();
    // A read alone already hides it; a write frees the record.
    assert!(has_record(&sb, &env.eid));
    assert_eq!(sb.eids(), Vec::<String>::new());
    let other = sb.env(&["--gpus", "1"]);
    assert_eq!(sb.env_json(&other.eid).unwrap()["attached"], json!([0]));
    assert!(!has_record(&sb, &env.eid));
}

#[test]
fn one_dead_member_does_not_end_a_shared_environment() {
    let sb = Sandbox::new();
    let mut first = sb.env(&["--id", "team", "--gpus", "1"]);
    let second = Holder::spawn();
    sb.activate_for(second.pid(), &["--id", "team"]).ok();
    first.holder.kill();
    let j = sb.env_json("team").expect("team still alive");
    assert_eq!(j["pids"], json!([second.pid()]));
    assert_eq!(j["attached"], json!([0]));
    drop(second);
    assert_eq!(sb.eids(), Vec::<String>::new());
}

#[test]
fn many_dead_environments_reaped_in_one_write() {
    let sb = Sandbox::with_gpus(8);
    // 4 dead environments hold devices, 16 hold none.
    let holding: Vec<Env> = (0..4).map(|_| sb.env(&["--gpus", "1"])).collect();
    let idle: Vec<Env> = (0..16).map(|_| sb.env(&["--gpus", "0"])).collect();
    let live = sb.env(&[]);
    drop(holding);
    drop(idle);
    // One write (an attach of the live env) frees every dead holder of a device at once, so
    // placement sees their GPUs free; it need not look at the others.
    sb.genv_in(&live.eid, &["attach", "--index", "0"]).ok();
    let snap = sb.store().snapshot();
    assert!(snap
        .envs()
        .all(|(_, e)| e.eid() == live.eid || e.n_attached == 0));
    assert_eq!(sb.env_json(&live.eid).unwrap()["attached"], json!([0]));
    // `genv envs` checks every environment anyway, and removes the dead ones in one write.
    assert_eq!(sb.eids(), vec![live.eid.clone()]);
    let snap = sb.store().snapshot();
    let used: Vec<String> = snap.envs().map(|(_, e)| e.eid()).collect();
    assert_eq!(used, vec![live.eid.clone()]);
    assert_eq!(snap.env_hwm as usize, snap.envs().next().unwrap().0 + 1);
}

#[test]
fn shell_whose_name_is_not_utf8_stays_alive() {
    use std::os::unix::ffi::OsStrExt;
    // A program file named with a byte that is not UTF-8: its /proc/<pid>/stat name is too.
    let sb = Sandbox::new();
    let name = std::ffi::OsStr::from_bytes(b"sh\xffell (x)");
    let prog = sb.root.join(name);
    let sleep = ["/usr/bin/sleep", "/bin/sleep"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("sleep");
    // A symlink, not a copy: a copied file is open for writing while parallel tests fork, and
    // the children's inherited descriptor makes exec fail with ETXTBSY. The kernel takes the
    // process name from the path given to exec, so the odd name shows all the same.
    std::os::unix::fs::symlink(sleep, &prog).unwrap();
    let holder = Holder::spawn_cmd(std::process::Command::new(&prog));
    assert!(wait_for(std::time::Duration::from_secs(5), || {
        std::fs::read(format!("/proc/{}/stat", holder.pid()))
            .map(|s| s.contains(&0xff))
            .unwrap_or(false)
    }));
    sb.activate_for(holder.pid(), &["--gpus", "1"]).ok();
    let eid = holder.pid().to_string();
    assert_eq!(sb.eids(), vec![eid.clone()]);
    assert_eq!(sb.env_json(&eid).unwrap()["attached"], json!([0]));
    // Still there after other writes (which reap the dead).
    let other = sb.env(&["--gpus", "1"]);
    assert_eq!(sb.eids(), vec![eid, other.eid.clone()]);
}
