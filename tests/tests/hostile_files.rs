//! What another local user can plant under a shared `GENV_TMPDIR` (links, FIFOs, directories of
//! their own) and what a full or read-only disk does: each attack is refused with one line or
//! is harmless, and the victim's files and environments stay as they were. Real second and
//! third users (made here; CI runs as root); skips with a reason when users cannot be switched.

use genv_tests::shim;
use genv_tests::support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::*;

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// A sandbox whose root is shared like /tmp (1777), with the victim, a second user and the
/// attacker.
struct World {
    sb: Sandbox,
    victim: User,
    other: User,
    attacker: User,
}

fn world() -> Option<World> {
    if !can_switch_users() {
        return None;
    }
    let sb = Sandbox::new();
    std::fs::set_permissions(&sb.root, std::fs::Permissions::from_mode(0o1777)).unwrap();
    for d in [&sb.home, &sb.work] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    Some(World {
        sb,
        victim: user("genv-test1", 61001),
        other: user("genv-test2", 61002),
        attacker: user("genv-test3", 61003),
    })
}

/// Runs `script` with `sh -c` as `u` (umask 077); asserts it succeeded.
#[track_caller]
fn sh_as(sb: &Sandbox, u: &User, script: &str) {
    let mut c = as_user(sb, u, "sh");
    c.args(["-c", script]);
    let out = Sandbox::output(c);
    assert!(out.success(), "as {}: {script}: {out:#?}", u.name);
}

/// A private file of `u` (mode 0600) that an attack would like to make world-writable.
fn secret_of(sb: &Sandbox, u: &User, name: &str) -> PathBuf {
    let p = sb.root.join(name);
    std::fs::write(&p, b"secret\n").unwrap();
    std::os::unix::fs::chown(&p, Some(u.uid), Some(u.gid)).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

#[track_caller]
fn intact(p: &Path, owner: u32) {
    let m = std::fs::symlink_metadata(p).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o600, "{} was chmod'ed", p.display());
    assert_eq!(m.uid(), owner, "{} changed owner", p.display());
    assert_eq!(
        std::fs::read(p).unwrap(),
        b"secret\n",
        "{} was written",
        p.display()
    );
}

fn uuid0(sb: &Sandbox) -> String {
    sb.devices_json()[0]["uuid"].as_str().unwrap().to_string()
}

/// Runs `genv lock -- true` as `u` (root when `None`) in `eid` with a time limit (a FIFO must
/// not hang it).
fn lock_as(sb: &Sandbox, u: Option<&User>, eid: &str) -> Out {
    let mut c = match u {
        Some(u) => as_user(sb, u, "timeout"),
        None => sb.command("timeout"),
    };
    c.args(["20", genv_bin().to_str().unwrap(), "lock", "--", "true"])
        .env("GENV_ENVIRONMENT_ID", eid);
    let out = Sandbox::output(c);
    assert_ne!(out.code, Some(124), "genv lock hung: {out:#?}");
    out
}

#[test]
fn lock_directory_made_by_another_user_is_refused() {
    let Some(w) = world() else { return };
    let sb = &w.sb;
    let secret = secret_of(sb, &w.victim, "victim-secret");
    let env = env_as(sb, &w.victim, &["--gpus", "1"]);
    let uuid = uuid0(sb);
    let locks = sb.tmpdir.join("locks");
    // The attacker's own directory, writable by all but not sticky, full of links to the
    // victim's file under the names genv would open.
    sh_as(
        sb,
        &w.attacker,
        &format!(
            "mkdir {l} && chmod 0777 {l} && ln -s {s} {l}/device-{uuid}.lock && \
             ln -s {s} {l}/device-{uuid}.env-{h}.lock",
            l = locks.display(),
            s = secret.display(),
            h = hex(&env.eid)
        ),
    );
    let line = lock_as(sb, Some(&w.victim), &env.eid).fails_with("is not safe for genv");
    assert!(line.contains(locks.to_str().unwrap()), "{line}");
    assert!(line.contains(&w.attacker.name), "names the owner: {line}");
    intact(&secret, w.victim.uid);
    // Not writable by others, but the attacker's: refused as well.
    std::fs::set_permissions(&locks, std::fs::Permissions::from_mode(0o755)).unwrap();
    lock_as(sb, Some(&w.victim), &env.eid).fails_with("is not safe for genv");
    intact(&secret, w.victim.uid);
    // Root is refused the same way, and its files are as safe.
    let root_secret = secret_of(sb, &User::root(), "root-secret");
    std::fs::remove_dir_all(&locks).unwrap();
    sh_as(
        sb,
        &w.attacker,
        &format!(
            "mkdir {l} && chmod 0777 {l} && ln -s {s} {l}/device-{uuid}.lock",
            l = locks.display(),
            s = root_secret.display()
        ),
    );
    let root_env = sb.env(&["--gpus", "1"]);
    lock_as(sb, None, &root_env.eid).fails_with("is not safe for genv");
    intact(&root_secret, 0);
    // The victim's environment is as it was.
    assert_eq!(sb.env_json(&env.eid).unwrap()["attached"][0], 0);
}

