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
use crate::time::Time;
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a directory source needs from a file system: local directories now, object stores later.
pub trait FileSystem: Send + Sync + 'static {
    /// The regular files directly inside `dir`, with their sizes.
    fn list(&self, dir: &Path) -> io::Result<Vec<FileEntry>>;
    /// `len` bytes of `file` from `offset` (fewer at the end of the file).
    fn read_at(&self, file: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>>;
}

/// A file found in a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// The file's name inside the directory, without the directory.
    pub name: String,
    /// The file's size in bytes when it was listed.
    pub len: u64,
}

/// The local file system.
pub struct LocalFileSystem;

impl FileSystem for LocalFileSystem {
    fn list(&self, dir: &Path) -> io::Result<Vec<FileEntry>> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let metadata = entry.metadata()?;
            if metadata.is_file() {
                files.push(FileEntry {
                    name: entry.file_name().to_string_lossy().into_owned(),
                    len: metadata.len(),
                });
            }
        }
        Ok(files)
    }

    fn read_at(&self, file: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(file)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(len);
        f.take(len as u64).read_to_end(&mut buf)?;
        Ok(buf)
    }
}

/// Options of a directory source.
#[derive(Clone, Debug)]
pub struct FileOptions {
    /// Only names matching this glob (`*` and `?`), e.g. `*.log`.
    pub pattern: Option<String>,
    /// Files larger than this are read in chunks of this size, in parallel.
    pub chunk_bytes: u64,
    /// Longer lines are skipped and counted as oversized.
    pub max_line_bytes: usize,
}

impl Default for FileOptions {
    fn default() -> Self {
        Self {
            pattern: None,
            chunk_bytes: 8 << 20,
            max_line_bytes: 1 << 20,
        }
    }
}

/// A directory of text files.
pub struct TextFileSource {
    name: String,
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    options: FileOptions,
    /// Names of the files already taken (only those still present are remembered).
    taken: BTreeSet<String>,
    counters: Arc<ReceiverCounters>,
}

impl TextFileSource {
    /// A source named `name` reading the text files that appear in the local directory `dir`.
    pub fn new(name: &str, dir: impl Into<PathBuf>, options: FileOptions) -> Self {
        Self::with_file_system(name, dir, options, Arc::new(LocalFileSystem))
    }

    /// Like [`TextFileSource::new`], but reading `dir` through `fs` instead of the local file
    /// system (for tests, or other stores).
    pub fn with_file_system(
        name: &str,
        dir: impl Into<PathBuf>,
        options: FileOptions,
        fs: Arc<dyn FileSystem>,
    ) -> Self {
        Self {
            name: name.to_string(),
            dir: dir.into(),
            fs,
            options,
            taken: BTreeSet::new(),
            counters: Arc::default(),
        }
    }

    fn report(&self, message: String) {
        tracing::warn!(source = %self.name, "{message}");
        ReceiverCounters::add(&self.counters.connection_errors, 1);
        self.counters.set_error(message);
    }

    /// Reads `files` (in name order) into partitions.
    fn read(&self, files: Vec<FileEntry>, partitions: usize) -> Vec<TextPartition> {
        let chunk = self.options.chunk_bytes.max(1);
        let pieces: Vec<(FileEntry, u64)> = files
            .into_iter()
            .flat_map(|f| {
                let starts: Vec<u64> = (0..f.len.div_ceil(chunk).max(1))
                    .map(|i| i * chunk)
                    .collect();
                starts.into_iter().map(move |s| (f.clone(), s))
            })
            .collect();
        let results: Vec<Result<(TextBlock, u64, u64), String>> = pieces
            .into_par_iter()
            .map(|(file, start)| self.read_piece(&file, start, chunk))
            .collect();
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
        file: &FileEntry,
        start: u64,
        chunk: u64,
    ) -> Result<(TextBlock, u64, u64), String> {
        let path = self.dir.join(&file.name);
        let read = |offset: u64, len: usize| {
            self.fs
                .read_at(&path, offset, len)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
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
    fn decode(&self, position: &[u8]) -> Result<BTreeSet<String>, SourceError> {
        postcard::from_bytes(position).map_err(|e| SourceError {
            source_name: self.name.clone(),
            message: format!("malformed position in the checkpoint: {e}"),
        })
    }
}

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

    fn start(&mut self, _env: &super::ReceiverEnv) -> Result<(), SourceError> {
        match self.fs.list(&self.dir) {
            Ok(_) => Ok(()),
            Err(e) => Err(SourceError {
                source_name: self.name.clone(),
                message: format!(
                    "cannot read the directory {}: {e}; create it, or point `--source {}=DIR` at another",
                    self.dir.display(),
                    self.name
                ),
            }),
        }
    }

    fn cut(&mut self, _time: Time, partitions: usize) -> Self::Batch {
        let listed = match self.fs.list(&self.dir) {
            Ok(files) => files,
            Err(e) => {
                self.report(format!("cannot list {}: {e}", self.dir.display()));
                return TextPartition::spread(Vec::new(), partitions);
            }
        };
        let present: BTreeSet<&str> = listed.iter().map(|f| f.name.as_str()).collect();
        self.taken.retain(|name| present.contains(name.as_str()));
        let mut new: Vec<FileEntry> = listed
            .into_iter()
            .filter(|f| visible(&f.name) && !self.taken.contains(&f.name))
            .filter(|f| {
                self.options
                    .pattern
                    .as_deref()
                    .is_none_or(|p| glob_matches(p, &f.name))
            })
            .collect();
        new.sort_by(|a, b| a.name.cmp(&b.name));
        self.taken.extend(new.iter().map(|f| f.name.clone()));
        self.read(new, partitions)
    }

    fn records_in(batch: &Self::Batch) -> usize {
        batch.iter().map(TextPartition::len).sum()
    }

    fn stats(&self) -> Option<SourceStats> {
        Some(self.counters.snapshot())
    }

    fn position(&self) -> Option<Vec<u8>> {
        postcard::to_stdvec(&self.taken).ok()
    }

    fn recut(
        &mut self,
        _time: Time,
        partitions: usize,
        position: &[u8],
    ) -> Result<Self::Batch, SourceError> {
        let target = self.decode(position)?;
        let listed = self.fs.list(&self.dir).map_err(|e| SourceError {
            source_name: self.name.clone(),
            message: format!("cannot list {}: {e}", self.dir.display()),
        })?;
        let mut again: Vec<FileEntry> = listed
            .into_iter()
            .filter(|f| target.contains(&f.name) && !self.taken.contains(&f.name))
            .collect();
        again.sort_by(|a, b| a.name.cmp(&b.name));
        self.taken = target;
        Ok(self.read(again, partitions))
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        self.taken = self.decode(position)?;
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
}
