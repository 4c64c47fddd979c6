//! The state file removed or replaced while environments run, and memory of processes that
//! ended: genv notices instead of silently starting an empty state that hands out GPUs in use,
//! and the memory reports (CUDA, NVML, `genv envs`) give back what ended processes held.

use genv_tests::shim;
use genv_tests::support;

use shim::*;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;
use support::*;

/// A CUDA process of environment `eid` holding `bytes` on its first GPU until released.
fn holding(sb: &Sandbox, eid: &str, bytes: u64) -> Held {
    let mut c = under_shim(sb, eid, shim_cuda());
    c.args(["link", "alloc", "mem", &bytes.to_string(), "1", "hold"]);
    let h = spawn_held(c);
    assert!(h.before.iter().any(|l| l == "ok 1 err 0"), "{:?}", h.before);
    h
}

/// A long-lived CUDA process of environment `eid` (shim_cuda `watch`): each [`Watch::report`]
/// makes it pass an initialisation point and report its memory info.
struct Watch {
    child: std::process::Child,
    to: std::process::ChildStdin,
    from: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Watch {
    fn spawn(sb: &Sandbox, eid: &str) -> Watch {
        let mut c = under_shim(sb, eid, shim_cuda());
        c.args(["link", "watch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let to = child.stdin.take().unwrap();
        let mut from = BufReader::new(child.stdout.take().unwrap()).lines();
        assert!(from.by_ref().map_while(Result::ok).any(|l| l == "held"));
        Watch { child, to, from }
    }

    /// (result, free, total) of cuMemGetInfo, after a cuInit.
    fn report(&mut self) -> (i32, u64, u64) {
        self.to.write_all(b"\n").unwrap();
        let l = self.from.next().unwrap().unwrap();
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(f[0], "mem", "{l}");
        (
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
            f[3].parse().unwrap(),
        )
    }

    /// Ends it; returns whether it succeeded and its stderr.
    fn finish(self) -> (bool, String) {
        drop(self.to);
        let out = self.child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[test]
fn removed_state_in_use_is_not_started_afresh() {
    let sb = Sandbox::new();
    let env = sb.env(&["--gpus", "1", "--gpu-memory", "2gi"]);
    let job = holding(&sb, &env.eid, GI);
    let before = sb.genv(&["devices", "--json"]).json();
    assert_eq!(before[0]["attachments"][0]["eid"], env.eid.as_str());

    std::fs::remove_file(sb.state_path()).unwrap();
    // Every command that would need a new file refuses, naming what still runs.
    let holder = Holder::spawn();
    for out in [
        sb.genv(&["envs"]),
        sb.genv(&["devices"]),
        sb.activate_for(holder.pid(), &["--gpus", "1"]),
        sb.genv(&["exec", "--gpus", "1", "--", "true"]),
    ] {
        // The count is of the processes holding this directory's users' lock in /proc/locks:
        // once (CI, 2026-12-02) it read 2 here, most likely a process of a finished sandbox
        // whose directory had this one's inode; what matters is the refusal and its reason.
        let line = out.fails_with("was removed while");
        assert!(line.contains("still use it"), "{line}");
        assert!(line.contains(sb.state_path().to_str().unwrap()), "{line}");
    }
    assert!(!sb.state_path().exists(), "a new state was made");
    // The job is not disturbed: it frees what it holds and ends well.
    let (ok, after) = job.finish();
    assert!(ok, "{after:?}");
    assert!(after.iter().any(|l| l == "freed 1"), "{after:?}");
    // With nothing using the old file any more, genv starts afresh.
    let fresh = sb.env(&["--gpus", "1"]);
    assert_eq!(sb.eids(), vec![fresh.eid.clone()]);
}

#[test]
fn replaced_state_in_use_is_noticed() {
    let sb = Sandbox::new();
    let env = sb.env(&["--gpus", "1", "--gpu-memory", "2gi"]);
    // A long-lived CUDA process of the environment that reports at our request.
    let mut watch = Watch::spawn(&sb, &env.eid);
    assert_eq!(watch.report().0, 0);

    // Another genv file put in its place (`mv` of a copy, an older genv's doing …).
    let other = Sandbox::new();
    other.genv(&["envs"]).ok();
    let tmp = sb.tmpdir.join("replacement");
    std::fs::copy(other.state_path(), &tmp).unwrap();
    std::fs::rename(&tmp, sb.state_path()).unwrap();

    // Reading still works; changing is refused while the process uses the previous file.
    sb.genv(&["envs"]).ok();
    let holder = Holder::spawn();
    let line = sb
        .activate_for(holder.pid(), &["--gpus", "1"])
        .fails_with("was replaced while 1 process still use the previous one");
    assert!(line.contains("lsof"), "{line}");
    // The running process notices at its next initialisation point, and goes on.
    assert_eq!(watch.report().0, 0);
    let (ok, err) = watch.finish();
    assert!(ok, "{err}");
    assert!(
        err.contains("was removed or replaced while this process ran"),
        "{err}"
    );
    // Once it is gone the new file is used.
    let e = sb.env(&["--gpus", "1"]);
    assert_eq!(sb.eids(), vec![e.eid.clone()]);
}

#[test]
fn memory_of_ended_processes_is_given_back_to_reports() {
    let sb = Sandbox::new();
    let env = sb.env(&["--gpus", "1", "--gpu-memory", "4gi"]);
    let mut watch = Watch::spawn(&sb, &env.eid);
    let mut free = || watch.report().1;
    assert_eq!(free(), 4 * GI);

    // One process ends normally without freeing (the driver frees it), one is killed.
    let mut c = under_shim(&sb, &env.eid, shim_cuda());
    c.args(["link", "alloc", "mem", &GI.to_string(), "1", "leave"]);
    let out = Sandbox::output(c);
    assert!(out.stdout.contains("ok 1 err 0"), "{out:#?}");
    let mut killed = holding(&sb, &env.eid, GI);
    let _ = killed.child.kill();
    let _ = killed.child.wait();

    // The long-lived process's report gives both back promptly (without any allocation or
    // CLI command in between).
    assert!(
        wait_for(Duration::from_secs(5), || free() == 4 * GI),
        "free memory never came back: {}",
        free()
    );
    // And `genv envs` (NVML's memory figures go through the same report as CUDA's).
    let j = sb.env_json(&env.eid).unwrap();
    assert_eq!(j["used_memory"][0], 0, "{j}");
    assert!(watch.finish().0);
}
