//! An object store prefix as a [`Store`], through the object_store crate: S3 and S3-compatible
//! servers, Google Cloud Storage, Azure Blob Storage.
//!
//! The store's calls are async; ours are not, since the engine's checkpoints, the directory source
//! and the file outputs run on plain threads. Each call runs on one small runtime shared by every
//! object store of the process, and the calling thread waits for it, which works from any thread,
//! inside a tokio runtime or not.

use super::{Blob, Entry, Location, Put, StorageOptions, Store, StoreError};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    PutPayload, RetryConfig, UpdateVersion, WriteMultipart,
};
use std::future::Future;

/// Unconditional writes larger than this go up as a multipart upload...
const MULTIPART_ABOVE: usize = 64 << 20;
/// ...of parts this large (S3 wants at least 5 MiB but the last).
const MULTIPART_PART: usize = 16 << 20;
use std::sync::{Arc, Mutex, OnceLock};

/// Clients by bucket URL and options.
type ClientCache = std::collections::HashMap<(String, Vec<(String, String)>), Arc<dyn ObjectStore>>;
use std::time::Duration;

/// A prefix in a bucket or container.
pub struct ObjectStoreBackend {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    location: Location,
}

impl std::fmt::Debug for ObjectStoreBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectStoreBackend({})", self.location)
    }
}

fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("streamc-store")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the object store runtime: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Runs `future` on the store runtime and waits for it.
fn wait<T: Send + 'static>(
    future: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    let runtime = runtime().map_err(StoreError::Failed)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv().unwrap_or_else(|_| {
        Err(StoreError::Failed(
            "the object store runtime stopped during a request".into(),
        ))
    })
}

fn duration_text(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

impl ObjectStoreBackend {
    /// Connects to the bucket of `url` (`s3://bucket/prefix`, `gs://…`, `az://container/prefix`)
    /// with `options` over the environment's variables. Nothing is sent yet: a bad endpoint or
    /// credential shows on the first call.
    pub fn open(url: &str, options: &StorageOptions) -> Result<Self, String> {
        // reqwest is built without a default TLS provider; ring is the one sqlx brings too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("`{url}` is not an object store URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_url = format!("{scheme}://{bucket}");
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: 20,
            retry_timeout: options.retry_timeout,
        };
        let mut settings: Vec<(String, String)> = vec![
            ("timeout".into(), duration_text(options.request_timeout)),
            (
                "connect_timeout".into(),
                duration_text(options.request_timeout.min(Duration::from_secs(10))),
            ),
        ];
        settings.extend(options.options.iter().cloned());
        let bad_key = |key: &str, e: object_store::Error| {
            format!("storage option `{key}` is not one the {scheme}:// store knows: {e}")
        };
        // One client per bucket and options, shared by the checkpoints, logs, sources and
        // outputs of the process: connections are reused, and outputs opened per batch cost no
        // new client.
        static CLIENTS: OnceLock<Mutex<ClientCache>> = OnceLock::new();
        let key = (bucket_url.clone(), settings.clone());
        let clients = CLIENTS.get_or_init(Default::default);
        if let Some(store) = clients.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(Self {
                store: store.clone(),
                prefix: prefix.trim_matches('/').to_string(),
                location: Location::Remote(url.to_string()),
            });
        }
        let store: Arc<dyn ObjectStore> = match scheme {
            "s3" | "s3a" => {
                use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
                let mut builder = AmazonS3Builder::from_env()
                    .with_url(format!("s3://{bucket}"))
                    .with_retry(retry);
                for (key, value) in &settings {
                    let parsed: AmazonS3ConfigKey = key.parse().map_err(|e| bad_key(key, e))?;
                    builder = builder.with_config(parsed, value);
                }
                Arc::new(builder.build().map_err(|e| cannot_open(url, e))?)
            }
            "gs" => {
                use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
                let mut builder = GoogleCloudStorageBuilder::from_env()
                    .with_url(&bucket_url)
                    .with_retry(retry);
                for (key, value) in &settings {
                    let parsed: GoogleConfigKey = key.parse().map_err(|e| bad_key(key, e))?;
                    builder = builder.with_config(parsed, value);
                }
                Arc::new(builder.build().map_err(|e| cannot_open(url, e))?)
            }
            _ => {
                use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
                let mut builder = MicrosoftAzureBuilder::from_env()
                    .with_url(&bucket_url)
                    .with_retry(retry);
                for (key, value) in &settings {
                    let parsed: AzureConfigKey = key.parse().map_err(|e| bad_key(key, e))?;
                    builder = builder.with_config(parsed, value);
                }
                Arc::new(builder.build().map_err(|e| cannot_open(url, e))?)
            }
        };
        clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, store.clone());
        Ok(Self {
            store,
            prefix: prefix.trim_matches('/').to_string(),
            location: Location::Remote(url.to_string()),
        })
    }

    fn path(&self, name: &str) -> Result<ObjectPath, StoreError> {
        let joined = match (self.prefix.as_str(), name.trim_matches('/')) {
            ("", name) => name.to_string(),
            (prefix, "") => prefix.to_string(),
            (prefix, name) => format!("{prefix}/{name}"),
        };
        ObjectPath::parse(&joined)
            .map_err(|e| StoreError::Failed(format!("`{joined}` is not a valid object name: {e}")))
    }

    fn describe(&self, name: &str) -> String {
        format!("{}/{name}", self.location)
    }
}

