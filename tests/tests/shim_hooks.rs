//! How the shim gets control: its dlsym (both glibc versions, RTLD_NEXT / RTLD_DEFAULT kept),
//! cuGetProcAddress variants and pointer identity, threads and fork.

use genv_tests::shim;
use genv_tests::support;

use shim::*;
use std::path::PathBuf;
use std::process::Command;
use support::*;

/// tests/c/shim_hooks.c, linked with the two RTLD_NEXT test libraries of shim_next_lib.c.
fn hooks() -> PathBuf {
    static ONCE: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut g = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = g.as_ref() {
        return p.clone();
    }
    let dir = bin_dir().join("shim-c");
    std::fs::create_dir_all(&dir).unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("c/shim_next_lib.c");
    for (name, defs) in [
        ("a", vec!["-DWHICH=\"a\"", "-DCHAIN"]),
        ("b", vec!["-DWHICH=\"b\""]),
    ] {
        let out = dir.join(format!("libshim_next_{name}.so"));
        let tmp = dir.join(format!(".libshim_next_{name}.{}", std::process::id()));
        let o = Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&tmp)
            .args(&defs)
            .arg(&src)
            .arg("-ldl")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::rename(&tmp, &out).unwrap();
    }
    let l = format!("-L{}", dir.display());
    let r = format!("-Wl,-rpath,{}", dir.display());
    let p = c_program(
        "shim_hooks",
        false,
        &[
            &l,
            "-Wl,--no-as-needed",
            "-lshim_next_a",
            "-lshim_next_b",
            &r,
        ],
    );
    *g = Some(p.clone());
    p
}

fn run_hooks(sb: &Sandbox, eid: Option<&str>, args: &[&str]) -> Out {
    let mut c = match eid {
        Some(e) => under_shim(sb, e, hooks()),
        None => {
            let mut c = sb.command(hooks());
            c.env("LD_PRELOAD", shim_lib());
            c
        }
    };
    c.args(args);
    let o = Sandbox::output(c);
    o.no_panic();
    o
}

fn one(out: &str, key: &str) -> String {
    field(out, key)
        .unwrap_or_else(|| panic!("no {key} in {out}"))
        .join(" ")
}

#[test]
fn dlsym_is_exported_with_both_glibc_versions() {
    let o = Command::new("objdump")
        .arg("-T")
        .arg(shim_lib())
        .output()
        .expect("objdump");
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.split_whitespace().last() == Some("dlsym"))
        .collect();
    assert!(
        lines.iter().any(|l| l.contains(" GLIBC_2.34 ")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("(GLIBC_2.2.5)")),
        "{lines:?}"
    );
}

#[test]
fn both_dlsym_versions_reach_the_shim() {
    let sb = Sandbox::new();
    let _e = sb.env(&["--id", "d1", "--gpus", "1"]);
    let o = run_hooks(&sb, Some("d1"), &["versions"]);
    let out = o.ok();
    assert_eq!(one(out, "new"), "libgenv_shim.so:cuMemAlloc_v2");
    assert_eq!(one(out, "old"), "libgenv_shim.so:cuMemAlloc_v2");
    // Names the shim does not wrap, and names the handle lacks, are the driver's answer.
    assert!(one(out, "old-pass").starts_with("libcuda.so.1:"), "{out}");
    assert_eq!(one(out, "absent"), "none");
}

#[test]
fn rtld_next_and_rtld_default_keep_their_meaning() {
    let sb = Sandbox::new();
    let _e = sb.env(&["--id", "n1", "--gpus", "1"]);
    let plain = Sandbox::output({
        let mut c = sb.command(hooks());
        c.arg("next");
        c
    });
    for eid in [None, Some("n1")] {
        let o = run_hooks(&sb, eid, &["next"]);
        assert_eq!(o.ok(), plain.ok(), "under the shim ({eid:?}) vs without");
        assert_eq!(one(o.ok(), "call"), "a>b");
        assert_eq!(one(o.ok(), "next"), "a>b");
        assert_eq!(one(o.ok(), "default"), "a>b");
        assert_eq!(one(o.ok(), "missing"), "none");
        assert_eq!(one(o.ok(), "malloc"), "libc.so.6:malloc");
    }
}

