//! The memory ledger: what the processes of each environment hold on each device, updated in
//! place with atomics and no lock, so that the capacity is enforced across processes in O(1).
//!
//! One file per user, `<state dir>/ledger/<uid>`, owned by that user: a user's processes write
//! only their own accounting (in system mode nobody else can even read it: 0600).
//!
//! - `EnvUsage[env].used[dev]` is the environment's total. A reservation is a compare-and-swap
//!   loop that never lets it pass the capacity, so no interleaving of processes can exceed it.
//! - Each process owns a process slot with its own share; it holds an open-file-description
//!   lock on the slot's byte (past the end of the file). The kernel drops that lock when the
//!   process dies, however it dies, so a dead owner is recognised without trusting pids.
//! - Reaping a dead slot subtracts its shares from its environment exactly once: the reaper must
//!   win a compare-and-swap of the slot's pid to 0 first.
//!
//! A ledger is mapped (for the atomics) only by processes that may write it: its owner's (and
//! root's in the shared mode). Everyone else reads it with `pread`: a file its owner may shrink
//! never faults in another user's process, or in the service.

use crate::fsafe::{Dir, OpenError};
use crate::layout::*;
use crate::store::ofd_lock;
use crate::Error;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How a ledger is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Mapped, for the atomics: by processes that may write it and whose own it is to shrink.
    Map,
    /// Written with `pwrite`, never mapped: the service, in files users own.
    Write,
    /// Read with `pread`.
    Read,
}

/// How a missing ledger is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    No,
    /// The caller's own, readable by all (the shared mode).
    Own,
    /// For user `uid` by the service (root): owned by them, private to them.
    ForUser {
        uid: u32,
        gid: u32,
    },
}

/// Mode of a ledger in the shared mode: others may read what a user's environments hold.
const SHARED_LEDGER_MODE: u32 = 0o644;
/// Mode of a ledger in system mode: its owner's alone.
const SYSTEM_LEDGER_MODE: u32 = 0o600;

/// One user's ledger file.
pub struct LedgerFile {
    uid: u32,
    path: PathBuf,
    file: File,
    /// Mapped when this process may write the file.
    map: Option<memmap2::MmapRaw>,
    /// Device and inode, to reopen exactly this file (process slots' locks).
    id: (u64, u64),
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::State(format!("cannot {what} {}: {e}", path.display()))
}

/// The file name of `uid`'s ledger.
pub fn file_name(uid: u32) -> String {
    uid.to_string()
}

