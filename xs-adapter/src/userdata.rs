//! libxl's userdata files: where they are, and the lock that keeps a reader from seeing a JSON
//! that libxl is rewriting.
//!
//! # Naming (libxl 4.17, `libxl__userdata_path`)
//!
//! Every file lives in `XEN_LIB_DIR` (`/var/lib/xen`) and is named
//! `userdata-<wh>.<domid>.<uuid>.<userid>`, where the uuid is the domain handle the hypervisor
//! reports:
//!
//! | file | meaning |
//! |---|---|
//! | `userdata-d.<D>.<U>.libxl-json` | the domain's configuration (JSON, then one NUL byte) |
//! | `userdata-n.<D>.<U>.libxl-json` | libxl's temporary copy, renamed onto the `d` file |
//! | `userdata-l.<D>.<U>.domain-userdata-lock` | the userdata lock file |
//!
//! # The lock protocol (`libxl__lock_file`, `libxl__unlock_file`)
//!
//! 1. `open(path, O_RDWR | O_CREAT, 0666)`;
//! 2. `flock(fd, LOCK_EX)`;
//! 3. compare `stat(path)` with `fstat(fd)`: if the path no longer names the inode that was
//!    locked (the previous holder unlinked it on release, and someone else may have created a
//!    new one), close and start again;
//! 4. release: `unlink(path)`, then `close(fd)`.
//!
//! libxl writes the JSON (temporary file, rename) only while it holds this lock, so reading the
//! data file under the lock never sees a half-done rewrite. [`UserdataLock`] follows the same
//! protocol, except that it waits a bounded time ([`LockOptions::timeout`]) instead of forever,
//! and the timeout error names the lock file.

use merge_core::xenstore::{concat, Decimal};
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// libxl's `XEN_LIB_DIR` on Debian and upstream builds.
pub const DEFAULT_DIR: &str = "/var/lib/xen";

/// The userdata id of the domain configuration.
pub const LIBXL_JSON: &str = "libxl-json";

/// The userdata id of the lock that guards the configuration.
pub const DOMAIN_USERDATA_LOCK: &str = "domain-userdata-lock";

/// `userdata-d.<domid>.<uuid>.<userid>`: a data file.
pub fn data_file_name(domid: u32, uuid: &str, userid: &str) -> String {
    concat(&["userdata-d.", Decimal::of(domid).as_str(), ".", uuid, ".", userid])
}

/// `userdata-l.<domid>.<uuid>.domain-userdata-lock`: the userdata lock file.
pub fn lock_file_name(domid: u32, uuid: &str) -> String {
    concat(&["userdata-l.", Decimal::of(domid).as_str(), ".", uuid, ".", DOMAIN_USERDATA_LOCK])
}

/// Everything that can go wrong with userdata files, each naming the file.
#[derive(Debug, thiserror::Error)]
pub enum UserdataError {
    #[error("cannot list the userdata directory {dir}: {source}")]
    ListDir { dir: PathBuf, source: io::Error },
    #[error("cannot open the userdata lock {path}: {source}")]
    LockOpen { path: PathBuf, source: io::Error },
    #[error("cannot take the userdata lock {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
    #[error(
        "the userdata lock {path} is still held after {waited:?} (libxl holds it while it rewrites the domain's JSON)"
    )]
    LockTimeout { path: PathBuf, waited: Duration },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
}

/// How [`UserdataLock::acquire`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockOptions {
    /// How long to wait for the holder to release the lock before giving up.
    pub timeout: Duration,
    /// How often to try again while the lock is held.
    pub poll: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions { timeout: Duration::from_secs(10), poll: Duration::from_millis(10) }
    }
}

/// A held userdata lock. Dropping it releases the lock the way libxl does: unlink the path,
/// then close the descriptor.
#[derive(Debug)]
pub struct UserdataLock {
    path: PathBuf,
    file: Option<File>,
}

impl UserdataLock {
    /// Takes the lock at `path` by libxl's protocol (see the module docs), waiting at most
    /// `options.timeout` for another holder.
    pub fn acquire(path: &Path, options: &LockOptions) -> Result<UserdataLock, UserdataError> {
        UserdataLock::acquire_observed(path, options, &mut || {})
    }

