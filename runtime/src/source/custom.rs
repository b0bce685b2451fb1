//! `receiver_stream`: a source an app brings (Spark's `receiverStream(Receiver)`).
//!
//! The app implements [`Receiver`]: `on_start` connects and starts whatever thread or task receives,
//! and returns; that code hands records over through the [`ReceiverContext`] it was given; `on_stop`
//! stops it. The runtime supervises the receiver on a thread of its own: it restarts it when the
//! receiver asks to ([`ReceiverContext::restart`]) or fails to start, cuts what was stored one record
//! at a time into blocks every block interval, and runs every block through the same machinery as the
//! built-in receivers — the memory budget, the rate limit and backpressure, the write-ahead log, the
//! receiver counters that monitoring shows, and the graceful stop.
//!
//! Two ways to store, as in Spark: [`ReceiverContext::store`] takes one record into the current
//! block and returns at once (unreliable: a crash loses what was not yet in a block);
//! [`ReceiverContext::store_block`] returns only once the whole block is handed over — and, under
//! `--wal`, written and fsynced to the log — so a reliable receiver acknowledges its source after it
//! returns, and a crash before that makes the source send the data again.

use super::blocks::{BlockSink, Loggable, ReceivedBlocks, StoreRetry, Unstored};
use super::text::{MemoryBudget, Pressure};
use super::{ReceiverCounters, ReceiverEnv, Source, SourceError, SourceStats};
use crate::rate::{Pacer, RateControl};
use crate::shuffle::split_even;
use crate::time::Time;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A source of records written by the app, run by the runtime like the built-in receivers.
///
/// ```
/// use streamc::source::{Receiver, ReceiverContext};
///
/// /// Counts up from zero, one number every millisecond.
/// struct Counter { thread: Option<std::thread::JoinHandle<()>> }
///
/// impl Receiver for Counter {
///     type Record = u64;
///
///     fn on_start(&mut self, ctx: &ReceiverContext<u64>) -> Result<(), String> {
///         let ctx = ctx.clone();
///         self.thread = Some(std::thread::spawn(move || {
///             let mut n = 0;
///             while ctx.sleep(std::time::Duration::from_millis(1)) {
///                 if ctx.store(n).is_err() { break }
///                 n += 1;
///             }
///         }));
///         Ok(())
///     }
///
///     fn on_stop(&mut self) {
///         // The context says it is stopped by now, so the thread ends at its next sleep.
///         if let Some(thread) = self.thread.take() { let _ = thread.join(); }
///     }
/// }
/// ```
pub trait Receiver: Send + 'static {
    /// What it receives. Serializable so that blocks can be written to the write-ahead log and
    /// read back after a crash.
    type Record: Serialize + DeserializeOwned + Send + 'static;

    /// Checks what can be checked before receiving (an address, a secret, a client's
    /// configuration), once, when the app starts: an error here stops the app from starting, with
    /// the message, where errors of `on_start` are retried. `source` is the source's name.
    fn prepare(&mut self, _source: &str) -> Result<(), String> {
        Ok(())
    }

    /// Starts receiving: connect, start the thread or task that calls the context's `store`
    /// methods, and return. An error is reported (monitoring's receiver table shows it) and the
    /// receiver is started again after a delay, as after [`ReceiverContext::restart`].
    fn on_start(&mut self, ctx: &ReceiverContext<Self::Record>) -> Result<(), String>;

    /// Stops what `on_start` started and waits for it. The context of that start reports
    /// [`ReceiverContext::is_stopped`] from before this is called; what is stored while stopping is
    /// kept (it goes into the next batch).
    fn on_stop(&mut self);
}

