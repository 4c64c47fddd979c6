//! The state decoder against arbitrary bytes: whatever a flipped bit or a hostile edit leaves in
//! the tables and the header, opening the file, reading it (snapshots, `envs`, `devices`) and
//! writing it (attach, detach, config, activate) never panic and never index out of bounds; a
//! bad header is refused. `PROPTEST_CASES` sets the number of cases (256 by default).

use genv_state::devices::Gpu;
use genv_state::layout::*;
use genv_state::{Caller, Capacity, Config, DeviceCount, EnvId, Genv, Input, Name, Store, Whole};
use proptest::prelude::*;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;

fn gpus() -> Vec<Gpu> {
    (0..4)
        .map(|i| Gpu {
            index: i,
            uuid: format!("GPU-{i:08x}-fuzz"),
            name: "Fuzz GPU".into(),
            total_memory: 16 << 30,
        })
        .collect()
}

fn dir() -> PathBuf {
    std::env::temp_dir().join(format!("genv-decoder-fuzz-{}", std::process::id()))
}

/// The bytes of a state file with a few environments, made once; each case starts from them,
/// in a file of its test's own (`name`), written back whole.
fn pristine(name: &str) -> (PathBuf, &'static [u8]) {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    let bytes = P.get_or_init(|| {
        let dir = dir();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("made.v1");
        let g = Genv::with_store(Store::open_at(&path, true).unwrap());
        let me = Caller::current();
        let pid = std::process::id();
        let gpus = gpus();
        for (i, n) in [1u32, 2, 0].iter().enumerate() {
            let c = Config {
                name: Some(Name::parse(&format!("env{i}")).unwrap()),
                gpus: Some(DeviceCount::from_int(i64::from(*n)).unwrap()),
                gpu_memory: Some(Capacity::parse("2g").unwrap()),
            };
            let eid = EnvId::parse(&format!("e{i}")).unwrap();
            g.activate(&me, &eid, pid, &c, Some((&gpus, i == 2)))
                .unwrap();
        }
        drop(g);
        std::fs::read(&path).unwrap()
    });
    let dir = dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.v2");
    std::fs::write(&path, bytes).unwrap();
    (path, bytes)
}

/// Offsets worth flipping: anywhere in the header and in the used part of both table copies.
fn offset() -> impl Strategy<Value = u64> {
    let used = tables_prefix_len(4) as u64;
    prop_oneof![
        1 => 0..HEADER_SIZE as u64,
        4 => (0..used).prop_map(|o| TABLES_OFFSET[0] as u64 + o),
        4 => (0..used).prop_map(|o| TABLES_OFFSET[1] as u64 + o),
        1 => (0..TABLES_SIZE as u64).prop_map(|o| TABLES_OFFSET[0] as u64 + o),
    ]
}

fn exercise(path: &std::path::Path) {
    let Ok(store) = Store::open_at(path, false) else {
        return;
    };
    let snap = store.snapshot();
    for (_, e) in snap.envs() {
        let _ = (
            e.eid(),
            e.name(),
            e.username(),
            e.pids(),
            e.attached(),
            e.gpus(),
        );
    }
    for d in snap.devices() {
        let _ = (d.uuid(), d.name());
    }
    let g = Genv::with_store(store);
    let me = Caller::current();
    let gpus = gpus();
    let _ = g.envs();
    let _ = g.devices();
    for eid in ["e0", "e1", "e2"] {
        let _ = g.env(eid);
        let _ = g.attach(&me, eid, &gpus, None, false);
        let _ = g.attach(&me, eid, &gpus, Some(3), true);
        let _ = g.detach(&me, eid, Some(1));
        let _ = g.set_config(&me, eid, &Config::default());
    }
    let _ = g.activate(
        &me,
        &EnvId::parse("fresh").unwrap(),
        std::process::id(),
        &Config {
            gpus: DeviceCount::parse("2").ok(),
            ..Config::default()
        },
        Some((&gpus, false)),
    );
    let _ = g.refresh_devices(&gpus[..2]);
    let _ = g.envs();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn flipped_bytes_never_panic(flips in proptest::collection::vec((offset(), 1u8..=255), 1..48)) {
        let (path, bytes) = pristine("flips");
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        for (off, x) in &flips {
            f.write_all_at(&[bytes[*off as usize] ^ x], *off).unwrap();
        }
        exercise(&path);
    }

    #[test]
    fn random_tables_never_panic(seed in any::<u64>(), n_devices in any::<u32>(), hwm in any::<u32>()) {
        // Whole records of noise, with the counts that bound everything set to anything.
        let (path, _) = pristine("noise");
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let mut x = seed | 1;
        let mut noise = vec![0u8; tables_prefix_len(8)];
        for b in noise.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let which = (seed as usize) & 1;
        let base = TABLES_OFFSET[which] as u64;
        f.write_all_at(&noise, base).unwrap();
        f.write_all_at(&n_devices.to_ne_bytes(), base + std::mem::offset_of!(Tables, n_devices) as u64).unwrap();
        f.write_all_at(&hwm.to_ne_bytes(), base + std::mem::offset_of!(Tables, env_hwm) as u64).unwrap();
        f.write_all_at(&(which as u32).to_ne_bytes(), std::mem::offset_of!(Header, active) as u64).unwrap();
        exercise(&path);
    }

    #[test]
    fn bytes_flipped_while_in_use_never_panic(seed in any::<u64>()) {
        // A hostile user editing the shared file while genv reads and writes it.
        let (path, bytes) = pristine("live");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flipper = {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                let used = tables_prefix_len(4) as u64;
                let mut x = seed | 1;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let off = TABLES_OFFSET[(x >> 63) as usize] as u64 + x % used;
                    let _ = f.write_all_at(&[bytes[off as usize] ^ (x >> 40) as u8 | 1], off);
                }
            })
        };
        exercise(&path);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        flipper.join().unwrap();
    }
}