    /// [`UserdataLock::acquire`], calling `on_blocked` once each time an attempt finds the
    /// lock held by someone else (before waiting). Tests use it to order events without
    /// timing.
    pub fn acquire_observed(
        path: &Path,
        options: &LockOptions,
        on_blocked: &mut dyn FnMut(),
    ) -> Result<UserdataLock, UserdataError> {
        let start = Instant::now();
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o666)
                .open(path)
                .map_err(|source| UserdataError::LockOpen { path: path.to_path_buf(), source })?;
            let mut reported = false;
            loop {
                match file.try_lock() {
                    Ok(()) => break,
                    Err(TryLockError::WouldBlock) => {
                        if !reported {
                            on_blocked();
                            reported = true;
                        }
                        let waited = start.elapsed();
                        if waited >= options.timeout {
                            return Err(UserdataError::LockTimeout {
                                path: path.to_path_buf(),
                                waited: options.timeout,
                            });
                        }
                        std::thread::sleep(options.poll.min(options.timeout - waited));
                    }
                    Err(TryLockError::Error(source)) => {
                        return Err(UserdataError::Lock { path: path.to_path_buf(), source })
                    }
                }
            }
            if same_inode(path, &file).map_err(|source| UserdataError::Lock { path: path.to_path_buf(), source })? {
                return Ok(UserdataLock { path: path.to_path_buf(), file: Some(file) });
            }
            // The holder we waited for unlinked the file on release: the lock we got guards
            // nothing. Drop it and lock whatever the path names now.
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Whether `path` still names the inode open as `file`; `Ok(false)` if the path is gone.
fn same_inode(path: &Path, file: &File) -> io::Result<bool> {
    let held = file.metadata()?;
    match std::fs::metadata(path) {
        Ok(now) => Ok(now.dev() == held.dev() && now.ino() == held.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

impl Drop for UserdataLock {
    fn drop(&mut self) {
        // libxl's order: unlink while still holding the lock, then close (which unlocks).
        let _ = std::fs::remove_file(&self.path);
        drop(self.file.take());
    }
}

/// Whether to take the userdata lock when reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locking {
    /// libxl's protocol, with a bounded wait.
    Lock(LockOptions),
    /// Read without locking: for copies of a userdata directory nobody is writing (a bug
    /// report, a read-only mount).
    None,
}

/// A directory of libxl userdata files (`/var/lib/xen` on a host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserdataDir {
    dir: PathBuf,
}

impl UserdataDir {
    pub fn new(dir: impl Into<PathBuf>) -> UserdataDir {
        UserdataDir { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/userdata-d.<domid>.<uuid>.libxl-json`.
    pub fn json_path(&self, domid: u32, uuid: &str) -> PathBuf {
        self.dir.join(data_file_name(domid, uuid, LIBXL_JSON))
    }

    /// `<dir>/userdata-l.<domid>.<uuid>.domain-userdata-lock`.
    pub fn lock_path(&self, domid: u32, uuid: &str) -> PathBuf {
        self.dir.join(lock_file_name(domid, uuid))
    }

    /// The uuids `U` for which `userdata-d.<domid>.U.libxl-json` exists, sorted. Used to find a
    /// domain's file when no hypervisor says what its handle is.
    pub fn json_uuids(&self, domid: u32) -> Result<Vec<String>, UserdataError> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(|source| UserdataError::ListDir { dir: self.dir.clone(), source })?;
        let prefix = format!("userdata-d.{domid}.");
        let suffix = format!(".{LIBXL_JSON}");
        let mut uuids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| UserdataError::ListDir { dir: self.dir.clone(), source })?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(uuid) = name.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix(&suffix)) {
                if !uuid.is_empty() && !uuid.contains('.') {
                    uuids.push(uuid.to_string());
                }
            }
        }
        uuids.sort();
        Ok(uuids)
    }

    /// The bytes of the domain's `libxl-json` file, `None` if there is none, read under the
    /// userdata lock unless `locking` is [`Locking::None`].
    pub fn read_json(&self, domid: u32, uuid: &str, locking: Locking) -> Result<Option<Vec<u8>>, UserdataError> {
        match self.read_json_if_alive(domid, uuid, locking, &mut || true)? {
            JsonRead::Bytes(bytes) => Ok(Some(bytes)),
            JsonRead::Absent | JsonRead::DomainGone => Ok(None),
        }
    }

    /// [`UserdataDir::read_json`] with libxl's post-lock check (`libxl__lock_domain_userdata`):
    /// once the lock is held, `alive` says whether the domain still exists. A domain destroyed
    /// while we waited leaves a lock that guards nothing, so nothing is read
    /// ([`JsonRead::DomainGone`]). Without locking, `alive` is not asked.
    pub fn read_json_if_alive(
        &self,
        domid: u32,
        uuid: &str,
        locking: Locking,
        alive: &mut dyn FnMut() -> bool,
    ) -> Result<JsonRead, UserdataError> {
        let _lock = match locking {
            Locking::Lock(options) => {
                let lock = UserdataLock::acquire(&self.lock_path(domid, uuid), &options)?;
                if !alive() {
                    return Ok(JsonRead::DomainGone);
                }
                Some(lock)
            }
            Locking::None => None,
        };
        let path = self.json_path(domid, uuid);
        match read_without_size(&path) {
            Ok(bytes) => Ok(JsonRead::Bytes(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(JsonRead::Absent),
            Err(source) => Err(UserdataError::Read { path, source }),
        }
    }
}

/// A whole file, read until the end without asking its size first: a userdata file is a few
/// kilobytes, and the `statx` that `std::fs::read` makes for the size is one more system call
/// per domain beside the lock's six. It is read into a buffer this thread keeps and copied out
/// at its own size: a thousand fresh 8 KiB guesses were fresh pages the kernel had to clear.
fn read_without_size(path: &Path) -> io::Result<Vec<u8>> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(8192));
    }
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.clear();
        // `Take` reads to the end as any reader does, with no size hint.
        io::Read::read_to_end(&mut io::Read::take(File::open(path)?, u64::MAX), scratch)?;
        Ok(scratch.as_slice().to_vec())
    })
}

/// What [`UserdataDir::read_json_if_alive`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonRead {
    Bytes(Vec<u8>),
    /// No `libxl-json` file.
    Absent,
    /// The domain was gone once the lock was held: libxl fails the retrieve here
    /// (`ERROR_LOCK_FAIL`), and `xl list -l` skips the domain.
    DomainGone,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    const UUID: &str = "3a9f1c2e-5b7d-4e8f-9a01-23456789abcd";

    #[test]
    fn a_file_is_read_whole_at_every_size_around_the_first_read() {
        let tmp = std::env::temp_dir().join(format!("xlsync-sizes-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        for size in [0, 1, 1369, 8191, 8192, 8193, 20_000] {
            let path = tmp.join(format!("f{size}"));
            let content: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            std::fs::write(&path, &content).unwrap();
            let read = read_without_size(&path).unwrap();
            assert_eq!(read, content, "a file of {size} bytes");
            if size < 8192 {
                assert_eq!(read.capacity(), size, "a small file keeps no 8 KiB guess");
            }
        }
        assert_eq!(read_without_size(&tmp.join("absent")).unwrap_err().kind(), io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn a_domain_gone_under_the_lock_is_not_read() {
        let tmp = std::env::temp_dir().join(format!("xlsync-gone-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let dir = UserdataDir::new(&tmp);
        std::fs::write(dir.json_path(4, UUID), b"{}").unwrap();
        let lock = Locking::Lock(LockOptions::default());
        let mut asked = 0;
        let gone = dir.read_json_if_alive(4, UUID, lock, &mut || {
            asked += 1;
            false
        });
        assert_eq!(gone.unwrap(), JsonRead::DomainGone);
        assert_eq!(asked, 1);
        assert!(!dir.lock_path(4, UUID).exists(), "the lock is released");
        assert_eq!(dir.read_json_if_alive(4, UUID, lock, &mut || true).unwrap(), JsonRead::Bytes(b"{}".to_vec()));
        // Without the lock there is no post-lock check to make.
        assert_eq!(
            dir.read_json_if_alive(4, UUID, Locking::None, &mut || panic!("asked")).unwrap(),
            JsonRead::Bytes(b"{}".to_vec())
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn names_follow_libxl() {
        assert_eq!(data_file_name(7, UUID, LIBXL_JSON), format!("userdata-d.7.{UUID}.libxl-json"));
        assert_eq!(lock_file_name(7, UUID), format!("userdata-l.7.{UUID}.domain-userdata-lock"));
        let dir = UserdataDir::new("/var/lib/xen");
        assert_eq!(dir.json_path(7, UUID), Path::new("/var/lib/xen").join(format!("userdata-d.7.{UUID}.libxl-json")));
    }

    #[test]
    fn finds_uuids_by_domid_only() {
        let tmp = tempfile::tempdir().unwrap();
        for name in [
            format!("userdata-d.7.{UUID}.libxl-json"),
            format!("userdata-d.17.{UUID}.libxl-json"),
            format!("userdata-d.7.{UUID}.xl"),
            format!("userdata-n.7.{UUID}.libxl-json"),
            format!("userdata-l.7.{UUID}.domain-userdata-lock"),
        ] {
            std::fs::write(tmp.path().join(name), b"{}").unwrap();
        }
        let dir = UserdataDir::new(tmp.path());
        assert_eq!(dir.json_uuids(7).unwrap(), vec![UUID.to_string()]);
        assert_eq!(dir.json_uuids(8).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn missing_file_is_none_and_the_lock_file_is_removed_after_reading() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = UserdataDir::new(tmp.path());
        assert_eq!(dir.read_json(3, UUID, Locking::Lock(LockOptions::default())).unwrap(), None);
        std::fs::write(dir.json_path(3, UUID), b"{}\n\0").unwrap();
        assert_eq!(dir.read_json(3, UUID, Locking::Lock(LockOptions::default())).unwrap(), Some(b"{}\n\0".to_vec()));
        assert!(!dir.lock_path(3, UUID).exists(), "released the libxl way: unlinked");
    }

    #[test]
    fn a_held_lock_times_out_naming_the_lock_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(lock_file_name(1, UUID));
        let _held = UserdataLock::acquire(&path, &LockOptions::default()).unwrap();
        let quick = LockOptions { timeout: Duration::from_millis(50), poll: Duration::from_millis(5) };
        let err = UserdataLock::acquire(&path, &quick).unwrap_err();
        assert!(matches!(err, UserdataError::LockTimeout { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    }

    /// The inode check: a waiter that finally locks a file the previous holder unlinked (and
    /// that a third party replaced and locked meanwhile) must not proceed on the stale inode.
    /// Ordering comes from `on_blocked` and channels, not from timing.
    #[test]
    fn a_lock_on_an_unlinked_inode_is_retried_on_the_new_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(lock_file_name(1, UUID));
        let mut first = UserdataLock::acquire(&path, &LockOptions::default()).unwrap();
        let (blocked_tx, blocked_rx) = mpsc::channel::<()>();
        let (got_tx, got_rx) = mpsc::channel::<()>();
        let waiter_path = path.clone();
        let waiter = std::thread::spawn(move || {
            let options = LockOptions { timeout: Duration::from_secs(60), poll: Duration::from_millis(1) };
            let lock = UserdataLock::acquire_observed(&waiter_path, &options, &mut || {
                let _ = blocked_tx.send(());
            })
            .unwrap();
            got_tx.send(()).unwrap();
            lock
        });
        // The waiter is blocked on the first inode.
        blocked_rx.recv().unwrap();
        // A third holder replaces the file and locks the new inode before the first releases:
        // unlink + create + lock, as a libxl that raced in would leave it.
        std::fs::remove_file(&path).unwrap();
        let third = File::options().read(true).write(true).create(true).truncate(false).open(&path).unwrap();
        third.lock().unwrap();
        // The first holder closes its (already unlinked) inode; its Drop must not unlink the
        // third holder's file.
        drop(first.file.take());
        std::mem::forget(first);
        // The waiter now gets the stale inode, sees the mismatch, retries, and blocks on the
        // new file: it reports blocking again and does not get the lock.
        blocked_rx.recv().unwrap();
        assert!(got_rx.try_recv().is_err(), "the waiter proceeded on an unlinked lock file");
        // Released the libxl way, the waiter gets it.
        std::fs::remove_file(&path).unwrap();
        drop(third);
        got_rx.recv().unwrap();
        let lock = waiter.join().unwrap();
        assert_eq!(lock.path(), path);
    }
}
