//! Files in directories that other users can write: the shared state directory and its `locks/`.
//!
//! The rules (ARCHITECTURE.md, "Hostile files"):
//! - Every directory from `/` down to the one used is checked before anything in it is trusted:
//!   it must be owned by the caller or root and writable by nobody else, or be sticky (like
//!   `/tmp`, 1777), where others cannot remove or rename what is ours.
//! - A symbolic link on the way is followed only where it sits in a directory nobody else can
//!   write; one in a directory others can write could point wherever its planter likes.
//! - Inside the directory everything goes through its descriptor with `O_NOFOLLOW`; files are
//!   created with `O_EXCL` only, and only a file (or directory) just created is ever chmod'ed.
//! - Only regular files are opened, and they are opened `O_NONBLOCK` first, so that a FIFO
//!   planted under a genv name cannot hang the opener.

use crate::Error;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Mode of the shared state directory: everyone may create their files, nobody may remove
/// another's (sticky), whatever the creator's umask.
pub const SHARED_DIR_MODE: u32 = 0o1777;
/// Symbolic links followed on the way to a directory before giving up (as the kernel's limit).
const MAX_LINK_HOPS: usize = 40;
const S_ISVTX: u32 = 0o1000;
/// Write permission for the group or for others.
const OTHERS_WRITE: u32 = 0o022;

/// A directory that passed the checks, held open (`O_PATH`): what is done inside it is done
/// relative to this descriptor, so a rename of any directory above it changes nothing.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
    /// Owner, mode bits, device and inode of the directory when it was checked.
    pub uid: u32,
    pub mode: u32,
    pub dev: u64,
    pub ino: u64,
}

/// Why a file in a [`Dir`] could not be opened.
#[derive(Debug)]
pub enum OpenError {
    Missing,
    /// Permission denied or a read-only file system: may be opened for reading instead.
    Denied(std::io::Error),
    /// Not a regular file (a link, FIFO, device, directory …): never opened; says what it is.
    NotRegular(&'static str),
    Io(std::io::Error),
}

fn io(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.raw_os_error())
}

fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice | FileType::BlockDevice => "a device",
        FileType::Directory => "a directory",
        _ => "not a regular file",
    }
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn describe_owner(uid: u32) -> String {
    format!("{}({uid})", crate::procfs::user_name(uid))
}

/// The trust rule for a directory: sticky, or owned by the caller, by root or by `also` (the
/// owner of the directory it sits in, who controls it anyway) and writable by nobody else.
fn trusted(uid: u32, mode: u32, also: Option<u32>) -> bool {
    let owner_ok = uid == euid() || uid == 0 || Some(uid) == also;
    mode & S_ISVTX != 0 || (owner_ok && mode & OTHERS_WRITE == 0)
}

fn untrusted(path: &Path, uid: u32, mode: u32) -> Error {
    Error::State(format!(
        "{} is not safe for genv: it belongs to {} with mode {:04o}, so others can change what \
         is in it; use a directory only you can write (GENV_TMPDIR=$(mktemp -d)) or a sticky \
         one like /tmp (mode 1777)",
        path.display(),
        describe_owner(uid),
        mode & 0o7777
    ))
}

fn at_err(path: &Path, what: &str, e: Errno) -> Error {
    Error::State(format!("cannot {what} {}: {}", path.display(), io(e)))
}

/// The components still to walk, as names (`..` kept; `.` and the root dropped).
fn parts(p: &Path) -> VecDeque<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

