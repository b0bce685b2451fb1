//! Checkpoints: what a restarted app needs to carry on — the time of the last completed batch, where each
//! replayable source stood after it, and the state of every stateful operator.
//!
//! One file per checkpoint, `checkpoint-<batch time>.ckpt`: a magic number, the format version, the
//! payload length, the payload (postcard), and a CRC-32 of version, length and payload. Files are written
//! to a temporary name, fsynced, renamed, and the directory fsynced, so a crash leaves either the whole
//! new checkpoint or none of it. The newest `keep` complete checkpoints are kept; a corrupt or truncated
//! one is skipped, with a warning, in favour of the one before it, and renamed `….ckpt.unreadable` so it
//! stays for inspection without taking the place of an intact one among the kept.
//!
//! The format is independent of closures and code layout: state is keyed by the operators' stable names
//! and carries a description of its types, so a rebuilt pipeline resumes, and an incompatible one is
//! refused with the operator and the change named.

use crate::state::SavedState;
use crate::store::{Location, Put, StorageOptions, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Where each replayable source stands, by source name (an opaque position each source encodes).
pub type Positions = Vec<(String, Vec<u8>)>;

const MAGIC: &[u8; 8] = b"STREAMC\x01";
/// Version of the checkpoint files' layout and payload; bumped on any incompatible change. 2 added the
/// run's zero time; version 1 files, written by earlier builds, are still read.
pub const FORMAT_VERSION: u32 = 2;
/// Version of the batch journal's entries: 2 added the partition count. Version 1 entries, written by
/// earlier builds, are still read.
const JOURNAL_VERSION: u32 = 2;
const PREFIX: &str = "checkpoint-";
const SUFFIX: &str = ".ckpt";
/// Appended to a checkpoint file that could not be read, once the app has fallen back past it.
const UNREADABLE_SUFFIX: &str = ".unreadable";
const JOURNAL_PREFIX: &str = "pending-";
const JOURNAL_SUFFIX: &str = ".batch";

/// A batch as it was cut, journaled before it runs: after a crash, batches cut but not completed are cut
/// again with exactly the same data (Spark keeps its pending batches in the checkpoint for this).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournaledBatch {
    /// The batch's time in epoch milliseconds (the end of the interval whose data it holds); it
    /// names the journal file.
    pub time_ms: u64,
    /// Source positions right after the batch was cut.
    pub positions: Vec<(String, Vec<u8>)>,
    /// How many partitions the batch was cut into (0: not recorded, by an earlier build). Sinks keep
    /// their exactly-once progress per partition, so a replay must split the batch the same way.
    pub partitions: u32,
}

/// A journal entry as version 1 wrote it.
#[derive(Deserialize)]
struct JournaledBatchV1 {
    time_ms: u64,
    positions: Vec<(String, Vec<u8>)>,
}

/// Everything one checkpoint holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The name of the app that wrote the checkpoint: an app refuses to resume from another app's
    /// checkpoint.
    pub app: String,
    /// The batch interval of the run that wrote it, in milliseconds. Resuming with another interval
    /// is refused, since windows and state depend on it.
    pub batch_interval_ms: u64,
    /// The last batch whose effects the checkpoint includes.
    pub time_ms: u64,
    /// Per source name, its position after that batch (replayable sources only).
    pub positions: Vec<(String, Vec<u8>)>,
    /// The saved state of every stateful operator that has run (or still holds state restored
    /// earlier), keyed by the operator's stable name.
    pub states: Vec<SavedState>,
    /// The run's zero time (Spark's `zeroTime`: one interval before its first batch), which
    /// per-stream schedules such as `map_with_state`'s timeout scans count from, so that a restart
    /// keeps their rhythm; `None` in checkpoints of earlier builds.
    pub zero_time_ms: Option<u64>,
}

/// A checkpoint as version 1 wrote it.
#[derive(Deserialize)]
struct CheckpointV1 {
    app: String,
    batch_interval_ms: u64,
    time_ms: u64,
    positions: Vec<(String, Vec<u8>)>,
    states: Vec<SavedState>,
}

/// A checkpoint location: a local directory or an object store prefix.
#[derive(Clone, Debug)]
pub struct CheckpointDir {
    store: Arc<dyn Store>,
    keep: usize,
    lease: Duration,
}

/// A checkpoint location claimed by this process (see [`CheckpointDir::lock`]); dropping it lets
/// the location go.
#[derive(Debug)]
pub struct DirLock {
    _claim: Claim,
}