impl LedgerFile {
    /// Opens `uid`'s ledger in the ledger directory `dir` for `access`, creating it as `create`
    /// says when missing.
    pub fn open(dir: &Dir, uid: u32, access: Access, create: Create) -> Result<LedgerFile, Error> {
        let write = access != Access::Read;
        let name = file_name(uid);
        let path = dir.path().join(&name);
        let mut made = false;
        let file = loop {
            match dir.open_file(&name, write) {
                Ok(f) => break f,
                Err(OpenError::Missing) if create != Create::No && !made => {
                    Self::create(dir, &name, &path, uid, create)?;
                    made = true;
                }
                Err(OpenError::Missing) => {
                    return Err(Error::State(format!(
                        "the memory ledger {} does not exist",
                        path.display()
                    )))
                }
                Err(OpenError::NotRegular(what)) => {
                    return Err(Error::State(format!(
                        "{} is {what}, not a genv ledger, and genv does not open it",
                        path.display()
                    )))
                }
                Err(OpenError::Denied(e)) | Err(OpenError::Io(e)) => {
                    return Err(io_err(&path, "open", e))
                }
            }
        };
        let st = rustix::fs::fstat(&file).map_err(|e| {
            io_err(
                &path,
                "read",
                std::io::Error::from_raw_os_error(e.raw_os_error()),
            )
        })?;
        // A file under another user's number is not that user's ledger (planted in the shared
        // mode's directory): nothing in it is believed.
        if st.st_uid != uid {
            return Err(Error::State(format!(
                "{} belongs to uid {}, not to {uid} whose ledger it should be; remove it (rm {})",
                path.display(),
                st.st_uid,
                path.display()
            )));
        }
        if (st.st_size as usize) < LEDGER_FILE_SIZE {
            return Err(Error::State(format!(
                "the memory ledger {} is truncated ({} bytes, expected {LEDGER_FILE_SIZE}); remove it (rm {})",
                path.display(),
                st.st_size,
                path.display()
            )));
        }
        let mut h = [0u8; std::mem::size_of::<LedgerHeader>()];
        file.read_exact_at(&mut h, 0)
            .map_err(|e| io_err(&path, "read", e))?;
        // SAFETY: LedgerHeader is plain integers; any bytes are a value (checked below).
        let h: LedgerHeader =
            unsafe { std::ptr::read_unaligned(h.as_ptr() as *const LedgerHeader) };
        if h.magic != LEDGER_MAGIC
            || h.version != LEDGER_VERSION
            || h.uid != uid
            || h.file_size as usize != LEDGER_FILE_SIZE
            || h.max_envs as usize != MAX_ENVS
            || h.max_procs as usize != MAX_PROCS
            || h.max_devices as usize != MAX_DEVICES
        {
            return Err(Error::State(format!(
                "{} is not a genv memory ledger of this version (or of uid {uid}); remove it (rm {})",
                path.display(),
                path.display()
            )));
        }
        let map = if access == Access::Map {
            let mut opts = memmap2::MmapOptions::new();
            opts.offset(LEDGER_HEADER_SIZE as u64).len(LEDGER_SIZE);
            Some(opts.map_raw(&file).map_err(|e| io_err(&path, "map", e))?)
        } else {
            None
        };
        Ok(LedgerFile {
            uid,
            path,
            file,
            map,
            id: (st.st_dev, st.st_ino),
        })
    }

    /// Makes a fully allocated, initialised ledger (see `store::create_whole`).
    fn create(dir: &Dir, name: &str, path: &Path, uid: u32, how: Create) -> Result<(), Error> {
        let (mode, owner) = match how {
            Create::ForUser { uid, gid } => (SYSTEM_LEDGER_MODE, Some((uid, gid))),
            _ => (SHARED_LEDGER_MODE, None),
        };
        let h = LedgerHeader {
            magic: LEDGER_MAGIC,
            version: LEDGER_VERSION,
            uid,
            file_size: LEDGER_FILE_SIZE as u64,
            max_envs: MAX_ENVS as u32,
            max_procs: MAX_PROCS as u32,
            max_devices: MAX_DEVICES as u32,
            _pad: 0,
        };
        crate::store::create_whole(
            dir,
            name,
            path,
            mode,
            owner,
            LEDGER_FILE_SIZE,
            crate::store::plain_bytes(&h),
        )
    }

