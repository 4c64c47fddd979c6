//! The state file under concurrency and crashes: transactions are all-or-nothing, readers never
//! see a torn copy, and the ledger never lets an environment pass its capacity.

use genv_state::layout::*;
use genv_state::ledger::{self, ProcHandle, Reserve};
use genv_state::{Error, Store};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// This process's own ledger in `s`'s directory (made when missing).
fn own(s: &Store) -> ledger::LedgerFile {
    s.ledger(
        genv_state::procfs::current_uid(),
        ledger::Access::Map,
        ledger::Create::Own,
    )
    .unwrap()
}

fn tmp_store() -> (tempdir::Dir, Store) {
    let d = tempdir::Dir::new();
    let s = Store::open_at(&d.0.join("state.v2"), true).unwrap();
    (d, s)
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "genv-state-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[test]
fn failed_transaction_changes_nothing() {
    let (_d, s) = tmp_store();
    s.transaction(|t| {
        t.next_serial = 7;
        Ok(())
    })
    .unwrap();
    let r: Result<(), Error> = s.transaction(|t| {
        t.next_serial = 99;
        Err(Error::Input("no".into()))
    });
    assert!(r.is_err());
    assert_eq!(s.snapshot().next_serial, 7);
}

#[test]
fn readers_never_see_a_torn_copy() {
    let (_d, s) = tmp_store();
    let s = Arc::new(s);
    let stop = Arc::new(AtomicBool::new(false));
    // The writer keeps every env's name equal to next_serial: a torn read would mix values.
    let w = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                s.transaction(|t| {
                    t.next_serial = k;
                    for i in 0..64 {
                        t.envs[i].serial = 1 + i as u64;
                        put_str(&mut t.envs[i].name, &k.to_string());
                    }
                    t.env_hwm = 64;
                    Ok(())
                })
                .unwrap();
            }
        })
    };
    let mut checked = 0;
    for _ in 0..3000 {
        let snap = s.snapshot();
        if snap.next_serial == 0 {
            continue;
        }
        let want = snap.next_serial.to_string();
        for (_, e) in snap.envs() {
            assert_eq!(e.name(), want);
        }
        checked += 1;
    }
    stop.store(true, Ordering::Relaxed);
    w.join().unwrap();
    assert!(checked > 0);
}

#[test]
fn bad_files_are_refused_with_the_way_out() {
    let d = tempdir::Dir::new();
    let p = d.0.join("state.v2");
    // Missing and not to be created.
    let e = Store::open_at(&p, false).err().unwrap().to_string();
    assert!(e.contains("does not exist"), "{e}");
    // Truncated.
    std::fs::write(&p, b"GENV").unwrap();
    let e = Store::open_at(&p, true).err().unwrap().to_string();
    assert!(
        e.contains("truncated") && e.contains(p.to_str().unwrap()) && e.contains("rm "),
        "{e}"
    );
    // Foreign.
    std::fs::write(&p, vec![0xab; 8192]).unwrap();
    let e = Store::open_at(&p, true).err().unwrap().to_string();
    assert!(e.contains("not a genv state file"), "{e}");
    assert_eq!(
        std::fs::read(&p).unwrap(),
        vec![0xab; 8192],
        "left untouched"
    );
    // Older version.
    std::fs::remove_file(&p).unwrap();
    drop(Store::open_at(&p, true).unwrap());
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[8..12].copy_from_slice(&0u32.to_le_bytes());
    std::fs::write(&p, &bytes).unwrap();
    let e = Store::open_at(&p, true).err().unwrap().to_string();
    assert!(e.contains("older genv"), "{e}");
}