#[test]
fn links_and_fifos_in_a_shared_lock_directory_are_never_followed() {
    let Some(w) = world() else { return };
    let sb = &w.sb;
    let secret = secret_of(sb, &w.victim, "victim-secret");
    let root_secret = secret_of(sb, &User::root(), "root-secret");
    let env = env_as(
        sb,
        &w.victim,
        &["--gpus", "1", "--over-subscribe", "--gpu-memory", "1gi"],
    );
    let uuid = uuid0(sb);
    let locks = sb.tmpdir.join("locks");
    // A sticky directory (like /tmp) of the attacker's is accepted as a place, but nothing
    // planted in it is followed.
    sh_as(
        sb,
        &w.attacker,
        &format!(
            "mkdir {l} && chmod 1777 {l} && ln -s {s} {l}/device-{uuid}.lock",
            l = locks.display(),
            s = secret.display()
        ),
    );
    let line = lock_as(sb, Some(&w.victim), &env.eid).fails_with("is a symbolic link");
    assert!(line.contains(&format!("device-{uuid}.lock")), "{line}");
    intact(&secret, w.victim.uid);
    let root_env = sb.env(&["--gpus", "1", "--over-subscribe", "--gpu-memory", "1gi"]);
    lock_as(sb, None, &root_env.eid).fails_with("is a symbolic link");
    intact(&secret, w.victim.uid);

    // A FIFO in its place: refused at once, not waited on.
    sh_as(
        sb,
        &w.attacker,
        &format!(
            "rm {l}/device-{uuid}.lock && mkfifo -m 666 {l}/device-{uuid}.lock",
            l = locks.display()
        ),
    );
    lock_as(sb, Some(&w.victim), &env.eid).fails_with("is a FIFO");

    // The victim's own per-environment file planted as a link: refused, target untouched.
    sh_as(
        sb,
        &w.attacker,
        &format!(
            "rm {l}/device-{uuid}.lock && ln -s {s} {l}/device-{uuid}.env-{h}.lock",
            l = locks.display(),
            s = root_secret.display(),
            h = hex(&env.eid)
        ),
    );
    lock_as(sb, Some(&w.victim), &env.eid).fails_with("is a symbolic link");
    intact(&root_secret, 0);

    // Links planted under other environments' names are not holders: ignored, and the lock
    // works for the victim and for a second user.
    sh_as(
        sb,
        &w.attacker,
        &format!(
            "rm {l}/device-{uuid}.env-{h}.lock && ln -s {s} {l}/device-{uuid}.env-{z}.lock && \
             mkfifo {l}/device-{uuid}.env-{y}.lock",
            l = locks.display(),
            s = secret.display(),
            h = hex(&env.eid),
            z = hex("zzz"),
            y = hex("yyy")
        ),
    );
    lock_as(sb, Some(&w.victim), &env.eid).ok();
    let other = env_as(
        sb,
        &w.other,
        &["--gpus", "1", "--over-subscribe", "--gpu-memory", "1gi"],
    );
    assert_eq!(sb.env_json(&other.eid).unwrap()["attached"][0], 0);
    lock_as(sb, Some(&w.other), &other.eid).ok();
    intact(&secret, w.victim.uid);
    // What genv made there itself is readable by all, writable by nobody else.
    let mutex = std::fs::metadata(locks.join(format!("device-{uuid}.lock"))).unwrap();
    assert_eq!(mutex.mode() & 0o777, 0o644);

    // `locks` itself a link to a directory of the victim's: refused.
    let victim_dir = sb.root.join("victim-dir");
    std::fs::create_dir(&victim_dir).unwrap();
    std::os::unix::fs::chown(&victim_dir, Some(w.victim.uid), Some(w.victim.gid)).unwrap();
    std::fs::remove_dir_all(&locks).unwrap();
    sh_as(
        sb,
        &w.attacker,
        &format!("ln -s {} {}", victim_dir.display(), locks.display()),
    );
    lock_as(sb, Some(&w.victim), &env.eid).fails_with("is a symbolic link");
    assert_eq!(std::fs::read_dir(&victim_dir).unwrap().count(), 0);
}

