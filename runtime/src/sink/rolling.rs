//! The rolling file sink: batches appended to one growing file, rolled into a finished file by size or
//! age, so a long run leaves a few large files instead of a directory per batch.
//!
//! Layout of the output directory: finished files `<prefix>-<first batch ms>-<last batch ms><suffix>`,
//! which readers may take as soon as they appear (they appear whole, by rename); the hidden file being
//! written, `.inprogress`; and `.rolling-state`, rewritten atomically after every batch with the last
//! batch written and the in-progress file's committed length. On reopening after a crash the in-progress
//! file is cut back to that length and batches up to the last one are skipped, so every batch lands
//! exactly once whatever the moment of the crash.
//!
//! On an object store, which can neither append nor rename, each batch's text is a hidden object
//! `.inprogress/<batch ms>`; rolling writes the finished object from them in one PUT (it appears
//! whole), saves the state, then deletes them. A finished object that exists for the state's
//! batches tells a reopening sink that the roll happened before a crash.

use super::{
    BatchDestination, OutputFailed, OutputResult, PartitionId, SinkEnv, SinkError, SinkStats,
};
use crate::output::Show;
use crate::store::{Location, Put, StorageOptions, Store, StoreError};
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const IN_PROGRESS: &str = ".inprogress";
const STATE: &str = ".rolling-state";

/// Where and when to roll: `save_to_rolling_files(RollingFiles::new("out/clicks").max_bytes(..))`.
#[derive(Clone, Debug)]
pub struct RollingFiles {
    dir: PathBuf,
    output: Option<String>,
    prefix: String,
    suffix: String,
    max_bytes: u64,
    max_age: Duration,
}

/// `save_to_rolling_files(RollingFiles::new(dir)...)`: appends each batch, once, to a file rolled by
/// size or age.
impl<T: Show + Send> BatchDestination<T> for RollingFiles {
    fn write_batch(self, env: &SinkEnv<'_>, parts: crate::shuffle::Partitions<T>) -> OutputResult {
        let name = self.name();
        let dir = env
            .settings
            .url(&name, &self.dir().display().to_string())
            .and_then(|dir| {
                env.settings
                    .refuse_properties(&name, "rolling files")
                    .map(|()| dir)
            })
            .map_err(|e| OutputFailed::new(&name, e))?;
        let spec = self.with_dir(dir);
        let sink = env
            .sinks
            .get_or_open(&name, || {
                RollingSink::open_with(spec, &env.settings.storage)
            })
            .map_err(|e| OutputFailed::new(&name, e))?;
        super::write_whole_batch(env, &name, |at, stats| sink.write(at, &parts, stats))
    }
}

impl RollingFiles {
    /// Files in `dir`, rolled at 128 MiB or after an hour of batches, whichever comes first.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            output: None,
            prefix: "part".into(),
            suffix: ".txt".into(),
            max_bytes: 128 << 20,
            max_age: Duration::from_secs(3600),
        }
    }

    /// The start of finished files' names (default `part`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The end of finished files' names, after the batch times (default `.txt`).
    pub fn suffix(mut self, suffix: impl Into<String>) -> Self {
        self.suffix = suffix.into();
        self
    }

    /// Roll once the file holds this many bytes.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes.max(1);
        self
    }

    /// Roll once the file's first batch is this much older than the batch being written.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// The name `--sink NAME=DIRECTORY` overrides the directory by (default: the directory's last
    /// component).
    pub fn output_name(mut self, name: impl Into<String>) -> Self {
        self.output = Some(name.into());
        self
    }

    /// The output's name: the `output_name`, else the directory's last component; it is the `NAME`
    /// of `--sink NAME=DIRECTORY`.
    pub fn name(&self) -> String {
        self.output.clone().unwrap_or_else(|| {
            self.dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| self.dir.display().to_string())
        })
    }

    /// The directory the files go to, as declared; `--sink NAME=DIRECTORY` can replace it for a
    /// run.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn with_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = dir.into();
        self
    }
}

/// What `.rolling-state` holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RollState {
    last_batch: Option<u64>,
    first_batch: Option<u64>,
    committed_len: u64,
}