    pub fn uid(&self) -> u32 {
        self.uid
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this process maps the file (and may book memory in it).
    pub fn writable(&self) -> bool {
        self.map.is_some()
    }

    fn mapped(&self) -> Option<&Ledger> {
        // SAFETY: the mapping is LEDGER_SIZE bytes (checked against the file's size at open), the
        // Ledger is atomics only, and it lives as long as `self`.
        self.map
            .as_ref()
            .map(|m| unsafe { &*(m.as_ptr() as *const Ledger) })
    }

    /// Reads a plain-data value at `off` in the ledger (past the header), without a mapping.
    fn read<T: Copy>(&self, off: usize) -> Option<T> {
        let mut buf = vec![0u8; std::mem::size_of::<T>()];
        self.file
            .read_exact_at(&mut buf, (LEDGER_HEADER_SIZE + off) as u64)
            .ok()?;
        // SAFETY: T is plain integers (the callers' types), any bytes are a value.
        Some(unsafe { std::ptr::read_unaligned(buf.as_ptr() as *const T) })
    }

    /// A new open file description of this very file, for a process slot's lock.
    fn reopen(&self) -> Option<File> {
        let same = |f: &File| {
            rustix::fs::fstat(f)
                .ok()
                .is_some_and(|st| (st.st_dev, st.st_ino) == self.id)
        };
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
            .ok()?;
        // close-on-exec: the lock must live exactly as long as this process.
        let _ = rustix::io::fcntl_setfd(&f, rustix::io::FdFlags::CLOEXEC);
        same(&f).then_some(f)
    }
}

fn slot_lock(f: &File, cmd: i32, ty: i32, slot: usize) -> Option<libc::flock> {
    ofd_lock(f, cmd, ty, PROC_LOCK_BASE + slot as i64)
}

/// Whether process slot `i` of `lf` is owned by a live process (it holds the slot's lock).
pub fn slot_alive(lf: &LedgerFile, i: usize) -> bool {
    match slot_lock(&lf.file, libc::F_OFD_GETLK, libc::F_WRLCK, i) {
        Some(fl) => fl.l_type as i32 != libc::F_UNLCK,
        None => false,
    }
}

/// A process slot in use: (slot, pid, environment serial).
pub type Slot = (usize, u32, u64);

/// The slots of `lf` with a pid, alive or not (mapped: atomics; else two reads).
fn used_slots(lf: &LedgerFile) -> Vec<Slot> {
    match lf.mapped() {
        Some(l) => (0..MAX_PROCS)
            .filter_map(|i| {
                let pid = l.procs.pid[i].load(Ordering::Acquire);
                (pid != 0).then(|| (i, pid, l.procs.env_serial[i].load(Ordering::Acquire)))
            })
            .collect(),
        None => {
            let base = std::mem::offset_of!(Ledger, procs);
            let pids: Option<[u32; MAX_PROCS]> = lf.read(base + std::mem::offset_of!(Procs, pid));
            let serials: Option<[u64; MAX_PROCS]> =
                lf.read(base + std::mem::offset_of!(Procs, env_serial));
            let (Some(pids), Some(serials)) = (pids, serials) else {
                return Vec::new();
            };
            (0..MAX_PROCS)
                .filter(|&i| pids[i] != 0)
                .map(|i| (i, pids[i], serials[i]))
                .collect()
        }
    }
}

/// The live process slots of `lf`.
pub fn live_slots(lf: &LedgerFile) -> Vec<Slot> {
    used_slots(lf)
        .into_iter()
        .filter(|&(i, _, _)| slot_alive(lf, i))
        .collect()
}

/// What process slot `i` holds per device.
fn slot_used(lf: &LedgerFile, i: usize) -> [u64; MAX_DEVICES] {
    match lf.mapped() {
        Some(l) => std::array::from_fn(|d| l.procs.used[i][d].load(Ordering::Acquire)),
        None => {
            let off = std::mem::offset_of!(Ledger, procs)
                + std::mem::offset_of!(Procs, used)
                + i * std::mem::size_of::<[u64; MAX_DEVICES]>();
            lf.read(off).unwrap_or([0; MAX_DEVICES])
        }
    }
}

/// Returns a dead slot's shares to its environment, once. Returns true if this call reaped it.
fn reap_slot(l: &Ledger, i: usize, pid: u32) -> bool {
    let p = &l.procs;
    let env_slot = p.env_slot[i].load(Ordering::Acquire) as usize;
    let serial = p.env_serial[i].load(Ordering::Acquire);
    let shares: [u64; MAX_DEVICES] = std::array::from_fn(|d| p.used[i][d].load(Ordering::Acquire));
    if p.pid[i]
        .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return false;
    }
    if env_slot < MAX_ENVS {
        let e = &l.envs[env_slot];
        if e.serial.load(Ordering::Acquire) == serial {
            for (d, &b) in shares.iter().enumerate() {
                if b > 0 {
                    let _ = e.used[d].fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                        Some(v.saturating_sub(b))
                    });
                }
            }
        }
    }
    for u in &p.used[i] {
        u.store(0, Ordering::Release);
    }
    true
}

