//! Membership (see `state/src/members.rs`): a process started in an environment holds read
//! locks on its owner's members file at the environment's serial from the moment the shim is
//! loaded, before `main`, whether or not it ever touches CUDA — an OFD lock (shared with `fork`
//! children from their first instant) and a POSIX lock (its pid, for `genv envs`); the kernel
//! lists them in `/proc/locks` and drops them when the process ends, however it ends.
//!
//! - `GENV_MEMBER=<serial>:<dev>:<ino>:<fd>:<path>` names the lock. The descriptor is kept
//!   without `O_CLOEXEC`, so `exec` keeps the lock (the same process) and children inherit the
//!   descriptor: the next image finds it by number (`fd`, checked by device and inode) and
//!   takes its lock on it with one `fcntl`; when it is gone (closed by a program, a
//!   `close_fds` spawner) the file is opened again by path, the same inode or nothing.
//! - `fork` passes the OFD lock on (the child holds the same open file), not the POSIX lock:
//!   the child takes its own in a `pthread_atfork` handler (async-signal-safe: one `fcntl`).
//! - Nothing here allocates, locks or can panic, except `setenv` once per process that had to
//!   open the file (so that its children find the descriptor).
//! - Any `close` of the file by the process would drop its lock (POSIX semantics): nothing else
//!   in a member process opens a members file (the CLI and the SDK only `stat` it).

use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};

/// The descriptor the lock is on, or -1.
static FD: AtomicI32 = AtomicI32::new(-1);
/// The serial locked, or -1.
static SERIAL: AtomicI64 = AtomicI64::new(-1);
/// Descriptors below this are left to the program (scripts' `exec 3<file`, `dup2` onto small
/// numbers): a `dup2` onto ours would close it and drop the lock.
const FD_FLOOR: i32 = 200;

struct Token<'a> {
    serial: i64,
    dev: u64,
    ino: u64,
    fd: i32,
    path: &'a [u8],
}

fn parse(v: &[u8]) -> Option<Token<'_>> {
    let mut it = v.splitn(5, |&b| b == b':');
    let num = |b: Option<&[u8]>| -> Option<i128> { std::str::from_utf8(b?).ok()?.parse().ok() };
    let serial = num(it.next())?;
    let dev = num(it.next())?;
    let ino = num(it.next())?;
    let fd = num(it.next())?;
    let path = it.next().filter(|p| !p.is_empty())?;
    Some(Token {
        serial: i64::try_from(serial).ok().filter(|&s| s > 0)?,
        dev: u64::try_from(dev).ok()?,
        ino: u64::try_from(ino).ok()?,
        fd: i32::try_from(fd).ok()?,
        path,
    })
}

fn is_file(fd: i32, dev: u64, ino: u64) -> bool {
    // SAFETY: all-zero is a valid `stat`; fstat fills it or fails.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a live local of the right type.
    let r = unsafe { libc::fstat(fd, &mut st) };
    r == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_dev == dev && st.st_ino == ino
}

fn lock(fd: i32, cmd: i32, serial: i64, ty: i32) -> bool {
    // SAFETY: all-zero is a valid `flock`; the fields are set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ty as _;
    fl.l_whence = libc::SEEK_SET as _;
    fl.l_start = serial;
    fl.l_len = 1;
    // SAFETY: F_SETLK / F_OFD_SETLK with a valid flock; a bad descriptor is an error, not UB.
    unsafe { libc::fcntl(fd, cmd, &fl) == 0 }
}

/// Both locks at `serial` on `fd` (taking a lock the process or its open file holds changes
/// nothing).
fn lock_both(fd: i32, serial: i64) -> bool {
    lock(fd, libc::F_OFD_SETLK, serial, libc::F_RDLCK)
        && lock(fd, libc::F_SETLK, serial, libc::F_RDLCK)
}

/// Opens the file of `t` (no link followed, no FIFO to hang on), above [`FD_FLOOR`], inherited.
fn open(t: &Token<'_>) -> Option<i32> {
    let mut path = [0u8; libc::PATH_MAX as usize];
    if t.path.len() >= path.len() || t.path.contains(&0) {
        return None;
    }
    path[..t.path.len()].copy_from_slice(t.path);
    // SAFETY: a NUL-terminated path in a local buffer.
    let fd = unsafe {
        libc::open(
            path.as_ptr().cast(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: fcntl/close on the descriptor just opened.
    unsafe {
        let high = libc::fcntl(fd, libc::F_DUPFD, FD_FLOOR);
        libc::close(fd);
        if high < 0 {
            return None;
        }
        if !is_file(high, t.dev, t.ino) {
            libc::close(high);
            return None;
        }
        Some(high)
    }
}

/// Joins the environment named by `GENV_MEMBER` (called at load, when `GENV_ENVIRONMENT_ID`
/// is set).
pub(crate) fn join() {
    let Some(v) = crate::env::get(c"GENV_MEMBER") else {
        return;
    };
    let Some(t) = parse(v) else {
        crate::debug!("GENV_MEMBER is not <serial>:<dev>:<ino>:<fd>:<path>: not a member");
        return;
    };
    // Inherited (exec, or a child of a member): the descriptor is there, the lock too after an
    // exec; F_SETLK of a lock the process holds changes nothing.
    if t.fd >= 0 && is_file(t.fd, t.dev, t.ino) && lock_both(t.fd, t.serial) {
        FD.store(t.fd, Ordering::Relaxed);
        SERIAL.store(t.serial, Ordering::Relaxed);
        register_fork();
        return;
    }
    let Some(fd) = open(&t) else {
        crate::debug!("cannot open the members file named by GENV_MEMBER: not a member");
        return;
    };
    if !lock_both(fd, t.serial) {
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
        return;
    }
    FD.store(fd, Ordering::Relaxed);
    SERIAL.store(t.serial, Ordering::Relaxed);
    register_fork();
    // Children find the descriptor by number.
    let mut val = Vec::with_capacity(v.len() + 8);
    val.extend_from_slice(format!("{}:{}:{}:{fd}:", t.serial, t.dev, t.ino).as_bytes());
    val.extend_from_slice(t.path);
    val.push(0);
    // SAFETY: NUL-terminated strings; at load the process runs no other thread of its own.
    unsafe { libc::setenv(c"GENV_MEMBER".as_ptr(), val.as_ptr().cast(), 1) };
}

/// The serial of the environment whose member this process is, if any.
pub fn serial() -> Option<i64> {
    let s = SERIAL.load(Ordering::Relaxed);
    (s > 0).then_some(s)
}

extern "C" fn child() {
    let (fd, s) = (FD.load(Ordering::Relaxed), SERIAL.load(Ordering::Relaxed));
    if fd >= 0 && s > 0 {
        lock(fd, libc::F_SETLK, s, libc::F_RDLCK);
    }
}

fn register_fork() {
    // SAFETY: registers a handler that makes one fcntl call.
    unsafe { libc::pthread_atfork(None, None, Some(child)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let t = parse(b"7:64769:1234:-1:/var/tmp/genv/members/1000").unwrap();
        assert_eq!((t.serial, t.dev, t.ino, t.fd), (7, 64769, 1234, -1));
        assert_eq!(t.path, b"/var/tmp/genv/members/1000");
        assert_eq!(parse(b"7:1:2:205:/a:b").unwrap().path, b"/a:b");
        assert!(parse(b"0:1:2:-1:/a").is_none());
        assert!(parse(b"x:1:2:-1:/a").is_none());
        assert!(parse(b"7:1:2:-1:").is_none());
        assert!(parse(b"7:1:2").is_none());
    }
}
