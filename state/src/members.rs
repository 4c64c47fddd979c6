//! Membership: which processes belong to an environment, whether or not they have touched CUDA.
//!
//! Every process that loads the shim with `GENV_MEMBER` set (an activated shell's programs,
//! `genv exec`'s command, the children of `genv.sdk` processes) holds two read locks on one
//! byte of its owner's members file, `members/<uid>`, at the offset of its environment's serial
//! (the shim's stub takes them before `main`, see `shim/stub/stub.rs`). The kernel drops them when
//! the process ends however it ends and keeps them across `exec` (the descriptor is inherited),
//! and `/proc/locks`, which every user may read, lists them: one read of that file tells every
//! command who the members of every environment are, no pid is trusted, and nothing is written
//! when a process starts or ends.
//!
//! - An OFD lock, which belongs to the open file: a `fork` child shares it from the first
//!   instant, so there is no moment between a parent's exit and its child's first step when the
//!   environment has no member (a shell script's `cmd &` then `exit`). It ends when the last
//!   process holding the descriptor ends. `/proc/locks` shows it without a pid.
//! - A POSIX lock, which belongs to the process and shows its pid: what `genv envs` lists. A
//!   `fork` child takes its own at once (the shim's `pthread_atfork` handler). Any `close` of
//!   any descriptor of the file drops a process's POSIX locks: nothing else ever opens a members
//!   file in a member process (the CLI and the SDK only open it to check it, and are not
//!   members of what they check), and it is a file of its own.
//!
//! The file is its owner's and private (0600): only the owner (and root) can open it, so only
//! their processes can keep their environments alive. A file under a uid that is not its owner's,
//! or that others may read, is not believed (planted in the shared mode's 1777 directory).

use crate::fsafe::{Dir, OpenError};
use crate::store::Store;
use crate::Error;
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;

/// The variable that tells the shim which environment's lock to take, and on which file:
/// `<serial>:<dev>:<ino>:<fd>:<path>` (`fd`: a descriptor of the file the process inherits, or
/// -1; the shim also looks just above its descriptor floor, see `shim/stub/stub.rs`).
pub const VAR: &str = "GENV_MEMBER";
/// The directory of the members files in the state directory.
pub const DIR: &str = "members";
const MODE: u32 = 0o600;

/// How to make a missing members file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Make {
    No,
    /// By its owner (the shared mode).
    Own,
    /// By the service, for its owner.
    ForUser {
        uid: u32,
        gid: u32,
    },
}

fn file_name(uid: u32) -> String {
    uid.to_string()
}

/// Whether a file with this owner and mode can be `uid`'s members file.
fn believable(uid: u32, st_uid: u32, mode: u32) -> bool {
    st_uid == uid && mode & 0o077 == 0
}

/// A file under `uid`'s name that cannot be `uid`'s members file.
fn not_theirs(path: &std::path::Path, uid: u32, owner: u32, mode: u32) -> Error {
    let who = |u: u32| format!("{}({u})", crate::procfs::user_name(u));
    Error::State(format!(
        "{} belongs to {} with mode {mode:04o}, not to {} alone as a members file must \
         (planted?): its owner or root must remove it (rm {})",
        path.display(),
        who(owner),
        who(uid),
        path.display()
    ))
}

/// The members directory of `store`, made when `make` says so (1777 in the shared mode, the
/// service's own 0755 in the system mode).
fn dir(store: &Store, make: Make) -> Result<Dir, Error> {
    let mode = match make {
        Make::No => None,
        Make::Own => Some(crate::fsafe::SHARED_DIR_MODE),
        Make::ForUser { .. } => Some(0o755),
    };
    store.dir().subdir(DIR, mode)
}

/// `uid`'s members file, checked (made when missing as `make` says), ready to name in
/// [`VAR`] with [`File::token`]. The file is only opened here, never locked: this process is
/// the CLI or the SDK, which must not hold POSIX locks on it.
pub fn open(store: &Store, uid: u32, make: Make) -> Result<File, Error> {
    let d = dir(store, make)?;
    let name = file_name(uid);
    let path = d.path().join(&name);
    let shown = || path.display().to_string();
    let file = match d.open_file(&name, false) {
        Ok(f) => f,
        Err(OpenError::Missing) if make != Make::No => {
            match d.create_new(&name, MODE) {
                Ok(f) => {
                    if let Make::ForUser { uid, gid } = make {
                        rustix::fs::fchown(
                            &f,
                            Some(rustix::fs::Uid::from_raw(uid)),
                            Some(rustix::fs::Gid::from_raw(gid)),
                        )
                        .map_err(|e| {
                            Error::State(format!("cannot give {} to uid {uid}: {e}", shown()))
                        })?;
                    }
                    f
                }
                // Made by another process of ours meanwhile: open that one (checked below).
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => d
                    .open_file(&name, false)
                    .map_err(|e| Error::State(format!("cannot open {}: {e:?}", shown())))?,
                Err(e) => return Err(Error::State(format!("cannot create {}: {e}", shown()))),
            }
        }
        Err(OpenError::Missing) => return Err(Error::State(format!("{} does not exist", shown()))),
        Err(OpenError::NotRegular(what)) => {
            return Err(Error::State(format!(
                "{} is {what}, not a genv members file; remove it (rm {})",
                shown(),
                shown()
            )))
        }
        Err(OpenError::Denied(e)) => {
            return Err(match d.entry_stat(name.as_ref()) {
                Some(st) if !believable(uid, st.uid, st.mode) => {
                    not_theirs(&path, uid, st.uid, st.mode)
                }
                _ => Error::State(format!("cannot open {}: {e}", shown())),
            })
        }
        Err(OpenError::Io(e)) => return Err(Error::State(format!("cannot open {}: {e}", shown()))),
    };
    let md = file
        .metadata()
        .map_err(|e| Error::State(format!("cannot read {}: {e}", shown())))?;
    if !believable(uid, md.uid(), md.mode() & 0o7777) {
        return Err(not_theirs(&path, uid, md.uid(), md.mode() & 0o7777));
    }
    Ok(File {
        dev: md.dev(),
        ino: md.ino(),
        path: path.into_os_string(),
    })
}