/// Reaps every dead process slot of `lf` (of environment `serial` only, when given). A scan of
/// the dense pid array: for the CLI, the shim's out-of-memory slow path and its memory reports
/// (at most every so often), never per allocation. Only a mapped (writable) ledger is reaped.
pub fn reap_dead(lf: &LedgerFile, serial: Option<u64>) -> usize {
    let Some(l) = lf.mapped() else {
        return 0;
    };
    let mut n = 0;
    for (i, pid, s) in used_slots(lf) {
        if serial.is_some_and(|want| want != s) {
            continue;
        }
        if !slot_alive(lf, i) && reap_slot(l, i, pid) {
            n += 1;
        }
    }
    n
}

/// Live processes registered by the shim for environment `serial`, as (pid, bytes per device).
pub fn env_processes(lf: &LedgerFile, serial: u64) -> Vec<(u32, [u64; MAX_DEVICES])> {
    live_slots(lf)
        .into_iter()
        .filter(|&(_, _, s)| s == serial)
        .map(|(i, pid, _)| (pid, slot_used(lf, i)))
        .collect()
}

/// Starts the usage of environment slot `slot` afresh for the environment of `serial` (called
/// by the writer that creates the environment, in its owner's ledger).
pub fn reset_env(lf: &LedgerFile, slot: usize, serial: u64) -> Result<(), Error> {
    if slot >= MAX_ENVS {
        return Ok(());
    }
    if let Some(l) = lf.mapped() {
        let e = &l.envs[slot];
        e.serial.store(0, Ordering::Release);
        for u in &e.used {
            u.store(0, Ordering::Release);
        }
        e.serial.store(serial, Ordering::Release);
        return Ok(());
    }
    // The service writes users' ledgers without mapping them: nobody uses a new environment's
    // entry yet, so plain writes do (serial last, so that no process takes stale totals).
    let off = (LEDGER_HEADER_SIZE + slot * std::mem::size_of::<EnvUsage>()) as u64;
    let zeros = [0u8; std::mem::size_of::<EnvUsage>()];
    lf.file
        .write_all_at(&zeros, off)
        .and_then(|_| lf.file.write_all_at(&serial.to_ne_bytes(), off))
        .map_err(|e| io_err(&lf.path, "write", e))
}

/// The environment's use of NVML device `dev`: its counter in a mapped ledger (dead processes
/// reaped by the caller first), else what its live processes hold.
pub fn env_used(lf: &LedgerFile, slot: usize, serial: u64, dev: usize) -> u64 {
    if slot >= MAX_ENVS || dev >= MAX_DEVICES {
        return 0;
    }
    match lf.mapped() {
        Some(l) => {
            let e = &l.envs[slot];
            if e.serial.load(Ordering::Acquire) != serial {
                return 0;
            }
            e.used[dev].load(Ordering::Acquire)
        }
        None => env_processes(lf, serial).iter().map(|(_, u)| u[dev]).sum(),
    }
}

/// A process's membership in a ledger: its slot, held until the process exits (or `drop`).
pub struct ProcHandle {
    fd: File,
    slot: usize,
    env_slot: usize,
    serial: u64,
}

/// Outcome of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserve {
    Ok,
    /// Would pass the capacity; carries the environment's current use.
    OverCap(u64),
}