impl DirLock {
    /// Why this app no longer holds the location, if another took it over.
    pub fn lost(&self) -> Option<String> {
        match &self._claim {
            Claim::Lease(lease) if lease.lost.load(std::sync::atomic::Ordering::SeqCst) => {
                Some(format!(
                    "fenced: another app took the checkpoint location {} over while this one \
                     could not renew its lease (a store out of reach longer than --storage-lease)",
                    lease.store.location()
                ))
            }
            _ => None,
        }
    }
}

/// Held only for its drop: closing the file releases the lock, dropping the lease deletes it.
#[derive(Debug)]
enum Claim {
    /// The operating system's lock on a local lock file.
    File(#[allow(dead_code)] File),
    /// A lease object renewed in the background.
    Lease(Lease),
}

/// The file a running app holds locked in its checkpoint directory (the lease object on stores).
const LOCK_FILE: &str = "lock";

/// What [`CheckpointDir::latest`] found.
pub struct Found {
    /// The newest checkpoint that read back intact, checksum verified.
    pub checkpoint: Checkpoint,
    /// The file it was read from (its name in the location), for logs and messages.
    pub file: String,
    /// Newer files that were corrupt or truncated and were skipped, newest first, each with its problem.
    pub skipped: Vec<(String, String)>,
}

fn text(e: StoreError) -> String {
    e.to_string()
}

impl CheckpointDir {
    /// Opens (creating if needed) a local checkpoint directory that keeps the newest `keep`
    /// checkpoints.
    #[cfg(test)]
    pub fn open(path: &Path, keep: usize) -> Result<Self, String> {
        Self::open_at(
            &Location::Local(path.to_path_buf()),
            keep,
            &StorageOptions::default(),
        )
    }

    /// Opens a checkpoint location, local or on an object store.
    pub fn open_at(
        location: &Location,
        keep: usize,
        options: &StorageOptions,
    ) -> Result<Self, String> {
        if let Some(path) = location.local_path() {
            fs::create_dir_all(path).map_err(|e| {
                format!(
                    "cannot create the checkpoint directory {}: {e}",
                    path.display()
                )
            })?;
        }
        Ok(Self {
            store: crate::store::open(location, options)?,
            keep: keep.max(1),
            lease: options.lease,
        })
    }

    /// Where the checkpoints are, as given.
    pub fn location(&self) -> &Location {
        self.store.location()
    }

    /// Whether `name` holds exactly the `len` bytes of checksum `checksum`.
    fn holds(&self, name: &str, len: u64, checksum: u32) -> bool {
        self.store.get(name).is_ok_and(|blob| {
            blob.bytes.len() as u64 == len && crc32fast::hash(&blob.bytes) == checksum
        })
    }

    /// A file's full name, for messages.
    pub fn describe(&self, name: &str) -> String {
        self.location().join(name).to_string()
    }

