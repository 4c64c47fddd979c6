//! The torture test: everything at once for a while, then the figures.
//!
//! Phase 1, concurrency and kills: CLI processes attaching, detaching, reconfiguring and running
//! `genv exec` on a shared 8-GPU machine, a quarter of them SIGKILLed at a random moment;
//! CUDA processes allocating under the shim, some SIGKILLed while they hold memory. All along a
//! checker reads the state and asserts that no device is given to two environments where one of
//! them holds it exclusively. At the end every process is gone and the ledger and the simulated
//! driver must both hold 0 bytes.
//!
//! Phase 2, a hostile file: bytes of the live state file flipped at random (tables and header),
//! the file replaced, truncated (between commands) and put on a full file system, with
//! commands running. Every command must end with an exit status (never a signal, never a hang)
//! and, when it fails, one line.
//!
//! `GENV_TORTURE_SECS` (default 16) splits between the phases; the figures are printed.

use genv_tests::shim;
use genv_tests::support;

use shim::*;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

const GPUS: usize = 8;
/// Longer than any command takes even on a loaded machine: past it, a command is hung.
const HANG: Duration = Duration::from_secs(60);

/// xorshift64*: reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default)]
struct Figures {
    commands: AtomicU64,
    cli_killed: AtomicU64,
    allocators: AtomicU64,
    allocators_killed: AtomicU64,
    checks: AtomicU64,
    flips: AtomicU64,
    replacements: AtomicU64,
    truncations: AtomicU64,
    full_disk_runs: AtomicU64,
    signals: AtomicU64,
    hangs: AtomicU64,
    given_twice: AtomicU64,
    multi_line_errors: AtomicU64,
    panics: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Waits for `child` (killing it with SIGKILL after `kill_after`, when given); records signals
/// we did not send, hangs, panics and failures of more than one line.
fn reap(mut child: Child, kill_after: Option<Duration>, f: &Figures, what: &str) -> Option<i32> {
    let t0 = Instant::now();
    let mut killed = false;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if !killed && kill_after.is_some_and(|d| t0.elapsed() >= d) {
            let _ = child.kill();
            killed = true;
        }
        if t0.elapsed() > HANG {
            bump(&f.hangs);
            eprintln!("HANG: {what}");
            let _ = child.kill();
            killed = true;
        }
        std::thread::sleep(Duration::from_micros(300));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    if err.contains("panicked") || err.contains("RUST_BACKTRACE") {
        bump(&f.panics);
        eprintln!("PANIC: {what}: {err}");
    }
    match (status.code(), status.signal()) {
        (Some(c), _) => {
            if c != 0 && err.lines().filter(|l| !l.is_empty()).count() > 1 {
                bump(&f.multi_line_errors);
                eprintln!("MULTI-LINE ERROR: {what}: {err}");
            }
            Some(c)
        }
        (None, Some(libc::SIGKILL)) if killed => None,
        (None, sig) => {
            bump(&f.signals);
            eprintln!("SIGNAL {sig:?}: {what}: {err}");
            None
        }
    }
}

fn spawn_quiet(mut c: Command) -> Child {
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// No device attached exclusively to one environment is attached to another (read straight
/// from the state file, as the shim does). Returns false when the file cannot be read now.
fn check_exclusive(sb: &Sandbox, f: &Figures) -> bool {
    let Ok(store) = genv_state::Store::open_at(&sb.state_path(), false) else {
        return false;
    };
    let snap = store.snapshot();
    let mut on: Vec<Vec<bool>> = vec![Vec::new(); GPUS];
    for (_, e) in snap.envs() {
        for a in e.attached() {
            if let Some(v) = on.get_mut(a.device as usize) {
                v.push(a.shared != 0);
            }
        }
    }
    for v in &on {
        if v.len() > 1 && v.iter().any(|shared| !shared) {
            bump(&f.given_twice);
            eprintln!("GIVEN TWICE: {on:?}");
        }
    }
    bump(&f.checks);
    true
}

fn phase_one(sb: &Arc<Sandbox>, secs: f64, seed: u64, f: &Arc<Figures>) {
    let envs: Vec<Env> = (0..6)
        .map(|i| {
            sb.env(&[
                "--name",
                &format!("t{i}"),
                "--gpu-memory",
                "2gi",
                "--no-attach",
            ])
        })
        .collect();
    let eids: Arc<Vec<String>> = Arc::new(envs.iter().map(|e| e.eid.clone()).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut threads = Vec::new();

    // CLI workers.
    for w in 0..3u64 {
        let (sb, f, eids, stop) = (sb.clone(), f.clone(), eids.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(seed ^ (w + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            while !stop.load(Ordering::Relaxed) {
                let eid = &eids[rng.below(eids.len() as u64) as usize];
                let ix = rng.below(GPUS as u64).to_string();
                let n = (1 + rng.below(3)).to_string();
                let args: Vec<&str> = match rng.below(8) {
                    0 => vec!["attach"],
                    1 => vec!["attach", "--index", &ix],
                    2 => vec!["attach", "--index", &ix, "--over-subscribe"],
                    3 => vec!["detach"],
                    4 => vec!["detach", "--index", &ix],
                    5 => vec!["config", "gpus", &n],
                    6 => vec!["exec", "--gpus", &n, "--", "sleep", "0.01"],
                    _ => vec!["devices"],
                };
                let mut c = sb.genv_cmd(&args);
                c.env("GENV_ENVIRONMENT_ID", eid);
                let kill = (rng.below(4) == 0).then(|| Duration::from_micros(rng.below(8000)));
                if kill.is_some() {
                    bump(&f.cli_killed);
                }
                bump(&f.commands);
                reap(spawn_quiet(c), kill, &f, &format!("genv {args:?}"));
            }
        }));
    }
    // Allocating processes, some killed while they hold memory.
    {
        let (sb, f, eids, stop) = (sb.clone(), f.clone(), eids.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(seed ^ 0xa110c);
            let exe = shim_cuda();
            while !stop.load(Ordering::Relaxed) {
                let eid = &eids[rng.below(eids.len() as u64) as usize];
                let mut c = under_shim(&sb, eid, &exe);
                let count = (1 + rng.below(12)).to_string();
                c.args(["link", "alloc", "mem", &(128 * MI).to_string(), &count]);
                let kill = (rng.below(2) == 0).then(|| Duration::from_micros(rng.below(20_000)));
                if kill.is_some() {
                    bump(&f.allocators_killed);
                }
                bump(&f.allocators);
                reap(spawn_quiet(c), kill, &f, "shim_cuda alloc");
            }
        }));
    }
    // The checker.
    {
        let (sb, f, stop) = (sb.clone(), f.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                check_exclusive(&sb, &f);
                std::thread::sleep(Duration::from_millis(5));
            }
        }));
    }
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("worker");
    }
    assert!(check_exclusive(sb, f));

    // Nothing is left booked: in the ledger (as `genv envs` reports it) and in the driver.
    let j = sb.envs_json();
    for e in j.as_array().unwrap() {
        for (i, u) in e["used_memory"].as_array().unwrap().iter().enumerate() {
            assert_eq!(
                u, 0,
                "environment {} leaked memory on its device #{i}: {e}",
                e["eid"]
            );
        }
    }
    let l = genv_sim_common::ledger().expect("simulated ledger");
    for d in 0..GPUS {
        assert_eq!(l.used(d), 0, "the simulated GPU {d} still holds memory");
    }
    drop(envs);
}

