//! Exclusive use of over-subscribed devices (`genv lock`, `genv.sdk.lock()`).
//!
//! Several environments may be attached to one GPU with `--over-subscribe`; a lock gives one of
//! them the GPU at a time. Ownership belongs to an *environment*, not to a process: any number of
//! processes of the owning environment may hold it together, and processes of other environments
//! wait until none of them is left.
//!
//! Per device (by UUID, so a renumbered machine cannot mix devices up), under
//! `$GENV_TMPDIR/locks/` (mode 1777; the files are opened read-only, which is all `flock`
//! needs, so they are 0644 and nobody ever writes or chmods them; opened through the
//! directory's descriptor, never through a link, and only when they are regular files; see
//! fsafe.rs):
//! - `device-<uuid>.lock`: a short-lived mutex (`flock` LOCK_EX) around the decision below;
//!   nobody waits for anything while holding it.
//! - `device-<uuid>.env-<hex eid>.lock`: every process of environment E that holds the device
//!   holds LOCK_SH on E's file. "E owns the device" means "someone holds E's file".
//!
//! Acquiring device d for E: take the mutex; probe every other environment's file of d with
//! LOCK_EX|LOCK_NB. A probe that succeeds finds nobody there (the file is unlinked, still under
//! the mutex, so stale files do not pile up); one that fails finds the owner: release the mutex,
//! block on LOCK_EX of the owner's file until its last holder is gone, and start over. When no
//! other environment holds d, take LOCK_SH on E's own file, still under the mutex, then release it.
//!
//! Every open and every LOCK_SH happens under the mutex, so a probe cannot race a new holder, and
//! unlinking under the mutex cannot strand a holder on a dead inode. The kernel drops `flock`s
//! when their holder dies (also SIGKILL), so a killed holder frees its devices at once.
//! Devices are taken in ascending NVML index order and released together, so two lockers
//! cannot each hold a device the other waits for.

use crate::fsafe::{Dir, OpenError};
use crate::store::state_dir;
use crate::Error;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The directory of the lock files: `$GENV_TMPDIR/locks`.
pub fn lock_dir() -> PathBuf {
    state_dir().join("locks")
}

/// Mode of a lock file: readable by all (a read-only descriptor is enough to `flock`).
const LOCK_FILE_MODE: u32 = 0o644;

/// Held devices; dropping it (or the holder dying) releases them.
#[derive(Debug)]
pub struct DeviceLock {
    /// (NVML index, our LOCK_SH file), ascending by index (the shared mode).
    held: Vec<(u32, File)>,
    /// System mode: the service holds the devices (ascending NVML indices) for as long as this
    /// connection is open.
    service: Option<(Vec<u32>, std::os::unix::net::UnixStream)>,
}

impl DeviceLock {
    /// The NVML indices held, ascending.
    pub fn devices(&self) -> Vec<u32> {
        match &self.service {
            Some((ix, _)) => ix.clone(),
            None => self.held.iter().map(|(i, _)| *i).collect(),
        }
    }

    /// A lock of nothing (outside an environment, or no devices attached).
    pub fn none() -> DeviceLock {
        DeviceLock {
            held: Vec::new(),
            service: None,
        }
    }
}

/// An environment that holds a device a locker waits for: its identifier (from its lock file's
/// name) and its owner (the lock file's owner, who created it; in system mode, from the state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub eid: String,
    pub uid: u32,
}

/// A device (NVML index) a locker waits for, and who holds it. In system mode the service does
/// not say who holds a lock: `holders` then lists the other environments attached to the
/// device, one of which holds it, and `exact` is false.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    pub device: u32,
    pub holders: Vec<Holder>,
    pub exact: bool,
}

/// How often a wait for the service's lock looks whether it was interrupted (Ctrl-C).
const WAIT_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// System mode: asks the service at `socket` for environment `eid`'s devices and waits for them,
/// asking `interrupted` every so often; the connection is the lock.
fn lock_with_service(
    socket: &Path,
    eid: &str,
    interrupted: &mut dyn FnMut() -> Result<(), Error>,
    first_wait: &mut dyn FnMut(),
) -> Result<DeviceLock, Error> {
    use crate::system::{client, proto::Request, wire};
    use std::io::Read;
    let mut s = client::connect(socket)?;
    wire::send(&mut s, &Request::Lock { eid: eid.into() })
        .map_err(|e| Error::State(format!("cannot talk to the genv service: {e}")))?;
    let _ = s.set_read_timeout(Some(WAIT_POLL));
    let mut line = Vec::new();
    let mut buf = [0u8; 4096];
    while !line.ends_with(b"\n") {
        match s.read(&mut buf) {
            Ok(0) => {
                return Err(Error::State(
                    "the genv service closed the connection while we waited for the lock".into(),
                ))
            }
            Ok(n) => line.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                first_wait();
                interrupted()?
            }
            Err(e) => {
                return Err(Error::State(format!(
                    "cannot talk to the genv service: {e}"
                )))
            }
        }
        if line.len() > wire::MAX_LINE {
            return Err(Error::State("the genv service answered too much".into()));
        }
    }
    let reply: wire::Reply = serde_json::from_slice(&line).map_err(|e| {
        Error::State(format!(
            "the genv service answered what this genv cannot read: {e}"
        ))
    })?;
    let indices: Vec<u32> = reply.into_result()?;
    Ok(DeviceLock {
        held: Vec::new(),
        service: Some((indices, s)),
    })
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::State(format!("cannot {what} {}: {e}", path.display()))
}

