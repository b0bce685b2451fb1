//! Sinks: where results leave the pipeline, and what happens when the destination fails.
//!
//! A sink writes one partition of one batch at a time and always knows which ([`PartitionId`]): the batch
//! time is the batch id, stable across a crash and a replay, so a transactional sink can record what it
//! has committed and skip a batch it already holds. Failures fall in three kinds ([`SinkError`]): a
//! destination that is away is retried with backoff under the app's [`RetryPolicy`] (later batches wait;
//! that is the backpressure); records the destination refuses fail the batch naming the record, or go
//! to a dead-letter file; a misconfiguration stops the app at once. A batch that cannot be written
//! fails with [`OutputFailed`], a value the outputs return, and the app stops with the reason and no
//! checkpoint past it, so a restart writes it again.

pub mod dead_letter;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod pool;
pub mod rolling;
#[cfg(feature = "sql")]
pub mod sql;

use crate::settings::{setting, Setting};
use crate::stop::StopSignal;
use crate::time::Time;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use dead_letter::DeadLetter;
pub use pool::ResourcePool;
pub use rolling::RollingFiles;

/// Which part of which batch a sink is writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionId {
    /// The batch time: the batch's id.
    pub batch: Time,
    /// This partition's index, `0..partitions`.
    pub partition: usize,
    /// How many partitions the batch has.
    pub partitions: usize,
}

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch {} partition {}", self.batch, self.partition)
    }
}

/// One partition of a batch, handed to `foreach_partition`.
#[derive(Debug)]
pub struct BatchPartition<T> {
    /// Which batch and partition these records are, and how many partitions the batch has.
    pub id: PartitionId,
    /// The records of this partition of the batch.
    pub records: Vec<T>,
}

impl<T> BatchPartition<T> {
    /// The batch's time, which is its id: stable across a crash and a replay, so it can key
    /// exactly-once writes.
    pub fn batch_time(&self) -> Time {
        self.id.batch
    }

    /// This partition's index, `0..partitions`.
    pub fn index(&self) -> usize {
        self.id.partition
    }

    /// Iterates the records by reference.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.records.iter()
    }

    /// How many records the partition holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the partition holds no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

impl<'a, T> IntoIterator for &'a BatchPartition<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.records.iter()
    }
}

