//! Where durable things live: a local directory or a prefix in an object store, behind one small,
//! synchronous interface that checkpoints, the batch journal, write-ahead logs, the directory
//! source and the file outputs share.
//!
//! A [`Location`] is a plain path (or `file://` URL: today's behaviour, the default) or an object
//! store URL: `s3://bucket/prefix` (AWS S3 and S3-compatible servers), `gs://bucket/prefix`,
//! `az://container/prefix` (with the `object-store` feature). Every write is atomic: an object or
//! file appears whole or not at all. [`Put::Create`] is the fencing primitive: of two writers
//! creating the same name, exactly one succeeds — a local hard link, or a conditional PUT
//! (`If-None-Match: *`) on stores that have it.

mod local;
#[cfg(feature = "object-store")]
mod object;

pub use local::LocalStore;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A directory or an object store prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    /// A local directory.
    Local(PathBuf),
    /// An object store URL without a trailing `/`: `s3://bucket/prefix`, `gs://…`, `az://…`.
    Remote(String),
}

/// URL schemes of object stores.
const REMOTE_SCHEMES: &[&str] = &["s3", "s3a", "gs", "az", "azure", "abfs", "abfss"];

impl Location {
    /// A path, a `file://` URL or an object store URL. Other schemes (`hdfs://`) are refused, naming
    /// the ones understood.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("file://") {
            return Ok(Self::Local(PathBuf::from(path)));
        }
        match text.split_once("://") {
            None => Ok(Self::Local(PathBuf::from(text))),
            Some((scheme, rest)) if REMOTE_SCHEMES.contains(&scheme) => {
                let bucket = rest.split('/').next().unwrap_or("");
                if bucket.is_empty() {
                    return Err(format!(
                        "`{text}` names no bucket: write {scheme}://BUCKET/PREFIX"
                    ));
                }
                Ok(Self::Remote(text.trim_end_matches('/').to_string()))
            }
            Some((scheme, _)) => Err(format!(
                "`{text}`: `{scheme}://` is not a storage this build knows; use a local path, \
                 file://, s3:// (also for S3-compatible servers), gs:// or az://"
            )),
        }
    }

    /// A pipeline's `checkpoint:` string, whose scheme the `stream!` macro already checked.
    pub fn from_spec(text: &str) -> Self {
        Self::parse(text).unwrap_or_else(|_| Self::Local(PathBuf::from(text)))
    }

    /// The location `name` inside this one.
    pub fn join(&self, name: &str) -> Self {
        match self {
            Self::Local(path) => Self::Local(path.join(name)),
            Self::Remote(url) => Self::Remote(format!("{url}/{}", name.trim_matches('/'))),
        }
    }

    /// The local directory, if this is one.
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            Self::Local(path) => Some(path),
            Self::Remote(_) => None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(path) => write!(f, "{}", path.display()),
            Self::Remote(url) => f.write_str(url),
        }
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Self {
        Self::Local(path)
    }
}

impl From<&Path> for Location {
    fn from(path: &Path) -> Self {
        Self::Local(path.to_path_buf())
    }
}

/// How object stores are reached: client options and retries (`[storage]` in the config file,
/// `--storage-option`), over the usual environment variables (`AWS_ACCESS_KEY_ID`,
/// `AWS_ENDPOINT_URL`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, ...).
#[derive(Clone, PartialEq, Eq)]
pub struct StorageOptions {
    /// Options by the object_store crate's names (`aws_endpoint`, `aws_region`,
    /// `aws_allow_http`, `aws_virtual_hosted_style_request`, `aws_secret_access_key`, ...), secret
    /// references already expanded.
    pub options: Vec<(String, String)>,
    /// How long one request may take before it is retried.
    pub request_timeout: Duration,
    /// How long a failing request is retried before the operation fails.
    pub retry_timeout: Duration,
    /// How long a checkpoint location claimed on an object store stays claimed without renewal:
    /// after a crash, a restart waits this long before taking it over.
    pub lease: Duration,
}

