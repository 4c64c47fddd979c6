//! The shim's per-process log: off unless `GENV_LOG=debug`; to stderr, or appended to
//! `GENV_LOG_FILE` when set. Lines are written with one `write(2)` each so that the lines of
//! concurrent threads and processes do not interleave. No lock is taken: the settings are read
//! once into atomics.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// -2: not read yet; -1: logging off; otherwise the descriptor to write to.
static FD: AtomicI32 = AtomicI32::new(-2);
static ERROR_SHOWN: AtomicBool = AtomicBool::new(false);

fn fd() -> i32 {
    let fd = FD.load(Ordering::Relaxed);
    if fd != -2 {
        return fd;
    }
    let on = matches!(
        crate::env::get(c"GENV_LOG"),
        Some(b"debug") | Some(b"DEBUG") | Some(b"trace")
    );
    let fd = if !on {
        -1
    } else {
        match crate::env::get(c"GENV_LOG_FILE") {
            Some(path) if !path.is_empty() => {
                let path = std::ffi::CString::new(path).unwrap_or_default();
                // SAFETY: plain open(2) of a NUL-terminated path.
                let f = unsafe {
                    libc::open(
                        path.as_ptr(),
                        libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC,
                        0o644,
                    )
                };
                if f < 0 {
                    2
                } else {
                    f
                }
            }
            _ => 2,
        }
    };
    // Racing first callers may each open the file once; the loser's descriptor is closed.
    match FD.compare_exchange(-2, fd, Ordering::AcqRel, Ordering::Relaxed) {
        Ok(_) => fd,
        Err(cur) => {
            if fd > 2 {
                // SAFETY: our own descriptor, never published.
                unsafe { libc::close(fd) };
            }
            cur
        }
    }
}

/// Whether debug lines are wanted (cheap after the first call).
pub fn enabled() -> bool {
    fd() >= 0
}

fn write_line(fd: i32, s: &str) {
    let b = s.as_bytes();
    // SAFETY: writing our own buffer.
    unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
}

/// Writes one debug line (use the `debug!` macro, which skips the formatting when off).
pub fn debug_line(args: std::fmt::Arguments<'_>) {
    let fd = fd();
    if fd < 0 {
        return;
    }
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    write_line(fd, &format!("genv-shim[{pid}]: {args}\n"));
}

/// The failure policy's one clear line on stderr, printed at most once per process.
pub fn error_once(args: std::fmt::Arguments<'_>) {
    if ERROR_SHOWN.swap(true, Ordering::AcqRel) {
        return;
    }
    let line = format!("genv: {args}\n");
    write_line(2, &line);
    let fd = fd();
    if fd > 2 {
        write_line(fd, &line);
    }
}

/// `debug!("format", args…)`: a line in the per-process log when `GENV_LOG=debug`.
#[macro_export]
macro_rules! debug {
    ($($t:tt)*) => {
        if $crate::log::enabled() {
            $crate::log::debug_line(format_args!($($t)*));
        }
    };
}