#[test]
fn state_directory_checks() {
    let Some(w) = world() else { return };
    let mut sb = Sandbox::new();
    std::fs::set_permissions(&sb.root, std::fs::Permissions::from_mode(0o1777)).unwrap();
    for d in [&sb.home, &sb.work] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let try_dir = |sb: &mut Sandbox, dir: &Path| -> Out {
        sb.set("GENV_TMPDIR", dir.to_str().unwrap());
        genv_as(sb, &w.victim, None, &["envs"])
    };

    // The attacker's directory, writable by all (not sticky), or only by the attacker.
    let theirs = sb.root.join("theirs");
    sh_as(
        &sb,
        &w.attacker,
        &format!("mkdir {0} && chmod 0777 {0}", theirs.display()),
    );
    let line = try_dir(&mut sb, &theirs).fails_with("is not safe for genv");
    assert!(line.contains(theirs.to_str().unwrap()), "{line}");
    assert!(!theirs.join("state.v2").exists());
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o755)).unwrap();
    try_dir(&mut sb, &theirs).fails_with("is not safe for genv");

    // A link planted in the shared directory, to the attacker's directory or the victim's.
    let link = sb.root.join("genv-link");
    sh_as(
        &sb,
        &w.attacker,
        &format!("ln -s {} {}", theirs.display(), link.display()),
    );
    try_dir(&mut sb, &link).fails_with("which others can write");
    let link_path = link.join("genv");
    try_dir(&mut sb, &link_path).fails_with("which others can write");

    // A group-writable directory on the way, even the victim's own.
    let grp = sb.root.join("grp");
    std::fs::create_dir(&grp).unwrap();
    std::os::unix::fs::chown(&grp, Some(w.victim.uid), Some(w.victim.gid)).unwrap();
    std::fs::set_permissions(&grp, std::fs::Permissions::from_mode(0o775)).unwrap();
    let line = try_dir(&mut sb, &grp.join("genv")).fails_with("is not safe for genv");
    assert!(line.contains("0775"), "{line}");

    // A private directory (as `mktemp -d` makes), reached through the victim's own link in a
    // directory only the victim can write: works.
    let private = sb.root.join("private");
    sh_as(
        &sb,
        &w.victim,
        &format!(
            "mkdir -m 700 {p} {p}/real && ln -s real {p}/via-link",
            p = private.display()
        ),
    );
    try_dir(&mut sb, &private.join("via-link")).ok();
    assert!(private.join("real/state.v2").is_file());
    let e = env_as(&sb, &w.victim, &["--gpus", "1"]);
    assert_eq!(sb_envs_as(&sb, &w.victim)[0]["eid"], e.eid.as_str());

    // A sticky directory of the attacker's (as /var/tmp/genv made by whoever came first) is
    // the shared default: accepted.
    let sticky = sb.root.join("sticky");
    sh_as(
        &sb,
        &w.attacker,
        &format!("mkdir {0} && chmod 1777 {0}", sticky.display()),
    );
    try_dir(&mut sb, &sticky).ok();
}

fn sb_envs_as(sb: &Sandbox, u: &User) -> serde_json::Value {
    genv_as(sb, u, None, &["envs", "--json"]).json()
}