impl ProcHandle {
    /// Claims a free (or dead) process slot of mapped ledger `lf` for this process in
    /// environment (`env_slot`, `serial`). Its own open file description of the file holds the
    /// slot's lock, close-on-exec, so that the lock lives exactly as long as this process (a
    /// forked child must drop it: see `forget`).
    pub fn claim(lf: &LedgerFile, env_slot: usize, serial: u64) -> Option<ProcHandle> {
        if env_slot >= MAX_ENVS {
            return None;
        }
        let l = lf.mapped()?;
        let fd = lf.reopen()?;
        let pid = std::process::id();
        // Start at a pid-dependent place so that concurrent claimers rarely collide; free slots
        // first, then slots whose owner may have died.
        let start = (pid as usize).wrapping_mul(2_654_435_761) % MAX_PROCS;
        for pass in 0..2 {
            for k in 0..MAX_PROCS {
                let i = (start + k) % MAX_PROCS;
                let old = l.procs.pid[i].load(Ordering::Acquire);
                if (pass == 0) != (old == 0) {
                    continue;
                }
                if slot_lock(&fd, libc::F_OFD_SETLK, libc::F_WRLCK, i).is_none() {
                    continue;
                }
                // We own the byte: the previous owner, if any, is dead. Give its shares back.
                if old != 0 {
                    reap_slot(l, i, old);
                }
                for u in &l.procs.used[i] {
                    u.store(0, Ordering::Release);
                }
                l.procs.env_slot[i].store(env_slot as u32, Ordering::Release);
                l.procs.env_serial[i].store(serial, Ordering::Release);
                l.procs.pid[i].store(pid, Ordering::Release);
                return Some(ProcHandle {
                    fd,
                    slot: i,
                    env_slot,
                    serial,
                });
            }
        }
        None
    }

    pub fn slot(&self) -> usize {
        self.slot
    }

    fn counters<'a>(
        &self,
        lf: &'a LedgerFile,
        dev: usize,
    ) -> Option<(&'a AtomicU64, &'a AtomicU64, &'a AtomicU64)> {
        let l = lf.mapped()?;
        let env = &l.envs[self.env_slot];
        Some((&env.serial, &env.used[dev], &l.procs.used[self.slot][dev]))
    }

    /// Reserves `bytes` on device `dev` against capacity `cap` for the environment: atomic, O(1).
    pub fn reserve(&self, lf: &LedgerFile, dev: usize, bytes: u64, cap: u64) -> Reserve {
        if dev >= MAX_DEVICES {
            return Reserve::OverCap(0);
        }
        let Some((_, env, mine)) = self.counters(lf, dev) else {
            return Reserve::OverCap(0);
        };
        // The environment's total first, then our share: a process killed between the two leaves
        // those bytes counted against the environment (too strict, never too lax) until it ends.
        let r = env.fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
            let next = cur.checked_add(bytes)?;
            (next <= cap).then_some(next)
        });
        match r {
            Ok(_) => {
                mine.fetch_add(bytes, Ordering::AcqRel);
                Reserve::Ok
            }
            Err(cur) => Reserve::OverCap(cur),
        }
    }

    /// Gives back `bytes` on device `dev` (after a free, or when the driver refused).
    pub fn release(&self, lf: &LedgerFile, dev: usize, bytes: u64) {
        if dev >= MAX_DEVICES {
            return;
        }
        let Some((serial, env, mine)) = self.counters(lf, dev) else {
            return;
        };
        let sub = |v: u64| Some(v.saturating_sub(bytes));
        let _ = mine.fetch_update(Ordering::AcqRel, Ordering::Acquire, sub);
        if serial.load(Ordering::Acquire) == self.serial {
            let _ = env.fetch_update(Ordering::AcqRel, Ordering::Acquire, sub);
        }
    }

    /// What this process holds on `dev`.
    pub fn held(&self, lf: &LedgerFile, dev: usize) -> u64 {
        match (dev < MAX_DEVICES)
            .then(|| self.counters(lf, dev))
            .flatten()
        {
            Some((_, _, mine)) => mine.load(Ordering::Acquire),
            None => 0,
        }
    }

    /// In a forked child: the slot (and its lock, shared through the inherited descriptor) is the
    /// parent's. Closing our copy of the descriptor leaves the parent's lock alone.
    pub fn forget(self) {
        drop(self.fd);
    }

    /// Gives the slot back, returning what it held to the environment.
    pub fn unregister(self, lf: &LedgerFile) {
        if let Some(l) = lf.mapped() {
            reap_slot(l, self.slot, std::process::id());
        }
        drop(self.fd);
    }
}