impl RollState {
    /// Whether batch `time` is one of the in-progress file's.
    fn spans(&self, time: u64) -> bool {
        self.first_batch.is_some_and(|f| time >= f) && self.last_batch.is_some_and(|l| time <= l)
    }

    /// The state once the in-progress file is finished.
    fn rolled(&self) -> RollState {
        RollState {
            last_batch: self.last_batch,
            first_batch: None,
            committed_len: 0,
        }
    }

    fn encode(&self) -> String {
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        format!(
            "streamc-rolling 1 {} {} {}\n",
            opt(self.last_batch),
            opt(self.first_batch),
            self.committed_len
        )
    }

    fn decode(text: &str) -> Option<RollState> {
        let mut fields = text.split_whitespace();
        if fields.next()? != "streamc-rolling" || fields.next()? != "1" {
            return None;
        }
        let opt = |f: &str| -> Option<Option<u64>> {
            if f == "-" {
                Some(None)
            } else {
                f.parse().ok().map(Some)
            }
        };
        Some(RollState {
            last_batch: opt(fields.next()?)?,
            first_batch: opt(fields.next()?)?,
            committed_len: fields.next()?.parse().ok()?,
        })
    }
}

/// An open rolling file sink.
#[derive(Debug)]
pub struct RollingSink {
    spec: RollingFiles,
    state: Mutex<RollState>,
    /// The object store the files go to; `None`: a local directory.
    objects: Option<Arc<dyn Store>>,
}

impl RollingSink {
    /// Opens the directory or object store prefix, recovering from a crash (see the module docs).
    pub fn open_with(spec: RollingFiles, storage: &StorageOptions) -> Result<Self, SinkError> {
        let location = Location::parse(&spec.dir.to_string_lossy()).map_err(SinkError::Fatal)?;
        if location.local_path().is_some() {
            return Self::open(spec);
        }
        Self::open_on(
            spec,
            crate::store::open(&location, storage).map_err(SinkError::Fatal)?,
        )
    }

    /// Opens the sink on `store`, one object per batch until each roll.
    fn open_on(spec: RollingFiles, store: Arc<dyn Store>) -> Result<Self, SinkError> {
        let location = store.location().clone();
        let unavailable = |e: StoreError| SinkError::Unavailable(e.to_string());
        let mut state = match store.get(STATE) {
            Ok(blob) => {
                RollState::decode(&String::from_utf8_lossy(&blob.bytes)).ok_or_else(|| {
                    SinkError::Fatal(format!(
                        "{} is not a rolling-file state; move it away to start afresh",
                        location.join(STATE)
                    ))
                })?
            }
            Err(StoreError::NotFound(_)) => RollState::default(),
            Err(e) => return Err(unavailable(e)),
        };
        if let Some(name) = finished_name(&spec, &state) {
            if state.committed_len > 0 && store.get_range(&name, 0, 1).is_ok() {
                // A crash right after a roll wrote the finished object: start a new one.
                state = state.rolled();
            }
        }
        // Pieces that are not the committed in-progress file's: a roll's leftovers, or a batch
        // whose state was never saved (it is written again).
        for piece in store.list(IN_PROGRESS).map_err(unavailable)? {
            let time: Option<u64> = piece.name.parse().ok();
            let committed = state.committed_len > 0 && time.is_some_and(|t| state.spans(t));
            if !committed {
                store
                    .delete(&format!("{IN_PROGRESS}/{}", piece.name))
                    .map_err(unavailable)?;
            }
        }
        Ok(Self {
            spec,
            state: Mutex::new(state),
            objects: Some(store),
        })
    }

