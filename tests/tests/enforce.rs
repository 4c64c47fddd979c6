//! Per-user quotas (the service refuses what would pass them) and `genv enforce` (the backstop
//! that acts on what the shim cannot see), on the simulated machine in system mode, with real
//! second users. Skips (with a reason) when not run as root; CI runs as root.

use genv_tests::{shim, support};
use shim::*;
use support::*;

struct World {
    sys: SystemSandbox,
    alice: User,
    bob: User,
    /// Every holding program started, ended with the test however it ends.
    jobs: std::cell::RefCell<Vec<u32>>,
}

impl Drop for World {
    fn drop(&mut self) {
        for &pid in self.jobs.borrow().iter() {
            // SAFETY: kill has no memory preconditions; these are the test's own children.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

fn world(policy: &str) -> Option<World> {
    if !can_switch_users() {
        return None;
    }
    let sys = SystemSandbox::start_with(16, policy)?;
    Some(World {
        sys,
        alice: user("genv-test1", 61001),
        bob: user("genv-test3", 61003),
        jobs: Default::default(),
    })
}

impl World {
    fn sb(&self) -> &Sandbox {
        &self.sys.sb
    }

    /// `genv activate args` for a fresh shell stand-in of `u`: the holder and the outcome.
    fn activate(&self, u: &User, args: &[&str]) -> (Holder, Out) {
        let h = holder_as(self.sb(), u);
        let pid = h.pid().to_string();
        let out = genv_as(self.sb(), u, None, &activate_args(&pid, args));
        (h, out)
    }

    /// `cuda_hold <ordinal> <bytes>` of `u`: in environment `eid` under the shim, in it without
    /// the shim (`env -u LD_PRELOAD`), or outside any environment; `prefix` runs before it
    /// (`sh -c 'trap "" TERM; exec "$@"'`).
    fn hold(&self, u: &User, eid: Option<&str>, shimmed: bool, ordinal: u32, bytes: u64) -> Held {
        self.hold_with(u, eid, shimmed, ordinal, bytes, &[])
    }

    fn hold_with(
        &self,
        u: &User,
        eid: Option<&str>,
        shimmed: bool,
        ordinal: u32,
        bytes: u64,
        prefix: &[&str],
    ) -> Held {
        shim_cuda();
        let prog = c_program("cuda_hold", true, &[]);
        let mut c = as_user(self.sb(), u, "env");
        if !shimmed {
            c.args(["-u", "LD_PRELOAD"]);
        }
        c.args(prefix)
            .arg(&prog)
            .args([ordinal.to_string(), bytes.to_string()])
            .env("LD_PRELOAD", shim_lib());
        if let Some(e) = eid {
            c.env("GENV_ENVIRONMENT_ID", e);
        }
        self.held(c)
    }

    fn held(&self, c: std::process::Command) -> Held {
        let h = spawn_held(c);
        self.jobs.borrow_mut().push(h.child.id());
        assert!(h.before.is_empty(), "cuda_hold said {:?}", h.before);
        h
    }

    fn enforce(&self, args: &[&str]) -> Out {
        let mut all = vec!["enforce", "--once"];
        all.extend_from_slice(args);
        self.sb().genv(&all)
    }
}

fn alive(h: &mut Held) -> bool {
    h.child.try_wait().unwrap().is_none()
}

/// The action lines of `out` with the verb taken off: what was decided about whom.
fn decisions(out: &str, verb: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix(&format!("genv enforce: {verb} ")))
        .map(str::to_string)
        .collect()
}

#[test]
fn quotas_refuse_the_attach_that_would_pass_them() {
    let policy = "[quotas]\nmax_devices = 1\n[quotas.users]\ngenv-test3 = { max_devices = 3, \
                  max_gpu_memory = \"10gi\" }\n";
    let Some(w) = world(policy) else { return };
    // Everyone's quota: one GPU.
    let (_a1, out) = w.activate(&w.alice, &["--gpus", "1"]);
    out.ok();
    let (_a2, out) = w.activate(&w.alice, &["--gpus", "1"]);
    let err = out.fails_with("quota");
    assert!(
        err.contains("you (genv-test1) may hold at most 1 GPU")
            && err.contains("max_devices in [quotas] of")
            && err.contains("hold 1 GPU (0) now")
            && err.contains("this would make 2")
            && !err.trim_end().contains('\n'),
        "{err}"
    );
    // The refused activation left nothing behind.
    assert_eq!(w.sb().eids().len(), 1);
    // bob's own quota: three GPUs, 10gi in all (a GPU without a capacity counts whole).
    let (b1, out) = w.activate(&w.bob, &["--gpus", "1", "--gpu-memory", "8gi"]);
    out.ok();
    let (_b2, out) = w.activate(&w.bob, &["--gpus", "1"]);
    let err = out.fails_with("quota");
    assert!(
        err.contains("at most 10gi of GPU memory")
            && err.contains("max_gpu_memory of genv-test3 in [quotas.users]")
            && err.contains("hold 8 GiB now"),
        "{err}"
    );
    let (_b3, out) = w.activate(&w.bob, &["--gpus", "1", "--gpu-memory", "2gi"]);
    out.ok();
    // Raising a capacity adds to the holding too; lowering it never is refused.
    let b1 = b1.pid().to_string();
    let err =
        genv_as(w.sb(), &w.bob, Some(&b1), &["config", "gpu-memory", "9gi"]).fails_with("quota");
    assert!(
        err.contains("hold 10 GiB now") && err.contains("would make 11 GiB"),
        "{err}"
    );
    genv_as(w.sb(), &w.bob, Some(&b1), &["config", "gpu-memory", "1gi"]).ok();
    // attach --index past the device quota.
    let (a3, out) = w.activate(&w.alice, &[]);
    out.ok();
    let a3 = a3.pid().to_string();
    genv_as(w.sb(), &w.alice, Some(&a3), &["attach", "--index", "3"]).fails_with("quota");
    // Root is not limited: two GPUs (0, free again when alice's first environment ended, and 3).
    drop(_a1);
    let (r1, r2) = (Holder::spawn(), Holder::spawn());
    for h in [&r1, &r2] {
        let pid = h.pid().to_string();
        w.sb().genv(&activate_args(&pid, &["--gpus", "1"])).ok();
    }
}

#[test]
fn enforce_once_terminates_only_what_breaks_the_rules() {
    let Some(w) = world("[enforce]\ngrace_seconds = 5\n") else {
        return;
    };
    let (a, out) = w.activate(&w.alice, &["--gpus", "1", "--gpu-memory", "1gi"]);
    out.ok();
    let (b, out) = w.activate(&w.bob, &["--gpus", "1", "--gpu-memory", "1gi"]);
    out.ok();
    let (a, b) = (a.pid().to_string(), b.pid().to_string());
    // alice's environment is on GPU 0, bob's on GPU 1.
    assert_eq!(
        w.sb().env_json(&a).unwrap()["attached"],
        serde_json::json!([0])
    );
    let mut over = w.hold(&w.alice, Some(&a), false, 0, 2 * GI);
    let mut within = w.hold(&w.alice, Some(&a), true, 0, 512 * MI);
    let mut other = w.hold(&w.bob, Some(&b), true, 0, 512 * MI);
    let mut outside = w.hold(&w.bob, None, false, 2, GI);
    let dry = w.enforce(&["--dry-run"]);
    let planned = decisions(dry.ok(), "would SIGTERM");
    assert_eq!(planned.len(), 1, "{}", dry.stdout);
    assert!(
        planned[0].starts_with(&format!("pid {} of genv-test1(", over.child.id()))
            && planned[0].contains(&format!("environment {a}, GPU 0: over-capacity"))
            && planned[0].contains("uses 2.5 GiB on GPU 0, more than its capacity 1 GiB"),
        "{planned:?}"
    );
    assert!(dry.stdout.contains("1 would be acted on"), "{}", dry.stdout);
    for h in [&mut over, &mut within, &mut other, &mut outside] {
        assert!(alive(h), "the dry run touched a process");
    }
    let real = w.enforce(&[]);
    assert_eq!(decisions(real.ok(), "SIGTERM"), planned, "{}", real.stdout);
    assert!(wait_for(std::time::Duration::from_secs(5), || !alive(
        &mut over
    )));
    for h in [&mut within, &mut other, &mut outside] {
        assert!(alive(h), "a process within the rules was touched");
    }
    // Nothing more to do.
    let again = w.enforce(&[]);
    assert!(
        decisions(again.ok(), "SIGTERM").is_empty(),
        "{}",
        again.stdout
    );
}

#[test]
fn enforce_outside_and_foreign_devices_with_sigkill_after_the_grace() {
    let policy = "[enforce]\noutside = \"terminate\"\ngrace_seconds = 1\n";
    let Some(w) = world(policy) else { return };
    let (a, out) = w.activate(&w.alice, &["--gpus", "1"]);
    out.ok();
    let a = a.pid().to_string();
    // bob, outside any environment, ignores SIGTERM.
    let stubborn = ["sh", "-c", "trap '' TERM; exec \"$@\"", "sh"];
    let mut outside = w.hold_with(&w.bob, None, false, 2, GI, &stubborn);
    // alice's environment is on GPU 0; this program of hers uses GPU 3.
    let mut foreign = w.hold(&w.alice, Some(&a), false, 3, GI);
    // root's own processes outside environments are never touched.
    let mut c = w.sb().command(c_program("cuda_hold", true, &[]));
    c.args(["1", &GI.to_string()]);
    let mut roots = w.held(c);
    let out = w.enforce(&[]);
    let text = out.ok();
    let term = decisions(text, "SIGTERM");
    assert_eq!(term.len(), 2, "{text}");
    assert!(
        term.iter().any(
            |l| l.starts_with(&format!("pid {} of genv-test3(", outside.child.id()))
                && l.contains("no environment, GPU 2: outside")
        ),
        "{text}"
    );
    assert!(
        term.iter()
            .any(|l| l.starts_with(&format!("pid {} ", foreign.child.id()))
                && l.contains("GPU 3: foreign-device: the environment is attached to GPU(s) 0")),
        "{text}"
    );
    let killed = decisions(text, "SIGKILL (alive 1 s after SIGTERM)");
    assert_eq!(killed.len(), 1, "{text}");
    assert!(
        killed[0].starts_with(&format!("pid {} ", outside.child.id())),
        "{text}"
    );
    assert!(!alive(&mut outside) && !alive(&mut foreign));
    assert!(alive(&mut roots));
}

#[test]
fn enforce_takes_no_action_without_nvml() {
    let Some(w) = world("[enforce]\noutside = \"terminate\"\n") else {
        return;
    };
    let mut outside = w.hold(&w.bob, None, false, 0, GI);
    let empty = w.sb().root.join("no-driver");
    std::fs::create_dir_all(&empty).unwrap();
    let mut c = w.sb().genv_cmd(&["enforce", "--once"]);
    c.env("LD_LIBRARY_PATH", &empty);
    let out = Sandbox::output(c);
    let err = out.fails_with("no action in this pass");
    assert!(err.contains("NVML"), "{err}");
    assert!(alive(&mut outside));
    // With the driver back, the same pass acts.
    let out = w.enforce(&[]);
    assert_eq!(decisions(out.ok(), "SIGTERM").len(), 1, "{}", out.stdout);
}

#[test]
fn enforce_is_for_root() {
    if !can_switch_users() {
        return;
    }
    let sb = Sandbox::new();
    let u = user("genv-test1", 61001);
    let err = genv_as(&sb, &u, None, &["enforce", "--once"]).fails_with("only root");
    assert!(!err.trim_end().contains('\n'), "{err}");
}
