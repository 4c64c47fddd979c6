//! `libgenv_shim.so`, the object every process of an environment preloads: small, `no_std`,
//! linked against the C library only, so that the programs that never touch CUDA or NVML —
//! nearly every process of an activated shell — pay for little more than mapping it. It does
//! two things at load and defers everything else to the shim proper, `libgenv_shim_core.so`
//! (the `genv-shim` crate), which it loads beside itself at the first CUDA or NVML use:
//!
//! - **Membership** (see `state/src/members.rs`): a process started in an environment
//!   (`GENV_ENVIRONMENT_ID` and `GENV_MEMBER` set) takes an OFD and a POSIX read lock at the
//!   environment's serial on its owner's members file before `main`. The descriptor is kept
//!   without `O_CLOEXEC` (at [`FD_FLOOR`] or just above), so `exec` keeps the locks and children
//!   inherit the open file (an OFD lock is shared with a `fork` child from its first instant); a
//!   child takes its own POSIX lock (its pid, for `genv envs`) in a `pthread_atfork` handler. A
//!   new image looks for the inherited descriptor there (checked by device and inode), else opens
//!   the file by path (the same inode or nothing). Nothing is written to the environment: the
//!   stub never allocates.
//! - **Getting control**: it exports `dlsym` and every name the core exports for programs linked
//!   with `-lcuda` / `-lnvidia-ml` (the list is derived by build.rs from the `hooks!`
//!   declarations). `dlsym` is an assembly trampoline that jumps to glibc's `dlsym` with the
//!   caller's own return address (so `RTLD_NEXT` means what it means without the shim), unless
//!   the name is a driver name (`cu` + capital, `nvml` + capital) and the shim is not bypassed:
//!   then it loads the core and jumps to the core's `dlsym`. Each exported driver name is a
//!   one-instruction jump through a slot that first points at a resolver: the resolver loads the
//!   core, puts the core's entry of that name into the slot (or, should the core be missing, the
//!   real driver's, with one line on stderr) and jumps there with the arguments untouched. (The
//!   driver libraries' own calls of their exported names through their PLT land here too: the
//!   core's entries tell them apart by return address, see `shim/src/hooks.rs`.)
//!
//! Right after loading the core the stub hands it `genv_stub_api` (`genv_core_attach`): the
//! real `dlsym`, whether the process started in an environment, the stub's own base address —
//! see `shim/src/real.rs`.
//!
//! Nothing here allocates; nothing can panic (no indexing that is not checked; the panic handler aborts and is never
//! reached), nothing installs a signal handler.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicI32, AtomicI64, AtomicU8, AtomicUsize, Ordering};

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // SAFETY: abort(3) has no preconditions. Unreachable: nothing here panics.
    unsafe { abort() }
}

// The precompiled `core` refers to Rust's unwinding personality, which a `panic=abort` object
// never runs. Defined here, hidden: exporting one would interpose a Rust program's own.
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".globl rust_eh_personality",
    ".hidden rust_eh_personality",
    ".type rust_eh_personality, @function",
    "rust_eh_personality:",
    "ud2",
);
#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".globl rust_eh_personality",
    ".hidden rust_eh_personality",
    ".type rust_eh_personality, %function",
    "rust_eh_personality:",
    "brk #0",
);

extern "C" {
    fn abort() -> !;
    fn getenv(name: *const c_char) -> *const c_char;
    fn open(path: *const c_char, flags: c_int, ...) -> c_int;
    fn close(fd: c_int) -> c_int;
    fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
    fn fstat(fd: c_int, buf: *mut u8) -> c_int;
    fn write(fd: c_int, buf: *const c_void, n: usize) -> isize;
    fn pthread_atfork(
        prepare: Option<extern "C" fn()>,
        parent: Option<extern "C" fn()>,
        child: Option<extern "C" fn()>,
    ) -> c_int;
    fn dlopen(path: *const c_char, flags: c_int) -> *mut c_void;
    fn dlvsym(handle: *mut c_void, name: *const c_char, version: *const c_char) -> *mut c_void;
    fn dladdr(addr: *const c_void, info: *mut DlInfo) -> c_int;
}

