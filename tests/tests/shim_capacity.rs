//! Many processes of one environment allocating at once: the capacity holds across all of them,
//! checked against the simulated driver's own accounting (what the device really holds), which
//! is sampled all along. One test per binary: the simulated ledger is located by GENV_SIM_DIR,
//! read once per process.

use genv_tests::shim;
use genv_tests::support;

use shim::*;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use support::*;

#[test]
fn concurrent_processes_never_pass_the_capacity() {
    let sb = Sandbox::new();
    std::env::set_var("GENV_SIM_DIR", &sb.simdir);
    std::env::set_var("GENV_SIM_GPUS", "4");
    let _e = sb.env(&["--id", "m1", "--gpu-memory", "4gi"]);
    sb.genv_in("m1", &["attach", "--index", "1"]).ok();
    let cap = 4 * GI;

    // Sample the simulated device's real use while the processes race.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            let l = genv_sim_common::ledger().expect("sim ledger");
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(l.used(1), Ordering::Relaxed);
            }
        })
    };

    for round in 0..3 {
        // 12 processes, each taking 96 MiB chunks until refused, and holding them.
        let kinds = ["mem", "async", "vmm", "managed"];
        let mut children: Vec<_> = (0..12)
            .map(|i| {
                let mut c = under_shim(&sb, "m1", shim_cuda());
                c.args([
                    "link",
                    "alloc",
                    kinds[(i + round) % kinds.len()],
                    &(96 * MI).to_string(),
                    "100000",
                    "hold",
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped());
                c.spawn().expect("spawn")
            })
            .collect();
        let mut total = 0u64;
        let mut readers = Vec::new();
        for ch in &mut children {
            let mut lines = BufReader::new(ch.stdout.take().unwrap()).lines();
            let mut ok = None;
            for l in lines.by_ref().map_while(Result::ok) {
                if let Some(rest) = l.strip_prefix("ok ") {
                    let v: Vec<&str> = rest.split_whitespace().collect();
                    assert_eq!(v[2], "2", "refused with something else than OOM: {l}");
                    ok = Some(v[0].parse::<u64>().unwrap());
                }
                if l == "held" {
                    break;
                }
            }
            total += ok.expect("an ok line") * 96 * MI;
            readers.push(lines);
        }
        // Everything that fits was taken, and no more.
        assert!(total <= cap, "round {round}: {total} > {cap}");
        assert!(
            cap - total < 96 * MI,
            "round {round}: only {total} of {cap} taken"
        );
        for ch in &mut children {
            drop(ch.stdin.take());
        }
        for (mut ch, rest) in children.into_iter().zip(readers) {
            let rest: Vec<String> = rest.map_while(Result::ok).collect();
            assert!(ch.wait().unwrap().success(), "{rest:?}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    assert!(peak <= cap, "the device held {peak} > capacity {cap}");
    assert!(peak > cap - 96 * MI, "the sampler saw {peak}");
}