/// Why a record or block was not stored. The receiver must not acknowledge it to its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The run was aborted before the data could be stored.
    Aborted,
    /// The receiver has stopped: its last block was handed over already.
    Stopped,
    /// Storing failed (the write-ahead log's disk is full, say) for longer than
    /// `--receiver-failure-timeout`; the app is stopping with this reason.
    Failed(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Aborted => write!(f, "the app was aborted before the data was stored"),
            StoreError::Stopped => write!(f, "the receiver has stopped; the data was not stored"),
            StoreError::Failed(reason) => write!(f, "{reason}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// How a custom receiver's supervisor behaves.
#[derive(Clone, Debug)]
pub struct ReceiverOptions {
    /// How often records stored one at a time are cut into a block (Spark's
    /// `spark.streaming.blockInterval`).
    pub block_interval: Duration,
    /// Received-but-unprocessed bytes (as the records' encoded size) the receiver may hold before
    /// `store` and `store_block` wait.
    pub buffer_bytes: usize,
    /// How long to wait before starting again a receiver whose `on_start` failed.
    pub restart_delay: Duration,
}

impl Default for ReceiverOptions {
    fn default() -> Self {
        Self {
            block_interval: Duration::from_millis(200),
            buffer_bytes: 256 << 20,
            restart_delay: Duration::from_secs(2),
        }
    }
}

/// A block of a custom receiver's records, holding its share of the memory budget until a batch
/// has taken and dropped it.
pub struct RecordBlock<R> {
    records: Vec<R>,
    _budget: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// In the write-ahead log a block is its records, postcard-encoded.
impl<R: Serialize + DeserializeOwned + Send + 'static> Loggable for RecordBlock<R> {
    fn encode(&self) -> Result<Vec<u8>, String> {
        postcard::to_stdvec(&self.records)
            .map_err(|e| format!("a received record cannot be encoded for the log: {e}"))
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        Ok(RecordBlock {
            records: postcard::from_bytes(bytes).map_err(|e| e.to_string())?,
            _budget: None,
        })
    }
}

/// What the supervisor is asked to do.
#[derive(Debug, Default)]
struct Requests {
    stop: bool,
    /// A restart asked for by the receiver of this generation: why, and how long to wait.
    restart: Option<(u64, String, Duration)>,
}

/// What the supervisor, the contexts and the source share.
struct Shared<R> {
    name: String,
    sink: BlockSink<RecordBlock<R>>,
    counters: Arc<ReceiverCounters>,
    budget: MemoryBudget,
    pressure: Mutex<Pressure>,
    pacer: Mutex<Pacer>,
    store_retry: Mutex<StoreRetry>,
    /// Records stored one at a time since the last block, and their encoded bytes.
    current: Mutex<(Vec<R>, usize)>,
    requests: Mutex<Requests>,
    wake: Condvar,
    /// The start the receiver is in; a context of an earlier one reports itself stopped.
    generation: AtomicU64,
    stopping: AtomicBool,
    /// The supervisor handed over the last block: nothing stored from now on would be.
    finished: AtomicBool,
    app_stop: crate::stop::StopHandle,
    block_interval: Duration,
}

/// What a custom receiver stores its records through. Cheap to clone; clones can be used from any
/// thread (each call blocks the calling thread while it waits, so call it from a thread of your
/// own or from `spawn_blocking`, not from inside an async task).
pub struct ReceiverContext<R> {
    shared: Arc<Shared<R>>,
    generation: u64,
}

impl<R> Clone for ReceiverContext<R> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            generation: self.generation,
        }
    }
}

/// How long waits for budget sleep between looks at the stop.
const BUDGET_POLL: Duration = Duration::from_millis(5);

