//! `make bench`: how long `genv envs`, `genv attach` and `genv devices` take with many
//! environments registered. Not a test: it prints a table and asserts nothing about time.
//!
//! Run through scripts/bench.sh, which gives it a private GENV_TMPDIR and the simulated machine.
//! The environments are written straight into the state file in one transaction. Each names its
//! own live `sleep` process (pid and start time), as 1000 shells would, so that genv really looks
//! up 1000 processes; `--one-pid` makes them all name this process instead.

use genv_state::layout::{put_str, EnvRec, PidRec, MAX_ENVS};
use genv_state::{ledger, ops, procfs, Store};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

struct Opts {
    envs: usize,
    runs: usize,
    genv: PathBuf,
    one_pid: bool,
}

fn opts() -> Opts {
    let mut o = Opts {
        envs: 1000,
        runs: 50,
        genv: std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("genv")))
            .unwrap_or_else(|| "genv".into()),
        one_pid: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_else(|| usage(a));
        match a.as_str() {
            "--envs" => o.envs = val().parse().unwrap_or_else(|_| usage(a)),
            "--runs" => o.runs = val().parse().unwrap_or_else(|_| usage(a)),
            "--genv" => o.genv = val().into(),
            "--one-pid" => o.one_pid = true,
            _ => usage(a),
        }
    }
    if o.envs == 0 || o.envs > MAX_ENVS || o.runs == 0 {
        usage("--envs/--runs");
    }
    o
}

fn usage(bad: &str) -> ! {
    eprintln!(
        "genv-bench: bad argument {bad:?}\nusage: genv-bench [--envs N (1..{MAX_ENVS})] [--runs N] [--genv PATH] [--one-pid]"
    );
    std::process::exit(2)
}

/// Stand-ins for shells: `sleep`s that die with this process (PR_SET_PDEATHSIG), killed on drop.
struct Shells(Vec<Child>);

impl Shells {
    fn spawn(n: usize) -> Shells {
        let v = (0..n)
            .map(|_| {
                let mut c = Command::new("sleep");
                c.arg("86400").stdin(Stdio::null()).stdout(Stdio::null());
                // SAFETY: prctl is async-signal-safe.
                unsafe {
                    c.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                c.spawn().expect("spawn sleep")
            })
            .collect();
        Shells(v)
    }
}

impl Drop for Shells {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Registers one environment per pid in `pids`; the first has a device count of 1.
fn register(store: &Store, pids: &[u32]) -> Result<(), genv_state::Error> {
    let n = pids.len();
    let starts: Vec<u64> = pids
        .iter()
        .map(|&p| procfs::start_time(p).expect("start time of a live process"))
        .collect();
    let caller = genv_state::Caller::current();
    let slots = store.transaction(|t| {
        let mut slots = Vec::with_capacity(n);
        let free: Vec<usize> = (0..MAX_ENVS).filter(|&i| !t.envs[i].is_used()).collect();
        for (k, &i) in free.iter().take(n).enumerate() {
            t.next_serial = t.next_serial.max(1) + 1;
            let e = &mut t.envs[i];
            *e = EnvRec::empty();
            e.serial = t.next_serial;
            put_str(&mut e.eid, &format!("bench-{k}"));
            put_str(&mut e.name, &format!("bench env {k}"));
            put_str(&mut e.username, &caller.username);
            e.uid = caller.uid;
            e.created_ms = ops::now_ms() - (n - k) as u64 * 1000;
            e.cfg_gpus = if k == 0 { 1 } else { -1 };
            e.n_pids = 1;
            e.pids[0] = PidRec {
                pid: pids[k],
                _pad: 0,
                start_time: starts[k],
            };
            t.env_hwm = t.env_hwm.max(i as u32 + 1);
            slots.push((i, e.serial));
        }
        Ok(slots)
    })?;
    let own = store.ledger(caller.uid, ledger::Access::Map, ledger::Create::Own)?;
    for (i, serial) in slots {
        ledger::reset_env(&own, i, serial)?;
    }
    Ok(())
}

fn genv(o: &Opts, args: &[&str]) -> Command {
    let mut c = Command::new(&o.genv);
    c.args(args)
        .env("GENV_ENVIRONMENT_ID", "bench-0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Runs `args` once and returns the wall time in milliseconds; a failure ends the bench.
fn timed(o: &Opts, args: &[&str]) -> f64 {
    let t0 = Instant::now();
    let out = genv(o, args).output().expect("run genv");
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        eprintln!(
            "genv-bench: `genv {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
        std::process::exit(1);
    }
    ms
}

struct Row {
    what: String,
    ms: Vec<f64>,
}

fn main() {
    let o = opts();
    let store = match Store::open() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("genv-bench: {e}");
            std::process::exit(1);
        }
    };
    let shells = (!o.one_pid).then(|| Shells::spawn(o.envs));
    let pids: Vec<u32> = match &shells {
        Some(s) => s.0.iter().map(|c| c.id()).collect(),
        None => vec![std::process::id(); o.envs],
    };
    let t0 = Instant::now();
    if let Err(e) = register(&store, &pids) {
        eprintln!("genv-bench: {e}");
        std::process::exit(1);
    }
    let reg_ms = t0.elapsed().as_secs_f64() * 1e3;
    // Sanity (not timing): genv sees them all.
    let listed = genv(&o, &["envs"])
        .stdout(Stdio::piped())
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .count()
                .saturating_sub(1)
        })
        .unwrap_or(0);
    if listed != o.envs {
        eprintln!(
            "genv-bench: genv envs lists {listed} environments, expected {}",
            o.envs
        );
        std::process::exit(1);
    }
    println!(
        "genv bench: {} environments ({}) registered in {reg_ms:.1} ms; {} runs per command; {}",
        o.envs,
        if o.one_pid {
            "all naming the bench process"
        } else {
            "each with its own live process"
        },
        o.runs,
        o.genv.display()
    );
    // Warm the page cache and the device list once.
    timed(&o, &["devices"]);

    let mut rows: Vec<Row> = Vec::new();
    let mut bench = |what: &str, args: &[&str], before: Option<&[&str]>| {
        let ms = (0..o.runs)
            .map(|_| {
                if let Some(b) = before {
                    timed(&o, b);
                }
                timed(&o, args)
            })
            .collect();
        rows.push(Row {
            what: what.into(),
            ms,
        });
    };
    bench("genv --version (process start)", &["--version"], None);
    bench("genv envs", &["envs"], None);
    bench("genv envs --json", &["envs", "--json"], None);
    bench("genv devices", &["devices"], None);
    bench("genv status", &["status"], None);
    bench("genv attach (after detach)", &["attach"], Some(&["detach"]));
    bench("genv detach (after attach)", &["detach"], Some(&["attach"]));

    println!();
    println!(
        "{:<32} {:>6} {:>10} {:>10} {:>10} {:>10}",
        "COMMAND", "RUNS", "MEAN ms", "MEDIAN ms", "MIN ms", "MAX ms"
    );
    for r in &rows {
        let mut v = r.ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let median = if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        println!(
            "{:<32} {:>6} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
            r.what,
            v.len(),
            mean,
            median,
            v[0],
            v[v.len() - 1]
        );
    }
}
