//! Shared helpers of the integration tests: where the built binaries are, and a sandbox per test
//! (its own state directory, simulated machine, HOME and working directory) that runs `genv` as
//! a subprocess.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The directory holding `genv`, `libgenv_shim.so` and the sim libraries as cargo built them:
/// `$GENV_BIN_DIR`, else `target/<profile>` derived from this test executable
/// (`target/<profile>/deps/<test>-<hash>`), so both `make test` and a private
/// `CARGO_TARGET_DIR` work.
pub fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("GENV_BIN_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        let exe = std::env::current_exe().expect("test executable path");
        let deps = exe.parent().expect("deps dir");
        let dir = if deps.file_name() == Some(OsStr::new("deps")) {
            deps.parent().expect("profile dir").to_path_buf()
        } else {
            deps.to_path_buf()
        };
        assert!(
            dir.join("genv").is_file(),
            "no genv binary in {}: build it first (cargo build --release -p genv-cli -p genv-shim \
             -p genv-sim-nvml -p genv-sim-cuda) or set GENV_BIN_DIR",
            dir.display()
        );
        dir
    })
    .clone()
}

pub fn genv_bin() -> PathBuf {
    bin_dir().join("genv")
}

pub fn shim_lib() -> PathBuf {
    bin_dir().join("libgenv_shim.so")
}

/// The directory with the simulated `libnvidia-ml.so.1` and `libcuda.so.1`: `$GENV_SIM_LIB_DIR`,
/// else `target/sim` (what `make sim` fills), refreshed from the cargo outputs when those are
/// newer, so that a plain `cargo test` or a private target dir tests the libraries just built.
pub fn sim_lib_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("GENV_SIM_LIB_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        let bin = bin_dir();
        let sim = bin.parent().unwrap_or(&bin).join("sim");
        let _ = std::fs::create_dir_all(&sim);
        for (built, name) in [
            ("libnvidia_ml.so", "libnvidia-ml.so.1"),
            ("libcuda.so", "libcuda.so.1"),
        ] {
            let src = bin.join(built);
            let dst = sim.join(name);
            let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
            if src.is_file() && mtime(&src) > mtime(&dst) {
                // Copy then rename: test binaries run concurrently and may race here.
                let tmp = sim.join(format!(".{name}.{}", std::process::id()));
                if std::fs::copy(&src, &tmp).is_ok() {
                    let _ = std::fs::rename(&tmp, &dst);
                }
                let _ = std::fs::remove_file(&tmp);
            }
        }
        assert!(
            sim.join("libnvidia-ml.so.1").is_file(),
            "no simulated libnvidia-ml.so.1 in {}: run `make build` or build genv-sim-nvml",
            sim.display()
        );
        sim
    })
    .clone()
}

/// What a finished command left.
#[derive(Debug, Clone)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    fn from(o: Output) -> Out {
        Out {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Asserts exit 0 and no panic; returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert!(self.success(), "expected success, got {self:#?}");
        self.no_panic();
        &self.stdout
    }

    #[track_caller]
    pub fn no_panic(&self) {
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "panic: {self:#?}"
        );
    }

    /// Asserts a non-zero exit, no panic, and exactly one stderr line containing `fragment`;
    /// returns that line.
    #[track_caller]
    pub fn fails_with(&self, fragment: &str) -> String {
        assert!(
            self.code.is_some_and(|c| c != 0),
            "expected failure with {fragment:?}, got {self:#?}"
        );
        self.no_panic();
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1, "expected one stderr line: {self:#?}");
        assert!(
            lines[0].contains(fragment),
            "stderr line lacks {fragment:?}: {self:#?}"
        );
        lines[0].to_string()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.stdout))
    }
}

/// A process standing in for a shell: an environment activated with its pid lives as long as it.
pub struct Holder {
    pub child: Child,
}

impl Holder {
    pub fn spawn() -> Holder {
        Self::spawn_cmd(Command::new("sleep"))
    }