impl<R: Serialize + DeserializeOwned + Send + 'static> ReceiverContext<R> {
    /// The source's name (its `let` binding in the pipeline).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Whether this receiver should stop: the app is stopping, or the receiver is being restarted.
    pub fn is_stopped(&self) -> bool {
        self.shared.stopping.load(Ordering::Relaxed)
            || self.shared.generation.load(Ordering::Relaxed) != self.generation
            || self.shared.app_stop.signal().is_aborted()
    }

    /// Sleeps for `duration` unless the receiver is stopped first. True if it slept the whole time
    /// and should go on.
    pub fn sleep(&self, duration: Duration) -> bool {
        let until = Instant::now() + duration;
        let mut requests = self
            .shared
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        loop {
            if self.is_stopped() || requests.stop {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            // The abort wakes no condvar of ours: look again at least every 50 ms.
            let wait = (until - now).min(Duration::from_millis(50));
            requests = match self.shared.wake.wait_timeout(requests, wait) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Takes one record into the current block, which is handed over at the next block interval.
    /// Waits while the rate limit or the memory budget says so. Unreliable: a crash loses the
    /// records of a block not yet handed over, so acknowledge nothing to the source on the strength
    /// of this call.
    pub fn store(&self, record: R) -> Result<(), StoreError> {
        self.shared.accepting()?;
        let bytes = record_bytes(&record);
        {
            let mut current = self
                .shared
                .current
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            current.0.push(record);
            current.1 += bytes;
        }
        self.pace(1);
        // A full block is handed over at once, by the caller: waiting for budget then holds the
        // receiver back, not the supervisor.
        let full = MAX_BLOCK_BYTES.min(self.shared.budget.limit() / 4);
        if self.shared.current_bytes() >= full {
            self.shared.hand_over_current()?;
        }
        Ok(())
    }

    /// Stores `records` as one block and returns once it is handed over — under `--wal`, once it is
    /// written and fsynced to the log. Acknowledge the records to the source after this returns
    /// `Ok`: a crash before then makes the source send them again. Waits while the memory budget or
    /// the rate limit says so.
    pub fn store_block(&self, records: Vec<R>) -> Result<(), StoreError> {
        self.shared.accepting()?;
        if records.is_empty() {
            return Ok(());
        }
        let count = records.len() as u64;
        let bytes = records.iter().map(record_bytes).sum();
        self.shared.push(records, bytes)?;
        self.pace(count);
        Ok(())
    }

    /// Asks the runtime to restart the receiver: `on_stop`, a wait of `delay`, then `on_start`. The
    /// reason is logged and shown as the receiver's last error. Returns at once; the context
    /// reports itself stopped once the supervisor takes the request (within a block interval).
    pub fn restart(&self, reason: impl Into<String>, delay: Duration) {
        let reason = reason.into();
        let mut requests = self
            .shared
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Only the current start can ask; its request replaces a leftover one of an earlier start.
        if self.generation == self.shared.generation.load(Ordering::Relaxed)
            && requests
                .restart
                .as_ref()
                .is_none_or(|(by, _, _)| *by != self.generation)
        {
            requests.restart = Some((self.generation, reason, delay));
        }
        drop(requests);
        self.shared.wake.notify_all();
    }

    /// Reports an error the receiver rides out: logged, counted and shown in monitoring's receiver
    /// table as its last error.
    pub fn report_error(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::warn!(source = %self.shared.name, "{message}");
        ReceiverCounters::add(&self.shared.counters.connection_errors, 1);
        self.shared.counters.set_error(message);
    }

    /// Counts a connection made to the source, for monitoring.
    pub fn report_connected(&self) {
        ReceiverCounters::add(&self.shared.counters.connections, 1);
    }

    /// The largest block worth storing at once under the current rate limit (a twentieth of a
    /// second of records), so that pacing stays smooth; `None` without a limit.
    pub fn block_limit(&self) -> Option<usize> {
        self.shared
            .pacer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .block_limit()
    }

    /// Kafka: messages behind the high watermark, per (topic, partition).
    pub(crate) fn set_lag(&self, lag: Vec<(String, i32, i64)>) {
        if let Ok(mut kept) = self.shared.counters.lag.lock() {
            *kept = lag;
        }
    }

    /// Waits as long as the rate limit (and, under memory pressure, the processing rate) asks after
    /// `records` more.
    fn pace(&self, records: u64) {
        let wait = {
            let mut pacer = self.shared.pacer.lock().unwrap_or_else(|p| p.into_inner());
            let pressed = self
                .shared
                .pressure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .update(&self.shared.budget);
            pacer.set_pressed(pressed);
            pacer.delay_after(records)
        };
        if !wait.is_zero() {
            self.sleep(wait);
        }
    }
}

/// A block of records stored one at a time is handed over once it holds this many bytes (or a
/// quarter of the budget, if less), without waiting for the block interval.
const MAX_BLOCK_BYTES: usize = 4 << 20;

/// A record's size for the memory budget: its encoded size plus its size in memory.
fn record_bytes<R: Serialize>(record: &R) -> usize {
    postcard::experimental::serialized_size(record).unwrap_or(0) + std::mem::size_of::<R>()
}

impl<R: Serialize + DeserializeOwned + Send + 'static> Shared<R> {
    /// Refuses stores once the supervisor handed over its last block.
    fn accepting(&self) -> Result<(), StoreError> {
        if self.finished.load(Ordering::Relaxed) {
            return Err(StoreError::Stopped);
        }
        Ok(())
    }

    fn current_bytes(&self) -> usize {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).1
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed) || self.app_stop.signal().is_aborted()
    }

    /// Hands over the records stored one at a time since the last block.
    fn hand_over_current(&self) -> Result<(), StoreError> {
        let (records, bytes) =
            std::mem::take(&mut *self.current.lock().unwrap_or_else(|p| p.into_inner()));
        if records.is_empty() {
            return Ok(());
        }
        self.push(records, bytes)
    }

    /// Waits for `bytes` of budget (over budget once the receiver stops: a stop does not wait for
    /// a batch to free memory), then hands the block over, durably first under the log, pausing and
    /// retrying while that fails.
    fn push(&self, records: Vec<R>, bytes: usize) -> Result<(), StoreError> {
        let permit = loop {
            if let Some(permit) = self.budget.try_acquire(bytes) {
                break Some(permit);
            }
            if self.is_stopping() {
                break None;
            }
            std::thread::sleep(BUDGET_POLL);
        };
        let count = records.len() as u64;
        let block = RecordBlock {
            records,
            _budget: permit,
        };
        let stored = self
            .store_retry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(
                &self.sink,
                block,
                &self.name,
                &self.counters,
                self.app_stop.signal(),
            );
        match stored {
            Ok(()) => {
                ReceiverCounters::add(&self.counters.records, count);
                ReceiverCounters::add(&self.counters.bytes, bytes as u64);
                Ok(())
            }
            Err(Unstored::GaveUp(message)) => {
                self.app_stop.fail(format!(
                    "{message}; {count} received records were not stored and are not acknowledged"
                ));
                Err(StoreError::Failed(message))
            }
            Err(Unstored::Aborted) => Err(StoreError::Aborted),
        }
    }
}

