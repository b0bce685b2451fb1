//! A write-ahead log: receivers write what they receive here, durably, before it can be used, so data
//! received but not yet processed survives a crash (Spark's `spark.streaming.receiver.writeAheadLog`).
//!
//! Segment files `segment-<n>.wal` of records framed as length (u32), CRC-32 (u32), payload. A new
//! segment starts when the current one passes the size limit; segments wholly before the position of
//! the last checkpoint are deleted. On opening, a torn tail (a record cut short by a crash, or with a bad
//! checksum) is detected and cut off, and appending resumes at the last whole record.
//!
//! On an object store, which cannot append, every record is one object `segment-<n>.wal` written
//! whole (Spark's `closeFileAfterWrite`): its position is segment `n`, offset its length, so
//! positions keep their meaning and order across both kinds of log.

use crate::store::{Location, Put, StorageOptions, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a record ends: segment number and byte offset. Ordered: later records have larger positions.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct WalPosition {
    /// The number of the segment file (`segment-<n>.wal`) holding the record.
    pub segment: u64,
    /// The byte offset in that segment just past the record's end.
    pub offset: u64,
}

const HEADER: usize = 8;

/// A record read back: where it ends, and its payload.
pub type LogRecord = (WalPosition, Vec<u8>);

/// An open write-ahead log, in a local directory or on an object store.
pub enum WriteAheadLog {
    /// Segment files appended to and fsynced.
    Segments(SegmentLog),
    /// One object per record.
    Objects(ObjectLog),
}

impl WriteAheadLog {
    /// Opens the log at `location`: segment files in a local directory, started anew every
    /// `segment_bytes` or `roll_every`, or objects on a store (one per record).
    pub fn open_at(
        location: &Location,
        storage: &StorageOptions,
        segment_bytes: u64,
        roll_every: std::time::Duration,
    ) -> Result<Self, String> {
        match location.local_path() {
            Some(dir) => SegmentLog::open(dir, segment_bytes)
                .map(|log| Self::Segments(log.rolling_every(roll_every)))
                .map_err(|e| e.to_string()),
            None => ObjectLog::open(crate::store::open(location, storage)?).map(Self::Objects),
        }
    }

    /// Appends one record and makes it durable; returns where it ends. On failure the record is
    /// not in the log, and the call may be repeated.
    pub fn append_durably(&mut self, payload: &[u8]) -> Result<WalPosition, String> {
        match self {
            Self::Segments(log) => log.append_durably(payload).map_err(|e| e.to_string()),
            Self::Objects(log) => log.append(payload),
        }
    }

    /// Every whole record after `from`, oldest first.
    pub fn read_after(&self, from: WalPosition) -> Result<Vec<LogRecord>, String> {
        match self {
            Self::Segments(log) => log.read_after(from).map_err(|e| e.to_string()),
            Self::Objects(log) => log.read_after(from),
        }
    }

    /// Deletes what ends before `position` (covered by a checkpoint); returns how many segments.
    pub fn delete_before(&mut self, position: WalPosition) -> Result<usize, String> {
        match self {
            Self::Segments(log) => log.delete_before(position).map_err(|e| e.to_string()),
            Self::Objects(log) => log.delete_before(position),
        }
    }
}

/// The log as segment files in a local directory.
pub struct SegmentLog {
    dir: PathBuf,
    segment_bytes: u64,
    /// A segment older than this is closed at the next append, so that what a checkpoint covers
    /// can be deleted even when little arrives.
    roll_every: Option<std::time::Duration>,
    /// When the current segment was started (or opened).
    started: std::time::Instant,
    segment: u64,
    file: File,
    len: u64,
    /// A failed append may have left part of a record behind `len`: cut it off before the next one.
    torn: bool,
}

fn segment_name(segment: u64) -> String {
    format!("segment-{segment:020}.wal")
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(segment_name(segment))
}

fn segment_of(name: &str) -> Option<u64> {
    name.strip_prefix("segment-")?
        .strip_suffix(".wal")?
        .parse()
        .ok()
}

fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut found: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| segment_of(&e.file_name().to_string_lossy()))
        .collect();
    found.sort_unstable();
    Ok(found)
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The whole records of one segment from `offset`, with the end position of each; stops at a torn tail.
/// Also returns where the valid data ends.
fn read_segment(dir: &Path, segment: u64, offset: u64) -> io::Result<(Vec<LogRecord>, u64)> {
    let mut bytes = Vec::new();
    File::open(segment_path(dir, segment))?.read_to_end(&mut bytes)?;
    Ok(parse_records(&bytes, segment, offset))
}

