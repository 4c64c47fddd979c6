//! The way to the real driver libraries: their handles, typed slots for their functions
//! (resolved once, one atomic load afterwards), and the panic guard every wrapper runs under.
//! Nothing here knows which functions are wrapped (that is `cuda/` and `nvml/`) or how lookups
//! are answered (`dlsym.rs`), so every module can use it without an import circle.
//!
//! A library the shim has resolved functions in is pinned: the shim holds its own reference
//! (`dlopen(path, RTLD_NOLOAD)`), so a program that closes its handle (nvml-wrapper drops its
//! `Nvml`, which `dlclose`s) and loads the library again finds it where it was, and the
//! addresses cached here stay valid. Unpinned, the library could come back elsewhere and a
//! cached address would point at nothing.

use std::ffi::{c_char, c_void, CStr};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

type DlsymFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;

/// What the preloaded stub (stub/stub.rs `StubApi`, the same layout) tells the core.
#[repr(C)]
pub struct StubApi {
    pub version: u32,
    pub started_in_env: extern "C" fn() -> bool,
    pub real_dlsym: extern "C" fn() -> usize,
    pub base: extern "C" fn() -> usize,
}

const STUB_API_VERSION: u32 = 1;
static STUB: AtomicUsize = AtomicUsize::new(0);

/// The stub that loaded the core (it calls [`genv_core_attach`] right after loading it, before
/// it hands out anything of the core); `None` when the core was preloaded itself.
pub fn stub() -> Option<&'static StubApi> {
    let a = STUB.load(Ordering::Acquire);
    // SAFETY: a static of the stub, which is never unloaded (it is preloaded).
    (a != 0).then(|| unsafe { &*(a as *const StubApi) })
}

/// Called by the stub once it has loaded the core.
///
/// # Safety
/// `api` is null or the stub's `genv_stub_api`, valid for the life of the process.
#[no_mangle]
pub unsafe extern "C" fn genv_core_attach(api: *const StubApi) {
    // SAFETY: as the caller promises; the version is checked before anything else is read.
    if !api.is_null() && unsafe { (*api).version } == STUB_API_VERSION {
        STUB.store(api as usize, Ordering::Release);
    }
}

static REAL_DLSYM: AtomicUsize = AtomicUsize::new(0);

/// glibc's `dlsym`, found once: the stub's answer, else found here, newest version first.
pub fn real_dlsym_fn() -> DlsymFn {
    let a = REAL_DLSYM.load(Ordering::Relaxed);
    if a != 0 {
        // SAFETY: the address stored below is glibc's dlsym.
        return unsafe { std::mem::transmute::<usize, DlsymFn>(a) };
    }
    if let Some(api) = stub() {
        let p = (api.real_dlsym)();
        if p != 0 {
            REAL_DLSYM.store(p, Ordering::Relaxed);
            // SAFETY: the stub found glibc's dlsym.
            return unsafe { std::mem::transmute::<usize, DlsymFn>(p) };
        }
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
    // SAFETY: the caller's handle, and a NUL-terminated name.
    unsafe { real_dlsym_fn()(handle, name.as_ptr()) }
}

/// Start address of the shim's own object, to never take one of our exports for the driver's.
fn own_base() -> usize {
    static BASE: AtomicUsize = AtomicUsize::new(0);
    let b = BASE.load(Ordering::Relaxed);
    if b != 0 {
        return b;
    }
    let b = object_of(own_base as *const c_void).map_or(0, |o| o.0);
    BASE.store(b, Ordering::Relaxed);
    b
}

/// The object `p` lies in: its base address and path.
fn object_of(p: *const c_void) -> Option<(usize, *const c_char)> {
    // SAFETY: all-zero is a valid Dl_info; dladdr fills it for any address.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out pointer.
    if unsafe { libc::dladdr(p, &mut info) } == 0 {
        return None;
    }
    Some((info.dli_fbase as usize, info.dli_fname))
}

/// Whether `p` is one of the shim's own functions.
pub fn is_ours(p: *const c_void) -> bool {
    if p.is_null() {
        return false;
    }
    let base = object_of(p).map(|o| o.0);
    base == Some(own_base()) || (base.is_some() && base == stub_base())
}

/// The stub's base address, asked once.
fn stub_base() -> Option<usize> {
    static BASE: AtomicUsize = AtomicUsize::new(0);
    let b = BASE.load(Ordering::Relaxed);
    if b != 0 {
        return Some(b);
    }
    let b = stub().map(|s| (s.base)()).filter(|&b| b != 0)?;
    BASE.store(b, Ordering::Relaxed);
    Some(b)
}

/// A driver library, reached through the shim's own (pinned) handle.
pub struct Lib {
    handle: AtomicPtr<c_void>,
    sonames: &'static [&'static CStr],
}