/// The source of a [`Receiver`]: `receiver_stream(MyReceiver::new(...))` in a pipeline.
pub struct ReceiverSource<T: Receiver> {
    name: String,
    receiver: Option<T>,
    options: ReceiverOptions,
    blocks: ReceivedBlocks<RecordBlock<T::Record>>,
    counters: Arc<ReceiverCounters>,
    shared: Option<Arc<Shared<T::Record>>>,
    supervisor: Option<JoinHandle<()>>,
}

impl<T: Receiver> ReceiverSource<T> {
    /// A source named `name` that runs `receiver`.
    pub fn new(name: &str, receiver: T, options: ReceiverOptions) -> Self {
        Self {
            name: name.to_string(),
            receiver: Some(receiver),
            options,
            blocks: ReceivedBlocks::new(name),
            counters: Arc::default(),
            shared: None,
            supervisor: None,
        }
    }

    fn error(&self, message: String) -> SourceError {
        SourceError {
            source_name: self.name.clone(),
            message,
        }
    }
}

/// Runs the receiver: starts it, hands over what it stores one at a time every block interval,
/// restarts it when asked, and stops it when the source stops.
fn supervise<T: Receiver>(
    mut receiver: T,
    shared: Arc<Shared<T::Record>>,
    restart_delay: Duration,
) {
    loop {
        let generation = shared.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let ctx = ReceiverContext {
            shared: shared.clone(),
            generation,
        };
        let mut restart = None;
        if let Err(e) = receiver.on_start(&ctx) {
            ctx.report_error(format!("the receiver failed to start: {e}"));
            restart = Some(restart_delay);
        }
        let stop = loop {
            if restart.is_some() {
                break false;
            }
            let (stop, asked) = {
                let mut requests = shared.requests.lock().unwrap_or_else(|p| p.into_inner());
                if !requests.stop && requests.restart.is_none() {
                    requests = match shared.wake.wait_timeout(requests, shared.block_interval) {
                        Ok((guard, _)) => guard,
                        Err(poisoned) => poisoned.into_inner().0,
                    };
                }
                (requests.stop, requests.restart.take())
            };
            if stop || shared.app_stop.signal().is_aborted() {
                break true;
            }
            match asked {
                Some((asked_by, reason, delay)) if asked_by == generation => {
                    ctx.report_error(format!("restarting the receiver: {reason}"));
                    restart = Some(delay);
                }
                // A restart asked for by an earlier start's leftover thread: that one is over.
                _ => drop(shared.hand_over_current()),
            }
        };
        // The contexts of this start report themselves stopped before `on_stop` runs.
        if stop {
            shared.stopping.store(true, Ordering::Relaxed);
        } else {
            shared.generation.fetch_add(1, Ordering::Relaxed);
        }
        shared.wake.notify_all();
        receiver.on_stop();
        if stop {
            // Stores from now on are refused rather than left where no batch takes them.
            shared.finished.store(true, Ordering::Relaxed);
        }
        drop(shared.hand_over_current());
        if stop {
            return;
        }
        let delay = restart.unwrap_or(restart_delay);
        tracing::info!(source = %shared.name, ?delay, "receiver stopped; starting it again after the delay");
        let waiting = ReceiverContext {
            shared: shared.clone(),
            generation: shared.generation.load(Ordering::Relaxed),
        };
        if !waiting.sleep(delay) {
            return;
        }
    }
}

