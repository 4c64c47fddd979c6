//! Getting control: the shim's `dlsym` (the way to the real libraries is `real.rs`).
//!
//! Three ways lead a program to the driver, all covered:
//! - `dlsym(handle, "cu…" / "nvml…")` (nvidia-smi, pynvml, cuda-bindings, the CUDA runtime): the
//!   shim exports `dlsym`. Unless the shim is bypassed (`GENV_SHIM_BYPASS`), a lookup of a driver
//!   name that we wrap answers the shim's wrapper, also outside an environment (the wrappers
//!   pass through while the process is in none), provided the real lookup on that handle finds
//!   the name, so a handle without the symbol still answers NULL; every other lookup is the real
//!   `dlsym`'s.
//! - `cuGetProcAddress` / `_v2`: wrapped in `cuda/procaddr.rs`, with the variant table of
//!   `genv_abi::procaddr` (shared with the simulated driver).
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

use crate::real::{self, is_ours, real_dlsym, real_dlsym_fn};
use std::ffi::{c_char, c_void, CStr};

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
    // SAFETY: dlsym's name is a NUL-terminated string.
    let n = unsafe { CStr::from_ptr(name) };
    let b = n.to_bytes();
    let cuda = is_cuda_name(b);
    // Not only inside an environment: a process may enter one later (genv.sdk.activate()), and
    // clients keep the pointers they looked up. The wrappers pass through while there is none.
    if !(cuda || is_nvml_name(b)) || crate::view::bypassed() {
        return pass();
    }
    // SAFETY: dlsym's own arguments.
    std::panic::catch_unwind(|| unsafe { lookup(handle, n, cuda) }).unwrap_or_else(|_| pass())
}

/// # Safety
/// `handle` as the program passed it to `dlsym`.
unsafe fn lookup(handle: *mut c_void, n: &CStr, cuda: bool) -> Decision {
    // SAFETY: the program's handle, as it passed it to dlsym.
    let real = unsafe { real_dlsym(handle, n) };
    if real.is_null() {
        // Absent on that handle: answer as the real dlsym would (and set its dlerror).
        return pass();
    }
    let pseudo = handle.is_null(); // RTLD_DEFAULT
                                   // The real library the program found the name in is pinned (real.rs), so that what the
                                   // shim resolves there stays valid however the program closes and reopens it.
    let wrapper = if cuda {
        let w = crate::cuda::wrapper(n.to_bytes());
        if w.is_some() && !pseudo && !is_ours(real) {
            real::CUDA.note(real);
        }
        w
    } else {
        if !pseudo && !is_ours(real) {
            real::NVML.note(real);
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
        // Both versions of glibc's dlsym lead here (the version nodes come from build.rs),
        // declared beside the definition, which .symver needs in the same object.
        ".globl genv_dlsym_compat",
        ".set genv_dlsym_compat, dlsym",
        ".symver dlsym, dlsym@@GLIBC_2.34",
        ".symver genv_dlsym_compat, dlsym@GLIBC_2.2.5",
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
        // Both versions of glibc's dlsym lead here (the version nodes come from build.rs),
        // declared beside the definition, which .symver needs in the same object.
        ".globl genv_dlsym_compat",
        ".set genv_dlsym_compat, dlsym",
        ".symver dlsym, dlsym@@GLIBC_2.34",
        ".symver genv_dlsym_compat, dlsym@GLIBC_2.17",
        hook = sym genv_dlsym_hook,
    )
}
