//! Many genv processes placing environments at once: each device goes to exactly one of them.

use genv_tests::support;

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;
use support::*;

const ENVS: usize = 32;
const GPUS: usize = 8;

/// Checks `genv devices --json`: every device has at most one environment, and returns the map
/// device -> environment.
fn owners(sb: &Sandbox) -> HashMap<u64, String> {
    let mut m = HashMap::new();
    for (ix, eids) in sb.attachments() {
        assert!(eids.len() <= 1, "device {ix} given to {eids:?}");
        if let Some(e) = eids.into_iter().next() {
            m.insert(ix, e);
        }
    }
    m
}

#[test]
fn concurrent_attaches_place_each_device_once() {
    let sb = Sandbox::with_gpus(GPUS);
    let envs: Vec<Env> = (0..ENVS)
        .map(|_| sb.env(&["--gpus", "1", "--no-attach"]))
        .collect();
    // Start all attaches before waiting on any, so that they race for the lock.
    let children: Vec<_> = envs
        .iter()
        .map(|e| {
            let mut c = sb.genv_cmd(&["attach"]);
            c.env("GENV_ENVIRONMENT_ID", &e.eid)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            (e.eid.clone(), c.spawn().expect("spawn genv attach"))
        })
        .collect();
    let mut won = HashSet::new();
    for (eid, child) in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            won.insert(eid);
        } else {
            assert!(stderr.contains("No available devices"), "{eid}: {stderr}");
        }
    }
    assert_eq!(won.len(), GPUS, "winners: {won:?}");
    let owners = owners(&sb);
    assert_eq!(owners.len(), GPUS);
    let holders: HashSet<String> = owners.values().cloned().collect();
    assert_eq!(holders, won);
    // Each environment agrees with the device table.
    for j in sb.envs_json().as_array().unwrap() {
        let eid = j["eid"].as_str().unwrap();
        let att = j["attached"].as_array().unwrap();
        if won.contains(eid) {
            assert_eq!(att.len(), 1, "{eid}");
            assert_eq!(owners[&att[0].as_u64().unwrap()], eid);
        } else {
            assert!(att.is_empty(), "{eid} lost but holds {att:?}");
        }
    }
    assert_eq!(sb.eids().len(), ENVS);
}

#[test]
fn concurrent_execs_place_each_device_once() {
    let sb = Sandbox::with_gpus(GPUS);
    let marks = sb.root.join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    // Each winner marks itself and waits for the go-ahead, so that all of them run at once.
    let script = format!(
        "touch {m}/$GENV_ENVIRONMENT_ID; while [ ! -e {m}/stop ]; do sleep 0.02; done",
        m = marks.display()
    );
    let children: Vec<_> = (0..ENVS)
        .map(|_| {
            let mut c = sb.genv_cmd(&["exec", "--gpus", "1", "--", "sh", "-c", &script]);
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            c.spawn().expect("spawn genv exec")
        })
        .collect();
    let running = wait_for(Duration::from_secs(60), || {
        std::fs::read_dir(&marks).map(|d| d.count()).unwrap_or(0) >= GPUS
    });
    assert!(running, "fewer than {GPUS} commands started");
    // Let the losers finish failing before looking at the table.
    std::thread::sleep(Duration::from_millis(300));
    let owners = owners(&sb);
    assert_eq!(owners.len(), GPUS);
    let started: HashSet<String> = std::fs::read_dir(&marks)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(started.len(), GPUS, "{started:?}");
    assert_eq!(owners.values().cloned().collect::<HashSet<_>>(), started);
    std::fs::write(marks.join("stop"), "").unwrap();
    let (mut ok, mut failed) = (0, 0);
    for child in children {
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            ok += 1;
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("No available devices"), "{stderr}");
            failed += 1;
        }
    }
    assert_eq!((ok, failed), (GPUS, ENVS - GPUS));
    // Every exec removed its environment.
    assert_eq!(sb.eids(), Vec::<String>::new());
    assert!(owners_after_all_free(&sb));
}

fn owners_after_all_free(sb: &Sandbox) -> bool {
    sb.attachments().iter().all(|(_, e)| e.is_empty())
}

#[test]
fn concurrent_activations_all_registered() {
    // 64 environments created at once by separate processes: none lost, ids unique.
    let sb = Sandbox::with_gpus(GPUS);
    let holders: Vec<Holder> = (0..64).map(|_| Holder::spawn()).collect();
    let children: Vec<_> = holders
        .iter()
        .map(|h| {
            let pid = h.pid().to_string();
            let mut c = sb.genv_cmd(&["activate", "--shell", "bash", "--shell-pid", &pid]);
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let mut eids = sb.eids();
    eids.sort();
    let mut want: Vec<String> = holders.iter().map(|h| h.pid().to_string()).collect();
    want.sort();
    assert_eq!(eids, want);
}
