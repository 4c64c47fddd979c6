//! The two stages of the shim (docs/shim.md, "Two stages"): the preloaded stub is small, needs
//! only the C library, exports exactly the names the core does (derived from the one `hooks!`
//! declaration of each), leaves the core unloaded in programs that never touch the driver, loads
//! it at the first driver use, and, should the core be missing, says so once and passes through.

use genv_tests::support;
use std::collections::BTreeSet;
use std::process::Command;

use support::*;

fn core_lib() -> std::path::PathBuf {
    bin_dir().join("libgenv_shim_core.so")
}

fn dynamic_symbols(lib: &std::path::Path) -> BTreeSet<String> {
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(lib)
        .output()
        .expect("nm (binutils)");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .collect()
}

#[test]
fn the_stub_exports_what_the_core_does() {
    let mut stub = dynamic_symbols(&shim_lib());
    let mut core = dynamic_symbols(&core_lib());
    assert!(stub.contains("dlsym@@GLIBC_2.34"), "{stub:?}");
    assert!(
        stub.iter().any(|s| s.starts_with("dlsym@GLIBC_2.")),
        "{stub:?}"
    );
    assert!(stub.remove("genv_stub_api"));
    assert!(core.remove("genv_dlsym_hook") && core.remove("genv_core_attach"));
    assert_eq!(stub, core, "the stub's exports differ from the core's");
    assert!(stub.len() > 60);
    // A Rust program's own unwinding must not meet ours.
    assert!(!stub.iter().any(|s| s.contains("rust_eh_personality")));
}

#[test]
fn the_stub_is_small_and_needs_only_libc() {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(shim_lib())
        .output()
        .expect("readelf (binutils)");
    let text = String::from_utf8_lossy(&out.stdout);
    let needed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    assert_eq!(needed, vec!["libc.so.6"], "{text}");
    let size = std::fs::metadata(shim_lib()).unwrap().len();
    assert!(size < 64 << 10, "the stub is {size} bytes");
}

const MAPS_AFTER_CUINIT: &str = "import ctypes, sys\n\
    if sys.argv[1] == 'cuda':\n\
    \x20   assert ctypes.CDLL('libcuda.so.1').cuInit(0) == 0\n\
    print('core' if 'libgenv_shim_core.so' in open('/proc/self/maps').read() else 'no-core')\n";

#[test]
fn the_core_is_loaded_at_the_first_driver_use_only() {
    let sb = Sandbox::with_gpus(1);
    let e = sb.env(&["--gpus", "1"]);
    for (arg, want) in [("plain", "no-core"), ("cuda", "core")] {
        let mut c = sb.command("python3");
        c.args(["-c", MAPS_AFTER_CUINIT, arg])
            .env("LD_PRELOAD", shim_lib())
            .env("GENV_ENVIRONMENT_ID", &e.eid);
        let out = Sandbox::output(c);
        assert_eq!(out.ok().trim(), want, "{out:#?}");
    }
}

#[test]
fn a_missing_core_is_said_once_and_passes_through() {
    let sb = Sandbox::with_gpus(1);
    let e = sb.env(&["--gpus", "1"]);
    let lone = sb.root.join("lone");
    std::fs::create_dir_all(&lone).unwrap();
    let stub = lone.join("libgenv_shim.so");
    std::fs::copy(shim_lib(), &stub).unwrap();
    let run = |arg: &str| {
        let mut c = sb.command("python3");
        c.args(["-c", MAPS_AFTER_CUINIT, arg])
            .env("LD_PRELOAD", &stub)
            .env("GENV_ENVIRONMENT_ID", &e.eid);
        Sandbox::output(c)
    };
    let plain = run("plain");
    assert_eq!(plain.ok().trim(), "no-core");
    assert_eq!(plain.stderr, "", "a program without CUDA hears nothing");
    let cuda = run("cuda");
    assert_eq!(cuda.ok().trim(), "no-core");
    let lines: Vec<&str> = cuda.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{cuda:#?}");
    assert!(
        lines[0].contains("cannot load libgenv_shim_core.so"),
        "{cuda:#?}"
    );
}