/// A members file, as checked by [`open`].
#[derive(Clone, Debug)]
pub struct File {
    dev: u64,
    ino: u64,
    path: OsString,
}

impl File {
    /// The value of [`VAR`] for the processes of environment `serial`; `None` when the path is
    /// not UTF-8 (it travels in JSON from the service).
    pub fn token(&self, serial: u64) -> Option<String> {
        let mut v = format!("{serial}:{}:{}:-1:", self.dev, self.ino).into_bytes();
        v.extend_from_slice(self.path.as_encoded_bytes());
        OsString::from_vec(v).into_string().ok()
    }
}

/// Where the shim's stub keeps a member's descriptor: from this number on (`shim/stub/stub.rs`
/// `FD_FLOOR`, `FD_PROBES`).
const STUB_FD_FLOOR: i32 = 200;
const STUB_FD_PROBES: i32 = 4;

/// Gives up this process's membership, if the shim's stub made it a member (the genv CLI, which
/// runs under the shell's `LD_PRELOAD`): closes its descriptors of the file `GENV_MEMBER` names,
/// which drops the process's POSIX lock, and the OFD lock unless a parent shares that open file.
/// Children started afterwards get their own `GENV_MEMBER` from whoever starts them.
pub fn leave() {
    let Some(v) = std::env::var_os(VAR) else {
        return;
    };
    let v = v.as_encoded_bytes();
    let mut f = v.splitn(5, |&b| b == b':').skip(1);
    let num = |b: Option<&[u8]>| -> Option<u64> { std::str::from_utf8(b?).ok()?.parse().ok() };
    let (Some(dev), Some(ino)) = (num(f.next()), num(f.next())) else {
        return;
    };
    for fd in STUB_FD_FLOOR..STUB_FD_FLOOR + STUB_FD_PROBES {
        // SAFETY: all-zero is a valid `stat`.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on a number that may or may not be open; `st` is a valid out buffer.
        let same = unsafe { libc::fstat(fd, &mut st) } == 0
            && st.st_dev == dev
            && st.st_ino == ino
            && st.st_mode & libc::S_IFMT == libc::S_IFREG;
        if same {
            // SAFETY: closing a descriptor of the members file, which nothing in this process
            // uses but the membership being given up.
            unsafe { libc::close(fd) };
        }
    }
}

/// What holds an environment, from `/proc/locks`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Held {
    /// The members, by pid (POSIX locks).
    pub pids: Vec<u32>,
    /// Whether an open file of the members holds it (OFD locks: no pid).
    pub shared: bool,
}

/// The members of every environment: (owner's uid, serial) -> what holds it, from one read of
/// `/proc/locks`. Locks on a file that is not its owner's private members file do not count.
pub(crate) fn scan(store: &Store) -> HashMap<(u32, u64), Held> {
    let mut out: HashMap<(u32, u64), Held> = HashMap::new();
    let Ok(d) = dir(store, Make::No) else {
        return out;
    };
    // (major, minor, inode) -> uid
    let mut files: HashMap<(u64, u64, u64), u32> = HashMap::new();
    for name in d.names().unwrap_or_default() {
        let Some(uid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Some(st) = d.entry_stat(&name) else {
            continue;
        };
        if st.is_file && believable(uid, st.uid, st.mode) {
            files.insert(
                (
                    libc::major(st.dev) as u64,
                    libc::minor(st.dev) as u64,
                    st.ino,
                ),
                uid,
            );
        }
    }
    if files.is_empty() {
        return out;
    }
    for l in crate::procfs::locks() {
        if l.write || l.start != l.end {
            continue;
        }
        if let Some(&uid) = files.get(&(l.major, l.minor, l.ino)) {
            let held = out.entry((uid, l.start)).or_default();
            if !l.posix {
                held.shared = true;
            } else if l.pid > 0 && !held.pids.contains(&(l.pid as u32)) {
                held.pids.push(l.pid as u32);
            }
        }
    }
    for held in out.values_mut() {
        held.pids.sort_unstable();
    }
    out
}

/// How long [`await_joining`] waits, at most, for children to become members.
const JOIN_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Waits (at most [`JOIN_WAIT`]) until every child of `pid` that was started in environment
/// `serial` of `uid` — its `GENV_MEMBER` names the serial: it was exec'd with it — is a member or
/// gone. Between its exec and the shim's load a child holds no lock yet; judging the environment
/// then would end it under a job that was just started. Children that are members already, or
/// were started outside the environment, cost one read of `/proc` each.
pub(crate) fn await_joining(store: &Store, pid: u32, uid: u32, serial: u64) {
    let prefix = format!("{VAR}={serial}:");
    let pending = |members: &HashMap<(u32, u64), Held>| -> bool {
        let held = members.get(&(uid, serial));
        crate::procfs::children(pid).into_iter().any(|c| {
            !held.is_some_and(|h| h.pids.contains(&c)) && crate::procfs::has_env(c, &prefix)
        })
    };
    let t0 = std::time::Instant::now();
    while pending(&scan(store)) && t0.elapsed() < JOIN_WAIT {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn believable_files() {
        assert!(believable(1000, 1000, 0o600));
        assert!(believable(1000, 1000, 0o400));
        assert!(!believable(1000, 1001, 0o600));
        assert!(!believable(1000, 1000, 0o644));
        assert!(!believable(1000, 1000, 0o660));
    }
}
