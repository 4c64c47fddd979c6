//! Getting control: the shim's `dlsym`, and how the real CUDA driver and NVML are reached.
//!
//! Three ways lead a program to the driver, all covered:
//! - `dlsym(handle, "cu…" / "nvml…")` (nvidia-smi, pynvml, cuda-bindings, the CUDA runtime): the
//!   shim exports `dlsym`. Unless the shim is bypassed (`GENV_SHIM_BYPASS`), a lookup of a driver
//!   name that we wrap answers the shim's wrapper, also outside an environment (the wrappers
//!   pass through while the process is in none), provided the real lookup on that handle finds
//!   the name, so a handle without the symbol still answers NULL; every other lookup is the real
//!   `dlsym`'s.
//! - `cuGetProcAddress` / `_v2`: wrapped in cuda.rs, with the variant table of the simulated
//!   driver (one data file shared by both, see `procaddr`).
//! - direct linking (`-lcuda`): the wrappers are exported under the driver's names, and the
//!   preloaded shim comes first in the global scope.
//!
//! `dlsym` itself is a small assembly trampoline that leaves the caller's return address where
//! the real `dlsym` looks for it: when we pass a lookup through, the trampoline *jumps* to the
//! real `dlsym` with the original arguments and return address, so `RTLD_NEXT` is resolved
//! relative to the real caller, and `RTLD_DEFAULT` in the caller's scope, exactly as without the
//! shim. No lock, no recursion guard, nothing that allocates on the pass-through path: a profiler
//! or an allocator calling `dlsym` cannot hang on us. The real `dlsym` is found once with
//! `dlvsym(RTLD_NEXT, "dlsym", <version>)` (never the private `_dl_sym` / `__libc_dlsym`).
//!
//! Symbol versions: the shim's `dlsym` is exported with both versions of glibc's, `GLIBC_2.34`
//! (default) and the older one (`GLIBC_2.2.5` on x86-64, `GLIBC_2.17` on aarch64), so programs
//! built against either bind to it (see build.rs).

use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

type DlsymFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;

static REAL_DLSYM: AtomicUsize = AtomicUsize::new(0);

/// glibc's `dlsym`, found once; the versions are tried newest first.
pub fn real_dlsym_fn() -> DlsymFn {
    let a = REAL_DLSYM.load(Ordering::Relaxed);
    if a != 0 {
        // SAFETY: the address of glibc's dlsym.
        return unsafe { std::mem::transmute::<usize, DlsymFn>(a) };
    }
    let mut p: *mut c_void = std::ptr::null_mut();
    for v in [c"GLIBC_2.34", c"GLIBC_2.2.5", c"GLIBC_2.17"] {
        // SAFETY: dlvsym with valid NUL-terminated strings; RTLD_NEXT from the shim reaches
        // the C library (or libdl) after us.
        p = unsafe { libc::dlvsym(libc::RTLD_NEXT, c"dlsym".as_ptr(), v.as_ptr()) };
        if !p.is_null() {
            break;
        }
    }
    if p.is_null() {
        // No versioned dlsym after us: a static or unusual C library. Its unversioned one is
        // still the best we can do (never our own: dlvsym(RTLD_NEXT) skips us).
        // SAFETY: as above.
        p = unsafe { libc::dlvsym(libc::RTLD_NEXT, c"dlsym".as_ptr(), std::ptr::null()) };
    }
    REAL_DLSYM.store(p as usize, Ordering::Relaxed);
    // SAFETY: glibc always provides dlsym; a NULL here would be a broken C library.
    unsafe { std::mem::transmute::<*mut c_void, DlsymFn>(p) }
}

/// `dlsym` without the shim.
///
/// # Safety
/// `handle` must be a handle from `dlopen`, `RTLD_DEFAULT` or `RTLD_NEXT`.
pub unsafe fn real_dlsym(handle: *mut c_void, name: &CStr) -> *mut c_void {
    real_dlsym_fn()(handle, name.as_ptr())
}

/// Start address of the shim's own object, to never take one of our exports for the driver's.
fn own_base() -> usize {
    static BASE: AtomicUsize = AtomicUsize::new(0);
    let b = BASE.load(Ordering::Relaxed);
    if b != 0 {
        return b;
    }
    let b = object_base(own_base as *const c_void);
    BASE.store(b, Ordering::Relaxed);
    b
}

fn object_base(p: *const c_void) -> usize {
    // SAFETY: dladdr fills `info` for any address.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(p, &mut info) == 0 {
            return 0;
        }
        info.dli_fbase as usize
    }
}

/// Whether `p` is one of the shim's own functions.
pub fn is_ours(p: *const c_void) -> bool {
    !p.is_null() && object_base(p) == own_base()
}