#[repr(C)]
struct DlInfo {
    fname: *const c_char,
    fbase: *mut c_void,
    sname: *const c_char,
    saddr: *mut c_void,
}

#[repr(C)]
struct Flock {
    l_type: i16,
    l_whence: i16,
    l_start: i64,
    l_len: i64,
    l_pid: i32,
}

const O_RDONLY: c_int = 0;
const O_NOCTTY: c_int = 0o400;
const O_NONBLOCK: c_int = 0o4000;
#[cfg(target_arch = "x86_64")]
const O_NOFOLLOW: c_int = 0o400000;
#[cfg(target_arch = "aarch64")]
const O_NOFOLLOW: c_int = 0o100000;
const F_DUPFD: c_int = 0;
const F_SETLK: c_int = 6;
const F_OFD_SETLK: c_int = 37;
const F_RDLCK: i16 = 0;
const SEEK_SET: i16 = 0;
const RTLD_NOW: c_int = 2;
const RTLD_LOCAL: c_int = 0;
const RTLD_NEXT: *mut c_void = -1isize as *mut c_void;
const PATH_MAX: usize = 4096;
/// Room for `struct stat` on every architecture (x86-64: 144 bytes, aarch64: 128); device and
/// inode are its first two 64-bit fields on both.
const STAT_BUF: usize = 256;

/// Descriptors below this are left to the program (scripts' `exec 3<file`, `dup2` onto small
/// numbers): a `dup2` onto ours would close it and drop the locks.
const FD_FLOOR: c_int = 200;
/// How many descriptors from [`FD_FLOOR`] on a new image looks at for an inherited one.
const FD_PROBES: c_int = 4;

// ---------------------------------------------------------------------------------------------
// The process environment.

fn env(name: &[u8]) -> Option<&'static [u8]> {
    // SAFETY: `name` is NUL-terminated (callers pass literals with \0); getenv returns NULL or
    // a NUL-terminated string owned by the environment.
    unsafe {
        let p = getenv(name.as_ptr().cast());
        if p.is_null() {
            None
        } else {
            Some(core::ffi::CStr::from_ptr(p).to_bytes())
        }
    }
}

const UNKNOWN: u8 = 0;
const NO: u8 = 1;
const YES: u8 = 2;
static STARTED_IN_ENV: AtomicU8 = AtomicU8::new(UNKNOWN);
static BYPASS: AtomicU8 = AtomicU8::new(UNKNOWN);

/// `GENV_SHIM_BYPASS` (the genv CLI sets it for itself), read at the first driver lookup and
/// fixed for the life of the process, as the core reads it.
fn bypassed() -> bool {
    match BYPASS.load(Ordering::Relaxed) {
        YES => true,
        NO => false,
        _ => {
            let on = matches!(env(b"GENV_SHIM_BYPASS\0"), Some(v) if !v.is_empty() && v != b"0");
            BYPASS.store(if on { YES } else { NO }, Ordering::Relaxed);
            on
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Membership.

/// The descriptor the locks are on, or -1; the serial locked, or -1.
static MEMBER_FD: AtomicI32 = AtomicI32::new(-1);
static MEMBER_SERIAL: AtomicI64 = AtomicI64::new(-1);

struct Token<'a> {
    serial: i64,
    dev: u64,
    ino: u64,
    fd: i64,
    path: &'a [u8],
}

/// A decimal number, optionally negative, that fits `i128`.
fn number(b: &[u8]) -> Option<i128> {
    let (neg, digits) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 30 {
        return None;
    }
    let mut v: i128 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (d - b'0') as i128;
    }
    Some(if neg { -v } else { v })
}

/// `<serial>:<dev>:<ino>:<fd>:<path>`. The path is `v`'s tail: when `v` is a getenv value,
/// it is NUL-terminated in place.
fn parse(v: &[u8]) -> Option<Token<'_>> {
    let mut it = v.splitn(5, |&b| b == b':');
    let serial = number(it.next()?)?;
    let dev = number(it.next()?)?;
    let ino = number(it.next()?)?;
    let fd = number(it.next()?)?;
    let path = it.next().filter(|p| !p.is_empty())?;
    if serial <= 0 || serial > i64::MAX as i128 || dev < 0 || ino < 0 {
        return None;
    }
    if dev > u64::MAX as i128 || ino > u64::MAX as i128 || fd < -1 || fd > i32::MAX as i128 {
        return None;
    }
    Some(Token {
        serial: serial as i64,
        dev: dev as u64,
        ino: ino as u64,
        fd: fd as i64,
        path,
    })
}