/// Runs a few commands against whatever the file holds now; each must end with a status.
fn poke(sb: &Sandbox, rng: &mut Rng, f: &Figures, holder: u32) {
    let pid = holder.to_string();
    let eid = format!("p{}", rng.below(4));
    let all: [Vec<&str>; 6] = [
        vec!["envs"],
        vec!["envs", "--json"],
        vec!["devices"],
        vec!["status"],
        vec!["attach", "--index", "1"],
        vec![
            "activate",
            "--id",
            &eid,
            "--gpus",
            "1",
            "--shell",
            "bash",
            "--shell-pid",
            &pid,
        ],
    ];
    for _ in 0..3 {
        let args = &all[rng.below(all.len() as u64) as usize];
        let mut c = sb.genv_cmd(args);
        c.env("GENV_ENVIRONMENT_ID", &eid);
        bump(&f.commands);
        reap(spawn_quiet(c), None, f, &format!("genv {args:?}"));
    }
    // A CUDA program too: it maps the file and reads the tables the flips landed in.
    let mut c = under_shim(sb, &eid, shim_cuda());
    c.args(["link", "alloc", "mem", &(64 * MI).to_string(), "2"]);
    bump(&f.allocators);
    reap(spawn_quiet(c), None, f, "shim_cuda under a flipped file");
}

