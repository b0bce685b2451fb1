//! The dead-letter output: records a destination refused, kept with the reason instead of vanishing.

use super::PartitionId;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// An append-only file of refused records, one per line:
/// `<batch ms>\t<partition>\t<record>\t<reason>` (tabs and line breaks inside fields escaped as `\t`,
/// `\n`, `\\`). Lines are fsynced before the batch's good records are committed, so a refused record is
/// never lost; a batch replayed after a crash may list its refused records a second time.
#[derive(Debug)]
pub struct DeadLetter {
    path: PathBuf,
    lock: Mutex<()>,
}

impl DeadLetter {
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends refused records as `(record, reason)`.
    pub fn write(&self, at: PartitionId, refused: &[(String, String)]) -> std::io::Result<()> {
        if refused.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for (record, reason) in refused {
            text.push_str(&format!(
                "{}\t{}\t{}\t{}\n",
                at.batch.millis(),
                at.partition,
                escape(record),
                escape(reason)
            ));
        }
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(text.as_bytes())?;
        file.sync_data()
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
}