    pub fn spawn_cmd(mut cmd: Command) -> Holder {
        let child = cmd
            .arg("3600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        Holder { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as when a terminal is closed abruptly.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An environment activated for a [`Holder`] (as the shell integration would for a shell).
pub struct Env {
    pub eid: String,
    pub holder: Holder,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One test's private world.
pub struct Sandbox {
    pub root: PathBuf,
    /// `GENV_TMPDIR` (not created: genv creates it).
    pub tmpdir: PathBuf,
    pub simdir: PathBuf,
    pub home: PathBuf,
    /// The working directory of every command.
    pub work: PathBuf,
    pub vars: Vec<(String, String)>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Self::with_gpus(4)
    }

    pub fn with_gpus(n: usize) -> Sandbox {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let root = std::env::temp_dir().join(format!(
            "genv-it-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let home = root.join("home");
        let work = root.join("work");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        Sandbox {
            tmpdir: root.join("genv"),
            simdir: root.join("sim"),
            home,
            work,
            root,
            vars: vec![("GENV_SIM_GPUS".into(), n.to_string())],
        }
    }

    /// Sets (or replaces) a variable of every later command.
    pub fn set(&mut self, k: &str, v: &str) {
        self.vars.retain(|(a, _)| a != k);
        self.vars.push((k.into(), v.into()));
    }

    pub fn state_path(&self) -> PathBuf {
        self.tmpdir.join("state.v2")
    }

    /// A command with the sandbox's environment and nothing inherited that could leak genv
    /// state in (an outer GENV_ENVIRONMENT_ID, LD_PRELOAD, GENV_TMPDIR).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .current_dir(&self.work)
            .env(
                "PATH",
                format!(
                    "{}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                    bin_dir().display()
                ),
            )
            .env("HOME", &self.home)
            .env("LANG", "C.UTF-8")
            .env("GENV_TMPDIR", &self.tmpdir)
            // No system configuration of the machine's reaches a test (empty: the shared mode).
            .env("GENV_CONFIG", "")
            .env("GENV_SIM_DIR", &self.simdir)
            .env("LD_LIBRARY_PATH", sim_lib_dir())
            .stdin(Stdio::null());
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c
    }

    pub fn genv_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.command(genv_bin());
        c.args(args);
        c
    }

    pub fn output(mut c: Command) -> Out {
        Out::from(c.output().expect("run command"))
    }

    /// `genv args…` outside any environment.
    pub fn genv(&self, args: &[&str]) -> Out {
        Self::output(self.genv_cmd(args))
    }

    /// `genv args…` inside environment `eid`.
    pub fn genv_in(&self, eid: &str, args: &[&str]) -> Out {
        let mut c = self.genv_cmd(args);
        c.env("GENV_ENVIRONMENT_ID", eid);
        Self::output(c)
    }

    /// `genv activate args…` as the shell integration runs it for the shell `pid`.
    pub fn activate_for(&self, pid: u32, args: &[&str]) -> Out {
        let pid = pid.to_string();
        self.genv(&activate_args(&pid, args))
    }

    /// A fresh environment held by a `sleep` process; panics if activation fails.
    #[track_caller]
    pub fn env(&self, args: &[&str]) -> Env {
        let holder = Holder::spawn();
        let out = self.activate_for(holder.pid(), args);
        out.ok();
        let eid = args
            .windows(2)
            .find(|w| w[0] == "--id")
            .map(|w| w[1].to_string())
            .unwrap_or_else(|| holder.pid().to_string());
        Env { eid, holder }
    }

    pub fn envs_json(&self) -> serde_json::Value {
        self.genv(&["envs", "--json"]).json()
    }

    pub fn devices_json(&self) -> serde_json::Value {
        self.genv(&["devices", "--json"]).json()
    }

    /// `(index, [eid…])` for every device, from `genv devices --json`.
    pub fn attachments(&self) -> Vec<(u64, Vec<String>)> {
        self.devices_json()
            .as_array()
            .expect("devices array")
            .iter()
            .map(|d| {
                let eids = d["attachments"]
                    .as_array()
                    .expect("attachments")
                    .iter()
                    .map(|a| a["eid"].as_str().expect("eid").to_string())
                    .collect();
                (d["index"].as_u64().expect("index"), eids)
            })
            .collect()
    }

    /// The eids of the live environments, from `genv envs --json`.
    pub fn eids(&self) -> Vec<String> {
        self.envs_json()
            .as_array()
            .expect("envs array")
            .iter()
            .map(|e| e["eid"].as_str().expect("eid").to_string())
            .collect()
    }

    /// The environment `eid` from `genv envs --json`.
    pub fn env_json(&self, eid: &str) -> Option<serde_json::Value> {
        self.envs_json()
            .as_array()
            .expect("envs array")
            .iter()
            .find(|e| e["eid"] == eid)
            .cloned()
    }

    /// The state file opened through the state API (as the SDK would).
    pub fn store(&self) -> genv_state::Store {
        genv_state::Store::open_at(&self.state_path(), false).expect("open state file")
    }

    /// The bytes of the current tables (the active copy): equal before and after a command
    /// means the command changed nothing (a failed transaction may scribble on the inactive
    /// copy and move the generation, which is not a change).
    pub fn tables_bytes(&self) -> Vec<u8> {
        let snap = self.store().snapshot();
        let t: &genv_state::layout::Tables = &snap;
        // SAFETY: Tables is plain data; we only read its bytes.
        unsafe {
            std::slice::from_raw_parts(
                t as *const _ as *const u8,
                std::mem::size_of::<genv_state::layout::Tables>(),
            )
        }
        .to_vec()
    }

    /// Runs a shell (bash, zsh or fish) on `script` with the sandbox environment; `GENV` holds
    /// genv's absolute path. Interactive (`-i`) like a terminal session, but without rc files.
    pub fn shell(&self, shell: &str, script: &str) -> Out {
        let mut c = self.command(shell);
        match shell {
            "bash" => c.args(["--norc", "--noprofile", "-i", "-c", script]),
            "zsh" => c.args(["-f", "-i", "-c", script]),
            "fish" => c.args(["--no-config", "-i", "-c", script]),
            other => panic!("unknown shell {other}"),
        };
        c.env("GENV", genv_bin()).env("TERM", "dumb");
        Self::output(c)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Whether `program` is on the PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The C library of this process: harmless in LD_PRELOAD, and a real path the loader accepts.
pub fn libc_path() -> String {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libc.so") || p.contains("/libc-"))
        .expect("libc in /proc/self/maps")
        .to_string()
}

/// `key=value` lines of a script's stdout.
pub fn kv(stdout: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
}

/// Polls `f` until it is true or `timeout` passes; returns the last answer.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    loop {
        if f() {
            return true;
        }
        if t0.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Other users (the tests run as root in CI and switch to real second and third users).

impl User {
    pub fn root() -> User {
        User {
            uid: 0,
            gid: 0,
            name: "root".into(),
        }
    }
}

/// A user of the machine for a test.
#[derive(Clone, Debug)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
}

/// A user for the test: an existing or freshly made `name`, else a bare uid without a passwd
/// entry (genv then shows the uid as the name).
pub fn user(name: &str, fallback_uid: u32) -> User {
    let lookup = |n: &str| -> Option<(u32, u32)> {
        let out = Command::new("id").args(["-u", n]).output().ok()?;
        let uid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        let out = Command::new("id").args(["-g", n]).output().ok()?;
        let gid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        Some((uid, gid))
    };
    // Test binaries run at once and useradd takes /etc/passwd's lock: try again while another
    // holds it (or made the user meanwhile).
    for _ in 0..20 {
        if lookup(name).is_some() {
            break;
        }
        let _ = Command::new("useradd")
            .args(["-M", "-s", "/usr/sbin/nologin", name])
            .output();
        if lookup(name).is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    match lookup(name) {
        Some((uid, gid)) => User {
            uid,
            gid,
            name: name.to_string(),
        },
        None => User {
            uid: fallback_uid,
            gid: fallback_uid,
            name: fallback_uid.to_string(),
        },
    }
}

/// Whether we can run commands as other users; prints why not.
pub fn can_switch_users() -> bool {
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: switching users needs root (the tests run as root in CI)");
        return false;
    }
    if !have("setpriv") {
        println!("SKIPPED: setpriv (util-linux) is not installed");
        return false;
    }
    true
}

/// A command run as `u` with umask 077 (the most restrictive a user could have).
pub fn as_user(sb: &Sandbox, u: &User, program: &str) -> Command {
    let mut c = sb.command("setpriv");
    c.args([
        format!("--reuid={}", u.uid),
        format!("--regid={}", u.gid),
        "--clear-groups".into(),
        "--".into(),
        "sh".into(),
        "-c".into(),
        "umask 077; exec \"$@\"".into(),
        "sh".into(),
        program.into(),
    ]);
    c
}

pub fn genv_as(sb: &Sandbox, u: &User, eid: Option<&str>, args: &[&str]) -> Out {
    let mut c = as_user(sb, u, genv_bin().to_str().unwrap());
    c.args(args);
    if let Some(e) = eid {
        c.env("GENV_ENVIRONMENT_ID", e);
    }
    Sandbox::output(c)
}

/// `genv activate args…` as the shell integration runs it for the shell `pid`.
pub fn activate_args<'a>(pid: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["activate"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--shell", "bash", "--shell-pid", pid]);
    all
}

/// A shell stand-in of user `u`: a `sleep` that runs as `u` (setpriv switched before it
/// returns, so the service sees the pid as `u`'s).
pub fn holder_as(sb: &Sandbox, u: &User) -> Holder {
    let holder = Holder::spawn_cmd(as_user(sb, u, "sleep"));
    let pid = holder.pid();
    let switched = wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|l| l.split_whitespace().next()?.parse::<u32>().ok())
            })
            == Some(u.uid)
    });
    assert!(switched, "process {pid} never became {}'s", u.name);
    holder
}

