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