/// A library handle, found from what the program used or by loading it ourselves.
struct Lib {
    handle: AtomicPtr<c_void>,
    sonames: &'static [&'static CStr],
}

impl Lib {
    fn note(&self, h: *mut c_void) {
        if self.handle.load(Ordering::Relaxed).is_null() {
            // First handle wins; any handle of the library resolves the same functions.
            let _ = self.handle.compare_exchange(
                std::ptr::null_mut(),
                h,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
            crate::debug!("real library handle {h:?} for {:?}", self.sonames[0]);
        }
    }

    fn get(&self) -> *mut c_void {
        let h = self.handle.load(Ordering::Acquire);
        if !h.is_null() {
            return h;
        }
        // Already loaded (linked with -l, or dlopened by path), else load it privately: the
        // program only calls a wrapper after it found the driver's symbol somewhere.
        for flags in [
            libc::RTLD_NOW | libc::RTLD_NOLOAD,
            libc::RTLD_NOW | libc::RTLD_LOCAL,
        ] {
            for name in self.sonames {
                // SAFETY: dlopen with a NUL-terminated name.
                let h = unsafe { libc::dlopen(name.as_ptr(), flags) };
                if !h.is_null() {
                    self.note(h);
                    return self.handle.load(Ordering::Acquire);
                }
            }
        }
        std::ptr::null_mut()
    }

    /// The library's own definition of `name` (NULL when absent; never the shim's).
    fn sym(&self, name: &CStr) -> *mut c_void {
        let h = self.get();
        if h.is_null() {
            return std::ptr::null_mut();
        }
        // SAFETY: a handle from dlopen.
        let p = unsafe { real_dlsym(h, name) };
        if is_ours(p) {
            std::ptr::null_mut()
        } else {
            p
        }
    }
}

static CUDA: Lib = Lib {
    handle: AtomicPtr::new(std::ptr::null_mut()),
    sonames: &[c"libcuda.so.1", c"libcuda.so"],
};
static NVML: Lib = Lib {
    handle: AtomicPtr::new(std::ptr::null_mut()),
    sonames: &[c"libnvidia-ml.so.1", c"libnvidia-ml.so"],
};

/// The real CUDA driver's `name` (NULL when the driver lacks it).
pub fn real_cuda(name: &CStr) -> *mut c_void {
    CUDA.sym(name)
}

/// The real NVML's `name` (NULL when NVML lacks it).
pub fn real_nvml(name: &CStr) -> *mut c_void {
    NVML.sym(name)
}

/// A real function resolved on first use and cached (one atomic load afterwards).
pub struct RealFn {
    name: &'static CStr,
    addr: AtomicUsize,
}

const ABSENT: usize = usize::MAX;

impl RealFn {
    pub const fn new(name: &'static CStr) -> RealFn {
        RealFn {
            name,
            addr: AtomicUsize::new(0),
        }
    }

    pub fn name(&self) -> &'static CStr {
        self.name
    }

    /// The real address, or None when the driver lacks the function.
    #[inline]
    pub fn get(&self) -> Option<usize> {
        let a = self.addr.load(Ordering::Relaxed);
        if a != 0 {
            return (a != ABSENT).then_some(a);
        }
        self.resolve()
    }

    #[cold]
    fn resolve(&self) -> Option<usize> {
        let p = real_cuda(self.name) as usize;
        // Racing resolvers store the same value.
        self.addr
            .store(if p == 0 { ABSENT } else { p }, Ordering::Relaxed);
        (p != 0).then_some(p)
    }