#[test]
fn cu_get_proc_address_hands_back_exactly_the_variant_asked_for() {
    let sb = Sandbox::new();
    let _e = sb.env(&["--id", "p1", "--gpus", "1"]);
    let o = run_hooks(&sb, Some("p1"), &["procaddr"]);
    let out = o.ok();
    let shim = |s: &str| format!("libgenv_shim.so:{s}");
    assert_eq!(one(out, "gpa"), shim("cuGetProcAddress_v2"));
    assert_eq!(one(out, "cuMemAlloc@3020/0"), shim("cuMemAlloc_v2"));
    assert_eq!(one(out, "cuMemAlloc@2000/0"), shim("cuMemAlloc"));
    // Older than the function: the driver's VERSION_NOT_SUFFICIENT (2) stands.
    assert_eq!(one(out, "cuMemAlloc@1000/0"), "err 500 2");
    assert_eq!(one(out, "cuMemFree@3020/0"), shim("cuMemFree_v2"));
    assert_eq!(one(out, "cuMemGetInfo@12000/0"), shim("cuMemGetInfo_v2"));
    assert_eq!(one(out, "cuMemAllocAsync@11020/0"), shim("cuMemAllocAsync"));
    assert_eq!(
        one(out, "cuMemAllocAsync@11020/2"),
        shim("cuMemAllocAsync_ptsz")
    );
    assert_eq!(one(out, "cuMemAllocAsync@11010/0"), "err 500 2");
    assert_eq!(
        one(out, "cuGetProcAddress@12000/0"),
        shim("cuGetProcAddress_v2")
    );
    assert_eq!(
        one(out, "cuGetProcAddress@11030/0"),
        shim("cuGetProcAddress")
    );
    assert_eq!(
        one(out, "v1:cuMemFree@3020"),
        format!("0 {}", shim("cuMemFree_v2"))
    );
    // Not wrapped: the driver's own function (zero overhead), the same pointer as dlsym's.
    assert!(one(out, "cuLaunchKernel@4000/0").starts_with("libcuda.so.1:"));
    assert_eq!(one(out, "launch-identical"), "1");
    // Context creation is wrapped (an initialisation point), variant by variant.
    assert_eq!(one(out, "cuCtxCreate@3020/0"), shim("cuCtxCreate_v2"));
    // Unknown to the table (a newer driver's entry point): the driver answers.
    assert_eq!(one(out, "cuFutureEntryPoint@13000/0"), "err 500 1");
    // Outside an environment too the wrappers are handed out (they pass through while there is
    // none), so that a process entering one later is followed.
    let o = run_hooks(&sb, None, &["procaddr"]);
    assert_eq!(one(o.ok(), "gpa"), shim("cuGetProcAddress_v2"));
    assert_eq!(one(o.ok(), "cuMemAlloc@3020/0"), shim("cuMemAlloc_v2"));
    // Bypassed (as the genv CLI runs), the lookup is the driver's. (What the simulated driver
    // answers there may still name the shim: it takes its own exports' addresses through the
    // GOT, which a preloaded definition interposes; those pass straight through to the driver.)
    let mut c = sb.command(hooks());
    c.env("LD_PRELOAD", shim_lib())
        .env("GENV_SHIM_BYPASS", "1")
        .arg("procaddr");
    let o = Sandbox::output(c);
    assert_eq!(one(o.ok(), "gpa"), "libcuda.so.1:cuGetProcAddress_v2");
}

#[test]
fn threads_allocating_at_once_leave_the_ledger_balanced() {
    let sb = Sandbox::new();
    let _e = sb.env(&["--id", "t1", "--gpus", "1", "--gpu-memory", "64mi"]);
    let o = run_hooks(&sb, Some("t1"), &["threads", "16", "3000"]);
    assert_eq!(
        one(o.ok(), "threads"),
        format!("failures 0 free {} total {}", 64 * MI, 64 * MI)
    );
}

#[test]
fn a_forked_child_does_not_keep_the_parents_memory() {
    let sb = Sandbox::new();
    let _e = sb.env(&["--id", "f1", "--gpus", "1", "--gpu-memory", "2gi"]);
    let mut c = under_shim(&sb, "f1", hooks());
    c.arg("fork");
    let Held {
        child: mut parent,
        before: lines,
        ..
    } = spawn_held(c);
    assert!(lines.contains(&"alloc 0".to_string()), "{lines:?}");
    let child: i32 = one(&lines.join("\n"), "child").parse().unwrap();
    // The parent dies; its child (which shares its descriptors) lives on.
    parent.kill().unwrap();
    parent.wait().unwrap();
    let o = Sandbox::output({
        let mut c = under_shim(&sb, "f1", shim_cuda());
        c.args(["link", "alloc", "mem", &(2 * GI).to_string(), "1"]);
        c
    });
    // SAFETY: plain kill(2) of the child we forked (it waits on the closed stdin anyway).
    unsafe { libc::kill(child, libc::SIGKILL) };
    assert_eq!(field(o.ok(), "ok"), Some(vec!["1", "err", "0"]), "{o:?}");
}

#[test]
fn a_driver_library_closed_and_opened_again_keeps_working() {
    // nvml-wrapper dlcloses NVML when its Nvml is dropped: the shim's cached real functions must
    // still be valid when the program opens it again (it used to crash one run in five, when
    // the library came back at another address).
    let sb = Sandbox::new();
    let env = sb.env(&["--gpus", "1"]);
    let prog = c_program("driver_reload", false, &[]);
    for lib in ["nvml", "cuda"] {
        for eid in [None, Some(env.eid.as_str())] {
            let mut c = match eid {
                Some(e) => under_shim(&sb, e, &prog),
                None => {
                    let mut c = sb.command(&prog);
                    c.env("LD_PRELOAD", shim_lib());
                    c
                }
            };
            c.arg(lib);
            let out = Sandbox::output(c);
            assert!(out.success(), "{lib} in {eid:?}: {out:#?}");
            assert_eq!(
                out.stdout, "first 0\nsecond 0\nok\n",
                "{lib} in {eid:?}: {out:#?}"
            );
        }
    }
}