#[test]
fn file_is_shared_by_all_users() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempdir::Dir::new();
    let dir = d.0.join("sub");
    let old = unsafe { libc::umask(0o077) };
    let r = Store::open_at(&dir.join("state.v2"), true);
    unsafe { libc::umask(old) };
    r.unwrap();
    let m = std::fs::metadata(dir.join("state.v2"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(m & 0o777, 0o666);
    let m = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(m & 0o7777, 0o1777);
}

#[test]
fn threads_never_pass_the_cap() {
    let (_d, s) = tmp_store();
    let s = Arc::new(own(&s));
    ledger::reset_env(&s, 3, 42).unwrap();
    let cap = 1000u64;
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                let h = ProcHandle::claim(&s, 3, 42).unwrap();
                let mut got = 0u64;
                for _ in 0..500 {
                    if h.reserve(&s, 1, 7, cap) == Reserve::Ok {
                        got += 7;
                        assert!(ledger::env_used(&s, 3, 42, 1) <= cap);
                    }
                }
                (h, got)
            })
        })
        .collect();
    let results: Vec<(ProcHandle, u64)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let total: u64 = results.iter().map(|r| r.1).sum();
    assert_eq!(total, ledger::env_used(&s, 3, 42, 1));
    assert!(total <= cap && total > cap - 7);
    for (h, got) in results {
        h.release(&s, 1, got);
    }
    assert_eq!(ledger::env_used(&s, 3, 42, 1), 0);
}

#[test]
fn a_killed_process_gives_its_memory_back() {
    let (_d, store) = tmp_store();
    let s = own(&store);
    ledger::reset_env(&s, 0, 9).unwrap();
    let mut fds = [0i32; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // Child: take 600 bytes and wait to be killed.
        let s = own(&Store::open_at(store.path(), false).unwrap());
        let h = ProcHandle::claim(&s, 0, 9).unwrap();
        let ok = h.reserve(&s, 0, 600, 1000) == Reserve::Ok;
        unsafe {
            libc::write(fds[1], [ok as u8].as_ptr() as *const _, 1);
            libc::pause();
            libc::_exit(0);
        }
    }
    let mut b = [0u8; 1];
    assert_eq!(
        unsafe { libc::read(fds[0], b.as_mut_ptr() as *mut _, 1) },
        1
    );
    assert_eq!(b[0], 1);
    assert_eq!(ledger::env_used(&s, 0, 9, 0), 600);
    assert_eq!(ledger::env_processes(&s, 9).len(), 1);
    let h = ProcHandle::claim(&s, 0, 9).unwrap();
    assert!(matches!(h.reserve(&s, 0, 600, 1000), Reserve::OverCap(600)));
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    let live: Vec<u32> = ledger::env_processes(&s, 9).iter().map(|p| p.0).collect();
    assert_eq!(live, vec![std::process::id()], "only we remain");
    assert_eq!(ledger::reap_dead(&s, Some(9)), 1);
    assert_eq!(ledger::env_used(&s, 0, 9, 0), 0);
    assert_eq!(h.reserve(&s, 0, 600, 1000), Reserve::Ok);
}

#[test]
fn processes_race_for_the_cap() {
    // 6 processes each try to take 600 of a 1000 cap, many times: at most one holds it at once.
    let (_d, store) = tmp_store();
    let s = own(&store);
    ledger::reset_env(&s, 1, 5).unwrap();
    let mut kids = Vec::new();
    for _ in 0..6 {
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = std::panic::catch_unwind(|| {
                let s = own(&Store::open_at(store.path(), false).unwrap());
                let h = ProcHandle::claim(&s, 1, 5).unwrap();
                for _ in 0..2000 {
                    if h.reserve(&s, 2, 600, 1000) == Reserve::Ok {
                        if ledger::env_used(&s, 1, 5, 2) > 1000 {
                            return 1;
                        }
                        h.release(&s, 2, 600);
                    }
                }
                0
            })
            .unwrap_or(2);
            unsafe { libc::_exit(code) };
        }
        kids.push(pid);
    }
    for pid in kids {
        let mut st = 0;
        unsafe { libc::waitpid(pid, &mut st, 0) };
        assert!(
            libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
            "status {st}"
        );
    }
    assert_eq!(ledger::env_used(&s, 1, 5, 2), 0);
}
