//! `text_file_stream(dir)`: Spark's textFileStream. Each batch takes the files that appeared in the
//! directory since the previous batch. There is no receiver: files are read when their batch is cut,
//! large ones in parallel chunks split at line boundaries. Files must appear atomically (written
//! elsewhere, then moved in); names starting with `.` or `_` are ignored, as are in-progress copies.
//!
//! The source's position is the set of files already taken, so a checkpoint records exactly which files
//! each batch consumed, and after a crash every file is processed exactly once.

use super::socket::LineSplitter;
use super::text::{TextBlock, TextPartition};
use super::{ReceiverCounters, Source, SourceError, SourceStats};
use crate::store::{Entry, Location, StorageOptions, Store};
use crate::time::Time;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Options of a directory source.
#[derive(Clone, Debug)]
pub struct FileOptions {
    /// Only names matching this glob (`*` and `?`), e.g. `*.log`.
    pub pattern: Option<String>,
    /// Files larger than this are read in chunks of this size, in parallel (ranged reads on object
    /// stores).
    pub chunk_bytes: u64,
    /// Longer lines are skipped and counted as oversized.
    pub max_line_bytes: usize,
    /// Files last modified longer than this before a batch's time are ignored, and forgotten once
    /// taken (Spark's `minRememberDuration`): what keeps the record of taken files bounded in a
    /// bucket nobody empties. `None`: every file present is taken, and remembered while present.
    pub remember: Option<Duration>,
    /// How an object store directory is reached.
    pub storage: StorageOptions,
    /// On a fresh start, read the files already present too (Spark's `newFilesOnly = false`).
    pub include_existing: bool,
}

impl Default for FileOptions {
    fn default() -> Self {
        Self {
            pattern: None,
            chunk_bytes: 8 << 20,
            max_line_bytes: 1 << 20,
            remember: None,
            storage: StorageOptions::default(),
            include_existing: false,
        }
    }
}

/// A directory (or object store prefix) of text files.
pub struct TextFileSource {
    name: String,
    /// Where the files are: a bad URL is reported when the source starts.
    location: Result<Location, String>,
    store: Option<Arc<dyn Store>>,
    options: FileOptions,
    /// The files already taken, with their modification times (only those still present, and
    /// under `remember` still recent, are kept).
    taken: BTreeMap<String, u64>,
    counters: Arc<ReceiverCounters>,
    /// A fresh start that leaves the files already present alone.
    ignore_present: bool,
    /// The files left alone because they were there at the first start (while still present).
    /// Part of the position, apart from `taken`, so that re-cutting the first batch after a crash
    /// does not read them.
    ignored: BTreeMap<String, u64>,
}

impl TextFileSource {
    /// A source named `name` reading the text files that appear in `dir`: a local directory, a
    /// `file://` URL or an object store prefix (`s3://bucket/incoming`).
    pub fn new(name: &str, dir: impl AsRef<std::ffi::OsStr>, options: FileOptions) -> Self {
        let dir = dir.as_ref().to_string_lossy();
        Self {
            name: name.to_string(),
            location: Location::parse(&dir),
            store: None,
            options,
            taken: BTreeMap::new(),
            counters: Arc::default(),
            ignore_present: false,
            ignored: BTreeMap::new(),
        }
    }

    /// A source reading the files of `store`.
    pub fn with_store(name: &str, store: Arc<dyn Store>, options: FileOptions) -> Self {
        Self {
            name: name.to_string(),
            location: Ok(store.location().clone()),
            store: Some(store),
            options,
            taken: BTreeMap::new(),
            counters: Arc::default(),
            ignore_present: false,
            ignored: BTreeMap::new(),
        }
    }

    fn describe(&self) -> String {
        match &self.location {
            Ok(location) => location.to_string(),
            Err(e) => e.clone(),
        }
    }

    fn store(&mut self) -> Result<Arc<dyn Store>, String> {
        if let Some(store) = &self.store {
            return Ok(store.clone());
        }
        let location = self.location.clone()?;
        let store = crate::store::open(&location, &self.options.storage)?;
        self.store = Some(store.clone());
        Ok(store)
    }

    /// The files of the directory, or why they could not be listed.
    fn list(&mut self) -> Result<Vec<Entry>, String> {
        let store = self.store()?;
        store
            .list("")
            .map_err(|e| format!("cannot list {}: {e}", self.describe()))
    }

    /// Whether `file` was taken (or left alone at the first start) before. A name is forgotten
    /// once a batch finds it gone, so a file deleted and created again later is new; one changed in
    /// place is not read again (as in Spark: files must be moved in whole).
    fn already_taken(&self, file: &Entry) -> bool {
        self.taken.contains_key(&file.name) || self.ignored.contains_key(&file.name)
    }