    /// Opens the local directory, recovering from a crash (see the module docs).
    pub fn open(spec: RollingFiles) -> Result<Self, SinkError> {
        let io = |what: &str, e: std::io::Error| {
            SinkError::Fatal(format!("cannot {what} {}: {e}", spec.dir.display()))
        };
        fs::create_dir_all(&spec.dir).map_err(|e| io("create", e))?;
        let mut state = match fs::read_to_string(spec.dir.join(STATE)) {
            Ok(text) => RollState::decode(&text).ok_or_else(|| {
                SinkError::Fatal(format!(
                    "{} is not a rolling-file state; move it away to start afresh",
                    spec.dir.join(STATE).display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RollState::default(),
            Err(e) => return Err(io("read the state in", e)),
        };
        if state.committed_len > 0 && !spec.dir.join(IN_PROGRESS).exists() {
            // A crash right after a roll renamed the file: it is finished; start a new one.
            state = state.rolled();
        }
        Ok(Self {
            spec,
            state: Mutex::new(state),
            objects: None,
        })
    }

    /// Appends one batch (all its partitions, in order), once.
    pub fn write<T: Show>(
        &self,
        batch: PartitionId,
        parts: &[Vec<T>],
        stats: &SinkStats,
    ) -> Result<(), SinkError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let time = batch.batch.millis();
        if state.last_batch.is_some_and(|last| last >= time) {
            stats.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let aged = state.first_batch.is_some_and(|first| {
            time.saturating_sub(first) >= self.spec.max_age.as_millis() as u64
        });
        if state.committed_len > 0 && aged {
            self.roll(&mut state)?;
        }
        let mut text = String::new();
        let mut records = 0u64;
        for record in parts.iter().flatten() {
            record.show(&mut text);
            text.push('\n');
            records += 1;
        }
        let mut next = *state;
        if !text.is_empty() {
            next.committed_len += text.len() as u64;
            match &self.objects {
                Some(store) => {
                    store
                        .put(&piece_name(time), text.into_bytes(), Put::Overwrite)
                        .map_err(|e| SinkError::Unavailable(e.to_string()))?;
                }
                None => self
                    .append(state.committed_len, text.as_bytes())
                    .map_err(|e| self.unavailable("write", IN_PROGRESS, e))?,
            }
            next.first_batch = next.first_batch.or(Some(time));
        }
        next.last_batch = Some(time);
        super::failpoint("rolling.before_state");
        self.save(&next)?;
        *state = next;
        stats.records.fetch_add(records, Ordering::Relaxed);
        if state.committed_len >= self.spec.max_bytes {
            self.roll(&mut state)?;
        }
        Ok(())
    }

    /// Finishes the in-progress file (a graceful stop), so readers see everything written.
    pub fn close(&self) -> Result<(), SinkError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.committed_len > 0 {
            self.roll(&mut state)?;
        }
        Ok(())
    }

    fn append(&self, committed: u64, bytes: &[u8]) -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(self.spec.dir.join(IN_PROGRESS))?;
        // Whatever lies past the committed length is a crashed write's; it goes.
        file.set_len(committed)?;
        file.seek(SeekFrom::Start(committed))?;
        file.write_all(bytes)?;
        file.sync_data()
    }

    fn roll(&self, state: &mut RollState) -> Result<(), SinkError> {
        let Some(name) = finished_name(&self.spec, state) else {
            return Ok(());
        };
        if let Some(store) = &self.objects {
            return self.roll_objects(store.as_ref(), state, &name);
        }
        let from = self.spec.dir.join(IN_PROGRESS);
        // Drop anything past the committed length before the file becomes visible.
        OpenOptions::new()
            .write(true)
            .open(&from)
            .and_then(|f| f.set_len(state.committed_len).and_then(|_| f.sync_data()))
            .map_err(|e| self.unavailable("trim", IN_PROGRESS, e))?;
        fs::rename(&from, self.spec.dir.join(&name))
            .map_err(|e| self.unavailable("roll into", &name, e))?;
        super::failpoint("rolling.after_rename");
        let next = state.rolled();
        self.save(&next)?;
        *state = next;
        Ok(())
    }

    /// Rolls on an object store: the finished object from the batches' pieces, the state, then
    /// the pieces go.
    fn roll_objects(
        &self,
        store: &dyn Store,
        state: &mut RollState,
        name: &str,
    ) -> Result<(), SinkError> {
        let unavailable = |e: StoreError| SinkError::Unavailable(e.to_string());
        let mut pieces: Vec<u64> = store
            .list(IN_PROGRESS)
            .map_err(unavailable)?
            .iter()
            .filter_map(|piece| piece.name.parse().ok())
            .filter(|t| state.spans(*t))
            .collect();
        pieces.sort_unstable();
        let mut bytes = Vec::with_capacity(state.committed_len as usize);
        for &time in &pieces {
            bytes.extend(store.get(&piece_name(time)).map_err(unavailable)?.bytes);
        }
        if bytes.len() as u64 != state.committed_len {
            return Err(SinkError::Fatal(format!(
                "the in-progress pieces in {} hold {} bytes, and the state says {}: move the \
                 directory away to start afresh",
                store.location().join(IN_PROGRESS),
                bytes.len(),
                state.committed_len
            )));
        }
        store
            .put(name, bytes, Put::Overwrite)
            .map_err(unavailable)?;
        super::failpoint("rolling.after_rename");
        let next = state.rolled();
        self.save(&next)?;
        *state = next;
        for time in pieces {
            store.delete(&piece_name(time)).map_err(unavailable)?;
        }
        Ok(())
    }

    fn save(&self, state: &RollState) -> Result<(), SinkError> {
        if let Some(store) = &self.objects {
            return store
                .put(STATE, state.encode().into_bytes(), Put::Overwrite)
                .map(|_| ())
                .map_err(|e| SinkError::Unavailable(e.to_string()));
        }
        let tmp = self.spec.dir.join(format!("{STATE}.tmp"));
        let result = File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(state.encode().as_bytes())?;
                f.sync_all()
            })
            .and_then(|_| fs::rename(&tmp, self.spec.dir.join(STATE)))
            .and_then(|_| File::open(&self.spec.dir)?.sync_all());
        result.map_err(|e| self.unavailable("save the state in", STATE, e))
    }