pub static CUDA: Lib = Lib {
    handle: AtomicPtr::new(std::ptr::null_mut()),
    sonames: &[c"libcuda.so.1", c"libcuda.so"],
};
pub static NVML: Lib = Lib {
    handle: AtomicPtr::new(std::ptr::null_mut()),
    sonames: &[c"libnvidia-ml.so.1", c"libnvidia-ml.so"],
};

impl Lib {
    /// The program found `sym` (the real driver's, not ours) in this library: take our own
    /// reference to the library it lies in, the first time, so that the library stays where it
    /// is for as long as the shim may call into it (see the module documentation).
    pub fn note(&self, sym: *const c_void) {
        if !self.handle.load(Ordering::Relaxed).is_null() {
            return;
        }
        let Some((_, path)) = object_of(sym) else {
            return;
        };
        if path.is_null() {
            return;
        }
        // SAFETY: dladdr's path is NUL-terminated; RTLD_NOLOAD only takes a reference to an
        // object that is loaded, never loads one.
        let h = unsafe { libc::dlopen(path, libc::RTLD_NOW | libc::RTLD_NOLOAD) };
        if h.is_null() {
            return;
        }
        if self
            .handle
            .compare_exchange(std::ptr::null_mut(), h, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            // Another thread pinned it first: give our extra reference back.
            // SAFETY: the handle we just took.
            unsafe { libc::dlclose(h) };
        }
        crate::debug!("real library handle {h:?} for {:?}", self.sonames[0]);
    }

    fn get(&self) -> *mut c_void {
        let h = self.handle.load(Ordering::Acquire);
        if !h.is_null() {
            return h;
        }
        // Already loaded (linked with -l, or dlopened by path), else load it privately: the
        // program only calls a wrapper after it found the driver's symbol somewhere. Either
        // way the reference is ours and never closed.
        for flags in [
            libc::RTLD_NOW | libc::RTLD_NOLOAD,
            libc::RTLD_NOW | libc::RTLD_LOCAL,
        ] {
            for name in self.sonames {
                // SAFETY: dlopen with a NUL-terminated name.
                let h = unsafe { libc::dlopen(name.as_ptr(), flags) };
                if h.is_null() {
                    continue;
                }
                return match self.handle.compare_exchange(
                    std::ptr::null_mut(),
                    h,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => h,
                    Err(cur) => {
                        // SAFETY: the extra reference we just took.
                        unsafe { libc::dlclose(h) };
                        cur
                    }
                };
            }
        }
        std::ptr::null_mut()
    }

    /// The library's own definition of `name` (NULL when absent; never the shim's).
    pub fn sym(&self, name: &CStr) -> *mut c_void {
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

/// "Looked up and absent", distinct from "not looked up yet" (0).
const ABSENT: usize = usize::MAX;

/// The untyped part of a [`Real`]: what the `dlsym` and `cuGetProcAddress` answers need.
pub struct RawReal {
    lib: &'static Lib,
    name: &'static CStr,
    addr: AtomicUsize,
}

impl RawReal {
    pub fn name(&self) -> &'static CStr {
        self.name
    }

    /// The real address, or None when the library lacks the function.
    #[inline]
    pub fn addr(&self) -> Option<usize> {
        let a = self.addr.load(Ordering::Relaxed);
        if a != 0 {
            return (a != ABSENT).then_some(a);
        }
        self.resolve()
    }

    #[cold]
    fn resolve(&self) -> Option<usize> {
        let p = self.lib.sym(self.name) as usize;
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

/// A real driver function of C type `F` (an `unsafe extern "C" fn` pointer type), resolved on
/// first use and cached.
#[repr(transparent)]
pub struct Real<F> {
    raw: RawReal,
    _f: PhantomData<F>,
}

impl<F: Copy> Real<F> {
    /// # Safety
    /// `F` must be a function pointer type with exactly the C signature of `lib`'s `name`.
    pub const unsafe fn new(lib: &'static Lib, name: &'static CStr) -> Real<F> {
        Real {
            raw: RawReal {
                lib,
                name,
                addr: AtomicUsize::new(0),
            },
            _f: PhantomData,
        }
    }

    /// The real function, or None when the library lacks it.
    #[inline]
    pub fn get(&self) -> Option<F> {
        const {
            assert!(std::mem::size_of::<F>() == std::mem::size_of::<usize>());
        }
        let a = self.raw.addr()?;
        // SAFETY: `a` is the library's `name`, whose C type is `F` (see `new`), and F is a
        // pointer-sized function pointer.
        Some(unsafe { std::mem::transmute_copy::<usize, F>(&a) })
    }

    pub fn raw(&'static self) -> &'static RawReal {
        &self.raw
    }
}

/// Runs a wrapper's body; a panic must not unwind into the C caller: it becomes `on_panic`.
#[inline]
pub fn guard<R>(on_panic: R, body: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(on_panic)
}