    /// Whether a file modified at `modified_ms` is too old for the batch at `time`.
    fn forgotten(&self, time: Time, modified_ms: u64) -> bool {
        self.options.remember.is_some_and(|horizon| {
            modified_ms.saturating_add(horizon.as_millis() as u64) < time.millis()
        })
    }

    fn report(&self, message: String) {
        tracing::warn!(source = %self.name, "{message}");
        ReceiverCounters::add(&self.counters.connection_errors, 1);
        self.counters.set_error(message);
    }

    /// Reads `files` (in name order) into partitions.
    fn read(&mut self, files: Vec<Entry>, partitions: usize) -> Vec<TextPartition> {
        if files.is_empty() {
            return TextPartition::spread(Vec::new(), partitions);
        }
        let store = match self.store() {
            Ok(store) => store,
            Err(e) => {
                self.report(e);
                return TextPartition::spread(Vec::new(), partitions);
            }
        };
        let chunk = self.options.chunk_bytes.max(1);
        let pieces: Vec<(Entry, u64)> = files
            .into_iter()
            .flat_map(|f| {
                let starts: Vec<u64> = (0..f.len.div_ceil(chunk).max(1))
                    .map(|i| i * chunk)
                    .collect();
                starts.into_iter().map(move |s| (f.clone(), s))
            })
            .collect();
        let read =
            |(file, start): &(Entry, u64)| self.read_piece(store.as_ref(), file, *start, chunk);
        let results: Vec<Result<(TextBlock, u64, u64), String>> =
            if store.location().local_path().is_some() {
                pieces.par_iter().map(read).collect()
            } else {
                // Reads from an object store wait on the network, not the CPU: more of them in
                // flight than there are cores.
                let next = std::sync::atomic::AtomicUsize::new(0);
                let slots: Vec<std::sync::Mutex<Option<_>>> =
                    pieces.iter().map(|_| std::sync::Mutex::new(None)).collect();
                std::thread::scope(|scope| {
                    for _ in 0..OBJECT_READS_IN_FLIGHT.min(pieces.len()) {
                        scope.spawn(|| loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(piece) = pieces.get(i) else { break };
                            let result = read(piece);
                            *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
                        });
                    }
                });
                slots
                    .into_iter()
                    .filter_map(|slot| slot.into_inner().unwrap_or_else(|p| p.into_inner()))
                    .collect()
            };
        let mut blocks = Vec::new();
        for result in results {
            match result {
                Ok((block, invalid, oversized)) => {
                    ReceiverCounters::add(&self.counters.invalid_utf8_lines, invalid);
                    ReceiverCounters::add(&self.counters.oversized_lines, oversized);
                    ReceiverCounters::add(&self.counters.records, block.len() as u64);
                    ReceiverCounters::add(&self.counters.bytes, block.bytes() as u64);
                    blocks.push(block);
                }
                Err(problem) => self.report(problem),
            }
        }
        TextPartition::spread(blocks, partitions)
    }

    /// The lines that start inside `[start, start + chunk)`: a piece skips the line its start falls in
    /// (the previous piece owns it) and reads past its end to finish its last line.
    fn read_piece(
        &self,
        store: &dyn Store,
        file: &Entry,
        start: u64,
        chunk: u64,
    ) -> Result<(TextBlock, u64, u64), String> {
        let read = |offset: u64, len: usize| {
            store
                .get_range(&file.name, offset, len)
                .map_err(|e| format!("cannot read {}: {e}", store.location().join(&file.name)))
        };
        // Start one byte early: if that byte is a newline, the piece's first line starts exactly at `start`.
        let from = start.saturating_sub(1);
        let end = (start + chunk).min(file.len);
        let mut bytes = read(from, (end - from) as usize)?;
        let mut skip = 0;
        if start > 0 {
            match memchr::memchr(b'\n', &bytes) {
                Some(newline) => skip = newline + 1,
                None => return Ok((TextBlock::new(), 0, 0)),
            }
        }
        // Finish the last line from the following bytes.
        let mut next = end;
        while next < file.len && bytes.last() != Some(&b'\n') {
            let more = read(next, 64 * 1024)?;
            if more.is_empty() {
                break;
            }
            next += more.len() as u64;
            match memchr::memchr(b'\n', &more) {
                Some(newline) => {
                    bytes.extend_from_slice(&more[..=newline]);
                    break;
                }
                None => bytes.extend_from_slice(&more),
            }
        }
        let mut block = TextBlock::new();
        let mut splitter = LineSplitter::new(self.options.max_line_bytes);
        let a = splitter.feed(&bytes[skip..], &mut block);
        let b = splitter.finish(&mut block);
        Ok((
            block,
            a.invalid_utf8 + b.invalid_utf8,
            a.oversized + b.oversized,
        ))
    }
}

