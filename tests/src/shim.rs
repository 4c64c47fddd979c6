//! Helpers of the shim's tests: C programs built on demand, and commands run under the shim in
//! an environment.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Builds `tests/c/<name>.c` (once per test binary run) into `<bin dir>/shim-c/`, linked with
/// the simulated libcuda when `link_cuda`; `extra` are more compiler arguments.
pub fn c_program(name: &str, link_cuda: bool, extra: &[&str]) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("c/{name}.c"));
    let dir = bin_dir().join("shim-c");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(name);
    let fresh = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if fresh(&out).is_some() && fresh(&out) >= fresh(&src) {
        return out;
    }
    // Build under a private name and rename: test binaries run concurrently.
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let mut c = Command::new("cc");
    c.args(["-O1", "-Wall", "-o"]).arg(&tmp).arg(&src);
    if link_cuda {
        c.arg("-L").arg(sim_lib_dir()).arg("-lcuda");
    }
    c.args(extra).arg("-ldl").arg("-lpthread");
    let o = c.output().expect("run cc");
    assert!(
        o.status.success(),
        "cc {name}.c failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// The CUDA client of tests/c/shim_cuda.c.
pub fn shim_cuda() -> PathBuf {
    // The sim's libcuda.so (unversioned name) for -lcuda.
    let sim = sim_lib_dir();
    let link = sim.join("libcuda.so");
    if !link.exists() {
        let _ = std::os::unix::fs::symlink("libcuda.so.1", &link);
    }
    c_program("shim_cuda", true, &[])
}

/// `program args…` under the shim in environment `eid` (as the CLI would run it).
pub fn under_shim(sb: &Sandbox, eid: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = sb.command(program);
    c.env("LD_PRELOAD", shim_lib())
        .env("GENV_ENVIRONMENT_ID", eid);
    c
}

/// Parses `key v1 v2…` lines: the values of the first line starting with `key `.
pub fn field<'a>(out: &'a str, key: &str) -> Option<Vec<&'a str>> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .map(|l| l.split_whitespace().skip(1).collect())
}

/// All lines starting with `key `, as value lists.
pub fn fields<'a>(out: &'a str, key: &str) -> Vec<Vec<&'a str>> {
    out.lines()
        .filter(|l| l.split_whitespace().next() == Some(key))
        .map(|l| l.split_whitespace().skip(1).collect())
        .collect()
}

/// The UUIDs of the simulated GPUs by NVML index (from `genv devices --json`).
pub fn host_uuids(sb: &Sandbox) -> Vec<String> {
    sb.devices_json()
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| d["uuid"].as_str().expect("uuid").to_string())
        .collect()
}

pub const GI: u64 = 1 << 30;
pub const MI: u64 = 1 << 20;

/// A program (run with a trailing `hold` argument) that has printed `held` and now waits on its
/// stdin: `before` is what it printed until then.
pub struct Held {
    pub child: std::process::Child,
    pub before: Vec<String>,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

/// Spawns `cmd` with piped stdin and stdout and reads its output up to the `held` line.
pub fn spawn_held(mut cmd: Command) -> Held {
    use std::io::BufRead;
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn a holding program");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let before = lines
        .by_ref()
        .map_while(Result::ok)
        .take_while(|l| l != "held")
        .collect();
    Held {
        child,
        before,
        lines,
    }
}

impl Held {
    /// Lets the program go on (closes its stdin) and returns whether it succeeded and what it
    /// printed after `held`.
    pub fn finish(mut self) -> (bool, Vec<String>) {
        drop(self.child.stdin.take());
        let rest = self.lines.by_ref().map_while(Result::ok).collect();
        (
            self.child.wait().map(|s| s.success()).unwrap_or(false),
            rest,
        )
    }
}
