//! Process identity from /proc: a pid plus its start time names one process for good, so a
//! reused pid never keeps a dead environment alive.

/// Room for a whole stat line: its 52 numbers and a command name of at most 64 bytes.
const STAT_BUF: usize = 2048;
/// Fields of `/proc/<pid>/stat`, numbered as proc(5) numbers them.
const STATE_FIELD: usize = 3;
const STARTTIME_FIELD: usize = 22;

/// Start time of `pid` in clock ticks since boot (`/proc/<pid>/stat` field 22), if it runs.
pub fn start_time(pid: u32) -> Option<u64> {
    use std::io::Read;
    // One open and one read into a stack buffer (the kernel renders the line whole): this runs
    // for every environment in every command, and read_to_string's statx and growing reads
    // cost three times the syscalls. Bytes, not a String: the command name may be any bytes,
    // and a name that is not UTF-8 must not make a live process look dead.
    let mut f = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let mut buf = [0u8; STAT_BUF];
    let n = f.read(&mut buf).ok()?;
    let stat = &buf[..n];
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest = std::str::from_utf8(&stat[stat.iter().rposition(|&b| b == b')')? + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    // rest starts at the state field.
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(STARTTIME_FIELD - STATE_FIELD - 1)?.parse().ok()
}

/// Whether the process `pid` that started at `start` still runs.
pub fn alive(pid: u32, start: u64) -> bool {
    pid != 0 && start_time(pid) == Some(start)
}

/// Room for one passwd entry's strings; an entry that does not fit shows as its uid.
const PASSWD_BUF: usize = 4096;

/// The real uid of process `pid` (`/proc/<pid>/status`), if it runs.
pub fn uid_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    // "Uid:\t<real>\t<effective>\t<saved>\t<filesystem>"
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// (login name, primary gid) of `uid`, when it has a passwd entry.
fn passwd(uid: u32) -> Option<(String, u32)> {
    let mut buf = vec![0u8; PASSWD_BUF];
    // SAFETY: passwd is plain data (integers and pointers) for which all-zero is valid.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to a live local, and `buf.len()` is the size of `buf`.
    let r = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
            &mut out,
        )
    };
    if r == 0 && !out.is_null() && !pwd.pw_name.is_null() {
        // SAFETY: on success pw_name points at a NUL-terminated string inside `buf`, alive here.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned();
        Some((name, pwd.pw_gid))
    } else {
        None
    }
}

/// The login name of `uid`, or the uid as text when it has none.
pub fn user_name(uid: u32) -> String {
    passwd(uid).map_or_else(|| uid.to_string(), |p| p.0)
}

/// The primary group of `uid` (its own number when it has no passwd entry).
pub fn user_gid(uid: u32) -> u32 {
    passwd(uid).map_or(uid, |p| p.1)
}

pub fn current_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

#[cfg(test)]
mod tests {
    #[test]
    fn uid_of_self() {
        assert_eq!(
            super::uid_of(std::process::id()),
            Some(super::current_uid())
        );
        assert_eq!(super::uid_of(u32::MAX), None);
    }

    #[test]
    fn self_is_alive() {
        let me = std::process::id();
        let st = super::start_time(me).unwrap();
        assert!(super::alive(me, st));
        assert!(!super::alive(me, st + 1));
    }

    #[test]
    fn name_that_is_not_utf8() {
        // A thread named with invalid UTF-8 (prctl takes any bytes) is still alive.
        let t = std::thread::spawn(|| {
            // SAFETY: PR_SET_NAME reads a NUL-terminated string, which a C literal is.
            unsafe { libc::prctl(libc::PR_SET_NAME, c"a)\xff b(".as_ptr()) };
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() } as u32;
            super::start_time(tid)
        });
        assert!(t.join().unwrap().is_some());
    }
}

/// The children of every thread of `pid` (`/proc/<pid>/task/*/children`).
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(t.path().join("children")) else {
            continue;
        };
        out.extend(
            text.split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    out
}

/// Whether process `pid` was started (exec'd) with an environment entry beginning `prefix`
/// (`NAME=value…`); false when it cannot be read (another user's, gone).
pub fn has_env(pid: u32, prefix: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|b| {
            b.split(|&c| c == 0)
                .any(|e| e.starts_with(prefix.as_bytes()))
        })
        .unwrap_or(false)
}

/// The value of the environment entry `name` process `pid` was started (exec'd) with; None when
/// it has none or it cannot be read (another user's, gone).
pub fn env_value(pid: u32, name: &str) -> Option<Vec<u8>> {
    let b = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let key = format!("{name}=");
    b.split(|&c| c == 0)
        .find_map(|e| e.strip_prefix(key.as_bytes()).map(<[u8]>::to_vec))
}

/// One lock of `/proc/locks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockLine {
    /// POSIX (`fcntl` F_SETLK) rather than OFD or flock.
    pub posix: bool,
    pub write: bool,
    /// The holder (POSIX locks only; -1 for OFD locks), in this process's pid namespace.
    pub pid: i64,
    pub major: u64,
    pub minor: u64,
    pub ino: u64,
    pub start: u64,
    /// Inclusive; `u64::MAX` for "EOF".
    pub end: u64,
}

/// The held `fcntl` locks (POSIX and OFD) of the machine, from `/proc/locks` (readable by every
/// user); waiters and flock/lease entries are left out. One read per call.
pub fn locks() -> Vec<LockLine> {
    let Ok(text) = std::fs::read_to_string("/proc/locks") else {
        return Vec::new();
    };
    text.lines().filter_map(parse_lock).collect()
}

/// "N: POSIX  ADVISORY  READ 1234 fe:00:5678 0 EOF"; a waiter has "->" after "N:".
fn parse_lock(l: &str) -> Option<LockLine> {
    let f: Vec<&str> = l.split_whitespace().collect();
    if f.len() < 8 {
        return None;
    }
    let posix = match f[1] {
        "POSIX" => true,
        "OFDLCK" => false,
        _ => return None,
    };
    let write = match f[3] {
        "READ" => false,
        "WRITE" => true,
        _ => return None,
    };
    let mut id = f[5].split(':');
    let major = u64::from_str_radix(id.next()?, 16).ok()?;
    let minor = u64::from_str_radix(id.next()?, 16).ok()?;
    let ino = id.next()?.parse().ok()?;
    let end = if f[7] == "EOF" {
        u64::MAX
    } else {
        f[7].parse().ok()?
    };
    Some(LockLine {
        posix,
        write,
        pid: f[4].parse().ok()?,
        major,
        minor,
        ino,
        start: f[6].parse().ok()?,
        end,
    })
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    #[test]
    fn lock_lines() {
        let l = parse_lock("1: POSIX  ADVISORY  READ 4242 fe:01:1234 17 17").unwrap();
        assert!(l.posix && !l.write);
        assert_eq!(
            (l.pid, l.major, l.minor, l.ino, l.start, l.end),
            (4242, 0xfe, 1, 1234, 17, 17)
        );
        let o = parse_lock("2: OFDLCK ADVISORY  WRITE -1 00:2a:99 5 EOF").unwrap();
        assert!(!o.posix && o.write && o.pid == -1 && o.end == u64::MAX && o.minor == 0x2a);
        assert_eq!(
            parse_lock("3: -> POSIX  ADVISORY  WRITE 7 fe:01:1234 0 EOF"),
            None
        );
        assert_eq!(
            parse_lock("4: FLOCK  ADVISORY  WRITE 7 fe:01:1234 0 EOF"),
            None
        );
        assert_eq!(parse_lock("garbage"), None);
    }
}