impl TextFileSource {
    /// The taken and the ignored files of a position.
    fn decode(&self, position: &[u8]) -> Result<(Taken, Taken), SourceError> {
        let decoded = if let Some(current) = position.strip_prefix(POSITION_MAGIC) {
            postcard::from_bytes(current)
        } else if let Some(taken) = position.strip_prefix(POSITION_MAGIC_2) {
            // An earlier build's: no ignored files.
            postcard::from_bytes(taken).map(|taken| (taken, Taken::new()))
        } else {
            // Older still, before files were remembered with their times: kept while present.
            postcard::from_bytes::<std::collections::BTreeSet<String>>(position).map(|names| {
                let taken = names.into_iter().map(|n| (n, u64::MAX)).collect();
                (taken, Taken::new())
            })
        };
        decoded.map_err(|e| SourceError {
            source_name: self.name.clone(),
            message: format!("malformed position in the checkpoint: {e}"),
        })
    }
}

/// Ranged GETs a directory source keeps in flight on an object store.
const OBJECT_READS_IN_FLIGHT: usize = 16;

/// Begins a position of taken files with their modification times.
const POSITION_MAGIC: &[u8] = b"streamc-files-3:";
/// Begins a position of taken files without the ignored ones (earlier builds).
const POSITION_MAGIC_2: &[u8] = b"streamc-files-2:";

/// File names with their modification times.
type Taken = BTreeMap<String, u64>;

/// `*` matches any run of characters, `?` one character.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Hidden names, and the names copies in progress use (`x.tmp`, Hadoop's `x._COPYING_`).
fn visible(name: &str) -> bool {
    !(name.starts_with('.')
        || name.starts_with('_')
        || name.ends_with(".tmp")
        || name.ends_with("._COPYING_"))
}

impl Source for TextFileSource {
    type Batch = Vec<TextPartition>;

    fn name(&self) -> &str {
        &self.name
    }

    fn fresh_start(&mut self) {
        self.ignore_present = !self.options.include_existing;
    }

    fn start(&mut self, _env: &super::ReceiverEnv) -> Result<(), SourceError> {
        match self.list() {
            Ok(files) => {
                if self.ignore_present {
                    // Spark's newFilesOnly: what is there before the first start is not new.
                    let present: Vec<Entry> =
                        files.into_iter().filter(|f| visible(&f.name)).collect();
                    if !present.is_empty() {
                        tracing::info!(
                            source = %self.name,
                            files = present.len(),
                            "ignoring the files already in the directory (--files-include-existing reads them)"
                        );
                    }
                    self.ignored
                        .extend(present.into_iter().map(|f| (f.name, f.modified_ms)));
                }
                Ok(())
            }
            Err(e) => Err(SourceError {
                source_name: self.name.clone(),
                message: format!(
                    "{e}; create it, or point `--source {}=DIR` at another",
                    self.name
                ),
            }),
        }
    }

    fn cut(&mut self, time: Time, partitions: usize) -> Self::Batch {
        let listed = match self.list() {
            Ok(files) => files,
            Err(e) => {
                // Nothing is marked taken: the files are read by the first batch that lists them.
                self.report(e);
                return TextPartition::spread(Vec::new(), partitions);
            }
        };
        let present: BTreeMap<&str, u64> = listed
            .iter()
            .map(|f| (f.name.as_str(), f.modified_ms))
            .collect();
        let remember = self.options.remember;
        self.ignored
            .retain(|name, _| present.contains_key(name.as_str()));
        self.taken.retain(|name, modified_ms| {
            present.contains_key(name.as_str())
                && remember.is_none_or(|h| {
                    modified_ms.saturating_add(h.as_millis() as u64) >= time.millis()
                })
        });
        let mut new: Vec<Entry> = listed
            .into_iter()
            .filter(|f| visible(&f.name) && !self.already_taken(f))
            .filter(|f| !self.forgotten(time, f.modified_ms))
            .filter(|f| {
                self.options
                    .pattern
                    .as_deref()
                    .is_none_or(|p| glob_matches(p, &f.name))
            })
            .collect();
        new.sort_by(|a, b| a.name.cmp(&b.name));
        self.taken
            .extend(new.iter().map(|f| (f.name.clone(), f.modified_ms)));
        self.read(new, partitions)
    }

    fn records_in(batch: &Self::Batch) -> usize {
        batch.iter().map(TextPartition::len).sum()
    }

    fn stats(&self) -> Option<SourceStats> {
        // Read at each cut, not received: its counters, but no row in the receiver table.
        Some(SourceStats {
            receiver: false,
            ..self.counters.snapshot()
        })
    }