/// Why a write failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkError {
    /// The destination is away or busy (connection refused or lost, timeout, deadlock): worth retrying.
    Unavailable(String),
    /// The destination refused a record for what it holds (a constraint, a value too long): retrying
    /// cannot help. `record` shows the offending record.
    Rejected {
        /// The refused record as the sink shows it in messages; empty when the sink could not
        /// tell which record it was.
        record: String,
        /// Why the destination refused it.
        reason: String,
    },
    /// The sink is misconfigured (no such table, wrong credentials, a bad statement): stop.
    Fatal(String),
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkError::Unavailable(reason) => write!(f, "destination unavailable: {reason}"),
            SinkError::Rejected { record, reason } if record.is_empty() => {
                write!(f, "rejected: {reason}")
            }
            SinkError::Rejected { record, reason } => {
                write!(f, "record {record} rejected: {reason}")
            }
            SinkError::Fatal(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for SinkError {}

/// How long a sink keeps trying a write its destination does not take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included; after the last the app stops.
    pub attempts: u32,
    /// The wait after the first failure; it doubles after each further failure...
    pub initial_backoff: Duration,
    /// ...up to this.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// About half a minute of retries: enough for a database restart or a broker failover.
    fn default() -> Self {
        Self {
            attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `n` (1-based).
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// Runs `attempt` until it succeeds, fails for good, or the attempts are used up; waits between
    /// tries and counts retries in `stats`. Only [`SinkError::Unavailable`] is retried.
    ///
    /// An aborted run (a graceful stop past its timeout, a stop at once) ends the retries at once: the
    /// batch stays unwritten, and a restart writes it.
    pub fn run<T>(
        &self,
        what: &dyn fmt::Display,
        stats: &SinkStats,
        stop: &StopSignal,
        mut attempt: impl FnMut() -> Result<T, SinkError>,
    ) -> Result<T, SinkError> {
        let stopping = |n: u32, reason: &str| {
            SinkError::Unavailable(format!(
                "gave up after {n} attempt(s) because the app is stopping without finishing \
                 (last: {reason})"
            ))
        };
        let mut n = 1;
        loop {
            match attempt() {
                Err(SinkError::Unavailable(reason)) if stop.is_aborted() => {
                    return Err(stopping(n, &reason))
                }
                Err(SinkError::Unavailable(reason)) if n < self.attempts => {
                    let wait = self.backoff(n);
                    stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "{what}: attempt {n} of {} failed, retrying in {wait:?}: {reason}",
                        self.attempts
                    );
                    if !stop.sleep(wait) {
                        return Err(stopping(n, &reason));
                    }
                    n += 1;
                }
                Err(SinkError::Unavailable(reason)) => {
                    return Err(SinkError::Unavailable(format!(
                        "gave up after {n} attempts: {reason}"
                    )))
                }
                other => return other,
            }
        }
    }
}

/// The sinks' configuration: destination overrides and how they retry and pool.
#[derive(Clone, Debug)]
pub struct SinkOptions {
    /// `--sink NAME=URL`: replaces the destination written in the pipeline for the sink named `NAME`.
    pub urls: BTreeMap<String, String>,
    /// A Kafka sink's own librdkafka properties (`[sinks.NAME.properties]`).
    pub properties: BTreeMap<String, BTreeMap<String, String>>,
    /// How long a sink retries an unavailable destination before the batch fails and the app stops.
    pub retry: RetryPolicy,
    /// Pooled connections unused for this long are closed.
    pub idle_timeout: Duration,
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self {
            urls: BTreeMap::new(),
            properties: BTreeMap::new(),
            retry: RetryPolicy::default(),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl SinkOptions {
    /// The sinks' settings: `[sinks.NAME]` and `[sink_retry]`.
    #[rustfmt::skip]
    pub(crate) const SETTINGS: &'static [Setting<SinkOptions>] = &[
        setting!(SinkOptions { key: "sinks", flag: "sink", value: "NAME=URL", entries: true,
            help: "Where a sink writes, replacing the pipeline's (e.g. \
                   wordcount=postgres://user@host/db). The name is the sink's output name: for \
                   SQL, the table. A URL may hold ${ENV_VAR} or be @/path/to/file, read at start. \
                   Repeatable ([sinks.NAME] url = ..., and a Kafka sink's client properties in \
                   [sinks.NAME.properties])." }
            |options, raw| raw.insert_with_properties(
                "url", &mut options.urls, &mut options.properties)),
        setting!(SinkOptions { section: "sink_retry", key: "attempts", flag: "sink-retries",
            value: "N",
            help: "Tries a sink makes to write a batch before the app stops (default 10)." }
            => positive retry.attempts),
        setting!(SinkOptions { section: "sink_retry", key: "initial_backoff",
            flag: "sink-backoff", value: "DURATION",
            help: "A sink's wait after its first failed try; it doubles after each further one \
                   (default 100ms)." } => retry.initial_backoff),
        setting!(SinkOptions { section: "sink_retry", key: "max_backoff",
            flag: "sink-max-backoff", value: "DURATION",
            help: "The longest wait between a sink's tries (default 8s)." } => retry.max_backoff),
    ];
}

/// What the app's sinks share: the pipeline's name (part of every progress record), destination
/// overrides from the configuration, and the retry policy.
#[derive(Clone, Debug)]
pub struct SinkSettings {
    /// The app's name. Sink progress records and Kafka transactional ids include it, so that two
    /// apps writing to one destination stay apart.
    pub pipeline: String,
    /// `--sink NAME=URL`: replaces the destination written in the pipeline for the sink named `NAME`.
    pub urls: BTreeMap<String, String>,
    /// Each sink's own client properties (`[sinks.NAME.properties]`; Kafka sinks only).
    pub properties: BTreeMap<String, BTreeMap<String, String>>,
    /// The Kafka properties of every client (`[kafka.properties]`, `--kafka-property`).
    #[cfg(feature = "kafka")]
    pub kafka: crate::kafka_client::KafkaProperties,
    /// How long a sink retries an unavailable destination before the batch fails and the app stops.
    pub retry: RetryPolicy,
    /// Pooled connections unused for this long are closed.
    pub idle_timeout: Duration,
    /// The run's stop state: retries end when the run is aborted.
    pub stop: StopSignal,
    /// How file outputs on object stores (`s3://`, `gs://`, `az://`) reach them.
    pub storage: crate::store::StorageOptions,
}

impl SinkSettings {
    /// The destination of sink `name`: the configured override, or what the pipeline says, with its
    /// `${NAME}` and `@/path` references read and its password registered for redaction.
    pub fn url(&self, name: &str, declared: &str) -> Result<String, SinkError> {
        let given = self.urls.get(name).map_or(declared, String::as_str);
        crate::secret::expand_url(given, &format!("sink `{name}` URL")).map_err(SinkError::Fatal)
    }

    /// The properties of Kafka sink `name`: `code` (the pipeline's), the shared ones over them, the
    /// sink's own over those.
    #[cfg(feature = "kafka")]
    pub fn kafka_properties(
        &self,
        name: &str,
        code: &crate::kafka_client::KafkaProperties,
    ) -> crate::kafka_client::KafkaProperties {
        let own = crate::kafka_client::KafkaProperties::of(&self.properties, name);
        code.overridden_by(&self.kafka).overridden_by(&own)
    }

    /// Refuses client properties given for a sink that is not a Kafka sink.
    pub fn refuse_properties(&self, name: &str, kind: &str) -> Result<(), SinkError> {
        if self.properties.contains_key(name) {
            return Err(SinkError::Fatal(format!(
                "[sinks.{name}.properties]: client properties are for Kafka sinks; `{name}` is a {kind} sink"
            )));
        }
        Ok(())
    }
}

impl Default for SinkSettings {
    fn default() -> Self {
        Self {
            pipeline: String::new(),
            urls: BTreeMap::new(),
            properties: BTreeMap::new(),
            #[cfg(feature = "kafka")]
            kafka: Default::default(),
            retry: RetryPolicy::default(),
            idle_timeout: Duration::from_secs(60),
            stop: StopSignal::default(),
            storage: Default::default(),
        }
    }
}

/// Counters of one output, for the run report and the metrics.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Records written (committed, for transactional sinks).
    pub records: AtomicU64,
    /// Batch partitions skipped because the destination already held them (a replay after a crash).
    pub skipped: AtomicU64,
    /// Attempts that failed and were retried.
    pub retries: AtomicU64,
    /// Records sent to the dead-letter output.
    pub dead_lettered: AtomicU64,
}

/// A snapshot of [`SinkStats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkCounts {
    /// Records written (committed, for transactional sinks).
    pub records: u64,
    /// Batch partitions skipped because the destination already held them (a replay after a crash).
    pub skipped: u64,
    /// Write attempts that failed and were retried.
    pub retries: u64,
    /// Records the destination refused that went to the dead-letter output.
    pub dead_lettered: u64,
}

