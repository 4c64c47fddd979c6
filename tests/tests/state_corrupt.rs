//! A state file that is missing, truncated, foreign, or of another format version: genv creates
//! the missing one, and refuses the others with one clear line (naming the file and the way
//! out), a non-zero exit and no panic, leaving the file exactly as it was.

use genv_tests::support;

use genv_state::layout::{FILE_SIZE, HEADER_SIZE, MAGIC, VERSION};
use std::os::unix::fs::PermissionsExt;
use support::*;

#[test]
fn missing_state_file_is_created() {
    let sb = Sandbox::new();
    assert!(!sb.tmpdir.exists());
    assert_eq!(
        sb.genv(&["envs"]).ok(),
        "ID      USER            NAME            CREATED              PID(S)\n"
    );
    let meta = std::fs::metadata(sb.state_path()).unwrap();
    assert_eq!(meta.len() as usize, FILE_SIZE);
    assert_eq!(meta.permissions().mode() & 0o7777, 0o666);
    assert_eq!(
        std::fs::metadata(&sb.tmpdir).unwrap().permissions().mode() & 0o7777,
        0o1777
    );
    // No temporary file is left beside it.
    let names: Vec<String> = std::fs::read_dir(&sb.tmpdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["state.v2".to_string()]);
    // Removed while in use: the next command starts afresh.
    let env = sb.env(&[]);
    std::fs::remove_file(sb.state_path()).unwrap();
    assert_eq!(sb.eids(), Vec::<String>::new());
    assert!(sb
        .genv_in(&env.eid, &["status"])
        .ok()
        .contains("Environment is not active"));
}

/// A valid, empty state file's bytes (made by genv itself).
fn fresh_file(sb: &Sandbox) -> Vec<u8> {
    sb.genv(&["envs"]).ok();
    std::fs::read(sb.state_path()).unwrap()
}

/// Runs commands against the (corrupt) state file and checks each refuses with one line
/// containing every fragment, leaving the file as it was.
fn refused(sb: &Sandbox, bytes: &[u8], fragments: &[&str]) {
    let path = sb.state_path();
    std::fs::write(&path, bytes).unwrap();
    let holder = Holder::spawn();
    let pid = holder.pid().to_string();
    let runs = [
        sb.genv(&["envs"]),
        sb.genv(&["envs", "--json"]),
        sb.genv(&["devices"]),
        sb.genv_in("42", &["status"]),
        sb.genv_in("42", &["attach", "--index", "0"]),
        sb.genv_in("42", &["config", "name", "x"]),
        sb.genv(&["activate", "--shell", "bash", "--shell-pid", &pid]),
        sb.genv(&["exec", "--", "true"]),
    ];
    for out in runs {
        let line = out.fails_with(fragments[0]);
        for f in fragments {
            assert!(line.contains(f), "{line:?} lacks {f:?}");
        }
        assert!(
            line.contains(path.to_str().unwrap()),
            "{line:?} names no file"
        );
        // The way out: remove the file.
        assert!(line.contains(&format!("rm {}", path.display())), "{line:?}");
        assert_eq!(out.stdout, "", "nothing on stdout for the shell to eval");
    }
    assert!(
        std::fs::read(&path).unwrap() == bytes,
        "the state file was modified"
    );
}

#[test]
fn truncated_state_file() {
    let sb = Sandbox::new();
    let good = fresh_file(&sb);
    refused(&sb, &[], &["truncated"]);
    refused(&sb, &good[..100], &["truncated"]);
    refused(&sb, &good[..HEADER_SIZE], &["truncated"]);
    refused(&sb, &good[..FILE_SIZE / 2], &["truncated"]);
}

#[test]
fn foreign_state_file() {
    let sb = Sandbox::new();
    fresh_file(&sb);
    // Random bytes (a fixed xorshift, so failures reproduce), as long as a real file.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let random: Vec<u8> = (0..FILE_SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    refused(&sb, &random, &["not a genv state file"]);
    // Another file that happens to sit there.
    let text = b"{\"envs\": {}}\n".repeat(1000);
    refused(&sb, &text, &["not a genv state file"]);
    let elf = std::fs::read(genv_bin()).unwrap();
    refused(&sb, &elf, &["not a genv state file"]);
}

fn with_version(good: &[u8], v: u32) -> Vec<u8> {
    let mut b = good.to_vec();
    assert_eq!(&b[..8], &MAGIC);
    b[8..12].copy_from_slice(&v.to_ne_bytes());
    b
}

#[test]
fn older_and_newer_versions() {
    let sb = Sandbox::new();
    let good = fresh_file(&sb);
    refused(&sb, &with_version(&good, 0), &["older genv", "format 0"]);
    refused(
        &sb,
        &with_version(&good, VERSION + 1),
        &["newer genv", &format!("format {}", VERSION + 1)],
    );
    refused(&sb, &with_version(&good, u32::MAX), &["newer genv"]);
}

#[test]
fn layout_mismatch_in_header() {
    let sb = Sandbox::new();
    let good = fresh_file(&sb);
    // Same magic and version, different table sizes (a build with other limits).
    let mut b = good.clone();
    let off = std::mem::offset_of!(genv_state::layout::Header, max_envs);
    b[off..off + 4].copy_from_slice(&7u32.to_ne_bytes());
    refused(&sb, &b, &["unexpected layout"]);
}

#[test]
fn state_dir_is_a_file() {
    let sb = Sandbox::new();
    std::fs::write(&sb.tmpdir, b"not a dir").unwrap();
    let out = sb.genv(&["envs"]);
    let line = out.fails_with(sb.tmpdir.to_str().unwrap());
    assert!(line.starts_with("genv: "), "{line}");
    assert_eq!(std::fs::read(&sb.tmpdir).unwrap(), b"not a dir");
}

#[test]
fn good_file_after_refusal_works_again() {
    let sb = Sandbox::new();
    let good = fresh_file(&sb);
    refused(&sb, &with_version(&good, 0), &["older genv"]);
    // The way out the message gives.
    std::fs::remove_file(sb.state_path()).unwrap();
    let env = sb.env(&["--gpus", "1"]);
    assert_eq!(sb.eids(), vec![env.eid.clone()]);
}