    fn position(&self) -> Option<Vec<u8>> {
        let position = POSITION_MAGIC.to_vec();
        postcard::to_extend(&(&self.taken, &self.ignored), position).ok()
    }

    fn recut(
        &mut self,
        _time: Time,
        partitions: usize,
        position: &[u8],
    ) -> Result<Self::Batch, SourceError> {
        let (target, ignored) = self.decode(position)?;
        self.ignored = ignored;
        let listed = self.list().map_err(|message| SourceError {
            source_name: self.name.clone(),
            message,
        })?;
        let mut again: Vec<Entry> = listed
            .into_iter()
            .filter(|f| target.contains_key(&f.name) && !self.already_taken(f))
            .collect();
        again.sort_by(|a, b| a.name.cmp(&b.name));
        self.taken = target;
        Ok(self.read(again, partitions))
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        (self.taken, self.ignored) = self.decode(position)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_matches("*.log", "app.log"));
        assert!(!glob_matches("*.log", "app.log.tmp"));
        assert!(glob_matches("part-??.txt", "part-07.txt"));
        assert!(glob_matches("*", ""));
        assert!(!glob_matches("a*b", "acd"));
    }

    #[test]
    fn chunked_reads_split_on_line_boundaries_and_lose_nothing() {
        let dir = std::env::temp_dir().join(format!("streamc-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let lines: Vec<String> = (0..5000)
            .map(|i| format!("line {i} {}", "x".repeat(i % 37)))
            .collect();
        std::fs::write(dir.join("big.txt"), lines.join("\n")).unwrap();
        std::fs::write(dir.join(".hidden"), "no\n").unwrap();
        std::fs::write(dir.join("_copying"), "no\n").unwrap();
        std::fs::write(dir.join("half.txt.tmp"), "no\n").unwrap();
        std::fs::write(dir.join("put.txt._COPYING_"), "no\n").unwrap();
        for chunk in [7u64, 64, 1000, 1 << 20] {
            let options = FileOptions {
                chunk_bytes: chunk,
                ..FileOptions::default()
            };
            let mut source = TextFileSource::new("files", &dir, options);
            let parts = source.cut(Time(1000), 3);
            let got: Vec<String> = parts
                .iter()
                .flat_map(|p| p.lines().map(str::to_string))
                .collect();
            let mut sorted_got = got.clone();
            sorted_got.sort();
            let mut expected = lines.clone();
            expected.sort();
            assert_eq!(sorted_got, expected, "chunk size {chunk}");
            assert_eq!(
                TextFileSource::records_in(&source.cut(Time(2000), 3)),
                0,
                "a file is taken once"
            );
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_remember_horizon_ignores_old_files_and_forgets_taken_ones() {
        let dir =
            std::env::temp_dir().join(format!("streamc-files-remember-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let now = std::time::SystemTime::now();
        let now_ms = now
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        std::fs::write(dir.join("old.txt"), "old\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(dir.join("old.txt"))
            .unwrap()
            .set_modified(now - Duration::from_secs(600))
            .unwrap();
        std::fs::write(dir.join("new.txt"), "new\n").unwrap();
        let options = FileOptions {
            remember: Some(Duration::from_secs(60)),
            ..FileOptions::default()
        };
        let mut source = TextFileSource::new("files", &dir, options);
        let lines = |parts: Vec<TextPartition>| -> Vec<String> {
            parts
                .iter()
                .flat_map(|p| p.lines().map(str::to_string))
                .collect()
        };
        assert_eq!(lines(source.cut(Time(now_ms), 2)), vec!["new".to_string()]);
        assert_eq!(source.taken.len(), 1);
        // Two minutes on, new.txt is past the horizon: forgotten, and not read again.
        assert!(lines(source.cut(Time(now_ms + 120_000), 2)).is_empty());
        assert!(source.taken.is_empty(), "{:?}", source.taken);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn positions_round_trip_and_the_earlier_format_is_still_read() {
        let mut source = TextFileSource::new("files", "unused", FileOptions::default());
        source.taken.insert("a.txt".into(), 42);
        let position = source.position().unwrap();
        let mut restored = TextFileSource::new("files", "unused", FileOptions::default());
        restored.seek(&position).unwrap();
        assert_eq!(restored.taken, source.taken);
        let earlier: std::collections::BTreeSet<String> = ["b.txt".to_string()].into();
        restored
            .seek(&postcard::to_stdvec(&earlier).unwrap())
            .unwrap();
        assert_eq!(
            restored.taken,
            BTreeMap::from([("b.txt".to_string(), u64::MAX)])
        );
    }
}
