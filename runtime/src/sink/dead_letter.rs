//! The dead-letter output: records a destination refused, kept with the reason instead of vanishing.

use super::PartitionId;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// An append-only file of refused records, one per line:
/// `<batch ms>\t<partition>\t<record>\t<reason>` (tabs and line breaks inside fields escaped as `\t`,
/// `\n`, `\\`). Lines are fsynced before the batch's good records are committed, so a refused record is
/// never lost. A partition written again (a retry, or a replay after a crash that came between the
/// dead-letter write and the commit) does not list a record twice: what the file already holds for that
/// batch and partition is read back once, and only records beyond it are appended.
#[derive(Debug)]
pub struct DeadLetter {
    path: PathBuf,
    /// What the file holds, read on the first write; `None` until then.
    listed: Mutex<Option<Listed>>,
}

/// How many times each (partition, escaped record) of a batch is in the file, for the batches that
/// may still be written again, and whether the file ends in a line torn by a crash.
#[derive(Default)]
struct Listed {
    batches: BTreeMap<u64, HashMap<(usize, String), usize>>,
    torn: bool,
}

impl std::fmt::Debug for Listed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listed")
            .field("batches", &self.batches.len())
            .field("torn", &self.torn)
            .finish()
    }
}

impl DeadLetter {
    /// A dead-letter output appending to the file at `path`. Nothing is opened before the first
    /// refused record; the file and its parent directories are then created if missing.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            listed: Mutex::new(None),
        }
    }

    /// The file the refused records go to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends refused records as `(record, reason)`.
    pub fn write(&self, at: PartitionId, refused: &[(String, String)]) -> std::io::Result<()> {
        if refused.is_empty() {
            return Ok(());
        }
        let mut guard = self.listed.lock().unwrap_or_else(|p| p.into_inner());
        let read = match guard.take() {
            Some(listed) => listed,
            None => self.read_listed()?,
        };
        let listed = guard.insert(read);
        // Batches run in order, and one is written again only before the next starts (a retry) or in
        // a new process (a replay, which reads the file anew): older batches need not be remembered.
        let batch = at.batch.millis();
        listed.batches = listed.batches.split_off(&batch);
        let earlier = listed.batches.entry(batch).or_default();
        // Records of this call already in the file from an earlier attempt at the same partition: an
        // attempt lists each record as often as it was refused, so only the excess is new.
        let mut seen_now: HashMap<(usize, String), usize> = HashMap::new();
        // Ends a line a crash cut short, so that it stays apart from the records after it.
        let mut text = String::from(if listed.torn { "\n" } else { "" });
        let mut added = Vec::new();
        for (record, reason) in refused {
            let key = (at.partition, escape(record));
            let now = seen_now.entry(key.clone()).or_default();
            *now += 1;
            if *now <= earlier.get(&key).copied().unwrap_or(0) {
                continue;
            }
            text.push_str(&format!(
                "{batch}\t{}\t{}\t{}\n",
                key.0,
                key.1,
                escape(reason)
            ));
            added.push(key);
        }
        if added.is_empty() {
            return Ok(());
        }
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut file| {
                file.write_all(text.as_bytes())?;
                file.sync_data()
            });
        if let Err(e) = appended {
            // Part of the text may be in the file: read it again before the next attempt.
            *guard = None;
            return Err(e);
        }
        listed.torn = false;
        for key in added {
            *earlier.entry(key).or_default() += 1;
        }
        Ok(())
    }

    /// What the file holds already, as written by an earlier run, and whether its last line was torn
    /// by a crash; such a line does not count (its record is written again whole).
    fn read_listed(&self) -> std::io::Result<Listed> {
        let text = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
            Err(e) => return Err(e),
        };
        let mut listed = Listed {
            torn: text.last().is_some_and(|&b| b != b'\n'),
            ..Listed::default()
        };
        for line in text.split(|&b| b == b'\n') {
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            let mut fields = line.splitn(4, '\t');
            let (Some(batch), Some(partition), Some(record), Some(_reason)) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if let (Ok(batch), Ok(partition)) = (batch.parse(), partition.parse()) {
                *listed
                    .batches
                    .entry(batch)
                    .or_default()
                    .entry((partition, record.to_string()))
                    .or_default() += 1;
            }
        }
        Ok(listed)
    }
}

fn escape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    for c in field.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Time;

    #[test]
    fn one_escaped_line_per_refused_record() {
        let dir = std::env::temp_dir().join(format!("streamc-dead-{}", std::process::id()));
        let dl = DeadLetter::file(dir.join("dead.tsv"));
        let at = PartitionId {
            batch: Time(2000),
            partition: 1,
            partitions: 2,
        };
        dl.write(at, &[("(\"a\tb\",1)".into(), "too\nlong".into())])
            .unwrap();
        dl.write(at, &[]).unwrap();
        let text = std::fs::read_to_string(dl.path()).unwrap();
        assert_eq!(text, "2000\t1\t(\"a\\tb\",1)\ttoo\\nlong\n");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_partition_written_again_lists_only_records_not_yet_in_the_file() {
        let dir = std::env::temp_dir().join(format!("streamc-dead-again-{}", std::process::id()));
        let path = dir.join("dead.tsv");
        let at = |batch, partition| PartitionId {
            batch: Time(batch),
            partition,
            partitions: 2,
        };
        let refused = |records: &[&str]| -> Vec<(String, String)> {
            records
                .iter()
                .map(|r| (r.to_string(), "too long".to_string()))
                .collect()
        };
        let first = DeadLetter::file(&path);
        first
            .write(at(1000, 0), &refused(&["x", "y", "y"]))
            .unwrap();
        // A retry of the same partition in the same run.
        first
            .write(at(1000, 0), &refused(&["x", "y", "y"]))
            .unwrap();
        // A torn last line, as a crash mid-append leaves it.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"1000\t0\tz").unwrap();
        drop(file);
        // The replay after a restart: a fresh output reads the file back. It refuses one more `y`
        // this time, and the other partition's and batch's records are their own.
        let replay = DeadLetter::file(&path);
        replay
            .write(at(1000, 0), &refused(&["y", "x", "y", "y", "z"]))
            .unwrap();
        replay.write(at(1000, 1), &refused(&["x"])).unwrap();
        replay.write(at(2000, 0), &refused(&["x"])).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let records: Vec<&str> = text.lines().collect();
        assert_eq!(
            records,
            vec![
                "1000\t0\tx\ttoo long",
                "1000\t0\ty\ttoo long",
                "1000\t0\ty\ttoo long",
                "1000\t0\tz",
                "1000\t0\ty\ttoo long",
                "1000\t0\tz\ttoo long",
                "1000\t1\tx\ttoo long",
                "2000\t0\tx\ttoo long",
            ]
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
