//! Opening, validating, reading and writing the state file.

use crate::layout::*;
use crate::Error;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};

/// The directory of the state file: `$GENV_TMPDIR`, default `/var/tmp/genv`.
pub fn state_dir() -> PathBuf {
    match std::env::var_os("GENV_TMPDIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from("/var/tmp/genv"),
    }
}

/// The state file's path inside [`state_dir`].
pub fn state_path() -> PathBuf {
    state_dir().join("state.v1")
}

/// An open, mapped and validated state file.
pub struct Store {
    path: PathBuf,
    file: File,
    map: memmap2::MmapRaw,
}

/// A heap copy of the tables (they are megabytes: never on the stack).
pub struct Snapshot {
    tables: Box<Tables>,
    pub generation: u64,
}

impl std::ops::Deref for Snapshot {
    type Target = Tables;
    fn deref(&self) -> &Tables {
        &self.tables
    }
}

pub(crate) fn zeroed_tables() -> Box<Tables> {
    let layout = std::alloc::Layout::new::<Tables>();
    // SAFETY: Tables is plain data for which all-zero bytes are a valid value.
    unsafe {
        let p = std::alloc::alloc_zeroed(layout) as *mut Tables;
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(p)
    }
}

struct FlockGuard<'a>(&'a File);

impl<'a> FlockGuard<'a> {
    fn exclusive(f: &'a File) -> std::io::Result<Self> {
        loop {
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(FlockGuard(f));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Drop for FlockGuard<'_> {
    fn drop(&mut self) {
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::State(format!("cannot {what} {}: {e}", path.display()))
}

impl Store {
    /// Opens the state file of this machine, creating it (and its directory) when missing.
    pub fn open() -> Result<Store, Error> {
        Self::open_at(&state_path(), true)
    }

    /// Opens the state file at `path`; creates it when `create` and it does not exist.
    pub fn open_at(path: &Path, create: bool) -> Result<Store, Error> {
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                Self::create(path)?;
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(path)
                    .map_err(|e| io_err(path, "open", e))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::State(format!(
                    "state file {} does not exist; run `genv activate` to create it",
                    path.display()
                )))
            }
            Err(e) => return Err(io_err(path, "open", e)),
        };
        let len = file.metadata().map_err(|e| io_err(path, "read", e))?.len() as usize;
        let way_out = format!(
            "remove it (rm {}) to start afresh; this forgets every environment on this machine",
            path.display()
        );
        if len < HEADER_SIZE {
            return Err(Error::State(format!(
                "state file {} is truncated ({len} bytes); {way_out}",
                path.display()
            )));
        }
        let map = memmap2::MmapOptions::new()
            .len(len)
            .map_raw(&file)
            .map_err(|e| io_err(path, "map", e))?;
        // SAFETY: the mapping is at least HEADER_SIZE bytes; Header is plain data.
        let h = unsafe { &*(map.as_ptr() as *const Header) };
        if h.magic != MAGIC {
            return Err(Error::State(format!(
                "{} is not a genv state file; {way_out}",
                path.display()
            )));
        }
        if h.version != VERSION {
            let who = if h.version < VERSION {
                "an older"
            } else {
                "a newer"
            };
            return Err(Error::State(format!(
                "state file {} was written by {who} genv (format {}, this genv reads format {VERSION}); \
                 deactivate its environments with that genv, or {way_out}",
                path.display(),
                h.version
            )));
        }
        if h.file_size as usize != FILE_SIZE
            || len < FILE_SIZE
            || h.tables_size as usize != TABLES_SIZE
            || h.ledger_size as usize != LEDGER_SIZE
            || h.max_envs as usize != MAX_ENVS
            || h.max_devices as usize != MAX_DEVICES
            || h.max_procs as usize != MAX_PROCS
            || h.max_pids as usize != MAX_PIDS
        {
            return Err(Error::State(format!(
                "state file {} is truncated or has an unexpected layout ({len} bytes, expected {FILE_SIZE}); {way_out}",
                path.display()
            )));
        }
        Ok(Store {
            path: path.to_path_buf(),
            file,
            map,
        })
    }