/// The (checked) lock directory inside the (checked) state directory `state`.
fn open_lock_dir(state: &Path) -> Result<Dir, Error> {
    Dir::open(state, true)?.subdir("locks", Some(crate::fsafe::SHARED_DIR_MODE))
}

fn open_lock_file(dir: &Dir, name: &str) -> Result<File, Error> {
    let path = dir.path().join(name);
    dir.open_or_create(name, LOCK_FILE_MODE)
        .map_err(|e| match e {
            OpenError::NotRegular(what) => Error::State(format!(
                "{} is {what}, not a lock file genv made, and genv does not open it; remove it (rm {})",
                path.display(),
                path.display()
            )),
            OpenError::Missing => io_err(
                &path,
                "open the lock file",
                std::io::Error::from_raw_os_error(libc::ENOENT),
            ),
            OpenError::Denied(e) | OpenError::Io(e) => io_err(&path, "open the lock file", e),
        })
}

/// `flock(op)`; EINTR calls `interrupted`, which may abort the wait (Ctrl-C in Python). A
/// blocking wait asks `interrupted` first as well: a signal that came before the wait (while the
/// holders were looked up) interrupts no system call, and would otherwise be noticed only at the
/// next one.
fn flock(
    f: &File,
    op: libc::c_int,
    interrupted: &mut dyn FnMut() -> Result<(), Error>,
) -> Result<bool, std::io::Error> {
    if op & (libc::LOCK_NB | libc::LOCK_UN) == 0 {
        if let Err(err) = interrupted() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                err.to_string(),
            ));
        }
    }
    loop {
        // SAFETY: flock(2) on a descriptor `f` keeps open; it touches no memory of ours.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {
                if let Err(err) = interrupted() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::Interrupted,
                        err.to_string(),
                    ));
                }
            }
            Some(libc::EWOULDBLOCK) if op & libc::LOCK_NB != 0 => return Ok(false),
            _ => return Err(e),
        }
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The identifier [`hex`] wrote, if `h` is one.
fn unhex(h: &str) -> Option<String> {
    if !h.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..h.len())
        .step_by(2)
        .map(|i| h.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// File-name safe form of a UUID (they are `GPU-xxxxxxxx-…`; anything else is hex-encoded).
fn uuid_key(uuid: &str) -> String {
    if !uuid.is_empty()
        && uuid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        uuid.to_string()
    } else {
        format!("x{}", hex(uuid))
    }
}

/// The other environments that hold device `uuid` now (`eid`'s own file is skipped). Taken
/// under the device's mutex, like every probe, so it races no new holder.
fn holders(dir: &Dir, uuid: &str, eid: &str) -> Result<Vec<Holder>, Error> {
    use std::os::unix::fs::MetadataExt;
    let key = uuid_key(uuid);
    let mutex_name = format!("device-{key}.lock");
    let prefix = format!("device-{key}.env-");
    let mine_name = format!("{prefix}{}.lock", hex(eid));
    let mutex = open_lock_file(dir, &mutex_name)?;
    let mutex_path = dir.path().join(&mutex_name);
    flock(&mutex, libc::LOCK_EX, &mut || Ok(())).map_err(|e| io_err(&mutex_path, "lock", e))?;
    let mut out = Vec::new();
    let names = dir.names().map_err(|e| io_err(dir.path(), "read", e))?;
    for name in &names {
        let Some(name) = name.to_str() else { continue };
        let Some(hexed) = name
            .strip_prefix(&prefix)
            .and_then(|n| n.strip_suffix(".lock"))
        else {
            continue;
        };
        if name == mine_name {
            continue;
        }
        let Ok(f) = dir.open_file(name, false) else {
            continue;
        };
        // Held by someone when it cannot be taken exclusively; released at once otherwise.
        if matches!(
            flock(&f, libc::LOCK_EX | libc::LOCK_NB, &mut || Ok(())),
            Ok(false)
        ) {
            let Some(eid) = unhex(hexed) else { continue };
            let uid = f.metadata().map(|m| m.uid()).unwrap_or(u32::MAX);
            out.push(Holder { eid, uid });
        }
    }
    drop(mutex);
    Ok(out)
}