fn phase_two(sb: &Sandbox, secs: f64, seed: u64, f: &Figures) {
    let mut rng = Rng(seed ^ 0xf11b);
    let holder = Holder::spawn();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let path = sb.state_path();
    let header = genv_state::layout::HEADER_SIZE as u64;
    let tables = genv_state::layout::TABLES_SIZE as u64;
    while Instant::now() < deadline {
        // A valid file with a few environments to start each round from.
        let _ = std::fs::remove_file(&path);
        for i in 0..3 {
            sb.activate_for(holder.pid(), &["--id", &format!("p{i}"), "--gpus", "1"]);
        }
        match rng.below(10) {
            // Flips while commands run, mostly in the tables, sometimes in the header.
            0..=6 => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .expect("open state");
                for _ in 0..(1 + rng.below(64)) {
                    let off = if rng.below(8) == 0 {
                        rng.below(header)
                    } else {
                        header + rng.below(2 * tables)
                    };
                    let mut b = [0u8];
                    let _ = file.read_exact_at(&mut b, off);
                    b[0] ^= 1 << rng.below(8);
                    let _ = file.write_all_at(&b, off);
                    bump(&f.flips);
                }
                poke(sb, &mut rng, f, holder.pid());
            }
            // Replaced by another valid file (no process uses the old one: accepted).
            7 => {
                let tmp = sb.tmpdir.join("replacement");
                std::fs::copy(&path, &tmp).unwrap();
                std::fs::rename(&tmp, &path).unwrap();
                bump(&f.replacements);
                poke(sb, &mut rng, f, holder.pid());
            }
            // Truncated between commands (a shrink under a running reader is the shared
            // mode's known limit: see ARCHITECTURE.md).
            8 => {
                let len = rng.below(genv_state::layout::FILE_SIZE as u64);
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_len(len)
                    .unwrap();
                bump(&f.truncations);
                poke(sb, &mut rng, f, holder.pid());
            }
            _ => {
                full_disk(sb, &mut rng, f, holder.pid());
            }
        }
    }
}

/// A file system that cannot hold the state file, then one that fills up after it was made.
fn full_disk(sb: &Sandbox, rng: &mut Rng, f: &Figures, holder: u32) {
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    for size in ["1m", "8m"] {
        let mnt = sb.root.join(format!("small-{}", rng.below(1 << 30)));
        std::fs::create_dir(&mnt).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=1777"),
                "tmpfs",
            ])
            .arg(&mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::fs::remove_dir(&mnt);
            return;
        }
        let mut small = Sandbox::with_gpus(GPUS);
        small.set("GENV_TMPDIR", mnt.join("genv").to_str().unwrap());
        small.set("GENV_SIM_DIR", sb.simdir.to_str().unwrap());
        // Made while there is room (the 8m one), then everything else filled.
        let _ = small.genv(&["envs"]);
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", mnt.join("filler").display()))
            .stderr(Stdio::null())
            .status();
        poke(&small, rng, f, holder);
        let mut c = small.genv_cmd(&["lock", "--", "true"]);
        c.env("GENV_ENVIRONMENT_ID", "p0");
        reap(spawn_quiet(c), None, f, "genv lock on a full disk");
        bump(&f.full_disk_runs);
        let _ = Command::new("umount").arg("-l").arg(&mnt).status();
        let _ = std::fs::remove_dir(&mnt);
    }
}

#[test]
fn torture() {
    let secs: f64 = std::env::var("GENV_TORTURE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16.0);
    let seed: u64 = std::env::var("GENV_TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| genv_state::fsafe::random_u64() | 1);
    let sb = Arc::new(Sandbox::with_gpus(GPUS));
    // The simulated driver's ledger, read by this process at the end.
    std::env::set_var("GENV_SIM_DIR", &sb.simdir);
    let f = Arc::new(Figures::default());
    let t0 = Instant::now();
    phase_one(&sb, secs / 2.0, seed, &f);
    let t1 = t0.elapsed();
    phase_two(&sb, secs / 2.0, seed, &f);
    let figures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let line = |k: &str, v: &AtomicU64| {
        figures
            .lock()
            .unwrap()
            .push(format!("{k} {}", v.load(Ordering::Relaxed)))
    };
    line("commands", &f.commands);
    line("cli_killed", &f.cli_killed);
    line("allocators", &f.allocators);
    line("allocators_killed", &f.allocators_killed);
    line("exclusivity_checks", &f.checks);
    line("byte_flips", &f.flips);
    line("replacements", &f.replacements);
    line("truncations", &f.truncations);
    line("full_disk_runs", &f.full_disk_runs);
    line("signals", &f.signals);
    line("hangs", &f.hangs);
    line("given_twice", &f.given_twice);
    line("panics", &f.panics);
    line("multi_line_errors", &f.multi_line_errors);
    println!(
        "torture: seed {seed}, {:.1} s ({:.1} s + {:.1} s): {}, leaked 0 bytes",
        t0.elapsed().as_secs_f64(),
        t1.as_secs_f64(),
        (t0.elapsed() - t1).as_secs_f64(),
        figures.lock().unwrap().join(", ")
    );
    for (k, v) in [
        ("signals", &f.signals),
        ("hangs", &f.hangs),
        ("devices given twice", &f.given_twice),
        ("panics", &f.panics),
        ("multi-line errors", &f.multi_line_errors),
    ] {
        assert_eq!(v.load(Ordering::Relaxed), 0, "{k} (seed {seed})");
    }
}