fn same_file(fd: c_int, dev: u64, ino: u64) -> bool {
    let mut st = [0u64; STAT_BUF / 8];
    // SAFETY: a buffer larger than `struct stat` on every supported architecture.
    let r = unsafe { fstat(fd, st.as_mut_ptr().cast()) };
    r == 0 && st[0] == dev && st[1] == ino
}

fn lock(fd: c_int, cmd: c_int, serial: i64) -> bool {
    let fl = Flock {
        l_type: F_RDLCK,
        l_whence: SEEK_SET,
        l_start: serial,
        l_len: 1,
        l_pid: 0,
    };
    // SAFETY: F_SETLK / F_OFD_SETLK with a valid flock; a bad descriptor is an error, not UB.
    unsafe { fcntl(fd, cmd, &fl as *const Flock) == 0 }
}

/// Both locks (taking a lock the process or its open file holds changes nothing).
fn lock_both(fd: c_int, serial: i64) -> bool {
    lock(fd, F_OFD_SETLK, serial) && lock(fd, F_SETLK, serial)
}

/// Opens the file of `t` (no link followed at the end, no FIFO to hang on), moved to
/// [`FD_FLOOR`] or above, inherited by children, checked to be the very inode named. The path is
/// the token's last field, so it ends where the variable's NUL-terminated value ends: it is
/// used in place.
fn open_member_file(t: &Token<'_>) -> Option<c_int> {
    if t.path.contains(&0) {
        return None;
    }
    // SAFETY: `t.path` is the tail of a NUL-terminated getenv string (see `parse`).
    let fd = unsafe {
        open(
            t.path.as_ptr().cast(),
            O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: fcntl/close on the descriptor just opened.
    unsafe {
        let high = fcntl(fd, F_DUPFD, FD_FLOOR);
        close(fd);
        if high < 0 {
            return None;
        }
        if !same_file(high, t.dev, t.ino) {
            close(high);
            return None;
        }
        Some(high)
    }
}

/// An inherited descriptor of the file named by `t`: the number in the token, else the first
/// few above [`FD_FLOOR`], where every member puts it (`F_DUPFD` takes the lowest free one).
fn inherited(t: &Token<'_>) -> Option<c_int> {
    let hinted = (t.fd >= 0).then_some(t.fd as c_int);
    hinted
        .into_iter()
        .chain(FD_FLOOR..FD_FLOOR + FD_PROBES)
        .find(|&fd| same_file(fd, t.dev, t.ino))
}

extern "C" fn member_child() {
    let (fd, s) = (
        MEMBER_FD.load(Ordering::Relaxed),
        MEMBER_SERIAL.load(Ordering::Relaxed),
    );
    if fd >= 0 && s > 0 {
        lock(fd, F_SETLK, s);
    }
}

fn joined(fd: c_int, serial: i64) {
    MEMBER_FD.store(fd, Ordering::Relaxed);
    MEMBER_SERIAL.store(serial, Ordering::Relaxed);
    // SAFETY: registers a handler that makes one fcntl call.
    unsafe { pthread_atfork(None, None, Some(member_child)) };
}

/// Joins the environment named by `GENV_MEMBER`.
fn join() {
    let Some(t) = env(b"GENV_MEMBER\0").and_then(parse) else {
        return;
    };
    // Inherited (after exec, or a child of a member): the descriptor is there, and after an
    // exec the locks too.
    if let Some(fd) = inherited(&t) {
        if lock_both(fd, t.serial) {
            joined(fd, t.serial);
            return;
        }
    }
    let Some(fd) = open_member_file(&t) else {
        return;
    };
    if !lock_both(fd, t.serial) {
        // SAFETY: our own descriptor.
        unsafe { close(fd) };
        return;
    }
    joined(fd, t.serial);
}

/// At load: whether the process starts in an environment, and if so, membership.
extern "C" fn at_load() {
    let set = matches!(env(b"GENV_ENVIRONMENT_ID\0"), Some(v) if !v.is_empty());
    STARTED_IN_ENV.store(if set { YES } else { NO }, Ordering::Relaxed);
    if set {
        join();
    }
}

#[used]
#[link_section = ".init_array"]
static AT_LOAD: extern "C" fn() = at_load;

// ---------------------------------------------------------------------------------------------
// The real dlsym, and the core.

static REAL_DLSYM: AtomicUsize = AtomicUsize::new(0);

/// glibc's `dlsym`, found once, newest version first (never our own: `RTLD_NEXT` skips us).
fn real_dlsym() -> usize {
    let a = REAL_DLSYM.load(Ordering::Relaxed);
    if a != 0 {
        return a;
    }
    let mut p: *mut c_void = core::ptr::null_mut();
    for v in [c"GLIBC_2.34", c"GLIBC_2.2.5", c"GLIBC_2.17"] {
        // SAFETY: dlvsym with NUL-terminated strings.
        p = unsafe { dlvsym(RTLD_NEXT, c"dlsym".as_ptr(), v.as_ptr()) };
        if !p.is_null() {
            break;
        }
    }
    if p.is_null() {
        // SAFETY: as above; an unversioned C library.
        p = unsafe { dlvsym(RTLD_NEXT, c"dlsym".as_ptr(), core::ptr::null()) };
    }
    REAL_DLSYM.store(p as usize, Ordering::Relaxed);
    p as usize
}

type DlsymFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;

fn call_real_dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void {
    let f = real_dlsym();
    if f == 0 {
        return core::ptr::null_mut();
    }
    // SAFETY: glibc's dlsym, with a handle and a NUL-terminated name.
    unsafe { core::mem::transmute::<usize, DlsymFn>(f)(handle, name) }
}

/// The core's handle, its `dlsym`, or that it could not be loaded.
static CORE: AtomicUsize = AtomicUsize::new(0);
static CORE_DLSYM: AtomicUsize = AtomicUsize::new(0);
static CORE_FAILED: AtomicU8 = AtomicU8::new(NO);

/// The core, loaded the first time (`dlopen` serialises concurrent first loads and returns the
/// same handle to each).
fn core_handle() -> Option<*mut c_void> {
    let h = CORE.load(Ordering::Acquire);
    if h != 0 {
        return Some(h as *mut c_void);
    }
    if CORE_FAILED.load(Ordering::Relaxed) == YES {
        return None;
    }
    let mut path = [0u8; PATH_MAX];
    let h = core_path(&mut path).map_or(core::ptr::null_mut(), |p| {
        // SAFETY: a NUL-terminated path.
        unsafe { dlopen(p, RTLD_NOW | RTLD_LOCAL) }
    });
    if h.is_null() {
        if CORE_FAILED.swap(YES, Ordering::Relaxed) != YES {
            let msg = b"genv: cannot load libgenv_shim_core.so beside libgenv_shim.so: CUDA and NVML run unconfined (reinstall genv)\n";
            // SAFETY: a valid buffer.
            unsafe { write(2, msg.as_ptr().cast(), msg.len()) };
        }
        return None;
    }
    let attach = call_real_dlsym(h, c"genv_core_attach".as_ptr());
    if !attach.is_null() {
        type AttachFn = unsafe extern "C" fn(*const StubApi);
        // SAFETY: the core's genv_core_attach, given our static API.
        unsafe { core::mem::transmute::<*mut c_void, AttachFn>(attach)(&genv_stub_api) };
    }
    let d = call_real_dlsym(h, c"dlsym".as_ptr());
    CORE_DLSYM.store(d as usize, Ordering::Relaxed);
    CORE.store(h as usize, Ordering::Release);
    Some(h)
}

/// `<directory of this object>/libgenv_shim_core.so`, NUL-terminated, in `buf`.
fn core_path(buf: &mut [u8; PATH_MAX]) -> Option<*const c_char> {
    let mut info = DlInfo {
        fname: core::ptr::null(),
        fbase: core::ptr::null_mut(),
        sname: core::ptr::null(),
        saddr: core::ptr::null_mut(),
    };
    // SAFETY: a valid out pointer; any address of ours.
    if unsafe { dladdr(at_load as *const c_void, &mut info) } == 0 || info.fname.is_null() {
        return None;
    }
    // SAFETY: dladdr's file name is NUL-terminated.
    let me = unsafe { core::ffi::CStr::from_ptr(info.fname) }.to_bytes();
    let dir = match me.iter().rposition(|&b| b == b'/') {
        Some(i) => me.get(..i + 1)?,
        None => b"./",
    };
    const CORE_NAME: &[u8] = b"libgenv_shim_core.so\0";
    buf.get_mut(..dir.len())?.copy_from_slice(dir);
    buf.get_mut(dir.len()..dir.len() + CORE_NAME.len())?
        .copy_from_slice(CORE_NAME);
    Some(buf.as_ptr().cast())
}

// ---------------------------------------------------------------------------------------------
// What the core asks of the stub.

/// The stub's answers, for the core (`shim/src/real.rs`). Version 1.
#[repr(C)]
pub struct StubApi {
    pub version: u32,
    pub started_in_env: extern "C" fn() -> bool,
    pub real_dlsym: extern "C" fn() -> usize,
    /// The base address of the stub (`dladdr`'s `dli_fbase` for its addresses).
    pub base: extern "C" fn() -> usize,
}

extern "C" fn api_started_in_env() -> bool {
    STARTED_IN_ENV.load(Ordering::Relaxed) == YES
}

extern "C" fn api_real_dlsym() -> usize {
    real_dlsym()
}

extern "C" fn api_base() -> usize {
    let mut info = DlInfo {
        fname: core::ptr::null(),
        fbase: core::ptr::null_mut(),
        sname: core::ptr::null(),
        saddr: core::ptr::null_mut(),
    };
    // SAFETY: a valid out pointer; any address of ours.
    if unsafe { dladdr(at_load as *const c_void, &mut info) } == 0 {
        return 0;
    }
    info.fbase as usize
}

#[no_mangle]
pub static genv_stub_api: StubApi = StubApi {
    version: 1,
    started_in_env: api_started_in_env,
    real_dlsym: api_real_dlsym,
    base: api_base,
};

// ---------------------------------------------------------------------------------------------
// dlsym.

/// Driver API names are `cu` + an upper-case letter (`cuda…` is the runtime), NVML's `nvml` +
/// an upper-case letter.
fn is_driver_name(n: &[u8]) -> bool {
    match n {
        [b'c', b'u', c, ..] => c.is_ascii_uppercase(),
        [b'n', b'v', b'm', b'l', c, ..] => c.is_ascii_uppercase(),
        _ => false,
    }
}

/// Where the `dlsym` trampoline jumps: glibc's, or the core's for driver names.
extern "C" fn dlsym_target(handle: *mut c_void, name: *const c_char) -> usize {
    if name.is_null() || handle == RTLD_NEXT || bypassed() {
        return real_dlsym();
    }
    // SAFETY: dlsym's name is NUL-terminated. Only the first five bytes are looked at.
    let head = unsafe { core::ffi::CStr::from_ptr(name) }.to_bytes();
    if !is_driver_name(head) {
        return real_dlsym();
    }
    if core_handle().is_some() {
        let d = CORE_DLSYM.load(Ordering::Relaxed);
        if d != 0 {
            return d;
        }
    }
    real_dlsym()
}

/// The exported `dlsym` on x86-64: asks `dlsym_target` with the arguments saved and jumps
/// there with them restored, so the function reached sees the caller's return address.
///
/// # Safety
/// As glibc's `dlsym`.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn dlsym(_handle: *mut c_void, _name: *const c_char) -> *mut c_void {
    core::arch::naked_asm!(
        "push rdi",
        "push rsi",
        "sub rsp, 8",
        "call {target}",
        "add rsp, 8",
        "pop rsi",
        "pop rdi",
        "jmp rax",
        // Both versions of glibc's dlsym lead here (the version nodes come from build.rs),
        // declared beside the definition, which .symver needs in the same object.
        ".globl genv_dlsym_compat",
        ".set genv_dlsym_compat, dlsym",
        ".symver dlsym, dlsym@@GLIBC_2.34",
        ".symver genv_dlsym_compat, dlsym@GLIBC_2.2.5",
        target = sym dlsym_target,
    )
}

/// The exported `dlsym` on aarch64: the same, with the return address in x30.
///
/// # Safety
/// As glibc's `dlsym`.
#[cfg(target_arch = "aarch64")]
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn dlsym(_handle: *mut c_void, _name: *const c_char) -> *mut c_void {
    core::arch::naked_asm!(
        "stp x29, x30, [sp, -32]!",
        "mov x29, sp",
        "stp x0, x1, [sp, 16]",
        "bl {target}",
        "mov x16, x0",
        "ldp x0, x1, [sp, 16]",
        "ldp x29, x30, [sp], 32",
        "br x16",
        // Both versions of glibc's dlsym lead here (the version nodes come from build.rs),
        // declared beside the definition, which .symver needs in the same object.
        ".globl genv_dlsym_compat",
        ".set genv_dlsym_compat, dlsym",
        ".symver dlsym, dlsym@@GLIBC_2.34",
        ".symver genv_dlsym_compat, dlsym@GLIBC_2.17",
        target = sym dlsym_target,
    )
}

// ---------------------------------------------------------------------------------------------
// The driver names, for programs linked against the driver.

/// The entry of exported name `i` (build.rs's list): the core's (which also serves the
/// driver's own calls through its PLT, and passes everything through when bypassed), or the
/// real driver's when the core cannot be loaded; stored in the slot for the next call.
extern "C" fn resolve(i: usize) -> usize {
    let Some(name) = NAMES.get(i) else {
        // SAFETY: abort(3); only the generated trampolines call this, with their own index.
        unsafe { abort() }
    };
    let mut p = core_handle().map_or(core::ptr::null_mut(), |h| {
        call_real_dlsym(h, name.as_ptr().cast())
    });
    if p.is_null() {
        p = real_driver_entry(name);
    }
    if p.is_null() {
        // SAFETY: abort(3): a program called a driver function that no library defines.
        unsafe { abort() }
    }
    // SAFETY: a slot of the table, written whole (a racing thread stores the same value).
    unsafe {
        let slot = (&raw mut SLOTS).cast::<AtomicUsize>().add(i);
        (*slot).store(p as usize, Ordering::Release);
    }
    p as usize
}

/// `name` in the loaded driver library it belongs to (found without loading anything), else the
/// next definition after ours in the global scope.
fn real_driver_entry(name: &[u8]) -> *mut c_void {
    const RTLD_NOLOAD: c_int = 4;
    let libs: &[&core::ffi::CStr] = if name.starts_with(b"nvml") {
        &[c"libnvidia-ml.so.1", c"libnvidia-ml.so"]
    } else {
        &[c"libcuda.so.1", c"libcuda.so"]
    };
    for lib in libs {
        // SAFETY: dlopen with a NUL-terminated name; RTLD_NOLOAD loads nothing.
        let h = unsafe { dlopen(lib.as_ptr(), RTLD_NOW | RTLD_NOLOAD) };
        if !h.is_null() {
            let p = call_real_dlsym(h, name.as_ptr().cast());
            if !p.is_null() {
                return p;
            }
        }
    }
    call_real_dlsym(RTLD_NEXT, name.as_ptr().cast())
}

/// The common part of every slot's first call, x86-64: `r11` holds the name's index. Saves the
/// argument registers (integer and vector), asks [`resolve`], restores them and jumps to the
/// answer: the callee sees the original arguments and return address.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
unsafe extern "C" fn resolve_common() {
    core::arch::naked_asm!(
        "push rdi",
        "push rsi",
        "push rdx",
        "push rcx",
        "push r8",
        "push r9",
        "sub rsp, 136",
        "movdqu [rsp], xmm0",
        "movdqu [rsp + 16], xmm1",
        "movdqu [rsp + 32], xmm2",
        "movdqu [rsp + 48], xmm3",
        "movdqu [rsp + 64], xmm4",
        "movdqu [rsp + 80], xmm5",
        "movdqu [rsp + 96], xmm6",
        "movdqu [rsp + 112], xmm7",
        "mov rdi, r11",
        "call {resolve}",
        "movdqu xmm0, [rsp]",
        "movdqu xmm1, [rsp + 16]",
        "movdqu xmm2, [rsp + 32]",
        "movdqu xmm3, [rsp + 48]",
        "movdqu xmm4, [rsp + 64]",
        "movdqu xmm5, [rsp + 80]",
        "movdqu xmm6, [rsp + 96]",
        "movdqu xmm7, [rsp + 112]",
        "add rsp, 136",
        "pop r9",
        "pop r8",
        "pop rcx",
        "pop rdx",
        "pop rsi",
        "pop rdi",
        "jmp rax",
        resolve = sym resolve,
    )
}

/// The same on aarch64: `x17` holds the index; x0-x8 and q0-q7 are kept.
#[cfg(target_arch = "aarch64")]
#[unsafe(naked)]
unsafe extern "C" fn resolve_common() {
    core::arch::naked_asm!(
        "stp x29, x30, [sp, -224]!",
        "mov x29, sp",
        "stp x0, x1, [sp, 16]",
        "stp x2, x3, [sp, 32]",
        "stp x4, x5, [sp, 48]",
        "stp x6, x7, [sp, 64]",
        "str x8, [sp, 80]",
        "stp q0, q1, [sp, 96]",
        "stp q2, q3, [sp, 128]",
        "stp q4, q5, [sp, 160]",
        "stp q6, q7, [sp, 192]",
        "mov x0, x17",
        "bl {resolve}",
        "mov x16, x0",
        "ldp x0, x1, [sp, 16]",
        "ldp x2, x3, [sp, 32]",
        "ldp x4, x5, [sp, 48]",
        "ldp x6, x7, [sp, 64]",
        "ldr x8, [sp, 80]",
        "ldp q0, q1, [sp, 96]",
        "ldp q2, q3, [sp, 128]",
        "ldp q4, q5, [sp, 160]",
        "ldp q6, q7, [sp, 192]",
        "ldp x29, x30, [sp], 224",
        "br x16",
        resolve = sym resolve,
    )
}

// The generated part (build.rs): `NAMES`, `SLOTS`, and per name its exported trampoline and its
// first-call entry.
include!(env!("GENV_STUB_GEN"));
