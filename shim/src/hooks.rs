//! One declaration per hooked function: the [`hooks!`] macro.
//!
//! An API (`cuda/mod.rs`, `nvml/mod.rs`) lists its hooked functions once each, with the C
//! signature and the body written once:
//!
//! ```text
//! hooks! {
//!     api { lib: real::CUDA, ret: CUresult, missing: CUDA_ERROR_NOT_FOUND,
//!           panicked: CUDA_ERROR_UNKNOWN, real: real, name: NAME, attrs: [#[no_mangle]] }
//!
//!     /// Docs.
//!     fn cuMemAlloc_v2 | cuMemAlloc (dptr: *mut CUdeviceptr | *mut CUdeviceptrV1, size: usize | c_uint) {
//!         memory::alloc(size as u64, || real(dptr, size), || *dptr as u64)
//!     }
//!     fn cuCtxCreate | cuCtxCreate_v2 (pctx: *mut CUcontext, flags: c_uint, dev: CUdevice) { … }
//! }
//! ```
//!
//! From that it derives, per name: the wrapper (`unsafe extern "C" fn <name>`, exported when
//! the API's `attrs` say so), its typed real-function slot (`<name>::REAL`, a [`Real`] of
//! exactly that signature, resolved in the API's library), and one row of the API's `table`,
//! which is both the `dlsym` answer and the `cuGetProcAddress` answer. In the body, the API's
//! `real` names the typed real function (present: a missing one answers `missing` before the
//! body runs) and `name` the wrapper's own name; the body runs under [`guard`] (a panic
//! answers `panicked`).
//!
//! An optional `linked: [module]` (NVML's) exports, under each name, an entry for programs linked against the
//! library instead of the wrapper itself: the real library calls some of its own exported
//! functions through its PLT, which binds them to the first definition in the global scope,
//! ours. The entry looks at its return address: a call from inside the library's code
//! (`module::LO..module::HI`) goes straight to the real function (`<name>::passthru`), any other to
//! the wrapper, so the program's calls follow the view and the driver's own calls mean what
//! they mean without the shim (a remapped index remapped again would name another GPU).
//!
//! Several names share a body: `fn a | b | c (args)` when their signatures are the same (the
//! `_v2` that only renamed, the three process-list generations), `fn a | b (x: T | U)` for a
//! narrow-width twin (the pre-3.2 32-bit ABI: each argument's second type, where given, is the
//! twin's).
//!
//! [`Real`]: crate::real::Real
//! [`guard`]: crate::real::guard

/// A hooked name: the shim's wrapper, and the real function's slot.
#[derive(Clone, Copy)]
pub struct Hooked {
    pub wrapper: *mut std::ffi::c_void,
    pub real: &'static crate::real::RawReal,
}