#[test]
fn planted_state_files_are_refused() {
    let Some(w) = world() else { return };
    let sb = &w.sb;
    let secret = secret_of(sb, &w.victim, "victim-secret");
    // The shared directory exists (made by the first user of the machine) but holds no state.
    genv_as(sb, &w.other, None, &["envs"]).ok();
    std::fs::remove_file(sb.state_path()).unwrap();
    let state = sb.state_path();

    sh_as(
        sb,
        &w.attacker,
        &format!("ln -s {} {}", secret.display(), state.display()),
    );
    for u in [&w.victim, &w.other] {
        let line = genv_as(sb, u, None, &["envs"]).fails_with("is a symbolic link");
        assert!(line.contains(state.to_str().unwrap()), "{line}");
    }
    let out = Sandbox::output(sb.genv_cmd(&["envs"]));
    out.fails_with("is a symbolic link");
    intact(&secret, w.victim.uid);

    sh_as(
        sb,
        &w.attacker,
        &format!("rm {0} && mkfifo -m 666 {0}", state.display()),
    );
    let mut c = as_user(sb, &w.victim, "timeout");
    c.args(["20", genv_bin().to_str().unwrap(), "envs"]);
    let out = Sandbox::output(c);
    assert_ne!(out.code, Some(124), "hung on a FIFO: {out:#?}");
    out.fails_with("is a FIFO");

    sh_as(
        sb,
        &w.attacker,
        &format!("rm {0} && mkdir {0}", state.display()),
    );
    genv_as(sb, &w.victim, None, &["envs"]).fails_with("is a directory");

    // Under the shim the same file gives no GPU and one line, never a crash.
    let out = Sandbox::output({
        let mut c = as_user(sb, &w.victim, shim::shim_cuda().to_str().unwrap());
        c.args(["link", "view"])
            .env("LD_PRELOAD", shim_lib())
            .env("GENV_ENVIRONMENT_ID", "42");
        c
    });
    out.no_panic();
    assert!(out.code.is_some(), "killed by a signal: {out:#?}");
}

#[test]
fn read_only_state_can_be_read() {
    let Some(w) = world() else { return };
    let sb = &w.sb;
    let env = env_as(sb, &w.victim, &["--gpus", "1", "--name", "mine"]);
    // The owner makes it read-only for others (or an admin for everyone).
    std::fs::set_permissions(sb.state_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = sb.tables_bytes();
    for u in [&w.other, &w.attacker] {
        let j = genv_as(sb, u, None, &["envs", "--json"]).json();
        assert_eq!(j[0]["eid"], env.eid.as_str());
        assert_eq!(j[0]["name"], "mine");
        let table = genv_as(sb, u, None, &["envs"]).ok().to_string();
        assert!(table.contains("mine"), "{table}");
        let devs = genv_as(sb, u, None, &["devices", "--json"]);
        assert_eq!(devs.json()[0]["attachments"][0]["eid"], env.eid.as_str());
        let st = genv_as(sb, u, Some(&env.eid), &["status"]).ok().to_string();
        assert!(st.contains("Environment is active"), "{st}");
        // Changing it is one clear line.
        let holder = holder_as(sb, u);
        let pid = holder.pid().to_string();
        let line = genv_as(sb, u, None, &activate_args(&pid, &["--gpus", "1"]))
            .fails_with("read-only for you");
        assert!(line.contains(sb.state_path().to_str().unwrap()), "{line}");
        let mut c = as_user(sb, u, genv_bin().to_str().unwrap());
        c.args(["exec", "--gpus", "1", "--", "true"]);
        Sandbox::output(c).fails_with("read-only for you");
    }
    assert!(before == sb.tables_bytes(), "a reader changed the state");
    // The victim still owns and uses it.
    genv_as(
        sb,
        &w.victim,
        Some(&env.eid),
        &["config", "gpu-memory", "1g"],
    )
    .ok();
}

#[test]
fn read_only_file_system_can_be_read() {
    let Some(w) = world() else { return };
    let sb = &w.sb;
    let env = sb.env(&["--gpus", "2", "--name", "ro"]);
    let ro = sb.root.join("ro");
    std::fs::create_dir(&ro).unwrap();
    if !mount(&["--bind", sb.tmpdir.to_str().unwrap(), ro.to_str().unwrap()]) {
        println!("SKIPPED: cannot bind-mount");
        return;
    }
    let _unmount = Unmount(ro.clone());
    assert!(mount(&["-o", "remount,bind,ro", ro.to_str().unwrap()]));
    let mut view = Sandbox::new();
    view.set("GENV_TMPDIR", ro.to_str().unwrap());
    view.set("GENV_SIM_DIR", sb.simdir.to_str().unwrap());
    let j = view.genv(&["envs", "--json"]).json();
    assert_eq!(j[0]["eid"], env.eid.as_str());
    view.genv(&["devices"]).ok();
    view.genv_in(&env.eid, &["status"]).ok();
    let holder = Holder::spawn();
    view.activate_for(holder.pid(), &["--gpus", "1"])
        .fails_with("read-only for you");
    let _ = w;
}

fn mount(args: &[&str]) -> bool {
    std::process::Command::new("mount")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .output();
    }
}

