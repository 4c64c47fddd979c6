// Two things for the shim:
//
// 1. The glibc version nodes that `dlsym` is exported under (see src/dlsym.rs and stub/stub.rs):
//    the default GLIBC_2.34 and the architecture's original version, so that programs built
//    against either glibc bind to it.
// 2. The preloaded stub, `libgenv_shim.so` (stub/stub.rs: `no_std`, built with `panic=abort`,
//    which cargo cannot give one crate of a workspace, hence rustc here), placed beside this
//    crate's `libgenv_shim_core.so` in the profile's directory. Its exported driver names are
//    derived from the one declaration of each hooked function: the `fn` lines of the `hooks!`
//    blocks in src/cuda/mod.rs and src/nvml/mod.rs (tests/tests/shim_stub.rs checks that the
//    stub exports exactly what the core does).
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    for f in [
        "build.rs",
        "stub/stub.rs",
        "src/cuda/mod.rs",
        "src/nvml/mod.rs",
    ] {
        println!("cargo:rerun-if-changed={f}");
    }
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").expect("target arch");
    let old = match arch.as_str() {
        "aarch64" => "GLIBC_2.17",
        _ => "GLIBC_2.2.5",
    };
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let map = out.join("dlsym.map");
    std::fs::write(&map, format!("{old} {{ }};\nGLIBC_2.34 {{ }} {old};\n"))
        .expect("write version script");
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        map.display()
    );

    let mut names = Vec::new();
    for f in ["src/cuda/mod.rs", "src/nvml/mod.rs"] {
        let text = std::fs::read_to_string(f).expect("read hooks");
        names.extend(hooked_names(&text));
    }
    assert!(
        names.len() > 50,
        "the hooks! declarations were not found ({names:?})"
    );
    let generated = out.join("stub_gen.rs");
    std::fs::write(&generated, generate(&names, &arch)).expect("write stub_gen.rs");

    let stub = out.join("libgenv_shim.so");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let mut cmd = Command::new(rustc);
    cmd.args([
        "--edition",
        "2021",
        "--crate-type",
        "cdylib",
        "--crate-name",
        "genv_shim",
    ])
    .args([
        "-C",
        "opt-level=2",
        "-C",
        "panic=abort",
        "-C",
        "debuginfo=0",
    ])
    .args(["-C", "strip=symbols", "-l", "dylib=c"])
    .arg("-C")
    .arg(format!("link-arg=-Wl,--version-script={}", map.display()))
    .arg("-o")
    .arg(&stub)
    .arg("stub/stub.rs")
    .env("GENV_STUB_GEN", &generated);
    if let (Ok(t), Ok(h)) = (std::env::var("TARGET"), std::env::var("HOST")) {
        if t != h {
            cmd.args(["--target", &t]);
        }
    }
    let st = cmd.status().expect("run rustc for the stub");
    assert!(st.success(), "building stub/stub.rs failed");
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out: the stub goes to <target>/<profile>.
    let profile_dir = out.ancestors().nth(3).expect("profile directory");
    install(&stub, &profile_dir.join("libgenv_shim.so"));
}

/// Replaces `to` with a copy of `from` (a rename, so a running program keeps the old file).
fn install(from: &Path, to: &Path) {
    let tmp = to.with_extension("so.tmp");
    std::fs::copy(from, &tmp).expect("copy the stub");
    std::fs::rename(&tmp, to).expect("install the stub");
}

/// The names declared in the `hooks!` blocks of `text`: each `fn a | b | c (` at the block's
/// first indentation, its names possibly spread over lines.
fn hooked_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("\nhooks! {\n") {
        let body = &rest[start + 1..];
        let end = body.find("\n}\n").expect("end of hooks! block");
        let block = &body[..end];
        let mut it = block.match_indices("\n    fn ");
        for (i, _) in it.by_ref() {
            let decl = &block[i + "\n    fn ".len()..];
            let head = &decl[..decl.find('(').expect("fn (")];
            for n in head.split('|') {
                let n = n.trim();
                assert!(
                    !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                    "odd hooked name {n:?}"
                );
                out.push(n.to_string());
            }
        }
        rest = &body[end..];
    }
    out
}

fn generate(names: &[String], arch: &str) -> String {
    let mut s = String::new();
    let n = names.len();
    writeln!(s, "const N: usize = {n};").unwrap();
    writeln!(s, "static NAMES: [&[u8]; N] = [").unwrap();
    for name in names {
        writeln!(s, "    b\"{name}\\0\",").unwrap();
    }
    writeln!(s, "];").unwrap();
    writeln!(s, "static mut SLOTS: [unsafe extern \"C\" fn(); N] = [").unwrap();
    for i in 0..n {
        writeln!(s, "    first_{i},").unwrap();
    }
    writeln!(s, "];").unwrap();
    for (i, name) in names.iter().enumerate() {
        let (jump, first) = match arch {
            "aarch64" => (
                format!(
                    "\"adrp x16, {{slots}}\", \"add x16, x16, :lo12:{{slots}}\", \"ldr x16, [x16, #{}]\", \"br x16\"",
                    8 * i
                ),
                format!("\"mov x17, #{i}\", \"b {{common}}\""),
            ),
            _ => (
                format!("\"jmp qword ptr [rip + {{slots}} + {}]\"", 8 * i),
                format!("\"mov r11d, {i}\", \"jmp {{common}}\""),
            ),
        };
        writeln!(
            s,
            "/// `{name}`: through its slot.\n#[unsafe(naked)]\n#[no_mangle]\npub unsafe extern \"C\" fn {name}() {{\n    core::arch::naked_asm!({jump}, slots = sym SLOTS)\n}}"
        )
        .unwrap();
        writeln!(
            s,
            "#[unsafe(naked)]\nunsafe extern \"C\" fn first_{i}() {{\n    core::arch::naked_asm!({first}, common = sym resolve_common)\n}}"
        )
        .unwrap();
    }
    s
}