    fn unavailable(&self, what: &str, file: &str, e: std::io::Error) -> SinkError {
        SinkError::Unavailable(format!(
            "cannot {what} {}: {e}",
            self.spec.dir.join(file).display()
        ))
    }
}

/// The finished file of the state's batches, if it has any.
fn finished_name(spec: &RollingFiles, state: &RollState) -> Option<String> {
    let (first, last) = (state.first_batch?, state.last_batch?);
    Some(format!(
        "{}-{first:013}-{last:013}{}",
        spec.prefix, spec.suffix
    ))
}

/// The object holding batch `time`'s text until the roll.
fn piece_name(time: u64) -> String {
    format!("{IN_PROGRESS}/{time:013}")
}

impl super::OpenSink for RollingSink {
    fn close(&self) -> Result<(), SinkError> {
        RollingSink::close(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Time;

    fn at(ms: u64) -> PartitionId {
        PartitionId {
            batch: Time(ms),
            partition: 0,
            partitions: 1,
        }
    }

    fn finished(dir: &Path) -> Vec<(String, String)> {
        let mut files: Vec<(String, String)> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .map(|n| (n.clone(), fs::read_to_string(dir.join(&n)).unwrap()))
            .collect();
        files.sort();
        files
    }

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("streamc-rolling-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn rolls_by_size_and_by_age_and_skips_replayed_batches() {
        let dir = temp("roll");
        let stats = SinkStats::default();
        let sink = RollingSink::open(
            RollingFiles::new(&dir)
                .max_bytes(12)
                .max_age(Duration::from_secs(10)),
        )
        .unwrap();
        sink.write(at(1000), &[vec!["aaaa"], vec!["bbbb"]], &stats)
            .unwrap();
        assert!(finished(&dir).is_empty(), "10 bytes: not rolled yet");
        sink.write(at(2000), &[vec!["cccc"]], &stats).unwrap();
        assert_eq!(
            finished(&dir),
            vec![(
                "part-0000000001000-0000000002000.txt".into(),
                "aaaa\nbbbb\ncccc\n".into()
            )]
        );
        sink.write(at(2000), &[vec!["dup!"]], &stats).unwrap();
        assert_eq!(stats.counts().skipped, 1);
        sink.write(at(3000), &[vec!["x"]], &stats).unwrap();
        sink.write(at(13000), &[vec!["y"]], &stats).unwrap();
        assert_eq!(finished(&dir).len(), 2, "rolled by age before batch 13000");
        assert_eq!(finished(&dir)[1].1, "x\n");
        sink.close().unwrap();
        assert_eq!(finished(&dir)[2].1, "y\n");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_crashed_write_is_cut_back_and_the_batch_written_once() {
        let dir = temp("crash");
        let stats = SinkStats::default();
        let spec = RollingFiles::new(&dir);
        let sink = RollingSink::open(spec.clone()).unwrap();
        sink.write(at(1000), &[vec!["one"]], &stats).unwrap();
        drop(sink);
        // A crash in the middle of batch 2000: bytes appended, state not saved.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(IN_PROGRESS))
            .unwrap();
        f.write_all(b"half a rec").unwrap();
        drop(f);
        let sink = RollingSink::open(spec.clone()).unwrap();
        sink.write(at(1000), &[vec!["one"]], &stats).unwrap();
        sink.write(at(2000), &[vec!["two"]], &stats).unwrap();
        sink.close().unwrap();
        assert_eq!(finished(&dir)[0].1, "one\ntwo\n");
        // After a roll whose state was not saved, the renamed file is not reopened.
        let sink = RollingSink::open(spec).unwrap();
        sink.write(at(3000), &[vec!["three"]], &stats).unwrap();
        sink.close().unwrap();
        assert_eq!(finished(&dir).len(), 2);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn state_round_trips() {
        let s = RollState {
            last_batch: Some(5),
            first_batch: None,
            committed_len: 7,
        };
        assert_eq!(RollState::decode(&s.encode()), Some(s));
        assert_eq!(RollState::decode("garbage"), None);
    }

    #[test]
    fn on_an_object_store_batches_are_pieces_until_a_roll_and_crashes_change_nothing() {
        let dir = temp("objects");
        let store: Arc<dyn Store> = Arc::new(crate::store::LocalStore::new(&dir));
        let stats = SinkStats::default();
        let spec = RollingFiles::new("s3://bucket/clicks").max_bytes(12);
        let sink = RollingSink::open_on(spec.clone(), store.clone()).unwrap();
        sink.write(at(1000), &[vec!["aaaa"], vec!["bbbb"]], &stats)
            .unwrap();
        assert!(finished(&dir).is_empty());
        assert_eq!(store.list(IN_PROGRESS).unwrap().len(), 1);
        // A crash after batch 2000's piece, before its state: the piece goes at reopening.
        store
            .put(&piece_name(2000), b"half".to_vec(), Put::Overwrite)
            .unwrap();
        drop(sink);
        let sink = RollingSink::open_on(spec.clone(), store.clone()).unwrap();
        assert_eq!(store.list(IN_PROGRESS).unwrap().len(), 1);
        sink.write(at(1000), &[vec!["dup!"]], &stats).unwrap();
        sink.write(at(2000), &[vec!["cccc"]], &stats).unwrap();
        assert_eq!(
            finished(&dir),
            vec![(
                "part-0000000001000-0000000002000.txt".into(),
                "aaaa\nbbbb\ncccc\n".into()
            )]
        );
        assert!(store.list(IN_PROGRESS).unwrap().is_empty());
        // A crash after a roll wrote the finished object, before its state was saved.
        sink.write(at(3000), &[vec!["x"]], &stats).unwrap();
        let state = RollState {
            last_batch: Some(3000),
            first_batch: Some(3000),
            committed_len: 2,
        };
        store
            .put(
                "part-0000000003000-0000000003000.txt",
                b"x\n".to_vec(),
                Put::Overwrite,
            )
            .unwrap();
        store
            .put(STATE, state.encode().into_bytes(), Put::Overwrite)
            .unwrap();
        drop(sink);
        let sink = RollingSink::open_on(spec, store.clone()).unwrap();
        assert!(store.list(IN_PROGRESS).unwrap().is_empty());
        sink.write(at(4000), &[vec!["y"]], &stats).unwrap();
        sink.close().unwrap();
        let files = finished(&dir);
        assert_eq!(files.len(), 3, "{files:?}");
        assert_eq!(files[2].1, "y\n");
        let _ = fs::remove_dir_all(dir);
    }
}