impl Default for StorageOptions {
    fn default() -> Self {
        Self {
            options: Vec::new(),
            request_timeout: Duration::from_secs(30),
            retry_timeout: Duration::from_secs(60),
            lease: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for StorageOptions {
    /// Names the options, never their values: some are credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageOptions")
            .field(
                "options",
                &self.options.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("request_timeout", &self.request_timeout)
            .field("retry_timeout", &self.retry_timeout)
            .field("lease", &self.lease)
            .finish()
    }
}

/// Whether an option's value is a credential, to be kept out of logs and errors.
pub fn is_secret_option(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "secret",
        "token",
        "password",
        "access_key",
        "sas",
        "account_key",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// An object or file directly inside a listed directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The name inside the directory.
    pub name: String,
    /// Its size in bytes.
    pub len: u64,
    /// When it was last written, in epoch milliseconds (as the store's clock says).
    pub modified_ms: u64,
}

/// How a write treats an existing object of the same name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Put {
    /// Replace it.
    Overwrite,
    /// Fail with [`StoreError::Exists`]: of two writers, one wins.
    Create,
    /// Replace it only if it is still at this version (from [`Store::get`]); [`StoreError::Changed`]
    /// otherwise.
    Replace(String),
}

/// Why a storage operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// No such object or file.
    NotFound(String),
    /// A [`Put::Create`] found the name taken.
    Exists(String),
    /// A [`Put::Replace`] found another version.
    Changed(String),
    /// Anything else: the store unreachable, refused credentials, a full disk.
    Failed(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(what) => write!(f, "{what}: not found"),
            Self::Exists(what) => write!(f, "{what}: already exists"),
            Self::Changed(what) => write!(f, "{what}: changed by another writer"),
            Self::Failed(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for StoreError {}

/// An object read back, with the version a [`Put::Replace`] names.
#[derive(Clone, Debug)]
pub struct Blob {
    /// Its contents.
    pub bytes: Vec<u8>,
    /// Its version (an ETag on object stores), if the store tracks one.
    pub version: Option<String>,
}

/// A directory or object store prefix. Names are `/`-separated paths relative to its root; every
/// write is atomic.
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Where it is, for messages.
    fn location(&self) -> &Location;
    /// The objects directly inside `dir` (`""`: the root), in no particular order; a directory that
    /// does not exist is empty.
    fn list(&self, dir: &str) -> Result<Vec<Entry>, StoreError>;
    /// The whole object.
    fn get(&self, name: &str) -> Result<Blob, StoreError>;
    /// `len` bytes from `offset` (fewer at the end).
    fn get_range(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>, StoreError>;
    /// Writes `bytes` as `name`, whole or not at all; returns the new version, if tracked.
    fn put(&self, name: &str, bytes: Vec<u8>, mode: Put) -> Result<Option<String>, StoreError>;
    /// Deletes `name`; an absent one is not an error.
    fn delete(&self, name: &str) -> Result<(), StoreError>;
    /// Renames `from` to `to` (on object stores: copy, then delete).
    fn rename(&self, from: &str, to: &str) -> Result<(), StoreError>;
    /// Deletes `dir` and everything under it; returns how many objects or files went. An absent
    /// one is not an error.
    fn remove_all(&self, dir: &str) -> Result<usize, StoreError>;
}

/// Opens the store at `location`.
pub fn open(location: &Location, options: &StorageOptions) -> Result<Arc<dyn Store>, String> {
    match location {
        Location::Local(path) => Ok(Arc::new(LocalStore::new(path))),
        #[cfg(feature = "object-store")]
        Location::Remote(url) => object::ObjectStoreBackend::open(url, options)
            .map(|store| Arc::new(store) as Arc<dyn Store>),
        #[cfg(not(feature = "object-store"))]
        Location::Remote(url) => {
            let _ = options;
            Err(format!(
                "`{url}` is on an object store, and this build has no object store support: build \
                 with the `object-store` feature of streamc"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_paths_file_urls_and_object_store_urls() {
        assert_eq!(
            Location::parse("ckpt/app").unwrap(),
            Location::Local("ckpt/app".into())
        );
        assert_eq!(
            Location::parse("file:///var/lib/x").unwrap(),
            Location::Local("/var/lib/x".into())
        );
        let s3 = Location::parse("s3://bucket/some/prefix/").unwrap();
        assert_eq!(s3, Location::Remote("s3://bucket/some/prefix".into()));
        assert_eq!(s3.join("wal").to_string(), "s3://bucket/some/prefix/wal");
        assert!(s3.local_path().is_none());
        let hdfs = Location::parse("hdfs://nn:8020/ckpt").unwrap_err();
        assert!(hdfs.contains("s3://") && hdfs.contains("hdfs://"), "{hdfs}");
        assert!(Location::parse("s3:///x")
            .unwrap_err()
            .contains("no bucket"));
    }

    #[test]
    fn storage_options_never_show_their_values() {
        let options = StorageOptions {
            options: vec![("aws_secret_access_key".into(), "hunter2-secret".into())],
            ..StorageOptions::default()
        };
        let shown = format!("{options:?}");
        assert!(shown.contains("aws_secret_access_key") && !shown.contains("hunter2"));
        assert!(is_secret_option("aws_secret_access_key"));
        assert!(is_secret_option("azure_storage_sas_key"));
        assert!(!is_secret_option("aws_endpoint"));
    }

    #[cfg(feature = "object-store")]
    #[test]
    fn an_option_the_store_does_not_know_is_named() {
        let options = StorageOptions {
            options: vec![("aws_no_such_thing".into(), "1".into())],
            ..StorageOptions::default()
        };
        let err = open(&Location::parse("s3://bucket/x").unwrap(), &options).unwrap_err();
        assert!(err.contains("`aws_no_such_thing`"), "{err}");
        let err = Location::parse("hdfs://namenode/x").unwrap_err();
        assert!(err.contains("s3://") && err.contains("hdfs://"), "{err}");
        assert!(
            Location::parse("s3:///prefix").is_err(),
            "a URL without a bucket"
        );
    }
}