impl<R> Shared<R> {
    /// Asks the supervisor to stop the receiver; waits for budget end from now on.
    fn request_stop(&self) {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
        self.stopping.store(true, Ordering::Relaxed);
        self.wake.notify_all();
    }
}

/// One partition of a custom receiver's batch: its records, and (in the first partition) the
/// memory budget of the blocks they came from, held until the batch is dropped after it ran.
pub struct RecordPartition<R> {
    records: Vec<R>,
    _budget: Vec<tokio::sync::OwnedSemaphorePermit>,
}

impl<R> RecordPartition<R> {
    /// The partition's records.
    pub fn records(&self) -> &[R] {
        &self.records
    }
}

/// A stage reads a partition's records by reference.
impl<'a, R> crate::shuffle::Records for &'a RecordPartition<R> {
    type Item = &'a R;
    type Iter = std::slice::Iter<'a, R>;
    fn records(self) -> Self::Iter {
        self.records.iter()
    }
}

/// The blocks as `partitions` partitions of evenly spread records, the blocks' budget kept.
fn spread<R>(blocks: Vec<RecordBlock<R>>, partitions: usize) -> Vec<RecordPartition<R>> {
    let mut budget = Vec::new();
    let mut records = Vec::new();
    for block in blocks {
        records.extend(block.records);
        budget.extend(block._budget);
    }
    let mut parts: Vec<RecordPartition<R>> = split_even(records, partitions)
        .into_iter()
        .map(|records| RecordPartition {
            records,
            _budget: Vec::new(),
        })
        .collect();
    if let Some(first) = parts.first_mut() {
        first._budget = budget;
    }
    parts
}

impl<T: Receiver> Source for ReceiverSource<T> {
    type Batch = Vec<RecordPartition<T::Record>>;

    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self, env: &ReceiverEnv) -> Result<(), SourceError> {
        let Some(mut receiver) = self.receiver.take() else {
            return Err(self.error("the receiver was already started".into()));
        };
        receiver.prepare(&self.name).map_err(|e| self.error(e))?;
        let sink = self.blocks.start(env)?;
        let control = Arc::new(RateControl::new(env.max_rate));
        if let Some(initial) = env.initial_rate {
            control.set(initial);
        }
        env.rates.register(&self.name, control.clone());
        let shared = Arc::new(Shared {
            name: self.name.clone(),
            sink,
            counters: self.counters.clone(),
            budget: MemoryBudget::new(self.options.buffer_bytes),
            pressure: Mutex::default(),
            pacer: Mutex::new(Pacer::new(control)),
            store_retry: Mutex::new(StoreRetry::new(env.failure_timeout)),
            current: Mutex::default(),
            requests: Mutex::default(),
            wake: Condvar::new(),
            generation: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            app_stop: env.stop.clone(),
            block_interval: self.options.block_interval,
        });
        let supervised = shared.clone();
        let restart_delay = self.options.restart_delay;
        let thread = std::thread::Builder::new()
            .name(format!("streamc-receiver-{}", self.name))
            .spawn(move || supervise(receiver, supervised, restart_delay))
            .map_err(|e| self.error(format!("cannot start the receiver's thread: {e}")))?;
        self.shared = Some(shared);
        self.supervisor = Some(thread);
        Ok(())
    }

    fn cut(&mut self, _time: Time, partitions: usize) -> Self::Batch {
        spread(self.blocks.take(None).unwrap_or_default(), partitions)
    }

    fn records_in(batch: &Self::Batch) -> usize {
        batch.iter().map(|p| p.records.len()).sum()
    }

    fn stop(&mut self) {
        if let Some(shared) = &self.shared {
            shared.request_stop();
        }
        if let Some(thread) = self.supervisor.take() {
            let _ = thread.join();
        }
    }

    fn stats(&self) -> Option<SourceStats> {
        Some(self.counters.snapshot())
    }

    fn position(&self) -> Option<Vec<u8>> {
        self.blocks.position()
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        self.blocks.seek(position)
    }

    fn recut(
        &mut self,
        _time: Time,
        partitions: usize,
        position: &[u8],
    ) -> Result<Self::Batch, SourceError> {
        Ok(spread(self.blocks.take(Some(position))?, partitions))
    }
}

impl<T: Receiver> Drop for ReceiverSource<T> {
    fn drop(&mut self) {
        // Without joining: an aborted run must not wait for a receiver that does not stop.
        if let Some(shared) = &self.shared {
            shared.request_stop();
        }
    }
}