    /// Records the address the real `cuGetProcAddress` answered (it is the driver's own).
    pub fn offer(&self, p: *mut c_void) {
        if !p.is_null() && !is_ours(p) {
            let _ = self
                .addr
                .compare_exchange(0, p as usize, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The dlsym trampoline.

/// What the trampoline does: return `ptr`, or (`jump` != 0) jump to `ptr` with the caller's
/// arguments and return address intact. Two integer registers (rax:rdx / x0:x1).
#[repr(C)]
pub struct Decision {
    ptr: *mut c_void,
    jump: usize,
}

fn pass() -> Decision {
    Decision {
        ptr: real_dlsym_fn() as *mut c_void,
        jump: 1,
    }
}

/// Driver API names are `cu` + an upper-case letter (`cuda…` is the runtime, `cublas…` a library).
fn is_cuda_name(n: &[u8]) -> bool {
    n.len() > 2 && n[0] == b'c' && n[1] == b'u' && n[2].is_ascii_uppercase()
}

fn is_nvml_name(n: &[u8]) -> bool {
    n.len() > 4 && &n[..4] == b"nvml" && n[4].is_ascii_uppercase()
}

/// The decision behind the shim's `dlsym`. Never unwinds (the trampoline is not unwindable):
/// a panic passes the lookup through.
///
/// # Safety
/// Called by the trampoline with `dlsym`'s arguments.
#[no_mangle]
pub unsafe extern "C" fn genv_dlsym_hook(
    handle: *mut c_void,
    name: *const c_char,
    _caller: *const c_void,
) -> Decision {
    // RTLD_NEXT must be answered relative to the caller: only the real dlsym, reached by a jump,
    // knows the caller. Other interposers chain through our exported definitions that way.
    if name.is_null() || handle == libc::RTLD_NEXT {
        return pass();
    }
    let n = CStr::from_ptr(name);
    let b = n.to_bytes();
    let cuda = is_cuda_name(b);
    // Not only inside an environment: a process may enter one later (genv.sdk.activate()), and
    // clients keep the pointers they looked up. The wrappers pass through while there is none.
    if !(cuda || is_nvml_name(b)) || crate::view::bypassed() {
        return pass();
    }
    std::panic::catch_unwind(|| unsafe { lookup(handle, n, cuda) }).unwrap_or_else(|_| pass())
}

/// # Safety
/// `handle` as the program passed it to `dlsym`.
unsafe fn lookup(handle: *mut c_void, n: &CStr, cuda: bool) -> Decision {
    let real = real_dlsym(handle, n);
    if real.is_null() {
        // Absent on that handle: answer as the real dlsym would (and set its dlerror).
        return pass();
    }
    let pseudo = handle.is_null(); // RTLD_DEFAULT
    let wrapper = if cuda {
        let w = crate::cuda::wrapper(n.to_bytes());
        if w.is_some() && !pseudo && !is_ours(real) {
            CUDA.note(handle);
        }
        w
    } else {
        if !pseudo && !is_ours(real) {
            NVML.note(handle);
        }
        crate::nvml::lookup(n)
    };
    match wrapper {
        Some(w) => {
            crate::debug!("dlsym({handle:?}, {n:?}) -> shim wrapper");
            Decision { ptr: w, jump: 0 }
        }
        None => Decision { ptr: real, jump: 0 },
    }
}

/// The exported `dlsym`. It saves the arguments, asks `genv_dlsym_hook` with the return address,
/// and either returns its answer or restores the arguments and jumps (tail call) to the function
/// it names, so the real dlsym sees the original caller. Frame: 8 (ret) + 16 (args) + 8 = 32,
/// 16-byte aligned at the call as the ABI wants.
///
/// # Safety
/// As glibc's `dlsym`.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn dlsym(_handle: *mut c_void, _name: *const c_char) -> *mut c_void {
    std::arch::naked_asm!(
        ".cfi_startproc",
        "push rdi",
        ".cfi_adjust_cfa_offset 8",
        "push rsi",
        ".cfi_adjust_cfa_offset 8",
        "sub rsp, 8",
        ".cfi_adjust_cfa_offset 8",
        "mov rdx, [rsp + 24]",
        "call {hook}",
        "add rsp, 8",
        ".cfi_adjust_cfa_offset -8",
        "pop rsi",
        ".cfi_adjust_cfa_offset -8",
        "pop rdi",
        ".cfi_adjust_cfa_offset -8",
        "test rdx, rdx",
        "jnz 2f",
        "ret",
        "2:",
        "jmp rax",
        ".cfi_endproc",
        hook = sym genv_dlsym_hook,
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
    std::arch::naked_asm!(
        ".cfi_startproc",
        "stp x29, x30, [sp, -32]!",
        ".cfi_def_cfa_offset 32",
        ".cfi_offset x29, -32",
        ".cfi_offset x30, -24",
        "mov x29, sp",
        "stp x0, x1, [sp, 16]",
        "mov x2, x30",
        "bl {hook}",
        "cbnz x1, 2f",
        "ldp x29, x30, [sp], 32",
        "ret",
        "2:",
        "mov x16, x0",
        "ldp x0, x1, [sp, 16]",
        "ldp x29, x30, [sp], 32",
        "br x16",
        ".cfi_endproc",
        hook = sym genv_dlsym_hook,
    )
}

// Both versions of glibc's dlsym lead to the shim's (the version nodes come from build.rs): the
// default for programs built against glibc 2.34+, the old one for those built before.
#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".globl genv_dlsym_compat",
    ".set genv_dlsym_compat, dlsym",
    ".symver dlsym, dlsym@@GLIBC_2.34",
    ".symver genv_dlsym_compat, dlsym@GLIBC_2.2.5",
);

#[cfg(target_arch = "aarch64")]
std::arch::global_asm!(
    ".globl genv_dlsym_compat",
    ".set genv_dlsym_compat, dlsym",
    ".symver dlsym, dlsym@@GLIBC_2.34",
    ".symver genv_dlsym_compat, dlsym@GLIBC_2.17",
);