    /// Creates a fresh file beside the target and renames it into place, so that no process
    /// ever sees a half-initialised file; readable and writable by every user (see ARCHITECTURE.md).
    fn create(path: &Path) -> Result<(), Error> {
        let dir = path.parent().unwrap_or(Path::new("."));
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| io_err(dir, "create directory", e))?;
            // Shared by all users like /tmp; chmod because umask narrows mkdir's mode.
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777));
        }
        let tmp = dir.join(format!(".state.v1.{}.tmp", std::process::id()));
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o666)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, "create", e))?;
        let result = (|| -> std::io::Result<()> {
            f.set_permissions(std::fs::Permissions::from_mode(0o666))?;
            f.set_len(FILE_SIZE as u64)?;
            let map = memmap2::MmapOptions::new().len(HEADER_SIZE).map_raw(&f)?;
            // SAFETY: fresh zeroed file of at least HEADER_SIZE bytes, not shared yet.
            let h = unsafe { &mut *(map.as_ptr() as *mut Header) };
            h.version = VERSION;
            h.header_size = HEADER_SIZE as u32;
            h.file_size = FILE_SIZE as u64;
            h.max_devices = MAX_DEVICES as u32;
            h.max_envs = MAX_ENVS as u32;
            h.max_pids = MAX_PIDS as u32;
            h.max_procs = MAX_PROCS as u32;
            h.tables_size = TABLES_SIZE as u64;
            h.ledger_size = LEDGER_SIZE as u64;
            fence(Ordering::SeqCst);
            h.magic = MAGIC;
            map.flush()?;
            // link() fails if another process created the file first: then theirs stands.
            match std::fs::hard_link(&tmp, path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(e),
            }
        })();
        let _ = std::fs::remove_file(&tmp);
        result.map_err(|e| io_err(path, "create", e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: validated in open_at.
        unsafe { &*(self.map.as_ptr() as *const Header) }
    }

    fn tables_ptr(&self, which: usize) -> *mut Tables {
        // SAFETY: offsets lie inside the validated mapping.
        unsafe { self.map.as_mut_ptr().add(TABLES_OFFSET[which & 1]) as *mut Tables }
    }

    pub fn ledger(&self) -> &Ledger {
        // SAFETY: inside the validated mapping; Ledger is atomics only.
        unsafe { &*(self.map.as_ptr().add(LEDGER_OFFSET) as *const Ledger) }
    }

    /// The write generation: changes whenever the tables change. One atomic load.
    pub fn generation(&self) -> u64 {
        self.header().generation.load(Ordering::Acquire)
    }

    /// A consistent copy of the current tables, without taking any lock.
    pub fn snapshot(&self) -> Snapshot {
        let mut out = zeroed_tables();
        self.snapshot_into(&mut out);
        let g = self.generation();
        Snapshot {
            tables: out,
            generation: g,
        }
    }

    /// Copies the active tables into `out` (a seqlock read: retried while a writer overtakes us).
    pub fn snapshot_into(&self, out: &mut Tables) -> u64 {
        let h = self.header();
        loop {
            let g1 = h.generation.load(Ordering::SeqCst);
            let which = h.active.load(Ordering::SeqCst) as usize;
            let src = self.tables_ptr(which);
            // SAFETY: src points at a Tables in the mapping; we copy raw bytes and only trust
            // them if no writer could have started on this copy meanwhile (checked below).
            let ok = unsafe {
                let hwm = std::ptr::read_volatile(std::ptr::addr_of!((*src).env_hwm)) as usize;
                let len = tables_prefix_len(hwm.min(MAX_ENVS));
                std::ptr::copy_nonoverlapping(src as *const u8, out as *mut Tables as *mut u8, len);
                let rest = std::mem::size_of::<Tables>() - len;
                std::ptr::write_bytes((out as *mut Tables as *mut u8).add(len), 0, rest);
                fence(Ordering::SeqCst);
                let g2 = h.generation.load(Ordering::SeqCst);
                // A writer bumps the generation once when it starts and once after its flip; our
                // copy can only have been overwritten after a flip *and* a later start.
                g2.wrapping_sub(g1) <= 1
            };
            if ok {
                return g1;
            }
            std::hint::spin_loop();
        }
    }

    /// Runs `f` on a private copy of the tables under the writers' lock and makes the result
    /// current only when `f` returns `Ok`: an error leaves the state exactly as it was.
    pub fn transaction<T>(
        &self,
        f: impl FnOnce(&mut Tables) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let _g = FlockGuard::exclusive(&self.file).map_err(|e| io_err(&self.path, "lock", e))?;
        let h = self.header();
        let cur = h.active.load(Ordering::SeqCst) as usize & 1;
        let next = cur ^ 1;
        h.generation.fetch_add(1, Ordering::SeqCst);
        // SAFETY: only the flock holder writes the inactive copy.
        let dst = unsafe { &mut *self.tables_ptr(next) };
        unsafe {
            let src = self.tables_ptr(cur);
            let hwm = ((*src).env_hwm as usize).min(MAX_ENVS);
            let old_hwm = (dst.env_hwm as usize).min(MAX_ENVS);
            std::ptr::copy_nonoverlapping(
                src as *const u8,
                dst as *mut Tables as *mut u8,
                tables_prefix_len(hwm),
            );
            // Slots past the hwm must be free in the copy too.
            for e in &mut dst.envs[hwm..old_hwm.max(hwm)] {
                e.serial = 0;
            }
        }
        match f(dst) {
            Ok(v) => {
                // Keep the hwm tight so readers copy little.
                let mut hwm = (dst.env_hwm as usize).min(MAX_ENVS);
                while hwm > 0 && !dst.envs[hwm - 1].is_used() {
                    hwm -= 1;
                }
                dst.env_hwm = hwm as u32;
                fence(Ordering::SeqCst);
                h.active.store(next as u32, Ordering::SeqCst);
                h.generation.fetch_add(1, Ordering::SeqCst);
                Ok(v)
            }
            Err(e) => {
                h.generation.fetch_add(1, Ordering::SeqCst);
                Err(e)
            }
        }
    }
}
