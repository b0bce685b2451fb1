//! A local directory as a [`Store`]: writes go to a temporary name, are fsynced and then renamed (or
//! hard-linked, for [`Put::Create`], which fails if the name exists), and the directory is fsynced,
//! so a crash leaves the old file or the new one, whole.

use super::{Blob, Entry, Location, Put, Store, StoreError};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// A local directory.
#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    location: Location,
}

impl LocalStore {
    /// The directory `root` (created on the first write).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            location: Location::Local(root.to_path_buf()),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        if name.is_empty() {
            self.root.clone()
        } else {
            self.root.join(name)
        }
    }

    fn failed(&self, what: &str, path: &Path, e: io::Error) -> StoreError {
        match e.kind() {
            io::ErrorKind::NotFound => StoreError::NotFound(path.display().to_string()),
            io::ErrorKind::AlreadyExists => StoreError::Exists(path.display().to_string()),
            _ => StoreError::Failed(format!("cannot {what} {}: {e}", path.display())),
        }
    }
}

/// The files under `dir`, at any depth.
fn walk_files(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => walk_files(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Store for LocalStore {
    fn location(&self) -> &Location {
        &self.location
    }

    fn list(&self, dir: &str) -> Result<Vec<Entry>, StoreError> {
        let path = self.path(dir);
        let entries = match fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.failed("list", &path, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.failed("list", &path, e))?;
            // A file removed between the listing and its metadata is simply not listed.
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if !metadata.is_file() {
                continue;
            }
            let modified_ms = metadata
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as u64);
            out.push(Entry {
                name: entry.file_name().to_string_lossy().into_owned(),
                len: metadata.len(),
                modified_ms,
            });
        }
        Ok(out)
    }

    fn get(&self, name: &str) -> Result<Blob, StoreError> {
        let path = self.path(name);
        let bytes = fs::read(&path).map_err(|e| self.failed("read", &path, e))?;
        Ok(Blob {
            bytes,
            version: None,
        })
    }

    fn get_range(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        let path = self.path(name);
        let read = || -> io::Result<Vec<u8>> {
            let mut file = File::open(&path)?;
            file.seek(SeekFrom::Start(offset))?;
            let mut buf = Vec::with_capacity(len);
            file.take(len as u64).read_to_end(&mut buf)?;
            Ok(buf)
        };
        read().map_err(|e| self.failed("read", &path, e))
    }

    fn put(&self, name: &str, bytes: Vec<u8>, mode: Put) -> Result<Option<String>, StoreError> {
        let target = self.path(name);
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        let file_name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| self.failed("create", &dir, e))?;
        let written = File::create(&tmp).and_then(|mut file| {
            file.write_all(&bytes)?;
            file.sync_all()
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(self.failed("write", &tmp, e));
        }
        let placed = match mode {
            Put::Overwrite => fs::rename(&tmp, &target),
            // A hard link fails if the name exists: of two writers, exactly one creates it.
            Put::Create => fs::hard_link(&tmp, &target).and_then(|()| fs::remove_file(&tmp)),
            Put::Replace(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a local directory has no object versions",
            )),
        };
        if let Err(e) = placed {
            let _ = fs::remove_file(&tmp);
            return Err(self.failed("write", &target, e));
        }
        sync_dir(&dir).map_err(|e| self.failed("sync the directory", &dir, e))?;
        Ok(None)
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        let path = self.path(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.failed("remove", &path, e)),
        }
    }

    fn remove_all(&self, dir: &str) -> Result<usize, StoreError> {
        let path = self.path(dir);
        let count = walk_files(&path);
        match fs::remove_dir_all(&path) {
            Ok(()) => Ok(count),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(self.failed("remove", &path, e)),
        }
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let (from, to) = (self.path(from), self.path(to));
        fs::rename(&from, &to).map_err(|e| {
            StoreError::Failed(format!(
                "cannot rename {} to {}: {e}",
                from.display(),
                to.display()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_lets_exactly_one_writer_win_and_leaves_no_temporary_files() {
        let root = std::env::temp_dir().join(format!("streamc-store-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let store = LocalStore::new(&root);
        assert!(
            store.list("").unwrap().is_empty(),
            "a missing directory is empty"
        );
        store.put("a/one", b"first".to_vec(), Put::Create).unwrap();
        assert_eq!(
            store.put("a/one", b"second".to_vec(), Put::Create),
            Err(StoreError::Exists(root.join("a/one").display().to_string()))
        );
        assert_eq!(store.get("a/one").unwrap().bytes, b"first");
        store
            .put("a/one", b"third".to_vec(), Put::Overwrite)
            .unwrap();
        assert_eq!(store.get_range("a/one", 1, 3).unwrap(), b"hir");
        let listed = store.list("a").unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!((listed[0].name.as_str(), listed[0].len), ("one", 5));
        store.rename("a/one", "a/two").unwrap();
        assert!(matches!(store.get("a/one"), Err(StoreError::NotFound(_))));
        store.delete("a/two").unwrap();
        store.delete("a/two").unwrap();
        assert!(store.list("a").unwrap().is_empty());
        fs::remove_dir_all(&root).ok();
    }
}