#[test]
fn full_file_system_is_an_error_not_a_signal() {
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED: mounting a small tmpfs needs root");
        return;
    }
    let mut sb = Sandbox::new();
    let small = sb.root.join("small");
    std::fs::create_dir(&small).unwrap();
    // Smaller than the state file.
    if !mount(&[
        "-t",
        "tmpfs",
        "-o",
        "size=1m,mode=1777",
        "tmpfs",
        small.to_str().unwrap(),
    ]) {
        println!("SKIPPED: cannot mount a tmpfs");
        return;
    }
    let _unmount = Unmount(small.clone());
    sb.set("GENV_TMPDIR", small.join("genv").to_str().unwrap());
    for args in [
        vec!["envs"],
        vec!["devices"],
        vec!["exec", "--gpus", "1", "--", "true"],
    ] {
        let out = sb.genv(&args);
        let line = out.fails_with("No space left on device");
        assert!(line.contains("MiB"), "says what it needs: {line}");
        assert!(out.code.is_some(), "signal: {out:#?}");
    }
    // Nothing half-made is left behind.
    let left: Vec<_> = std::fs::read_dir(small.join("genv"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // A program under the shim in that state: no GPU, one line, no signal.
    let mut c = shim::under_shim(&sb, "42", shim::shim_cuda());
    c.args(["link", "view"]);
    let out = Sandbox::output(c);
    assert!(out.code.is_some(), "signal: {out:#?}");
    out.no_panic();
}

#[test]
fn lock_waits_are_not_broken_by_planted_files() {
    // Two environments sharing a GPU still exclude each other with an attacker's files around.
    let Some(w) = world() else { return };
    let sb = &w.sb;
    let a = env_as(
        sb,
        &w.victim,
        &["--gpus", "1", "--over-subscribe", "--gpu-memory", "1gi"],
    );
    let b = env_as(
        sb,
        &w.other,
        &["--gpus", "1", "--over-subscribe", "--gpu-memory", "1gi"],
    );
    let uuid = uuid0(sb);
    let locks = sb.tmpdir.join("locks");
    lock_as(sb, Some(&w.victim), &a.eid).ok();
    sh_as(
        sb,
        &w.attacker,
        &format!(
            "ln -s /etc/passwd {l}/device-{uuid}.env-{z}.lock; mkfifo {l}/device-{uuid}.env-{y}.lock",
            l = locks.display(),
            z = hex("zzz"),
            y = hex("yyy")
        ),
    );
    // a holds the lock for a while; b must wait for it.
    let mut holder = as_user(sb, &w.victim, genv_bin().to_str().unwrap());
    holder
        .args(["lock", "--", "sleep", "1.5"])
        .env("GENV_ENVIRONMENT_ID", &a.eid);
    let mut holder = holder.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let t0 = std::time::Instant::now();
    lock_as(sb, Some(&w.other), &b.eid).ok();
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "b did not wait for a ({:?})",
        t0.elapsed()
    );
    assert!(holder.wait().unwrap().success());
}