impl SinkStats {
    /// The counters' current values, for the run report and the metrics.
    pub fn counts(&self) -> SinkCounts {
        SinkCounts {
            records: self.records.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
        }
    }
}

/// An output could not write its batch: the batch fails and the app stops without checkpointing past
/// it, so a restart writes it again. Outputs return it; the engine stops on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFailed(pub String);

impl OutputFailed {
    /// Output `output` failed with `error`.
    pub fn new(output: &str, error: impl fmt::Display) -> Self {
        OutputFailed(format!("output `{output}`: {error}"))
    }
}

impl fmt::Display for OutputFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OutputFailed {}

/// What an output operation comes to: done, or the batch could not be written (which stops the app).
pub type OutputResult = Result<(), OutputFailed>;

/// Where an output writes each batch: what a sink connector implements for the value its output
/// operator is given (`RollingFiles`, a SQL table at a URL, a Kafka topic at brokers), so that one
/// `save_to` of the execution layer runs every sink, and a new sink adds no code there.
pub trait BatchDestination<T>: Send {
    /// Writes one batch's partitions, each once: a batch replayed after a crash that was already
    /// written is skipped by the sink's own progress records.
    fn write_batch(self, env: &SinkEnv<'_>, parts: crate::shuffle::Partitions<T>) -> OutputResult;
}

/// What a sink sees of the batch it writes: its time (the batch id), the worker count, the sinks open
/// so far and the settings they share. Sinks get this, not the batch context, so that they stay below
/// the execution layer, as receivers do with their environment.
#[derive(Clone, Copy)]
pub struct SinkEnv<'a> {
    /// The batch's time: the batch id that sinks record, so that a replayed batch is skipped.
    pub time: Time,
    /// Worker threads, which is also the number of partitions of a shuffled batch.
    pub workers: usize,
    /// The sinks opened so far in the run, by output name, reused across batches.
    pub sinks: &'a OpenSinks,
    /// What the run's sinks share: destination overrides, retry policy, idle timeout and stop
    /// state.
    pub settings: &'a SinkSettings,
}