fn cannot_open(url: &str, e: object_store::Error) -> String {
    crate::secret::redact(&format!("cannot open the object store {url}: {e}")).into_owned()
}

/// Maps the store's error to ours, naming the object; the text passes through the secret filter.
fn failure(what: String, e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { .. } => StoreError::NotFound(what),
        object_store::Error::AlreadyExists { .. } => StoreError::Exists(what),
        object_store::Error::Precondition { .. } => StoreError::Changed(what),
        other => {
            StoreError::Failed(crate::secret::redact(&format!("{what}: {other}")).into_owned())
        }
    }
}

impl Store for ObjectStoreBackend {
    fn location(&self) -> &Location {
        &self.location
    }

    fn list(&self, dir: &str) -> Result<Vec<Entry>, StoreError> {
        let prefix = self.path(dir)?;
        let store = self.store.clone();
        let what = self.describe(dir);
        wait(async move {
            let listed = store
                .list_with_delimiter(Some(&prefix))
                .await
                .map_err(|e| failure(what, e))?;
            Ok(listed
                .objects
                .into_iter()
                .filter_map(|meta| {
                    Some(Entry {
                        name: meta.location.filename()?.to_string(),
                        len: meta.size,
                        modified_ms: meta.last_modified.timestamp_millis().max(0) as u64,
                    })
                })
                .collect())
        })
    }

    fn get(&self, name: &str) -> Result<Blob, StoreError> {
        let path = self.path(name)?;
        let store = self.store.clone();
        let what = self.describe(name);
        wait(async move {
            let result = store
                .get(&path)
                .await
                .map_err(|e| failure(what.clone(), e))?;
            let version = result.meta.e_tag.clone();
            let bytes = result.bytes().await.map_err(|e| failure(what, e))?;
            Ok(Blob {
                bytes: bytes.to_vec(),
                version,
            })
        })
    }

    fn get_range(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        let path = self.path(name)?;
        let store = self.store.clone();
        let what = self.describe(name);
        wait(async move {
            // A bounded range past the end is refused by some servers; ask for what exists.
            let options = GetOptions {
                range: Some(GetRange::Bounded(offset..offset + len as u64)),
                ..GetOptions::default()
            };
            match store.get_opts(&path, options).await {
                Ok(result) => Ok(result.bytes().await.map_err(|e| failure(what, e))?.to_vec()),
                // A range that starts at or past the end is refused; it holds nothing.
                Err(e) => match store.head(&path).await {
                    Ok(meta) if offset >= meta.size => Ok(Vec::new()),
                    _ => Err(failure(what, e)),
                },
            }
        })
    }

    fn put(&self, name: &str, bytes: Vec<u8>, mode: Put) -> Result<Option<String>, StoreError> {
        let path = self.path(name)?;
        let store = self.store.clone();
        let what = self.describe(name);
        let mode = match mode {
            Put::Overwrite => PutMode::Overwrite,
            Put::Create => PutMode::Create,
            Put::Replace(version) => PutMode::Update(UpdateVersion {
                e_tag: Some(version),
                version: None,
            }),
        };
        if matches!(mode, PutMode::Overwrite) && bytes.len() > MULTIPART_ABOVE {
            // Past S3's 5 GiB single-PUT limit, and faster well below it: parts in parallel. The
            // object still appears only when the upload completes.
            return wait(async move {
                let upload = store
                    .put_multipart(&path)
                    .await
                    .map_err(|e| failure(what.clone(), e))?;
                let mut writer = WriteMultipart::new_with_chunk_size(upload, MULTIPART_PART);
                for part in bytes.chunks(MULTIPART_PART) {
                    if let Err(e) = writer.wait_for_capacity(4).await {
                        // Parts of an unfinished upload are kept (and billed) until aborted.
                        let _ = writer.abort().await;
                        return Err(failure(what, e));
                    }
                    writer.write(part);
                }
                writer
                    .finish()
                    .await
                    .map(|result| result.e_tag)
                    .map_err(|e| failure(what, e))
            });
        }
        wait(async move {
            let options = PutOptions {
                mode,
                ..PutOptions::default()
            };
            store
                .put_opts(&path, PutPayload::from(bytes), options)
                .await
                .map(|result| result.e_tag)
                .map_err(|e| failure(what, e))
        })
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        let path = self.path(name)?;
        let store = self.store.clone();
        let what = self.describe(name);
        wait(async move {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(failure(what, e)),
            }
        })
    }

    fn remove_all(&self, dir: &str) -> Result<usize, StoreError> {
        let root = self.path(dir)?;
        let store = self.store.clone();
        let what = self.describe(dir);
        wait(async move {
            // Level by level: what lies under each common prefix is listed in turn.
            let mut pending = vec![root];
            let mut removed = 0;
            while let Some(prefix) = pending.pop() {
                let listed = store
                    .list_with_delimiter(Some(&prefix))
                    .await
                    .map_err(|e| failure(what.clone(), e))?;
                for object in listed.objects {
                    match store.delete(&object.location).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => removed += 1,
                        Err(e) => return Err(failure(what.clone(), e)),
                    }
                }
                pending.extend(listed.common_prefixes);
            }
            Ok(removed)
        })
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let (source, target) = (self.path(from)?, self.path(to)?);
        let store = self.store.clone();
        let what = self.describe(from);
        wait(async move {
            store
                .rename(&source, &target)
                .await
                .map_err(|e| failure(what, e))
        })
    }
}