macro_rules! hooks {
    (
        api {
            lib: $lib:path, ret: $ret:ty, missing: $missing:expr, panicked: $panicked:expr,
            real: $real:ident, name: $nm:ident, attrs: [$(#[$attr:meta])*]
            $(, linked: [$($lk:ident)?])? $(,)?
        }
        $($decls:tt)*
    ) => {
        $crate::hooks::hooks!(@munch { $lib, $ret, $missing, $panicked, $real, $nm, [$(#[$attr])*], [$($($lk)?)?] } [] $($decls)*);
    };

    // Names sharing one signature.
    (@munch $cfg:tt [$($acc:ident)*]
        $(#[doc = $doc:literal])*
        fn $name:ident $(| $more:ident)* ($($arg:ident : $ty:ty),* $(,)?) $body:block
        $($rest:tt)*
    ) => {
        $crate::hooks::hooks!(@same $cfg [$(#[doc = $doc])*] ($name $($more)*) ($($arg : $ty),*) $body);
        $crate::hooks::hooks!(@munch $cfg [$($acc)* $name $($more)*] $($rest)*);
    };

    // A narrow-width twin: each argument's second type, where given, is the twin's.
    (@munch $cfg:tt [$($acc:ident)*]
        $(#[doc = $doc:literal])*
        fn $name:ident | $twin:ident ($($arg:ident : $ty:ty $(| $tty:ty)?),* $(,)?) $body:block
        $($rest:tt)*
    ) => {
        $crate::hooks::hooks!(@fn $cfg [$(#[doc = $doc])*] $name ($($arg : $ty),*) $body);
        $crate::hooks::hooks!(@fn $cfg [$(#[doc = $doc])*] $twin ($($arg : $crate::hooks::hooks!(@twin $ty $(| $tty)?)),*) $body);
        $crate::hooks::hooks!(@munch $cfg [$($acc)* $name $twin] $($rest)*);
    };

    // All declared: the table of the API's names.
    (@munch { $lib:path, $ret:ty, $missing:expr, $panicked:expr, $real:ident, $nm:ident, [$(#[$attr:meta])*], $lk:tt }
        [$($acc:ident)*]
    ) => {
        /// The shim's wrapper and the real slot of hooked name `name`, if it is one.
        pub fn table(name: &[u8]) -> Option<$crate::hooks::Hooked> {
            $(
                if name == stringify!($acc).as_bytes() {
                    return Some($crate::hooks::Hooked {
                        wrapper: $acc as *const () as *mut std::ffi::c_void,
                        real: $acc::REAL.raw(),
                    });
                }
            )*
            None
        }

        /// Every hooked name (for tests and the debug log).
        #[allow(dead_code)]
        pub const NAMES: &[&str] = &[$(stringify!($acc)),*];
    };

    // The names of one declaration, each with the same docs, arguments and body.
    (@same $cfg:tt $docs:tt ($($n:ident)*) $args:tt $body:block) => {
        $($crate::hooks::hooks!(@fn $cfg $docs $n $args $body);)*
    };

    (@linked [], $name:ident, $ret:ty, $missing:expr, $args:tt) => {};
    (@linked [$lk:ident], $name:ident, $ret:ty, $missing:expr, $args:tt) => {
        $crate::hooks::linked_entry!($lk, $name, $ret, $missing, $args);
    };

    (@twin $t:ty) => { $t };
    (@twin $t:ty | $u:ty) => { $u };

    (@fn { $lib:path, $ret:ty, $missing:expr, $panicked:expr, $real:ident, $nm:ident, [$(#[$attr:meta])*], [$($lk:ident)?] }
        [$(#[doc = $doc:literal])*] $name:ident ($($arg:ident : $ty:ty),*) $body:block
    ) => {
        /// The real function behind the wrapper of the same name.
        #[allow(non_snake_case)]
        pub mod $name {
            #[allow(unused_imports)]
            use super::*;
            // SAFETY: the declaration gives the library function's exact C signature.
            pub static REAL: $crate::real::Real<unsafe extern "C" fn($($ty),*) -> $ret> =
                unsafe {
                    $crate::real::Real::new(
                        &$lib,
                        match std::ffi::CStr::from_bytes_with_nul(
                            concat!(stringify!($name), "\0").as_bytes(),
                        ) {
                            Ok(c) => c,
                            Err(_) => panic!("a C name"),
                        },
                    )
                };
            $crate::hooks::hooks!(@linked [$($lk)?], $name, $ret, $missing, ($($arg : $ty),*));
        }

        $(#[doc = $doc])*
        $(#[$attr])*
        // One body serves twins of different integer widths: its casts are no-ops for one of them.
        #[allow(non_snake_case, clippy::missing_safety_doc, clippy::unnecessary_cast, unused_variables)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            #[allow(non_upper_case_globals, dead_code)]
            const $nm: &str = stringify!($name);
            let Some($real) = $name::REAL.get() else {
                return $missing;
            };
            $crate::real::guard($panicked, || {
                // SAFETY: the wrapper is called as the library function is, by the C API's
                // contract for its arguments; the body hands them to the real function or reads
                // them as that function would.
                #[allow(unused_unsafe)]
                unsafe {
                    $body
                }
            })
        }
    };
}

/// The exported entry of a `linked` API's name (see the module documentation), and the real
/// function it passes the library's own calls to.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
macro_rules! linked_entry {
    ($lk:ident, $name:ident, $ret:ty, $missing:expr, ($($arg:ident : $ty:ty),*)) => {
        /// The real function, for the calls the real library makes to itself.
        #[allow(non_snake_case, clippy::missing_safety_doc)]
        pub unsafe extern "C" fn passthru($($arg: $ty),*) -> $ret {
            match REAL.get() {
                // SAFETY: the library's own function, called with the arguments it was given.
                Some(f) => unsafe { f($($arg),*) },
                None => $missing,
            }
        }

        /// The name as programs linked against the library bind it.
        ///
        /// # Safety
        /// As the library function.
        #[cfg(target_arch = "x86_64")]
        #[unsafe(naked)]
        #[no_mangle]
        #[allow(non_snake_case, unused_variables)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            // The return address is at [rsp] on entry; r11 is free (caller-saved, no argument).
            std::arch::naked_asm!(
                "mov r11, [rsp]",
                "cmp r11, [rip + {lo}]",
                "jb 2f",
                "cmp r11, [rip + {hi}]",
                "jae 2f",
                "jmp {passthru}",
                "2:",
                "jmp {wrapper}",
                lo = sym $lk::LO,
                hi = sym $lk::HI,
                passthru = sym passthru,
                wrapper = sym super::$name,
            )
        }

        /// The name as programs linked against the library bind it.
        ///
        /// # Safety
        /// As the library function.
        #[cfg(target_arch = "aarch64")]
        #[unsafe(naked)]
        #[no_mangle]
        #[allow(non_snake_case, unused_variables)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            // The return address is in x30; x16 (IP0) may be clobbered at a call boundary.
            std::arch::naked_asm!(
                "adrp x16, {lo}",
                "ldr x16, [x16, :lo12:{lo}]",
                "cmp x30, x16",
                "b.lo 2f",
                "adrp x16, {hi}",
                "ldr x16, [x16, :lo12:{hi}]",
                "cmp x30, x16",
                "b.hs 2f",
                "b {passthru}",
                "2:",
                "b {wrapper}",
                lo = sym $lk::LO,
                hi = sym $lk::HI,
                passthru = sym passthru,
                wrapper = sym super::$name,
            )
        }
    };
}

pub(crate) use hooks;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) use linked_entry;