/// A sink kept open across batches.
pub trait OpenSink: Send + Sync + 'static {
    /// Finishes what readers cannot see yet (a graceful stop).
    fn close(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// A sink kept twice: as `Any`, to hand it back typed, and as `OpenSink`, to close it.
type Entry = (Arc<dyn std::any::Any + Send + Sync>, Arc<dyn OpenSink>);

/// Sinks opened by the outputs of a run, by output name: each is created when its output first runs
/// and reused by every later batch.
#[derive(Default)]
pub struct OpenSinks {
    sinks: Mutex<BTreeMap<String, Entry>>,
    stats: Mutex<BTreeMap<String, Arc<SinkStats>>>,
}

impl OpenSinks {
    /// Closes every sink (the run is over).
    pub fn close_all(&self) {
        let sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        for (name, (_, sink)) in sinks.iter() {
            if let Err(e) = sink.close() {
                tracing::error!("output `{name}`: cannot close: {e}");
            }
        }
    }

    /// The sink named `name`, opened by `open` the first time.
    pub fn get_or_open<S: OpenSink>(
        &self,
        name: &str,
        open: impl FnOnce() -> Result<S, SinkError>,
    ) -> Result<Arc<S>, SinkError> {
        let mut sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((sink, _)) = sinks.get(name) {
            return Arc::clone(sink).downcast::<S>().map_err(|_| {
                SinkError::Fatal(format!(
                    "two outputs of different kinds share the name `{name}`; rename one"
                ))
            });
        }
        let sink = Arc::new(open()?);
        sinks.insert(name.to_string(), (sink.clone(), sink.clone()));
        Ok(sink)
    }

    /// The counters of output `name`.
    pub fn stats(&self, name: &str) -> Arc<SinkStats> {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.entry(name.to_string()).or_default().clone()
    }

    /// Every output's counters.
    pub fn counts(&self) -> Vec<(String, SinkCounts)> {
        let stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats
            .iter()
            .map(|(name, s)| (name.clone(), s.counts()))
            .collect()
    }
}

#[cfg(feature = "sql")]
/// The tokio runtime sinks' async drivers run on, started when a sink first needs it.
pub(crate) fn io_runtime() -> Result<&'static tokio::runtime::Runtime, SinkError> {
    static RUNTIME: std::sync::OnceLock<Result<tokio::runtime::Runtime, String>> =
        std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("streamc-sink-io")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| SinkError::Fatal(format!("cannot start the sink I/O runtime: {e}")))
}

/// Writes a batch's partitions in parallel: `prepare` turns each partition's records into what the
/// sink writes (once; an error there is the records' fault and is not retried), `write` is tried
/// under the app's retry policy; a partition that cannot be written fails the batch, which stops the
/// app.
pub fn write_partitions<T: Send, P: Send>(
    env: &SinkEnv<'_>,
    output: &str,
    parts: Vec<Vec<T>>,
    prepare: impl Fn(PartitionId, Vec<T>) -> Result<P, SinkError> + Sync,
    write: impl Fn(PartitionId, &P, &SinkStats) -> Result<bool, SinkError> + Sync,
) -> Result<(), OutputFailed> {
    use rayon::prelude::*;
    let settings = env.settings;
    let stats = env.sinks.stats(output);
    let partitions = parts.len();
    parts
        .into_par_iter()
        .enumerate()
        .try_for_each(|(partition, records)| {
            let at = PartitionId {
                batch: env.time,
                partition,
                partitions,
            };
            let failed = |e: SinkError| OutputFailed::new(output, format!("{at}: {e}"));
            let prepared = prepare(at, records).map_err(failed)?;
            let what = format!("output `{output}` ({at})");
            settings
                .retry
                .run(&what, &stats, &settings.stop, || {
                    write(at, &prepared, &stats)
                })
                .map(|_| ())
                .map_err(failed)
        })
}