    fn names(&self, prefix: &str, suffix: &str) -> Result<Vec<String>, String> {
        let mut names: Vec<String> = self
            .store
            .list("")
            .map_err(|e| format!("cannot list {}: {e}", self.location()))?
            .into_iter()
            .map(|entry| entry.name)
            .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Complete checkpoint files, oldest first.
    fn files(&self) -> Result<Vec<String>, String> {
        self.names(PREFIX, SUFFIX)
    }

    /// Writes `checkpoint` atomically, then drops checkpoints beyond the newest `keep`. Returns the
    /// file's name and size. The file is created only if no checkpoint of that batch exists: a
    /// second app writing to the same location fails here instead of replacing this one's.
    pub fn write(&self, checkpoint: &Checkpoint) -> Result<(String, u64), WriteFailure> {
        let payload = postcard::to_stdvec(checkpoint)
            .map_err(|e| format!("cannot encode the checkpoint: {e}"))?;
        let name = format!("{PREFIX}{:020}{SUFFIX}", checkpoint.time_ms);
        let bytes = frame(FORMAT_VERSION, &payload);
        let len = bytes.len() as u64;
        let checksum = crc32fast::hash(&bytes);
        match self.store.put(&name, bytes, Put::Create) {
            Ok(_) => {}
            // A create whose answer was lost and was sent again finds its own checkpoint.
            Err(StoreError::Exists(_)) if self.holds(&name, len, checksum) => {}
            Err(StoreError::Exists(_)) => {
                return Err(WriteFailure::Fenced(format!(
                    "fenced: the checkpoint {} already exists, written by another app on the \
                     same location; stop one of them, or give each its own --checkpoint",
                    self.describe(&name)
                )))
            }
            Err(e) => return Err(WriteFailure::Failed(text(e))),
        }
        self.prune()?;
        Ok((name, len))
    }

    /// Journals a batch that is about to run.
    pub fn journal(&self, batch: &JournaledBatch) -> Result<(), String> {
        let payload = postcard::to_stdvec(batch)
            .map_err(|e| format!("cannot encode the batch journal: {e}"))?;
        self.store
            .put(
                &format!("{JOURNAL_PREFIX}{:020}{JOURNAL_SUFFIX}", batch.time_ms),
                frame(JOURNAL_VERSION, &payload),
                Put::Overwrite,
            )
            .map(|_| ())
            .map_err(text)
    }

    fn journal_files(&self) -> Result<Vec<(u64, String)>, String> {
        Ok(self
            .names(JOURNAL_PREFIX, JOURNAL_SUFFIX)?
            .into_iter()
            .filter_map(|n| Some((batch_time_in(&n, JOURNAL_PREFIX, JOURNAL_SUFFIX)?, n)))
            .collect())
    }

    /// Batches journaled after `time_ms`, oldest first. A damaged entry ends the list: it was being
    /// written when the app died, so neither it nor anything after it ever ran.
    pub fn journaled_after(&self, time_ms: u64) -> Result<Vec<JournaledBatch>, String> {
        let mut out = Vec::new();
        for (time, file) in self.journal_files()? {
            if time <= time_ms {
                continue;
            }
            let entry = match self.store.get(&file) {
                Ok(blob) => read_journal_entry(&blob.bytes),
                Err(StoreError::Failed(e)) => return Err(e),
                Err(e) => Err(e.to_string()),
            };
            match entry {
                Ok(entry) => out.push(entry),
                Err(problem) => {
                    tracing::warn!(file = %self.describe(&file), "ignoring a damaged batch journal entry: {problem}");
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Drops journal entries of batches up to `time_ms`, which a checkpoint now covers.
    pub fn forget_journal_through(&self, time_ms: u64) -> Result<(), String> {
        for (time, file) in self.journal_files()? {
            if time <= time_ms {
                self.store.delete(&file).map_err(text)?;
            }
        }
        Ok(())
    }

    fn prune(&self) -> Result<(), String> {
        let files = self.files()?;
        let excess = files.len().saturating_sub(self.keep);
        for old in &files[..excess] {
            self.store
                .delete(old)
                .map_err(|e| format!("cannot remove the old checkpoint: {e}"))?;
        }
        Ok(())
    }

    /// The time and source positions of every checkpoint that reads back intact, oldest first: what
    /// the journal and write-ahead logs must keep so that any of them can still be resumed from.
    pub fn kept(&self) -> Result<Vec<(u64, Positions)>, String> {
        Ok(self
            .files()?
            .iter()
            .filter_map(|file| self.read_head(file).ok())
            .map(|head| (head.time_ms, head.positions))
            .collect())
    }

    /// The batch time of the oldest checkpoint file still in the directory.
    pub fn oldest_time(&self) -> Result<Option<u64>, String> {
        Ok(self
            .files()?
            .first()
            .and_then(|file| batch_time_in(file, PREFIX, SUFFIX)))
    }

    /// The newest checkpoint that reads back intact. `Ok(None)` for an empty directory; an error if there
    /// are checkpoint files but none is usable, or the store cannot be read.
    pub fn latest(&self) -> Result<Option<Found>, String> {
        let files = self.files()?;
        let mut skipped = Vec::new();
        for file in files.iter().rev() {
            match self.read(file) {
                Ok(checkpoint) => {
                    return Ok(Some(Found {
                        checkpoint,
                        file: file.clone(),
                        skipped,
                    }))
                }
                Err(Unreadable::Store(e)) => return Err(e),
                Err(Unreadable::Damaged(problem)) => skipped.push((file.clone(), problem)),
            }
        }
        if skipped.is_empty() {
            Ok(None)
        } else {
            Err(format!(
                "no usable checkpoint in {}: {}; to start over, run with --reset-state (discards them) or another --checkpoint directory",
                self.location(),
                skipped
                    .iter()
                    .map(|(file, problem)| format!("{file}: {problem}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        }
    }

    fn read(&self, file: &str) -> Result<Checkpoint, Unreadable> {
        let bytes = self.read_bytes(file)?;
        decode(&bytes).map_err(Unreadable::Damaged)
    }

    fn read_bytes(&self, file: &str) -> Result<Vec<u8>, Unreadable> {
        match self.store.get(file) {
            Ok(blob) => Ok(blob.bytes),
            Err(StoreError::Failed(e)) => Err(Unreadable::Store(e)),
            Err(e) => Err(Unreadable::Damaged(format!("cannot read it: {e}"))),
        }
    }

    /// Verifies a checkpoint file whole and decodes its time and positions.
    fn read_head(&self, file: &str) -> Result<Head, Unreadable> {
        let bytes = self.read_bytes(file)?;
        let (_, payload) = unframe(&bytes).map_err(Unreadable::Damaged)?;
        postcard::take_from_bytes::<Head>(payload)
            .map(|(head, _state)| head)
            .map_err(|e| Unreadable::Damaged(format!("cannot decode: {e}")))
    }

    /// Renames a checkpoint file the app fell back past to `<name>.unreadable`: it is kept for
    /// inspection, but no longer counts among the newest `keep`, which would leave fewer intact ones.
    pub fn set_aside(&self, file: &str) -> Result<String, String> {
        let target = format!("{file}{UNREADABLE_SUFFIX}");
        self.store.rename(file, &target).map_err(|e| {
            format!("cannot rename the unreadable checkpoint {file} to {target}: {e}")
        })?;
        Ok(self.describe(&target))
    }

    /// Claims the location for this process until the returned lock is dropped: a second app on
    /// the same location (which would overwrite this one's checkpoints, journal and logs) is
    /// refused, naming the process that holds it.
    ///
    /// On a local disk the lock is the operating system's (`flock` on a `lock` file): it goes when
    /// the process ends, however it ends. On an object store it is a lease object the holder
    /// rewrites (conditionally) every third of the lease: a newcomer that sees it change is
    /// refused, and one that sees it unchanged for a whole lease (its holder died) takes it over;
    /// a holder that finds its lease taken stops committing checkpoints.
    pub fn lock(&self) -> Result<DirLock, String> {
        match self.location() {
            Location::Local(path) => lock_file(path).map(|file| DirLock {
                _claim: Claim::File(file),
            }),
            Location::Remote(_) => {
                Lease::acquire(self.store.clone(), self.lease).map(|lease| DirLock {
                    _claim: Claim::Lease(lease),
                })
            }
        }
    }

    /// Deletes every checkpoint, journal entry, write-ahead log and leftover temporary file in the
    /// directory.
    pub fn reset(&self) -> Result<usize, String> {
        self.store
            .remove_all("wal")
            .map_err(|e| format!("cannot remove {}: {e}", self.describe("wal")))?;
        let entries = self
            .store
            .list("")
            .map_err(|e| format!("cannot list {}: {e}", self.location()))?;
        let mut removed = 0;
        for entry in entries {
            let name = entry.name.as_str();
            let ours = name.contains(PREFIX) || name.contains(JOURNAL_PREFIX);
            if ours
                && (name.ends_with(SUFFIX)
                    || name.ends_with(UNREADABLE_SUFFIX)
                    || name.ends_with(JOURNAL_SUFFIX)
                    || name.ends_with(".tmp"))
            {
                self.store.delete(name).map_err(text)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Why a checkpoint was not written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteFailure {
    /// Another writer already committed this batch's checkpoint on the same location: the app
    /// stops instead of trying again at the next checkpoint.
    Fenced(String),
    /// The state could not be encoded or the store refused the write (a full disk, a bucket away);
    /// the previous checkpoint stays in force and the next one tries again.
    Failed(String),
}

impl std::fmt::Display for WriteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fenced(e) | Self::Failed(e) => f.write_str(e),
        }
    }
}

impl From<String> for WriteFailure {
    fn from(message: String) -> Self {
        Self::Failed(message)
    }
}

/// Why a checkpoint could not be read: the store failed (try again later), or the file is damaged
/// (fall back to an older one).
enum Unreadable {
    Store(String),
    Damaged(String),
}

/// How long a lock that looks held is tried again before the location is refused as in use.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);

fn lock_file(dir: &Path) -> Result<File, String> {
    let path = dir.join(LOCK_FILE);
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // A lock just released can look held for a moment: a process forked in between (to run a
    // child) holds a copy of the descriptor until it execs.
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    let mut attempt = file.try_lock();
    while matches!(attempt, Err(fs::TryLockError::WouldBlock))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
        attempt = file.try_lock();
    }
    match attempt {
        Ok(()) => {
            // Who holds it, for the message the next app gets; the lock itself is what counts.
            let _ = file
                .set_len(0)
                .and_then(|()| write!(file, "{}", std::process::id()));
            Ok(file)
        }
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => String::new(),
                pid => format!(" (process {pid})"),
            };
            Err(in_use(&dir.display().to_string(), &holder))
        }
        Err(fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

fn in_use(location: &str, holder: &str) -> String {
    format!(
        "the checkpoint directory {location} is in use by another running app{holder}: two apps \
         on one directory would overwrite each other's checkpoints and logs. Stop the other one, \
         or give this one its own directory (--checkpoint DIR)"
    )
}

/// A lease on an object store location: an object naming its holder, rewritten with a conditional
/// PUT (If-Match) every third of the lease, deleted on drop.
#[derive(Debug)]
struct Lease {
    stop: Arc<(Mutex<bool>, Condvar)>,
    renewer: Option<std::thread::JoinHandle<()>>,
    store: Arc<dyn Store>,
    /// Set when another app took the location over: this one must stop writing to it.
    lost: Arc<std::sync::atomic::AtomicBool>,
}

impl Lease {
    fn acquire(store: Arc<dyn Store>, lease: Duration) -> Result<Self, String> {
        let me = format!(
            "process {} on {}",
            std::process::id(),
            std::env::var("HOSTNAME").unwrap_or_else(|_| "this host".into())
        );
        let claim = move |renewal: u64| format!("{me}, renewal {renewal}").into_bytes();
        let mut version = match store.put(LOCK_FILE, claim(0), Put::Create) {
            Ok(version) => version,
            Err(StoreError::Exists(_)) => {
                let seen = store.get(LOCK_FILE).map_err(text)?;
                let holder = String::from_utf8_lossy(&seen.bytes).into_owned();
                tracing::info!(
                    location = %store.location(),
                    "the checkpoint location is claimed ({holder}); waiting one lease ({lease:?}) to see whether its holder is alive"
                );
                // Watch it for a whole lease plus a margin: a live holder renews it meanwhile.
                let deadline = Instant::now() + lease + lease / 4;
                while Instant::now() < deadline {
                    std::thread::sleep(lease / 10);
                    let now = store.get(LOCK_FILE);
                    match now {
                        Ok(blob) if blob.version == seen.version && blob.bytes == seen.bytes => {}
                        Err(StoreError::NotFound(_)) => break,
                        Ok(blob) => {
                            let holder = String::from_utf8_lossy(&blob.bytes).into_owned();
                            return Err(in_use(
                                &store.location().to_string(),
                                &format!(" ({holder}, renewing its lease)"),
                            ));
                        }
                        Err(e) => return Err(text(e)),
                    }
                }
                let mode = match seen.version {
                    Some(v) => Put::Replace(v),
                    None => Put::Overwrite,
                };
                match store.put(LOCK_FILE, claim(0), mode) {
                    Ok(version) => {
                        tracing::warn!(location = %store.location(), "took over the checkpoint location from {holder}, whose lease ran out");
                        version
                    }
                    Err(StoreError::Changed(_)) | Err(StoreError::NotFound(_)) => {
                        return Err(in_use(
                            &store.location().to_string(),
                            " (another app took it over first)",
                        ))
                    }
                    Err(e) => return Err(text(e)),
                }
            }
            Err(e) => return Err(text(e)),
        };
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, renewer_store, renewer_lost) = (stop.clone(), store.clone(), lost.clone());
        let renewer = std::thread::Builder::new()
            .name("streamc-lease".into())
            .spawn(move || {
                let mut renewal = 0u64;
                let (lock, wake) = &*flag;
                let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    let waited = wake
                        .wait_timeout(stopped, lease / 3)
                        .unwrap_or_else(|p| p.into_inner());
                    stopped = waited.0;
                    if *stopped {
                        return;
                    }
                    renewal += 1;
                    let mode = match version.clone() {
                        Some(v) => Put::Replace(v),
                        None => Put::Overwrite,
                    };
                    match renewer_store.put(LOCK_FILE, claim(renewal), mode) {
                        Ok(v) => version = v,
                        Err(StoreError::Changed(_)) | Err(StoreError::NotFound(_)) => {
                            // A renewal whose answer was lost, then retried, finds its own
                            // write: still ours.
                            if let Ok(blob) = renewer_store.get(LOCK_FILE) {
                                if blob.bytes == claim(renewal) {
                                    version = blob.version;
                                    continue;
                                }
                            }
                            // Checkpoints are created only if absent, so the new holder's and
                            // ours cannot both commit one batch; this app stops at its next one.
                            tracing::error!(location = %renewer_store.location(), "lost the lease on the checkpoint location to another app");
                            renewer_lost.store(true, std::sync::atomic::Ordering::SeqCst);
                            return;
                        }
                        Err(e) => tracing::warn!("cannot renew the lease on the checkpoint location: {e}"),
                    }
                }
            })
            .map_err(|e| format!("cannot start the lease renewer: {e}"))?;
        Ok(Self {
            stop,
            renewer: Some(renewer),
            store,
            lost,
        })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        let lost = self
            .renewer
            .take()
            .map(|r| r.join().is_err())
            .unwrap_or(true)
            || self.lost.load(std::sync::atomic::Ordering::SeqCst);
        // A clean stop frees the location at once; a restart need not wait out the lease.
        if !lost {
            let _ = self.store.delete(LOCK_FILE);
        }
    }
}

/// The batch time in a file name `<prefix><time><suffix>`, as checkpoints and journal entries are named.
fn batch_time_in(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?
        .strip_suffix(suffix)?
        .parse()
        .ok()
}

/// Decodes a journal entry of either version.
fn read_journal_entry(bytes: &[u8]) -> Result<JournaledBatch, String> {
    let (version, payload) = unframe_versions(bytes, &[1, JOURNAL_VERSION])?;
    let decoded = if version == 1 {
        postcard::from_bytes::<JournaledBatchV1>(payload).map(|v1| JournaledBatch {
            time_ms: v1.time_ms,
            positions: v1.positions,
            partitions: 0,
        })
    } else {
        postcard::from_bytes::<JournaledBatch>(payload)
    };
    decoded.map_err(|e| e.to_string())
}

/// Magic, version, length, payload, CRC-32 of version, length and payload.
fn frame(version: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(payload.len() + 24);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(payload);
    let crc = crc32fast::hash(&bytes[MAGIC.len()..]);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// The payload of a framed checkpoint file, after checking magic, version, length and checksum.
fn unframe(bytes: &[u8]) -> Result<(u32, &[u8]), String> {
    unframe_versions(bytes, &[1, FORMAT_VERSION])
}

/// The version and payload of a framed file whose version is one of `readable`.
fn unframe_versions<'b>(bytes: &'b [u8], readable: &[u32]) -> Result<(u32, &'b [u8]), String> {
    let header = MAGIC.len() + 4 + 8;
    if bytes.len() < header + 4 || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a streamc file, or truncated".into());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().map_err(|_| "truncated header")?);
    if !readable.contains(&version) {
        let newest = readable.iter().max().copied().unwrap_or(FORMAT_VERSION);
        return Err(format!(
            "format version {version}, this build reads version {newest}"
        ));
    }
    let length =
        u64::from_le_bytes(bytes[12..20].try_into().map_err(|_| "truncated header")?) as usize;
    if bytes.len() != header + length + 4 {
        return Err(format!(
            "truncated: {} bytes, expected {}",
            bytes.len(),
            header + length + 4
        ));
    }
    let (body, crc) = bytes.split_at(header + length);
    let expected = u32::from_le_bytes(crc.try_into().map_err(|_| "truncated checksum")?);
    if crc32fast::hash(&body[MAGIC.len()..]) != expected {
        return Err("checksum mismatch (corrupt)".into());
    }
    Ok((version, &body[header..]))
}

/// Decodes a checkpoint file's bytes, after checking magic, version, length and checksum.
fn decode(bytes: &[u8]) -> Result<Checkpoint, String> {
    let (version, payload) = unframe(bytes)?;
    let decoded = if version == 1 {
        postcard::from_bytes::<CheckpointV1>(payload).map(|v1| Checkpoint {
            app: v1.app,
            batch_interval_ms: v1.batch_interval_ms,
            time_ms: v1.time_ms,
            positions: v1.positions,
            states: v1.states,
            zero_time_ms: None,
        })
    } else {
        postcard::from_bytes(payload)
    };
    decoded.map_err(|e| format!("cannot decode: {e}"))
}

/// The leading fields of [`Checkpoint`], in its order, so the state need not be decoded.
#[derive(Deserialize)]
struct Head {
    #[allow(dead_code)] // decoded to reach the fields after it
    app: String,
    #[allow(dead_code)]
    batch_interval_ms: u64,
    time_ms: u64,
    positions: Vec<(String, Vec<u8>)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("streamc-ckpt-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn checkpoint(time_ms: u64) -> Checkpoint {
        Checkpoint {
            app: "demo".into(),
            batch_interval_ms: 1000,
            time_ms,
            positions: vec![("lines".into(), 7u64.to_le_bytes().to_vec())],
            states: vec![SavedState {
                name: "totals".into(),
                kind: "update_state_by_key".into(),
                types: "t".into(),
                bytes: vec![1, 2, 3],
            }],
            zero_time_ms: None,
        }
    }

    #[test]
    fn a_checkpoint_of_format_version_1_is_still_read() {
        #[derive(Serialize)]
        struct V1 {
            app: String,
            batch_interval_ms: u64,
            time_ms: u64,
            positions: Vec<(String, Vec<u8>)>,
            states: Vec<SavedState>,
        }
        let written = Checkpoint {
            zero_time_ms: Some(4000),
            ..checkpoint(5000)
        };
        assert_eq!(
            decode(&frame(
                FORMAT_VERSION,
                &postcard::to_stdvec(&written).unwrap()
            ))
            .unwrap(),
            written
        );
        let c = checkpoint(5000);
        let v1 = V1 {
            app: c.app.clone(),
            batch_interval_ms: c.batch_interval_ms,
            time_ms: c.time_ms,
            positions: c.positions.clone(),
            states: c.states.clone(),
        };
        let decoded = decode(&frame(1, &postcard::to_stdvec(&v1).unwrap())).unwrap();
        assert_eq!(decoded, c, "version 1 has no zero time");
    }

    #[test]
    fn writes_atomically_keeps_the_newest_and_reads_back() {
        let path = dir("keep");
        let d = CheckpointDir::open(&path, 2).unwrap();
        for t in [1000, 2000, 3000] {
            d.write(&checkpoint(t)).unwrap();
        }
        assert_eq!(d.files().unwrap().len(), 2);
        let found = d.latest().unwrap().unwrap();
        assert_eq!(found.checkpoint, checkpoint(3000));
        assert!(found.skipped.is_empty());
        assert!(fs::read_dir(&path).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp")));
        fs::remove_dir_all(&path).ok();
    }

    #[test]
    fn corrupt_and_truncated_files_fall_back_to_the_previous_one() {
        let path = dir("corrupt");
        let d = CheckpointDir::open(&path, 5).unwrap();
        d.write(&checkpoint(1000)).unwrap();
        let newest = path.join(d.write(&checkpoint(2000)).unwrap().0);
        let mut bytes = fs::read(&newest).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        fs::write(&newest, &bytes).unwrap();
        let truncated = path.join(d.write(&checkpoint(3000)).unwrap().0);
        let len = fs::metadata(&truncated).unwrap().len();
        File::options()
            .write(true)
            .open(&truncated)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let found = d.latest().unwrap().unwrap();
        assert_eq!(found.checkpoint.time_ms, 1000);
        let files: Vec<PathBuf> = found.skipped.iter().map(|(f, _)| path.join(f)).collect();
        assert_eq!(files, vec![truncated, newest]);
        assert!(
            found.skipped[0].1.contains("truncated"),
            "{:?}",
            found.skipped
        );
        assert!(
            found.skipped[1].1.contains("checksum"),
            "{:?}",
            found.skipped
        );
        fs::remove_dir_all(&path).ok();
    }

    #[test]
    fn a_file_set_aside_no_longer_counts_among_the_kept_and_reset_removes_it() {
        let path = dir("set-aside");
        let d = CheckpointDir::open(&path, 2).unwrap();
        d.write(&checkpoint(1000)).unwrap();
        let damaged = path.join(d.write(&checkpoint(2000)).unwrap().0);
        fs::write(&damaged, b"garbage").unwrap();
        let found = d.latest().unwrap().unwrap();
        let aside = d.set_aside(&found.skipped[0].0).unwrap();
        assert!(aside.ends_with(".ckpt.unreadable"));
        let aside = path.join(aside);
        assert!(aside.exists() && !damaged.exists());
        // Two intact checkpoints are kept beside it, not one.
        d.write(&checkpoint(3000)).unwrap();
        let kept: Vec<u64> = d.kept().unwrap().iter().map(|(t, _)| *t).collect();
        assert_eq!(kept, vec![1000, 3000]);
        assert_eq!(d.oldest_time().unwrap(), Some(1000));
        assert_eq!(d.reset().unwrap(), 3);
        assert!(!aside.exists());
        fs::remove_dir_all(&path).ok();
    }

    #[test]
    fn a_checkpoint_of_another_format_version_is_named_and_skipped() {
        let path = dir("version");
        let d = CheckpointDir::open(&path, 5).unwrap();
        d.write(&checkpoint(1000)).unwrap();
        let newer = path.join(d.write(&checkpoint(2000)).unwrap().0);
        let mut bytes = fs::read(&newer).unwrap();
        bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        fs::write(&newer, &bytes).unwrap();
        let found = d.latest().unwrap().unwrap();
        assert_eq!(found.checkpoint.time_ms, 1000);
        assert!(
            found.skipped[0]
                .1
                .contains(&format!("format version {}", FORMAT_VERSION + 1)),
            "{:?}",
            found.skipped
        );
        fs::remove_dir_all(&path).ok();
    }

    #[test]
    fn kept_lists_the_positions_of_every_intact_checkpoint_oldest_first() {
        let path = dir("kept");
        let d = CheckpointDir::open(&path, 3).unwrap();
        for t in [1000, 2000, 3000, 4000] {
            d.write(&checkpoint(t)).unwrap();
        }
        let damaged = path.join(format!("{PREFIX}{:020}{SUFFIX}", 3000));
        let len = fs::metadata(&damaged).unwrap().len();
        File::options()
            .write(true)
            .open(&damaged)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let kept = d.kept().unwrap();
        let times: Vec<u64> = kept.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, vec![2000, 4000], "1000 pruned, 3000 damaged");
        assert_eq!(kept[0].1, checkpoint(2000).positions);
        assert_eq!(d.oldest_time().unwrap(), Some(2000));
        fs::remove_dir_all(&path).ok();
    }

    #[test]
    fn journal_entries_of_version_1_are_read_without_a_partition_count() {
        let path = dir("journal-v1");
        let d = CheckpointDir::open(&path, 3).unwrap();
        #[derive(Serialize)]
        struct V1 {
            time_ms: u64,
            positions: Vec<(String, Vec<u8>)>,
        }
        let v1 = V1 {
            time_ms: 2000,
            positions: vec![("q".into(), vec![7])],
        };
        let bytes = frame(1, &postcard::to_stdvec(&v1).unwrap());
        fs::write(
            path.join(format!("{JOURNAL_PREFIX}{:020}{JOURNAL_SUFFIX}", 2000)),
            bytes,
        )
        .unwrap();
        let pending = d.journaled_after(0).unwrap();
        assert_eq!(
            pending,
            vec![JournaledBatch {
                time_ms: 2000,
                positions: vec![("q".into(), vec![7])],
                partitions: 0,
            }]
        );
        fs::remove_dir_all(&path).ok();
    }

    #[test]
    fn the_journal_lists_pending_batches_and_stops_at_a_torn_entry() {
        let path = dir("journal");
        let d = CheckpointDir::open(&path, 3).unwrap();
        for t in [1000u64, 2000, 3000, 4000] {
            d.journal(&JournaledBatch {
                time_ms: t,
                positions: vec![("q".into(), t.to_le_bytes().to_vec())],
                partitions: 2,
            })
            .unwrap();
        }
        let after: Vec<u64> = d
            .journaled_after(1000)
            .unwrap()
            .iter()
            .map(|b| b.time_ms)
            .collect();
        assert_eq!(after, vec![2000, 3000, 4000]);
        fs::write(
            path.join(format!("{JOURNAL_PREFIX}{:020}{JOURNAL_SUFFIX}", 3000)),
            b"torn",
        )
        .unwrap();
        let after: Vec<u64> = d
            .journaled_after(1000)
            .unwrap()
            .iter()
            .map(|b| b.time_ms)
            .collect();
        assert_eq!(after, vec![2000]);
        d.forget_journal_through(3000).unwrap();
        assert_eq!(d.journal_files().unwrap().len(), 1);
        assert_eq!(d.reset().unwrap(), 1);
        fs::remove_dir_all(&path).ok();
    }

    #[test]
    fn only_corrupt_files_is_an_error_that_names_the_way_out_and_reset_clears_them() {
        let path = dir("none");
        let d = CheckpointDir::open(&path, 3).unwrap();
        assert!(d.latest().unwrap().is_none());
        let file = path.join(d.write(&checkpoint(1000)).unwrap().0);
        fs::write(&file, b"garbage").unwrap();
        let err = d.latest().err().unwrap();
        assert!(err.contains("--reset-state"), "{err}");
        assert_eq!(d.reset().unwrap(), 1);
        assert!(d.latest().unwrap().is_none());
        fs::remove_dir_all(&path).ok();
    }

    #[test]
    fn of_two_writers_of_one_batch_checkpoint_the_second_is_fenced_and_the_first_kept() {
        let path = dir("fenced");
        let first = CheckpointDir::open(&path, 3).unwrap();
        let second = CheckpointDir::open(&path, 3).unwrap();
        first.write(&checkpoint(1000)).unwrap();
        let mut other = checkpoint(1000);
        other.app = "intruder".into();
        match second.write(&other) {
            Err(WriteFailure::Fenced(e)) => assert!(e.contains("already exists"), "{e}"),
            other => panic!("expected a fenced write, got {other:?}"),
        }
        assert_eq!(
            first.latest().unwrap().unwrap().checkpoint,
            checkpoint(1000)
        );
        fs::remove_dir_all(&path).ok();
    }

    #[test]
    fn a_second_claim_on_a_directory_is_refused_until_the_first_goes() {
        let path = dir("lock");
        let d = CheckpointDir::open(&path, 2).unwrap();
        let held = d.lock().unwrap();
        let refused = CheckpointDir::open(&path, 2).unwrap().lock().unwrap_err();
        assert!(
            refused.contains("in use by another running app"),
            "{refused}"
        );
        assert!(
            refused.contains(&format!("process {}", std::process::id())),
            "{refused}"
        );
        drop(held);
        d.lock().expect("free again once the holder is gone");
        fs::remove_dir_all(&path).ok();
    }
}