impl Dir {
    /// Opens directory `path` checking every directory on the way (see the module docs).
    /// With `create`, a missing last component is made with [`SHARED_DIR_MODE`] and missing
    /// ones above it like `mkdir -p` (the umask's mode).
    pub fn open(path: &Path, create: bool) -> Result<Dir, Error> {
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| Error::State(format!("cannot read the working directory: {e}")))?
                .join(path)
        };
        let root_path = PathBuf::from("/");
        let open_root = || {
            rfs::openat(
                rfs::CWD,
                "/",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| at_err(&root_path, "open", e))
        };
        let mut cur = Self::checked(open_root()?, root_path.clone())?;
        let mut todo = parts(&abs);
        let mut hops = 0;
        while let Some(name) = todo.pop_front() {
            let last = todo.is_empty();
            let shown = cur.path.join(&name);
            let fd = match cur.open_path(&name) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    cur.make_dir(&name, last.then_some(SHARED_DIR_MODE))?;
                    cur.open_path(&name)
                        .map_err(|e| at_err(&shown, "open the directory", e))?
                }
                Err(Errno::NOENT) => {
                    return Err(Error::State(format!(
                        "{} does not exist; run `genv activate` to create it",
                        shown.display()
                    )))
                }
                Err(e) => return Err(at_err(&shown, "open the directory", e)),
            };
            let st = rfs::fstat(&fd).map_err(|e| at_err(&shown, "read", e))?;
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => cur = Self::checked(fd, shown)?,
                FileType::Symlink => {
                    // Followed only where nobody but its owner (the caller or root) could have
                    // put it.
                    if cur.mode & OTHERS_WRITE != 0 {
                        return Err(Error::State(format!(
                            "{} is a symbolic link in {}, which others can write: genv does not \
                             follow it; give the real directory",
                            shown.display(),
                            cur.path.display()
                        )));
                    }
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return Err(at_err(&shown, "resolve", Errno::LOOP));
                    }
                    let target = rfs::readlinkat(&fd, "", Vec::new())
                        .map_err(|e| at_err(&shown, "read the link", e))?;
                    let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                    let mut next = parts(&target);
                    next.extend(todo.drain(..));
                    todo = next;
                    if target.is_absolute() {
                        cur = Self::checked(open_root()?, root_path.clone())?;
                    }
                }
                t => {
                    return Err(Error::State(format!(
                        "{} is {}, not a directory",
                        shown.display(),
                        kind_name(t)
                    )))
                }
            }
        }
        Ok(cur)
    }

    /// Wraps `fd` after checking the directory's owner and mode.
    fn checked(fd: OwnedFd, path: PathBuf) -> Result<Dir, Error> {
        let st = rfs::fstat(&fd).map_err(|e| at_err(&path, "read", e))?;
        let (uid, mode) = (st.st_uid, st.st_mode & 0o7777);
        if !trusted(uid, mode, None) {
            return Err(untrusted(&path, uid, mode));
        }
        Ok(Dir {
            fd,
            path,
            uid,
            mode,
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    fn open_path(&self, name: &OsStr) -> Result<OwnedFd, Errno> {
        rfs::openat(
            &self.fd,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    }

    /// Makes directory `name` here, with exactly `mode` when given (chmod'ed, since the umask
    /// narrows mkdir's mode, and only after checking that what is there is what we made).
    fn make_dir(&self, name: &OsStr, mode: Option<u32>) -> Result<(), Error> {
        let shown = self.path.join(name);
        match rfs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o777)) {
            Ok(()) => {}
            // Someone made it meanwhile: it is checked like any other.
            Err(Errno::EXIST) => return Ok(()),
            Err(e) => return Err(at_err(&shown, "create the directory", e)),
        }
        if let Some(mode) = mode {
            let fd = rfs::openat(
                &self.fd,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| at_err(&shown, "open the directory", e))?;
            let st = rfs::fstat(&fd).map_err(|e| at_err(&shown, "read", e))?;
            // What we open must be ours; a directory of someone else's (swapped in by the
            // owner of the directory above) is left as it is, and checked like any other.
            if st.st_uid == euid() {
                rfs::fchmod(&fd, Mode::from_raw_mode(mode))
                    .map_err(|e| at_err(&shown, "set the permissions of", e))?;
            }
        }
        Ok(())
    }

    /// Sub-directory `name` of this one (no link followed). It may also belong to the owner
    /// of this directory (who controls it anyway). Made with mode `create` when missing and
    /// given.
    pub fn subdir(&self, name: &str, create: Option<u32>) -> Result<Dir, Error> {
        let name = OsStr::new(name);
        let shown = self.path.join(name);
        let fd = match self.open_path(name) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if create.is_some() => {
                self.make_dir(name, create)?;
                self.open_path(name)
                    .map_err(|e| at_err(&shown, "open the directory", e))?
            }
            Err(Errno::NOENT) => {
                return Err(Error::State(format!("{} does not exist", shown.display())))
            }
            Err(e) => return Err(at_err(&shown, "open the directory", e)),
        };
        let st = rfs::fstat(&fd).map_err(|e| at_err(&shown, "read", e))?;
        let t = FileType::from_raw_mode(st.st_mode);
        if t != FileType::Directory {
            return Err(Error::State(format!(
                "{} is {}, not a directory genv made; remove it (rm {})",
                shown.display(),
                kind_name(t),
                shown.display()
            )));
        }
        let (uid, mode) = (st.st_uid, st.st_mode & 0o7777);
        if !trusted(uid, mode, Some(self.uid)) {
            return Err(untrusted(&shown, uid, mode));
        }
        Ok(Dir {
            fd,
            path: shown,
            uid,
            mode,
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens regular file `name` here, read-write or read-only; never follows a link, never
    /// opens anything but a regular file.
    pub fn open_file(&self, name: &str, write: bool) -> Result<File, OpenError> {
        let access = if write { OFlags::RDWR } else { OFlags::RDONLY };
        let fd = match rfs::openat(
            &self.fd,
            name,
            access | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Err(OpenError::Missing),
            Err(Errno::LOOP) => return Err(OpenError::NotRegular("a symbolic link")),
            Err(e @ (Errno::ACCESS | Errno::PERM | Errno::ROFS)) => {
                return Err(OpenError::Denied(io(e)))
            }
            // Opening a directory for writing.
            Err(Errno::ISDIR) => return Err(OpenError::NotRegular("a directory")),
            Err(e) => return Err(OpenError::Io(io(e))),
        };
        Self::regular(fd)
    }

    fn regular(fd: OwnedFd) -> Result<File, OpenError> {
        let st = rfs::fstat(&fd).map_err(|e| OpenError::Io(io(e)))?;
        let t = FileType::from_raw_mode(st.st_mode);
        if t != FileType::RegularFile {
            return Err(OpenError::NotRegular(kind_name(t)));
        }
        // Blocking again, as the callers expect (flock waits).
        let fl = rfs::fcntl_getfl(&fd).map_err(|e| OpenError::Io(io(e)))?;
        rfs::fcntl_setfl(&fd, fl - OFlags::NONBLOCK).map_err(|e| OpenError::Io(io(e)))?;
        Ok(File::from(fd))
    }

    /// Creates regular file `name` here (`O_EXCL`: fails if anything is there) with exactly
    /// `mode` (chmod'ed: the umask narrows open's mode, and this is the file just created).
    pub fn create_new(&self, name: &str, mode: u32) -> std::io::Result<File> {
        let fd = rfs::openat(
            &self.fd,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(io)?;
        rfs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(io)?;
        Ok(File::from(fd))
    }

    /// Opens regular file `name` read-only (enough for `flock`), creating it (`O_EXCL`, exactly
    /// `mode`) when missing.
    pub fn open_or_create(&self, name: &str, mode: u32) -> Result<File, OpenError> {
        for _ in 0..8 {
            match self.open_file(name, false) {
                Err(OpenError::Missing) => {}
                r => return r,
            }
            match self.create_new(name, mode) {
                Ok(f) => return Ok(f),
                // Made by someone else meanwhile: open theirs (checked like any other).
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(OpenError::Io(e)),
            }
        }
        Err(OpenError::Io(std::io::Error::from_raw_os_error(
            libc::EAGAIN,
        )))
    }

    /// Hard-links `from` to `to` here (no link followed); fails if `to` exists.
    pub fn link(&self, from: &str, to: &str) -> std::io::Result<()> {
        rfs::linkat(&self.fd, from, &self.fd, to, AtFlags::empty()).map_err(io)
    }

    pub fn unlink(&self, name: &OsStr) -> std::io::Result<()> {
        rfs::unlinkat(&self.fd, name, AtFlags::empty()).map_err(io)
    }

    /// Device and inode of entry `name` (the entry itself, not what a link points to).
    pub fn entry_id(&self, name: &str) -> Option<(u64, u64)> {
        rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .map(|st| (st.st_dev, st.st_ino))
    }

    /// What `stat` says of entry `name` itself (no link followed).
    pub fn entry_stat(&self, name: &OsStr) -> Option<EntryStat> {
        rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .map(|st| EntryStat {
                dev: st.st_dev,
                ino: st.st_ino,
                uid: st.st_uid,
                mode: st.st_mode & 0o7777,
                is_file: FileType::from_raw_mode(st.st_mode) == FileType::RegularFile,
            })
    }

    /// The names in this directory.
    pub fn names(&self) -> std::io::Result<Vec<OsString>> {
        let fd = rfs::openat(
            &self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io)?;
        let dir = rfs::Dir::read_from(&fd).map_err(io)?;
        let mut out = Vec::new();
        for ent in dir {
            let ent = ent.map_err(io)?;
            let n = ent.file_name().to_bytes();
            if n != b"." && n != b".." {
                out.push(OsStr::from_bytes(n).to_os_string());
            }
        }
        Ok(out)
    }
}

/// An entry's identity, owner and kind (see [`Dir::entry_stat`]).
#[derive(Clone, Copy, Debug)]
pub struct EntryStat {
    pub dev: u64,
    pub ino: u64,
    pub uid: u32,
    pub mode: u32,
    pub is_file: bool,
}

/// A random 64-bit number (the instance id of a state file, temporary names).
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // getrandom(2) only fails before the pool is initialised early at boot; then fall back to
    // the time and pid, which is unique enough for a name that is also created with O_EXCL.
    if rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).ok() != Some(8) {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        return t ^ ((std::process::id() as u64) << 32);
    }
    u64::from_ne_bytes(b)
}