/// Writes a whole batch as one unit (file sinks), under the app's retry policy; a batch that cannot be
/// written fails, which stops the app.
pub fn write_whole_batch(
    env: &SinkEnv<'_>,
    output: &str,
    mut write: impl FnMut(PartitionId, &SinkStats) -> Result<(), SinkError>,
) -> Result<(), OutputFailed> {
    let stats = env.sinks.stats(output);
    let at = PartitionId {
        batch: env.time,
        partition: 0,
        partitions: 1,
    };
    let what = format!("output `{output}` ({at})");
    let settings = env.settings;
    settings
        .retry
        .run(&what, &stats, &settings.stop, || write(at, &stats))
        .map_err(|e| OutputFailed::new(output, format!("{at}: {e}")))
}

/// Fault injection for crash tests, with the `failpoints` feature: `STREAMC_FAILPOINT=name:n` aborts the
/// process (as a SIGKILL would) the `n`-th time the point `name` is reached. Without the feature (every
/// app's own build) it is empty, so no build of an app can be aborted through the environment.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn failpoint(_name: &str) {}

/// Fault injection for crash tests: `STREAMC_FAILPOINT=name:n` aborts the process (as a SIGKILL would)
/// the `n`-th time the point `name` is reached. Costs one relaxed load when unset.
#[cfg(feature = "failpoints")]
pub fn failpoint(name: &str) {
    use std::sync::OnceLock;
    static POINT: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let point = POINT.get_or_init(|| {
        let spec = std::env::var("STREAMC_FAILPOINT").ok()?;
        let (point, n) = spec.rsplit_once(':')?;
        Some((point.to_string(), n.parse().ok()?))
    });
    if let Some((point, n)) = point {
        if point == name && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *n {
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            attempts: 20,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        let waits: Vec<u128> = (1..=6).map(|n| p.backoff(n).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.backoff(200), Duration::from_secs(1));
    }

    #[test]
    fn retries_only_what_may_pass_and_gives_up_after_the_attempts() {
        let p = RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        };
        let stats = SinkStats::default();
        let mut tries = 0;
        let r: Result<(), _> = p.run(&"test", &stats, &StopSignal::default(), || {
            tries += 1;
            Err(SinkError::Unavailable("down".into()))
        });
        assert_eq!(tries, 3);
        assert!(matches!(r, Err(SinkError::Unavailable(m)) if m.contains("gave up after 3")));
        assert_eq!(stats.counts().retries, 2);

        let mut tries = 0;
        let r: Result<(), _> = p.run(&"test", &stats, &StopSignal::default(), || {
            tries += 1;
            Err(SinkError::Fatal("no such table".into()))
        });
        assert_eq!(tries, 1);
        assert!(matches!(r, Err(SinkError::Fatal(_))));

        let mut tries = 0;
        let r = p.run(&"test", &stats, &StopSignal::default(), || {
            tries += 1;
            if tries < 2 {
                Err(SinkError::Unavailable("blip".into()))
            } else {
                Ok(tries)
            }
        });
        assert_eq!(r, Ok(2));
    }

    #[test]
    fn an_aborted_run_ends_the_retries_at_once() {
        let p = RetryPolicy {
            attempts: 1000,
            initial_backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(60),
        };
        let stop = StopSignal::default();
        let aborter = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            aborter.abort(crate::stop::AbortReason::Immediate);
        });
        let started = std::time::Instant::now();
        let mut tries = 0;
        let r: Result<(), _> = p.run(&"test", &SinkStats::default(), &stop, || {
            tries += 1;
            Err(SinkError::Unavailable("down".into()))
        });
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(tries, 1, "no try after the abort");
        assert!(
            matches!(r, Err(SinkError::Unavailable(m)) if m.contains("stopping without finishing"))
        );
    }

    impl OpenSink for u32 {}
    impl OpenSink for String {}

    #[test]
    fn an_output_name_keeps_its_kind() {
        let open = OpenSinks::default();
        let a = open.get_or_open("out", || Ok(1u32)).unwrap();
        let again = open
            .get_or_open("out", || -> Result<u32, _> { panic!("opened twice") })
            .unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        assert!(matches!(
            open.get_or_open("out", || Ok(String::new())),
            Err(SinkError::Fatal(_))
        ));
    }
}