/// Takes device `uuid` for environment `eid`; blocks while another environment holds it,
/// calling `first_wait` (without the mutex) before each such wait.
fn acquire_one(
    dir: &Dir,
    uuid: &str,
    eid: &str,
    interrupted: &mut dyn FnMut() -> Result<(), Error>,
    first_wait: &mut dyn FnMut(),
) -> Result<File, Error> {
    let key = uuid_key(uuid);
    let mutex_name = format!("device-{key}.lock");
    let mutex_path = dir.path().join(&mutex_name);
    let prefix = format!("device-{key}.env-");
    let mine_name = format!("{prefix}{}.lock", hex(eid));
    let mine_path = dir.path().join(&mine_name);
    let mutex = open_lock_file(dir, &mutex_name)?;
    let wait_err = |p: &Path, e: std::io::Error| -> Error {
        if e.kind() == std::io::ErrorKind::Interrupted {
            Error::Input(format!("interrupted while waiting for the lock: {e}"))
        } else {
            io_err(p, "lock", e)
        }
    };
    loop {
        flock(&mutex, libc::LOCK_EX, interrupted).map_err(|e| wait_err(&mutex_path, e))?;
        // Under the mutex from here to the unlock below.
        let owner = (|| -> Result<Option<(PathBuf, File)>, Error> {
            let names = dir.names().map_err(|e| io_err(dir.path(), "read", e))?;
            for name in &names {
                let Some(name) = name.to_str() else { continue };
                if !name.starts_with(&prefix) || name == mine_name {
                    continue;
                }
                let path = dir.path().join(name);
                // Only a regular file is a holder; anything else planted here is ignored.
                let Ok(f) = dir.open_file(name, false) else {
                    continue;
                };
                if flock(&f, libc::LOCK_EX | libc::LOCK_NB, &mut || Ok(()))
                    .map_err(|e| io_err(&path, "lock", e))?
                {
                    // Nobody holds it: a leftover of an environment that let go.
                    let _ = dir.unlink(OsStr::new(name));
                    continue;
                }
                return Ok(Some((path, f)));
            }
            Ok(None)
        })();
        let owner = match owner {
            Ok(o) => o,
            Err(e) => {
                let _ = flock(&mutex, libc::LOCK_UN, &mut || Ok(()));
                return Err(e);
            }
        };
        match owner {
            None => {
                let r = open_lock_file(dir, &mine_name).and_then(|f| {
                    flock(&f, libc::LOCK_SH, &mut || Ok(()))
                        .map(|_| f)
                        .map_err(|e| io_err(&mine_path, "lock", e))
                });
                let _ = flock(&mutex, libc::LOCK_UN, &mut || Ok(()));
                return r;
            }
            Some((path, f)) => {
                let _ = flock(&mutex, libc::LOCK_UN, &mut || Ok(()));
                first_wait();
                // Wait, without the mutex, until the owner's last holder lets go; then decide again.
                flock(&f, libc::LOCK_EX, interrupted).map_err(|e| wait_err(&path, e))?;
                drop(f);
            }
        }
    }
}

/// Takes the devices `devices` (NVML index, UUID) for environment `eid`, in ascending index
/// order, blocking while other environments hold any of them. `interrupted` is called when a
/// signal interrupts a wait; an error from it abandons the wait (what was taken is released).
pub fn acquire(
    eid: &str,
    devices: &[(u32, String)],
    interrupted: &mut dyn FnMut() -> Result<(), Error>,
) -> Result<DeviceLock, Error> {
    acquire_in(&state_dir(), eid, devices, interrupted, &mut |_| {})
}

/// As [`acquire`], with the state directory `state` (its `locks/` is used). The first time it
/// has to wait, `on_wait` is told, once, every device still to take that other environments
/// hold then, and who holds it.
fn acquire_in(
    state: &Path,
    eid: &str,
    devices: &[(u32, String)],
    interrupted: &mut dyn FnMut() -> Result<(), Error>,
    on_wait: &mut dyn FnMut(&[Wait]),
) -> Result<DeviceLock, Error> {
    let mut devs: Vec<(u32, String)> = devices.to_vec();
    devs.sort_by_key(|d| d.0);
    devs.dedup_by_key(|d| d.0);
    if devs.is_empty() {
        return Ok(DeviceLock::none());
    }
    let dir = open_lock_dir(state)?;
    let mut held = Vec::with_capacity(devs.len());
    let mut told = false;
    for (n, (index, uuid)) in devs.iter().enumerate() {
        let mut first_wait = || {
            if std::mem::replace(&mut told, true) {
                return;
            }
            let waits: Vec<Wait> = devs[n..]
                .iter()
                .filter_map(|(ix, u)| {
                    let holders = holders(&dir, u, eid).ok()?;
                    (!holders.is_empty()).then_some(Wait {
                        device: *ix,
                        holders,
                        exact: true,
                    })
                })
                .collect();
            on_wait(&waits);
        };
        // On error `held` drops here and releases what was taken.
        let f = acquire_one(&dir, uuid, eid, interrupted, &mut first_wait)?;
        held.push((*index, f));
    }
    Ok(DeviceLock {
        held,
        service: None,
    })
}