/// An environment of user `u`, held by a process of `u`.
pub fn env_as(sb: &Sandbox, u: &User, args: &[&str]) -> Env {
    let holder = holder_as(sb, u);
    let pid = holder.pid().to_string();
    genv_as(sb, u, None, &activate_args(&pid, args)).ok();
    Env { eid: pid, holder }
}

// ---------------------------------------------------------------------------------------------
// System mode: installed into a sandbox, its service running as root.

/// A sandbox with genv installed in system mode (`genv admin install`) and its service running;
/// every command of the sandbox uses it. The service ends with the value.
pub struct SystemSandbox {
    pub sb: Sandbox,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    daemon: Child,
}

impl SystemSandbox {
    /// `None` (and why, printed) when this process is not root.
    pub fn start(max_envs_per_user: u32) -> Option<SystemSandbox> {
        Self::start_with(max_envs_per_user, "")
    }

    /// As [`start`], with `policy` (`[quotas]` and `[enforce]` tables, policy.rs) in place of
    /// the policy `genv admin install` wrote.
    pub fn start_with(max_envs_per_user: u32, policy: &str) -> Option<SystemSandbox> {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            println!("SKIPPED: system mode is installed by root (the tests run as root in CI)");
            return None;
        }
        let mut sb = Sandbox::new();
        std::fs::set_permissions(&sb.root, std::fs::Permissions::from_mode(0o755)).unwrap();
        for d in [&sb.home, &sb.work] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // The simulated machine's ledger is every user's (as the real driver is).
        std::fs::create_dir_all(&sb.simdir).unwrap();
        std::fs::set_permissions(&sb.simdir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let config = sb.root.join("etc/genv.conf");
        let state_dir = sb.root.join("var/lib/genv");
        let socket = sb.root.join("run/genv/genv.sock");
        let max = max_envs_per_user.to_string();
        sb.genv(&[
            "admin",
            "install",
            "--config",
            config.to_str().unwrap(),
            "--state-dir",
            state_dir.to_str().unwrap(),
            "--socket",
            socket.to_str().unwrap(),
            "--max-envs-per-user",
            &max,
            "--no-systemd",
        ])
        .ok();
        if !policy.is_empty() {
            let text = std::fs::read_to_string(&config).unwrap();
            let head = text.split("\n[enforce]").next().unwrap().to_string();
            std::fs::write(&config, format!("{head}\n{policy}\n")).unwrap();
        }
        sb.set("GENV_CONFIG", config.to_str().unwrap());
        let daemon = sb
            .genv_cmd(&["daemon"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start genv daemon");
        let up = wait_for(Duration::from_secs(20), || {
            socket.exists() && sb.genv(&["envs"]).success()
        });
        assert!(up, "the genv service did not come up");
        Some(SystemSandbox {
            sb,
            config,
            state_dir,
            socket,
            daemon,
        })
    }

    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.v2")
    }

    /// `uid`'s ledger.
    pub fn ledger(&self, uid: u32) -> PathBuf {
        self.state_dir.join("ledger").join(uid.to_string())
    }
}

impl Drop for SystemSandbox {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}