/// The whole records of a segment's `bytes` from `offset`, and where the valid data ends.
fn parse_records(bytes: &[u8], segment: u64, offset: u64) -> (Vec<LogRecord>, u64) {
    let mut records = Vec::new();
    let mut at = offset as usize;
    while at + HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap_or_default());
        let end = at + HEADER + len;
        if end > bytes.len() || crc32fast::hash(&bytes[at + HEADER..end]) != crc {
            break;
        }
        records.push((
            WalPosition {
                segment,
                offset: end as u64,
            },
            bytes[at + HEADER..end].to_vec(),
        ));
        at = end;
    }
    (records, at as u64)
}

impl SegmentLog {
    /// Opens the log in `dir` (created if needed), cutting off a torn tail, ready to append.
    pub fn open(dir: &Path, segment_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let existing = segments(dir)?;
        let (segment, len) = match existing.last() {
            Some(&last) => {
                let (_, valid) = read_segment(dir, last, 0)?;
                let file = OpenOptions::new()
                    .write(true)
                    .open(segment_path(dir, last))?;
                if file.metadata()?.len() != valid {
                    tracing::warn!(
                        segment = last,
                        valid_bytes = valid,
                        "write-ahead log: cutting off a torn tail"
                    );
                    file.set_len(valid)?;
                    file.sync_all()?;
                }
                (last, valid)
            }
            None => (0, 0),
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(dir, segment))?;
        file.seek(SeekFrom::End(0))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(1),
            roll_every: None,
            started: std::time::Instant::now(),
            segment,
            file,
            len,
            torn: false,
        })
    }

    /// Appends one record (not yet durable: see [`WriteAheadLog::sync`]); returns where it ends.
    ///
    /// A failed append (a full disk) leaves the log as it was before the call, once the next append
    /// cuts off whatever part of the record reached the file: the caller may simply try again.
    pub fn append(&mut self, payload: &[u8]) -> io::Result<WalPosition> {
        if self.torn {
            self.file.set_len(self.len)?;
            self.torn = false;
        }
        let old = self
            .roll_every
            .is_some_and(|every| self.started.elapsed() >= every);
        if self.len >= self.segment_bytes || (old && self.len > 0) {
            self.roll()?;
        }
        let frame = frame(payload);
        if let Err(e) = self.file.write_all(&frame) {
            self.torn = true;
            // Try to free the space the partial record took at once; the next append does it otherwise.
            if self.file.set_len(self.len).is_ok() {
                self.torn = false;
            }
            return Err(e);
        }
        self.len += frame.len() as u64;
        Ok(WalPosition {
            segment: self.segment,
            offset: self.len,
        })
    }

    /// Appends one record and makes it durable. On failure the record is not in the log (a sync
    /// that failed may have lost it, so it is cut off too), and the call may be repeated.
    pub fn append_durably(&mut self, payload: &[u8]) -> io::Result<WalPosition> {
        let before = self.len;
        let position = self.append(payload)?;
        if let Err(e) = self.sync() {
            self.len = before;
            self.torn = true;
            return Err(e);
        }
        Ok(position)
    }

    /// Starts the next segment; the current one stays as it is if that fails.
    fn roll(&mut self) -> io::Result<()> {
        self.file.sync_all()?;
        let next = self.segment + 1;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(&self.dir, next))?;
        File::open(&self.dir)?.sync_all()?;
        self.segment = next;
        self.file = file;
        self.len = 0;
        self.started = std::time::Instant::now();
        Ok(())
    }

    /// Starts a new segment at the first append after the current one is `every` old.
    pub fn rolling_every(mut self, every: std::time::Duration) -> Self {
        self.roll_every = Some(every);
        self
    }

    /// Makes every appended record durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Every whole record after `from`, oldest first.
    pub fn read_after(&self, from: WalPosition) -> io::Result<Vec<LogRecord>> {
        let mut out = Vec::new();
        for segment in segments(&self.dir)? {
            if segment < from.segment {
                continue;
            }
            let offset = if segment == from.segment {
                from.offset
            } else {
                0
            };
            let (records, _) = read_segment(&self.dir, segment, offset)?;
            out.extend(records);
        }
        Ok(out)
    }

    /// Deletes the segments that end before `position` (their records are covered by a checkpoint).
    pub fn delete_before(&mut self, position: WalPosition) -> io::Result<usize> {
        let mut removed = 0;
        for segment in segments(&self.dir)? {
            if segment < position.segment && segment != self.segment {
                fs::remove_file(segment_path(&self.dir, segment))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Bytes in the current segment.
    #[cfg(test)]
    fn current_len(&self) -> u64 {
        self.len
    }
}

/// The log as one object per record on a store.
pub struct ObjectLog {
    store: Arc<dyn Store>,
    /// The segments the store holds, as listed at opening and written since.
    segments: BTreeSet<u64>,
}

impl ObjectLog {
    fn open(store: Arc<dyn Store>) -> Result<Self, String> {
        let listed = store
            .list("")
            .map_err(|e| format!("cannot list {}: {e}", store.location()))?;
        Ok(Self {
            segments: listed.iter().filter_map(|e| segment_of(&e.name)).collect(),
            store,
        })
    }

    fn append(&mut self, payload: &[u8]) -> Result<WalPosition, String> {
        let segment = self.segments.last().map_or(0, |last| last + 1);
        let frame = frame(payload);
        let offset = frame.len() as u64;
        let checksum = crc32fast::hash(&frame);
        let name = segment_name(segment);
        match self.store.put(&name, frame, Put::Create) {
            Ok(_) => {}
            // A create whose answer was lost and was sent again finds its own record.
            Err(StoreError::Exists(_))
                if self.store.get(&name).is_ok_and(|blob| {
                    blob.bytes.len() as u64 == offset && crc32fast::hash(&blob.bytes) == checksum
                }) => {}
            Err(StoreError::Exists(name)) => {
                // Another writer on the same log: this one must not go on beside it.
                return Err(format!(
                    "{name} was written by another app using the same write-ahead log"
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
        self.segments.insert(segment);
        Ok(WalPosition { segment, offset })
    }

    fn read_after(&self, from: WalPosition) -> Result<Vec<LogRecord>, String> {
        let mut out = Vec::new();
        for &segment in self.segments.range(from.segment..) {
            let blob = match self.store.get(&segment_name(segment)) {
                Ok(blob) => blob,
                // Deleted after the listing (covered by a checkpoint meanwhile): nothing to replay.
                Err(StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e.to_string()),
            };
            let (records, valid) = parse_records(&blob.bytes, segment, 0);
            if valid != blob.bytes.len() as u64 {
                tracing::warn!(segment, "write-ahead log: skipping a damaged record object");
            }
            out.extend(records.into_iter().filter(|(position, _)| *position > from));
        }
        Ok(out)
    }

    fn delete_before(&mut self, position: WalPosition) -> Result<usize, String> {
        let old: Vec<u64> = self.segments.range(..position.segment).copied().collect();
        for &segment in &old {
            self.store
                .delete(&segment_name(segment))
                .map_err(|e| e.to_string())?;
            self.segments.remove(&segment);
        }
        Ok(old.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("streamc-wal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn appends_roll_read_back_and_clean_up() {
        let d = dir("roll");
        let mut wal = SegmentLog::open(&d, 100).unwrap();
        let positions: Vec<WalPosition> = (0..20)
            .map(|i| {
                wal.append(format!("record {i:02} {}", "x".repeat(20)).as_bytes())
                    .unwrap()
            })
            .collect();
        wal.sync().unwrap();
        assert!(
            segments(&d).unwrap().len() > 3,
            "segments roll at the size limit"
        );
        let all = wal.read_after(WalPosition::default()).unwrap();
        assert_eq!(all.len(), 20);
        assert_eq!(all.iter().map(|(p, _)| *p).collect::<Vec<_>>(), positions);
        let tail = wal.read_after(positions[9]).unwrap();
        assert_eq!(
            String::from_utf8(tail[0].1.clone()).unwrap(),
            format!("record 10 {}", "x".repeat(20))
        );
        let removed = wal.delete_before(positions[9]).unwrap();
        assert!(removed > 0);
        assert_eq!(
            wal.read_after(positions[9]).unwrap().len(),
            10,
            "nothing after the position is lost"
        );
        fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn a_segment_older_than_the_roll_interval_is_closed_at_the_next_append() {
        let d = dir("roll-interval");
        let mut wal = SegmentLog::open(&d, 1 << 20)
            .unwrap()
            .rolling_every(std::time::Duration::from_millis(100));
        let first = wal.append(b"one").unwrap();
        let second = wal.append(b"two").unwrap();
        assert_eq!(first.segment, second.segment, "young: the same segment");
        std::thread::sleep(std::time::Duration::from_millis(150));
        let third = wal.append(b"three").unwrap();
        assert_eq!(third.segment, first.segment + 1, "old: a new one");
        assert_eq!(wal.delete_before(third).unwrap(), 1, "the old one can go");
        let rest: Vec<Vec<u8>> = wal
            .read_after(second)
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(rest, [b"three".to_vec()]);
        fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_appending_resumes_cleanly() {
        let d = dir("torn");
        let mut wal = SegmentLog::open(&d, 1 << 20).unwrap();
        wal.append(b"first").unwrap();
        let second = wal.append(b"second").unwrap();
        wal.sync().unwrap();
        drop(wal);
        let file = segment_path(&d, 0);
        let mut f = OpenOptions::new().append(true).open(&file).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'p', b'a'])
            .unwrap();
        drop(f);
        let mut wal = SegmentLog::open(&d, 1 << 20).unwrap();
        assert_eq!(wal.current_len(), second.offset, "the torn record is gone");
        wal.append(b"third").unwrap();
        let records: Vec<Vec<u8>> = wal
            .read_after(WalPosition::default())
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(
            records,
            vec![b"first".to_vec(), b"second".to_vec(), b"third".to_vec()]
        );
        fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn one_object_per_record_reads_back_after_a_position_and_cleans_up() {
        let d = dir("objects");
        let store: Arc<dyn Store> = Arc::new(crate::store::LocalStore::new(&d));
        let mut wal = WriteAheadLog::Objects(ObjectLog::open(store.clone()).unwrap());
        let positions: Vec<WalPosition> = (0..5)
            .map(|i| wal.append_durably(format!("block {i}").as_bytes()).unwrap())
            .collect();
        assert_eq!(positions[3].segment, 3);
        assert!(positions.windows(2).all(|w| w[0] < w[1]));
        let after: Vec<Vec<u8>> = wal
            .read_after(positions[1])
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(
            after,
            vec![
                b"block 2".to_vec(),
                b"block 3".to_vec(),
                b"block 4".to_vec()
            ]
        );
        assert_eq!(wal.delete_before(positions[2]).unwrap(), 2);
        // Reopened, as after a crash: the log goes on after the last record.
        let mut wal = WriteAheadLog::Objects(ObjectLog::open(store).unwrap());
        assert_eq!(wal.read_after(WalPosition::default()).unwrap().len(), 3);
        assert_eq!(wal.append_durably(b"block 5").unwrap().segment, 5);
        // A damaged object is skipped, not fatal.
        fs::write(segment_path(&d, 3), b"garbage").unwrap();
        let left: Vec<u64> = wal
            .read_after(WalPosition::default())
            .unwrap()
            .into_iter()
            .map(|(p, _)| p.segment)
            .collect();
        assert_eq!(left, vec![2, 4, 5]);
        fs::remove_dir_all(&d).ok();
    }
}