/// Locks the devices attached to environment `eid` as the state lists them now. Nothing is
/// locked when the environment does not exist or has no devices.
pub fn lock_env(
    genv: &crate::Genv,
    eid: &str,
    interrupted: &mut dyn FnMut() -> Result<(), Error>,
) -> Result<DeviceLock, Error> {
    lock_env_telling(genv, eid, interrupted, &mut |_| {})
}

/// As [`lock_env`]; when it has to wait, `on_wait` is told once what for (see [`Wait`]).
pub fn lock_env_telling(
    genv: &crate::Genv,
    eid: &str,
    interrupted: &mut dyn FnMut() -> Result<(), Error>,
    on_wait: &mut dyn FnMut(&[Wait]),
) -> Result<DeviceLock, Error> {
    // In system mode no lock file exists that another user could hold: the service keeps them.
    if let Some(socket) = genv.socket() {
        let mut told = false;
        let mut first_wait = || {
            if std::mem::replace(&mut told, true) {
                return;
            }
            on_wait(&attached_others(genv, eid));
        };
        return lock_with_service(socket, eid, interrupted, &mut first_wait);
    }
    let Some(env) = genv.env(eid) else {
        return Ok(DeviceLock::none());
    };
    let devices = genv.devices();
    let list: Vec<(u32, String)> = env
        .attached
        .iter()
        .filter_map(|&ix| {
            devices
                .iter()
                .find(|d| d.index == ix)
                .map(|d| (ix, d.uuid.clone()))
        })
        .collect();
    acquire_in(&state_dir(), eid, &list, interrupted, on_wait)
}

/// System mode's answer to "who holds it": per device of `eid`, the other environments attached
/// to it (one of them holds its lock).
fn attached_others(genv: &crate::Genv, eid: &str) -> Vec<Wait> {
    let Some(env) = genv.env(eid) else {
        return Vec::new();
    };
    let envs = genv.envs();
    let devices = genv.devices();
    let mut mine: Vec<u32> = env.attached.clone();
    mine.sort_unstable();
    mine.iter()
        .filter_map(|ix| {
            let d = devices.iter().find(|d| d.index == *ix)?;
            let holders: Vec<Holder> = d
                .attachments
                .iter()
                .filter(|a| a.eid != env.eid)
                .map(|a| Holder {
                    eid: a.eid.clone(),
                    uid: envs
                        .iter()
                        .find(|e| e.eid == a.eid && e.name == a.env_name)
                        .map_or(u32::MAX, |e| e.uid),
                })
                .collect();
            (!holders.is_empty()).then_some(Wait {
                device: *ix,
                holders,
                exact: false,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn none() -> impl FnMut() -> Result<(), Error> {
        || Ok(())
    }

    #[test]
    fn environments_exclude_each_other_and_share_within() {
        let tmp = std::env::temp_dir().join(format!("genv-lock-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let dir = tmp.join("locks");
        let acquire = |eid: &str, d: &[(u32, String)], f: &mut dyn FnMut() -> Result<(), Error>| {
            acquire_in(&tmp, eid, d, f, &mut |_| {})
        };
        let d0 = (0u32, "GPU-aaaa".to_string());
        let d1 = (1u32, "GPU-bbbb".to_string());

        // Same environment: no blocking.
        let a1 = acquire("a", &[d0.clone(), d1.clone()], &mut none()).unwrap();
        let a2 = acquire("a", &[d1.clone(), d0.clone()], &mut none()).unwrap();
        assert_eq!(a2.devices(), vec![0, 1]);

        // Another environment waits for both holders of "a".
        let (tx, rx) = mpsc::channel();
        let d0c = d0.clone();
        let dirc = tmp.clone();
        let t = std::thread::spawn(move || {
            let l = acquire_in(&dirc, "b", &[d0c], &mut || Ok(()), &mut |_| {}).unwrap();
            tx.send(()).unwrap();
            drop(l);
        });
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        drop(a1);
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        drop(a2);
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        t.join().unwrap();

        // Nothing to lock.
        assert!(acquire("c", &[], &mut none()).unwrap().devices().is_empty());

        // Released files are cleaned up by the next locker.
        let _c = acquire("c", std::slice::from_ref(&d0), &mut none()).unwrap();
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("device-GPU-aaaa.env-"))
            .collect();
        assert_eq!(
            names,
            vec![format!("device-GPU-aaaa.env-{}.lock", hex("c"))]
        );
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
