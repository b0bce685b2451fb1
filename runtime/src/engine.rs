//! The micro-batch engine.
//!
//! Three roles, each on its own threads:
//! - receivers run on a small tokio runtime, never on the worker pool;
//! - the batch generator wakes at every multiple of the batch interval and cuts what the sources received
//!   until then into that batch (so a slow batch never changes which data belongs to the next);
//! - the executor runs batches strictly in order on a rayon pool of `workers` threads. A slow batch delays
//!   the next one (the scheduling delay) but no data is dropped.
//!
//! A stop request (Ctrl-C, SIGTERM, `--batches`, `--run-for`, [`StopHandle::stop`]) is graceful: receivers
//! stop and hand over what they hold, the generator cuts one last batch, the executor finishes every
//! queued batch, then the run ends.

use crate::checkpoint::{Checkpoint, CheckpointDir, JournaledBatch, WriteFailure};
use crate::config::AppConfig;
use crate::context::{BatchContext, Collector, Outputs};
use crate::pipeline::Pipeline;
use crate::source::{ReceiverEnv, SourceSet};
use crate::time::Time;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use crate::monitor::report::{BatchInfo, RunReport};

/// A run could not start, or did not end with a complete graceful stop.
#[derive(Debug)]
#[non_exhaustive]
pub enum RunError {
    /// A setting is wrong (set by a flag, the config file or [`crate::App::configure`]), or does not
    /// fit the pipeline (a batch interval that does not divide its windows).
    Config(String),
    /// The checkpoint directory cannot be used: it cannot be read or written, or its checkpoint does
    /// not fit this app (another app's, another batch interval, state of another shape, batches cut
    /// for another number of workers). `--reset-state` or another directory is the way out.
    Checkpoint(String),
    /// An output gave up on a batch: its destination stayed away through every retry, or refused
    /// the batch for good. The checkpoint covers only the batches before it.
    OutputFailed(String),
    /// A receiver failed for good: it could not store what it received within
    /// `--receiver-failure-timeout`; or a batch could not be journaled before it ran (the
    /// checkpoint store out of reach through every retry).
    ReceiverFailed(String),
    /// Anything else that stopped the app: it could not start (its threads, the pipeline's own
    /// build, the monitoring server, a source), or a thread of the runtime panicked.
    Failed(String),
    /// The graceful stop did not finish within `--graceful-stop-timeout`; `left` says what was not
    /// finished and what a restart does with it.
    StopTimedOut {
        /// The graceful stop timeout that ran out.
        timeout: Duration,
        /// What the stop left unfinished (batches not run, data receivers still held) and
        /// what a restart does with it.
        left: String,
    },
    /// A stop at once was asked for (a second signal, or [`crate::RunningApp::stop_now`]).
    StoppedAtOnce {
        /// What the stop left unfinished (batches not run, data receivers still held) and
        /// what a restart does with it.
        left: String,
    },
}

impl RunError {
    /// The process exit code `App::main` uses: 1 for a failure, 124 for a graceful stop that timed out
    /// (as `timeout(1)` does), 130 for a stop at once (as a shell reports a second Ctrl-C).
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Config(_)
            | RunError::Checkpoint(_)
            | RunError::OutputFailed(_)
            | RunError::ReceiverFailed(_)
            | RunError::Failed(_) => 1,
            RunError::StopTimedOut { .. } => 124,
            RunError::StoppedAtOnce { .. } => 130,
        }
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Config(message)
            | RunError::Checkpoint(message)
            | RunError::OutputFailed(message)
            | RunError::ReceiverFailed(message)
            | RunError::Failed(message) => f.write_str(message),
            RunError::StopTimedOut { timeout, left } => write!(
                f,
                "the graceful stop did not finish within {timeout:?} (--graceful-stop-timeout): {left}"
            ),
            RunError::StoppedAtOnce { left } => write!(f, "stopped at once: {left}"),
        }
    }
}

impl std::error::Error for RunError {}

pub use crate::stop::StopHandle;

/// Threads and runtimes a run needs.
pub(crate) struct Machinery {
    pub receivers: tokio::runtime::Runtime,
    pub pool: rayon::ThreadPool,
    pub rates: crate::rate::RateControls,
    pub checkpointed: crate::source::Checkpointed,
    /// Source positions of the last completed batch.
    pub completed: crate::source::Checkpointed,
    /// The run's zero time, which per-stream schedules count batches from.
    pub clock: BatchClock,
}

/// Spark's `zeroTime`: one batch interval before the run's first batch (kept across restarts by the
/// checkpoints), so that "every 10 batches" means the 10th, 20th, ... batch of the run.
#[derive(Debug)]
pub(crate) struct BatchClock {
    /// [`BatchClock::UNSET`] until the first batch or a checkpoint sets it.
    zero_ms: std::sync::atomic::AtomicU64,
    interval_ms: u64,
}

impl BatchClock {
    const UNSET: u64 = u64::MAX;

    /// The zero time, set from `time` if this is the run's first batch.
    pub(crate) fn zero_for(&self, time: Time) -> u64 {
        use std::sync::atomic::Ordering;
        let first = time.millis().saturating_sub(self.interval_ms);
        match self.zero_ms.compare_exchange(
            Self::UNSET,
            first,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => first,
            Err(zero) => zero,
        }
    }

    /// Takes the zero time of a restored run; `None` (a checkpoint of an earlier build) leaves it
    /// to the first batch.
    pub(crate) fn restore(&self, zero_ms: Option<u64>) {
        if let Some(zero_ms) = zero_ms {
            self.zero_ms
                .store(zero_ms, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Machinery {
    /// The rate each receiver is held to now (0: unlimited).
    pub(crate) fn rate_limits(&self) -> Vec<(String, u64)> {
        self.rates
            .all()
            .into_iter()
            .map(|(name, c)| (name, c.limit()))
            .collect()
    }

    pub(crate) fn new(config: &AppConfig) -> Result<Self, RunError> {
        config.validate().map_err(|e| RunError::Config(e.0))?;
        let receivers = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("streamc-receiver")
            .enable_all()
            .build()
            .map_err(|e| RunError::Failed(format!("cannot start the receiver runtime: {e}")))?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.workers)
            .thread_name(|i| format!("streamc-worker-{i}"))
            .build()
            .map_err(|e| {
                RunError::Failed(format!(
                    "cannot start {} worker threads: {e}",
                    config.workers
                ))
            })?;
        Ok(Self {
            receivers,
            pool,
            rates: Default::default(),
            checkpointed: Default::default(),
            completed: Default::default(),
            clock: BatchClock {
                zero_ms: BatchClock::UNSET.into(),
                interval_ms: config.batch_interval.as_millis() as u64,
            },
        })
    }

    pub(crate) fn env(&self, config: &AppConfig, stop: &StopHandle) -> ReceiverEnv {
        ReceiverEnv {
            handle: self.receivers.handle().clone(),
            rates: self.rates.clone(),
            max_rate: config.receiver_max_rate,
            initial_rate: if config.backpressure {
                config.backpressure_initial_rate
            } else {
                None
            },
            wal_location: match (&config.checkpoint_dir, config.write_ahead_log) {
                (Some(dir), true) => Some(dir.join("wal")),
                _ => None,
            },
            storage: config.storage.clone(),
            wal_roll_interval: config.wal_roll_interval,
            checkpointed: self.checkpointed.clone(),
            stop: stop.clone(),
            failure_timeout: config.receiver_failure_timeout,
        }
    }
}

/// How a batch runs.
#[derive(Clone, Debug, Default)]
pub(crate) struct BatchMode {
    /// Where the sources stood after the batch was cut.
    pub origin: Arc<crate::context::BatchOrigin>,
    /// Check state types only (after restoring a checkpoint).
    pub dry_run: bool,
    /// The run's zero time (see [`BatchClock`]), in epoch milliseconds.
    pub zero_ms: u64,
    /// The batch interval, in milliseconds.
    pub interval_ms: u64,
}

/// Why a batch failed.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub message: String,
    /// An output gave up (its destination stayed away or refused): the app must stop.
    pub output_failed: bool,
}

/// Runs one batch on the pool: an output that could not write it fails the batch and stops the app; a
/// panic in user code (contained here, not used to signal anything) fails the batch alone.
pub(crate) fn execute<P: Pipeline>(
    pipeline: &P,
    pool: &rayon::ThreadPool,
    outputs: &Outputs,
    workers: usize,
    time: Time,
    batch: <P::Sources as SourceSet>::Batch,
    mode: BatchMode,
) -> Option<Failure> {
    let ctx = BatchContext {
        time,
        workers,
        dry_run: mode.dry_run,
        zero_time: Time(mode.zero_ms),
        batch_interval_ms: mode.interval_ms,
        origin: mode.origin,
        outputs,
    };
    let result = catch_unwind(AssertUnwindSafe(|| {
        pool.install(|| pipeline.run_batch(&ctx, batch))
    }));
    match result {
        Ok(Ok(())) => None,
        Ok(Err(crate::sink::OutputFailed(message))) => {
            tracing::error!(batch = %time, "batch failed, stopping: {message}");
            Some(Failure {
                message,
                output_failed: true,
            })
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a user function panicked".to_string());
            tracing::error!(batch = %time, "batch failed: {message}");
            Some(Failure {
                message,
                output_failed: false,
            })
        }
    }
}

/// Writes checkpoints on schedule and restores the newest one at start.
pub(crate) struct Checkpointer {
    dir: CheckpointDir,
    /// This run's claim on the directory, for as long as the checkpointer lives.
    lock: crate::checkpoint::DirLock,
    every_ms: u64,
    app: String,
    interval_ms: u64,
    /// Time and source positions of each checkpoint kept in the directory, oldest first. A damaged
    /// newest checkpoint falls back to an older one, so the batch journal and the write-ahead logs
    /// are trimmed only up to the oldest.
    kept: std::sync::Mutex<std::collections::VecDeque<(u64, crate::source::Positions)>>,
}

impl Checkpointer {
    /// `None` when the configuration names no checkpoint directory.
    pub(crate) fn from_config(config: &AppConfig) -> Result<Option<Self>, RunError> {
        let Some(path) = &config.checkpoint_dir else {
            return Ok(None);
        };
        let dir = CheckpointDir::open_at(path, config.keep_checkpoints, &config.storage)
            .map_err(RunError::Checkpoint)?;
        let lock = dir.lock().map_err(RunError::Checkpoint)?;
        if config.reset_state {
            let removed = dir.reset().map_err(RunError::Checkpoint)?;
            tracing::warn!(dir = %path, removed, "--reset-state: discarded the existing checkpoints");
        }
        let kept = dir.kept().map_err(RunError::Checkpoint)?.into();
        Ok(Some(Self {
            dir,
            lock,
            every_ms: config.checkpoint_interval().as_millis().max(1) as u64,
            app: config.name.clone(),
            interval_ms: config.batch_interval.as_millis() as u64,
            kept: std::sync::Mutex::new(kept),
        }))
    }

    /// Whether batch `time` ends with a checkpoint.
    pub(crate) fn is_due(&self, time: Time) -> bool {
        time.millis().is_multiple_of(self.every_ms)
    }

    /// Restores the newest usable checkpoint into the pipeline and sources and checks, with a dry run,
    /// that the pipeline's state types still match. Returns the time of the checkpointed batch and the
    /// batches cut after it that never completed, to be cut again identically.
    /// The configured checkpoint directory, if any, and what it brings back (when nothing does, the
    /// sources hear it is a fresh start): a real run and the test driver start the same way.
    pub(crate) fn open_and_recover<P: Pipeline>(
        config: &AppConfig,
        pipeline: &P,
        sources: &mut P::Sources,
        machinery: &Machinery,
        outputs: &Outputs,
    ) -> Result<(Option<Self>, Option<Recovered>), RunError> {
        let Some(checkpointer) = Self::from_config(config)? else {
            sources.fresh_start();
            return Ok((None, None));
        };
        let recovered =
            checkpointer.recover(pipeline, sources, machinery, outputs, config.workers)?;
        if recovered.is_none() {
            sources.fresh_start();
        }
        Ok((Some(checkpointer), recovered))
    }

    pub(crate) fn recover<P: Pipeline>(
        &self,
        pipeline: &P,
        sources: &mut P::Sources,
        machinery: &Machinery,
        outputs: &Outputs,
        workers: usize,
    ) -> Result<Option<Recovered>, RunError> {
        let Some(found) = self.dir.latest().map_err(RunError::Checkpoint)? else {
            // No checkpoint yet, but batches may have run (and written their outputs) before the crash:
            // they are cut again from the sources' start, with the same data and times.
            let pending = self.dir.journaled_after(0).map_err(RunError::Checkpoint)?;
            let Some(first) = pending.first() else {
                return Ok(None);
            };
            check_replay_partitions(&pending, workers)?;
            let time = Time(first.time_ms.saturating_sub(self.interval_ms));
            machinery.clock.restore(Some(time.millis()));
            tracing::info!(
                pending = pending.len(),
                "no checkpoint yet: running the journaled batches again"
            );
            return Ok(Some(Recovered { time, pending }));
        };
        for (file, problem) in &found.skipped {
            let problem = format!("{}: {problem}", self.dir.describe(file));
            match self.dir.set_aside(file) {
                Ok(aside) => tracing::warn!(
                    "skipping a damaged checkpoint, using the one before it: {problem} (kept as {})",
                    self.dir.describe(&aside)
                ),
                Err(e) => tracing::warn!(
                    "skipping a damaged checkpoint, using the one before it: {problem} ({e})"
                ),
            }
        }
        let ckpt = found.checkpoint;
        let way_out = format!(
            "start with --reset-state to discard the checkpoints in {}, or point --checkpoint at a new directory",
            self.dir.location()
        );
        if ckpt.app != self.app {
            return Err(RunError::Checkpoint(format!(
                "the checkpoint in {} belongs to app `{}`, not `{}`; {way_out}",
                self.dir.location(),
                ckpt.app,
                self.app
            )));
        }
        if ckpt.batch_interval_ms != self.interval_ms {
            return Err(RunError::Checkpoint(format!(
                "the batch interval changed from {} ms to {} ms since the checkpoint; windows and state depend on it; {way_out}",
                ckpt.batch_interval_ms, self.interval_ms
            )));
        }
        pipeline
            .state()
            .restore(ckpt.states)
            .map_err(|e| RunError::Checkpoint(format!("{e}; {way_out}")))?;
        sources
            .seek(&ckpt.positions)
            .map_err(|e| RunError::Checkpoint(format!("{e}; {way_out}")))?;
        machinery.clock.restore(ckpt.zero_time_ms);
        let time = Time(ckpt.time_ms);
        let dry = BatchMode {
            dry_run: true,
            ..BatchMode::default()
        };
        if let Some(failure) = execute(
            pipeline,
            &machinery.pool,
            outputs,
            workers,
            time,
            Default::default(),
            dry,
        ) {
            return Err(RunError::Checkpoint(format!(
                "checking the restored state failed: {}",
                failure.message
            )));
        }
        let problems = pipeline.state().take_problems();
        if !problems.is_empty() {
            return Err(RunError::Checkpoint(format!(
                "the checkpoint does not fit this pipeline: {}; {way_out}",
                problems.join("; ")
            )));
        }
        let pending = self
            .dir
            .journaled_after(time.millis())
            .map_err(RunError::Checkpoint)?;
        check_replay_partitions(&pending, workers)?;
        tracing::info!(checkpoint = %self.dir.describe(&found.file), batch = %time, pending = pending.len(), "resumed from checkpoint");
        Ok(Some(Recovered { time, pending }))
    }

    /// Why this app no longer holds its checkpoint location, if another app took it over.
    pub(crate) fn lost_lease(&self) -> Option<String> {
        self.lock.lost()
    }

    /// The checkpoint directory, for journaling batches as they are cut.
    pub(crate) fn journal_dir(&self) -> CheckpointDir {
        self.dir.clone()
    }

    /// Writes the checkpoint of batch `time`. A failure (a full disk) is logged and the run goes on: the
    /// previous checkpoint stays complete, and the next one tries again; a fenced one stops the app.
    /// Returns how long it took, its
    /// size, and the source positions of the oldest checkpoint kept: logs before them may go.
    pub(crate) fn write<P: Pipeline>(
        &self,
        pipeline: &P,
        time: Time,
        positions: Vec<(String, Vec<u8>)>,
        zero_time_ms: u64,
    ) -> Result<(Duration, u64, crate::source::Positions), WriteFailure> {
        let started = Instant::now();
        if let Some(lost) = self.lock.lost() {
            return Err(WriteFailure::Fenced(lost));
        }
        let states = pipeline.state().snapshot()?;
        let checkpoint = Checkpoint {
            app: self.app.clone(),
            batch_interval_ms: self.interval_ms,
            time_ms: time.millis(),
            positions,
            states,
            zero_time_ms: Some(zero_time_ms),
        };
        let (_, bytes) = self.dir.write(&checkpoint)?;
        let oldest_file = self.dir.oldest_time()?.unwrap_or(checkpoint.time_ms);
        let (oldest_time, oldest_positions) = {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            kept.retain(|(t, _)| *t >= oldest_file && *t < checkpoint.time_ms);
            kept.push_back((checkpoint.time_ms, checkpoint.positions));
            kept.front().cloned().unwrap_or_default()
        };
        self.dir.forget_journal_through(oldest_time)?;
        Ok((started.elapsed(), bytes, oldest_positions))
    }
}

/// Batches cut before a crash are replayed into the same partitions they were cut into: the sinks'
/// exactly-once progress is kept per partition, and a batch split another way would write rows that
/// another partition already committed, or skip rows it never wrote.
fn check_replay_partitions(pending: &[JournaledBatch], workers: usize) -> Result<(), RunError> {
    let Some(cut) = pending
        .iter()
        .find(|b| b.partitions != 0 && b.partitions as usize != workers)
    else {
        return Ok(());
    };
    Err(RunError::Checkpoint(format!(
        "{} batch(es) from {} ms on were cut into {} partitions before the app stopped, and must be \
         replayed the same way for exactly-once outputs; restart with --workers {}, let it catch up \
         and stop it gracefully (Ctrl-C or SIGTERM), then change --workers",
        pending.len(),
        pending.first().map(|b| b.time_ms).unwrap_or(cut.time_ms),
        cut.partitions,
        cut.partitions
    )))
}

/// Backpressure: one PID estimator per receiver, fed each batch's figures; and, with or without it,
/// each receiver's processing rate, which it keeps to under memory pressure.
struct Backpressure {
    enabled: bool,
    interval: Duration,
    gains: crate::rate::PidGains,
    controls: crate::rate::RateControls,
    estimators: std::collections::HashMap<String, crate::rate::PidRateEstimator>,
}

impl Backpressure {
    fn new(config: &AppConfig, controls: &crate::rate::RateControls) -> Self {
        Self {
            enabled: config.backpressure,
            interval: config.batch_interval,
            gains: config.backpressure_pid,
            controls: controls.clone(),
            estimators: Default::default(),
        }
    }

    fn update(&mut self, info: &BatchInfo) {
        for (name, control) in self.controls.all() {
            let records = info
                .records
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, r)| *r as u64)
                .unwrap_or(0);
            control.observe_processing(records, info.processing_time);
            if !self.enabled {
                continue;
            }
            let estimator = self.estimators.entry(name.clone()).or_insert_with(|| {
                crate::rate::PidRateEstimator::with_gains(self.interval, self.gains)
            });
            if let Some(rate) = estimator.compute(
                info.time.millis(),
                records,
                info.processing_time,
                info.scheduling_delay,
            ) {
                control.set(rate as u64);
                tracing::debug!(source = %name, rate = control.limit(), "backpressure: new receiving rate");
            }
        }
    }
}

/// Where a restart picks up.
pub(crate) struct Recovered {
    /// The checkpointed batch.
    pub time: Time,
    /// Batches cut after it but not completed before the crash.
    pub pending: Vec<JournaledBatch>,
}

/// Journals a batch before it runs, when the pipeline has replayable sources and a checkpoint
/// directory. A store that stays away (a full disk, a bucket out of reach) is retried under the
/// sinks' policy; when that gives up, the batch must not run: after a crash it could not be cut
/// again the same way. The error says so.
pub(crate) fn journal(
    dir: Option<&CheckpointDir>,
    time: Time,
    partitions: usize,
    positions: &[(String, Vec<u8>)],
    retry: &crate::sink::RetryPolicy,
    signal: &crate::stop::StopSignal,
) -> Result<(), String> {
    let Some(dir) = dir else { return Ok(()) };
    if positions.is_empty() {
        return Ok(());
    }
    let entry = JournaledBatch {
        time_ms: time.millis(),
        positions: positions.to_vec(),
        partitions: partitions as u32,
    };
    let mut attempt = 1;
    loop {
        let problem = match dir.journal(&entry) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        // Another part of the app already failed (a receiver that cannot store): stop with it.
        let failed_elsewhere = signal.failure().is_some();
        if attempt >= retry.attempts || failed_elsewhere || signal.is_aborted() {
            return Err(format!(
                "batch {time} could not be journaled in {} (gave up after {attempt} attempt(s)): {problem}",
                dir.location()
            ));
        }
        let wait = retry.backoff(attempt);
        tracing::warn!(
            batch = %time,
            "journaling the batch: attempt {attempt} of {} failed, retrying in {wait:?}: {problem}",
            retry.attempts
        );
        if !signal.sleep(wait) {
            return Err(format!(
                "batch {time} could not be journaled in {} before the app stopped: {problem}",
                dir.location()
            ));
        }
        attempt += 1;
    }
}

/// Options of a real-time run that are not configuration: where `print` goes, signal handling.
pub(crate) struct RunOptions {
    pub print: Box<dyn Write + Send>,
    pub collector: Arc<Collector>,
    pub handle_signals: bool,
    pub listeners: crate::monitor::Listeners,
    /// Set to the monitoring server's address once it listens.
    pub ui_bound: Arc<std::sync::OnceLock<std::net::SocketAddr>>,
}

/// Runs the app in real time until it is asked to stop.
pub(crate) fn run<P: Pipeline>(
    config: AppConfig,
    options: RunOptions,
    stop: (StopHandle, mpsc::Receiver<()>),
) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let machinery = Machinery::new(&config)?;
    let (stop_handle, stop_requests) = stop;
    let signal = stop_handle.signal().clone();
    // Before anything slow (recovery can replay a long log): a SIGTERM from then on is a graceful stop.
    if options.handle_signals {
        watch_signals(&machinery.receivers, stop_handle.clone());
    }
    let (mut sources, pipeline) = P::build(&config)
        .map_err(|e| RunError::Failed(format!("cannot build the pipeline: {e}")))?;
    let mut listeners = options.listeners;
    if let Some(every) = config.stats_every {
        listeners.add(Arc::new(crate::monitor::StatsReport::new(every)));
    }
    if let Some(address) = config.ui {
        let limits = crate::monitor::metrics::HealthLimits {
            stuck_after: config.health_stuck_after(),
            max_queued_batches: config.ready_max_queued_batches,
        };
        let metrics = Arc::new(
            crate::monitor::metrics::Metrics::new(config.batch_history)
                .with_health(limits, signal.clone()),
        );
        listeners.add(metrics.clone());
        let wal_dir = config
            .checkpoint_dir
            .as_ref()
            .and_then(|d| d.local_path())
            .map(|d| d.join("wal"));
        let bound = crate::monitor::server::start(&machinery.receivers, address, metrics, wal_dir)
            .map_err(RunError::Failed)?;
        let _ = options.ui_bound.set(bound);
    }
    let mut sink_settings = config.sink_settings();
    sink_settings.stop = signal.clone();
    let outputs = Outputs::new(options.print, options.collector, sink_settings)
        .with_listeners(listeners.clone());
    let (checkpointer, recovered) =
        Checkpointer::open_and_recover(&config, &pipeline, &mut sources, &machinery, &outputs)?;
    sources
        .start(&machinery.env(&config, &stop_handle))
        .map_err(|e| RunError::Failed(e.to_string()))?;
    let mut backpressure = Backpressure::new(&config, &machinery.rates);
    if let Some(limit) = config.run_for {
        let stopper = stop_handle.clone();
        machinery.receivers.spawn(async move {
            tokio::time::sleep(limit).await;
            stopper.stop();
        });
    }
    tracing::info!(app = %config.name, interval = ?config.batch_interval, workers = config.workers, "started");
    let spec = P::spec();
    let app_info = crate::monitor::AppInfo {
        name: config.name.clone(),
        batch_interval: config.batch_interval,
        workers: config.workers,
        started: SystemTime::now(),
        sources: spec
            .sources
            .iter()
            .map(|s| (s.name.to_string(), s.kind.to_string()))
            .collect(),
        outputs: spec
            .outputs
            .iter()
            .map(|o| format!("{}.{}", o.stream, o.kind))
            .collect(),
    };
    listeners.emit(|l| l.on_app_started(&app_info));
    let mut receiver_watch = crate::monitor::ReceiverWatch::default();

    let (batches_tx, batches_rx) = mpsc::channel();
    let interval = config.batch_interval;
    let plan = BatchPlan {
        interval,
        partitions: config.workers,
        stop_after: config.stop_after_batches,
        stop_when_drained: config.stop_when_drained,
        resume_after: recovered.as_ref().map(|r| r.time),
        replay: recovered.map(|r| r.pending).unwrap_or_default(),
        journal: checkpointer.as_ref().map(Checkpointer::journal_dir),
        journal_retry: config.sinks.retry,
        completed: machinery.completed.clone(),
        listeners: listeners.clone(),
        signal: signal.clone(),
        graceful_stop_timeout: config.graceful_stop_timeout(),
    };
    let generator = std::thread::Builder::new()
        .name("streamc-batches".into())
        .spawn(move || {
            generate_batches(&mut sources, plan, stop_requests, batches_tx);
            sources
        })
        .map_err(|e| RunError::Failed(format!("cannot start the batch generator: {e}")))?;

    let mut report = RunReport::default();
    let mut output_failure = None;
    // Another app committed a checkpoint on this location: this one stops writing anything.
    let mut fenced: Option<String> = None;
    let mut unfinished = Unfinished::default();
    let mut aborted_at: Option<Instant> = None;
    loop {
        if signal.is_aborted() {
            // Batches still to come are not run; the generator gets a moment to hand over the last
            // cut (and to let its receivers go), but an aborted run does not wait for it.
            let since = *aborted_at.get_or_insert_with(Instant::now);
            if since.elapsed() >= ABORT_GRACE {
                break;
            }
        }
        let cut = match batches_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(cut) => cut,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if fenced.is_none() {
            // Another app took the location over: none of this one's batches may write outputs.
            if let Some(lost) = checkpointer.as_ref().and_then(Checkpointer::lost_lease) {
                tracing::error!("{lost}");
                fenced = Some(lost);
                stop_handle.stop();
            }
        }
        if output_failure.is_some() || fenced.is_some() || signal.is_aborted() {
            // Stopping after an output gave up, or without finishing: later batches stay journaled
            // for the restart.
            unfinished.add(&cut);
            continue;
        }
        let time = cut.time;
        let replayable = !cut.positions.is_empty();
        receiver_watch.update(&cut.sources, &listeners);
        let start = SystemTime::now();
        listeners.emit(|l| l.on_batch_started(time, start));
        let outcome = run_batch(
            &pipeline,
            &machinery,
            &outputs,
            config.workers,
            checkpointer.as_ref(),
            BatchInput {
                time,
                batch: cut.batch,
                positions: cut.positions,
            },
            cut.last,
        );
        match &outcome.checkpoint {
            Some(Ok((took, _))) => {
                report.checkpoints_written += 1;
                report.last_checkpoint_duration = Some(*took);
            }
            Some(Err(WriteFailure::Fenced(e))) => {
                report.checkpoints_failed += 1;
                tracing::error!(batch = %time, "{e}");
                fenced = Some(e.clone());
                stop_handle.stop();
            }
            Some(Err(WriteFailure::Failed(e))) => {
                report.checkpoints_failed += 1;
                tracing::error!(batch = %time, "checkpoint failed, the previous one stays in force: {e}");
            }
            None => {}
        }
        let end = SystemTime::now();
        let mut info = batch_info(time, cut.records, (cut.submitted, start, end), outcome);
        info.outputs = outputs.take_batch_outputs();
        info.state_keys = pipeline.state().key_counts();
        info.rate_limits = machinery.rate_limits();
        info.sinks = outputs.sinks.counts();
        listeners.emit(|l| l.on_batch_completed(&info));
        backpressure.update(&info);
        if info.scheduling_delay > config.batch_interval {
            tracing::warn!(
                batch = %time,
                scheduling_delay_ms = info.scheduling_delay.as_millis() as u64,
                "falling behind: batches wait longer than the batch interval"
            );
        }
        tracing::debug!(
            batch = %time,
            records = info.total_records(),
            processing_ms = info.processing_time.as_millis() as u64,
            scheduling_delay_ms = info.scheduling_delay.as_millis() as u64,
            "batch completed"
        );
        if info.output_failed {
            unfinished.add_failed(time, info.total_records(), replayable);
            output_failure = info.failure.clone();
            stop_handle.stop();
        }
        report.record(info);
        if report.time_to_first_batch.is_none() {
            report.time_to_first_batch = Some(started.elapsed());
        }
    }
    let aborted = signal.abort_reason();
    let sources_stopped = aborted.is_none() || generator.is_finished();
    if sources_stopped {
        let mut sources = generator
            .join()
            .map_err(|_| RunError::Failed("the batch generator panicked".into()))?;
        // The last acknowledgements (Kafka commits of completed batches) may wait on a broker: an
        // aborted run leaves them to the restart, unless it had nothing left to do anyway.
        if aborted.is_none() || unfinished.batches.is_empty() {
            sources.completed(&machinery.completed.get());
            sources.finish();
        }
        report.sources = sources.stats();
        drop(sources);
    } else {
        // Its receivers did not let go in time (a broker that does not answer): the process is
        // leaving, and what they held was never acknowledged.
        tracing::warn!("the sources did not stop in time; leaving them behind");
        unfinished.sources_left = true;
    }
    report.rate_limits = machinery.rate_limits();
    machinery.receivers.shutdown_timeout(Duration::from_secs(1));
    outputs.sinks.close_all();
    signal.finish();
    report.outputs = outputs.sinks.counts();
    receiver_watch.stopped(&listeners);
    listeners.emit(|l| l.on_app_stopped(&report));
    if let Some(reason) = aborted {
        let left = unfinished.describe(checkpointer.is_some());
        tracing::error!(app = %config.name, "stopped without finishing: {left}");
        return Err(match reason {
            crate::stop::AbortReason::GracefulStopTimedOut(timeout) => {
                RunError::StopTimedOut { timeout, left }
            }
            crate::stop::AbortReason::Immediate => RunError::StoppedAtOnce { left },
        });
    }
    if let Some(message) = fenced {
        return Err(RunError::Checkpoint(format!(
            "stopped because {message}. This app's batches since its last checkpoint run again \
             at its restart"
        )));
    }
    if let Some(message) = output_failure {
        return Err(RunError::OutputFailed(format!(
            "stopped because a batch could not be written: {message}. The checkpoint covers only \
             completed batches: fix the destination and restart to write this batch again"
        )));
    }
    if let Some(message) = signal.failure() {
        return Err(RunError::ReceiverFailed(format!(
            "stopped because {message}. Every batch cut before the stop was processed; a \
             restart resumes from the last checkpoint written: fix the cause and restart"
        )));
    }
    tracing::info!(app = %config.name, batches = report.batches_completed, "stopped");
    Ok(report)
}

/// After an abort, how long the executor still waits for the generator's last cut and its receivers.
const ABORT_GRACE: Duration = Duration::from_secs(1);

/// Batches a stop left unfinished.
#[derive(Default)]
struct Unfinished {
    batches: Vec<Time>,
    records: usize,
    /// Batches whose data cannot be cut again after a restart (no write-ahead log, no replayable
    /// source).
    lost: usize,
    /// The sources had not stopped: what their receivers held was not cut into a batch.
    sources_left: bool,
}

impl Unfinished {
    fn add<B>(&mut self, cut: &CutBatch<B>) {
        let records = cut.records.iter().map(|(_, n)| n).sum();
        self.add_failed(cut.time, records, !cut.positions.is_empty());
    }

    fn add_failed(&mut self, time: Time, records: usize, replayable: bool) {
        self.batches.push(time);
        self.records += records;
        if !replayable && records > 0 {
            self.lost += 1;
        }
    }

    /// What was left, and what a restart does with it.
    fn describe(&self, checkpointed: bool) -> String {
        let held = if self.sources_left {
            "; the sources did not stop in time, and what their receivers held comes back only \
             from a write-ahead log or from Kafka"
        } else {
            ""
        };
        format!("{}{held}", self.describe_batches(checkpointed))
    }

    fn describe_batches(&self, checkpointed: bool) -> String {
        let Some(first) = self.batches.first() else {
            return "every batch cut before the stop had completed".into();
        };
        let left = format!(
            "{} batch(es) from {first} on ({} records) were not finished",
            self.batches.len(),
            self.records
        );
        if !checkpointed {
            return format!(
                "{left} and are lost: without a checkpoint directory nothing is replayed"
            );
        }
        if self.lost > 0 {
            return format!(
                "{left}; {} of them cannot be cut again (a socket receiver without --wal) and are lost, \
                 the others are replayed by a restart from the checkpoint directory",
                self.lost
            );
        }
        format!("{left}; a restart from the checkpoint directory replays them")
    }
}

fn batch_info(
    time: Time,
    records: Vec<(String, usize)>,
    (submitted, start, end): (SystemTime, SystemTime, SystemTime),
    outcome: BatchOutcome,
) -> BatchInfo {
    let since_batch = |t: SystemTime| {
        t.duration_since(time.to_system_time())
            .unwrap_or(Duration::ZERO)
    };
    let checkpoint = outcome.checkpoint.and_then(Result::ok);
    BatchInfo {
        time,
        submitted,
        started: start,
        ended: end,
        records,
        scheduling_delay: since_batch(start),
        processing_time: outcome.processing,
        checkpoint_time: checkpoint.map(|(took, _)| took),
        checkpoint_bytes: checkpoint.map(|(_, bytes)| bytes),
        total_delay: since_batch(end),
        output_failed: outcome.failure.as_ref().is_some_and(|f| f.output_failed),
        failure: outcome.failure.map(|f| f.message),
        ..BatchInfo::default()
    }
}

/// One batch's data, time, and the source positions right after it was cut.
pub(crate) struct BatchInput<B> {
    pub time: Time,
    pub batch: B,
    pub positions: Positions,
}

/// Where each replayable source stands, by source name.
pub(crate) type Positions = Vec<(String, Vec<u8>)>;

/// What running one batch (and its checkpoint, when due) came to.
pub(crate) struct BatchOutcome {
    pub failure: Option<Failure>,
    /// The batch's jobs alone.
    pub processing: Duration,
    /// Written checkpoint's duration and size, or the reason it failed, if one was due.
    pub checkpoint: Option<Result<(Duration, u64), WriteFailure>>,
}

/// Runs one batch of `cut = (time, data, source positions)` and writes its checkpoint when one is due
/// (on schedule, or after the last batch). Shared by the real-time engine and the test driver.
pub(crate) fn run_batch<P: Pipeline>(
    pipeline: &P,
    machinery: &Machinery,
    outputs: &Outputs,
    workers: usize,
    checkpointer: Option<&Checkpointer>,
    cut: BatchInput<<P::Sources as SourceSet>::Batch>,
    last: bool,
) -> BatchOutcome {
    let BatchInput {
        time,
        batch,
        positions,
    } = cut;
    let origin = Arc::new(crate::context::BatchOrigin { positions });
    let checkpoint_due = checkpointer.is_some_and(|c| c.is_due(time) || last);
    let started = Instant::now();
    let zero_ms = machinery.clock.zero_for(time);
    let mode = BatchMode {
        origin: origin.clone(),
        dry_run: false,
        zero_ms,
        interval_ms: machinery.clock.interval_ms,
    };
    let failure = execute(
        pipeline,
        &machinery.pool,
        outputs,
        workers,
        time,
        batch,
        mode,
    );
    let processing = started.elapsed();
    if failure.as_ref().is_some_and(|f| f.output_failed) {
        // The batch is not complete: its positions are not passed on and no checkpoint covers it, so
        // a restart runs it again.
        return BatchOutcome {
            failure,
            processing,
            checkpoint: None,
        };
    }
    let positions = &origin.positions;
    if !positions.is_empty() {
        machinery.completed.set(positions.clone());
    }
    let checkpoint = match checkpointer {
        Some(c) if checkpoint_due => Some(c.write(pipeline, time, positions.clone(), zero_ms).map(
            |(took, bytes, oldest_kept)| {
                machinery.checkpointed.set(oldest_kept);
                (took, bytes)
            },
        )),
        _ => None,
    };
    BatchOutcome {
        failure,
        processing,
        checkpoint,
    }
}

/// A batch cut by the generator, on its way to the executor.
struct CutBatch<B> {
    time: Time,
    submitted: SystemTime,
    /// Each receiving source's counters at the cut.
    sources: Vec<(String, crate::source::SourceStats)>,
    batch: B,
    records: Vec<(String, usize)>,
    positions: Vec<(String, Vec<u8>)>,
    /// The last batch of the run (a checkpoint follows it).
    last: bool,
}

/// When batches are cut and when the run ends.
struct BatchPlan {
    interval: Duration,
    partitions: usize,
    stop_after: Option<u64>,
    stop_when_drained: bool,
    /// After a restart, the checkpointed batch: batches continue from the next tick, catching up on the
    /// ticks missed while the app was down (as Spark's recovery does).
    resume_after: Option<Time>,
    /// Batches cut before the crash but not completed: cut again first, with the same data.
    replay: Vec<JournaledBatch>,
    /// Where batches are journaled before they run.
    journal: Option<CheckpointDir>,
    /// How long journaling is retried before the app stops.
    journal_retry: crate::sink::RetryPolicy,
    /// Positions of the last completed batch, passed on to the sources before each cut.
    completed: crate::source::Checkpointed,
    /// Told of each batch as it is cut (submitted).
    listeners: crate::monitor::Listeners,
    /// The run's stop state: the generator arms the graceful stop's deadline when the stop begins.
    signal: crate::stop::StopSignal,
    graceful_stop_timeout: Duration,
}

/// Tells the listeners a batch was cut and queued.
fn submitted<B>(listeners: &crate::monitor::Listeners, cut: &CutBatch<B>) {
    if listeners.is_empty() {
        return;
    }
    let event = crate::monitor::BatchSubmitted {
        time: cut.time,
        submitted: cut.submitted,
        records: cut.records.clone(),
        sources: cut.sources.clone(),
    };
    listeners.emit(|l| l.on_batch_submitted(&event));
}

/// Cuts a batch at every tick until a stop is requested, then stops the sources and cuts the last one.
fn generate_batches<S: SourceSet>(
    sources: &mut S,
    plan: BatchPlan,
    stop_requests: mpsc::Receiver<()>,
    batches: mpsc::Sender<CutBatch<S::Batch>>,
) {
    let mut next = match plan.resume_after {
        Some(time) => time.plus(plan.interval),
        None => Time::now().next_multiple(plan.interval),
    };
    for pending in &plan.replay {
        if plan.signal.is_aborted() {
            return;
        }
        let time = Time(pending.time_ms);
        let crate::source::Cut {
            batch,
            records,
            positions,
        } = sources.recut(time, plan.partitions, &pending.positions);
        let message = CutBatch {
            time,
            submitted: SystemTime::now(),
            sources: sources.stats(),
            batch,
            records,
            positions,
            last: false,
        };
        submitted(&plan.listeners, &message);
        if batches.send(message).is_err() {
            return;
        }
        next = time.plus(plan.interval);
    }
    if plan.stop_when_drained && plan.resume_after.is_some() && sources.all_finished() {
        // Restarted after the last batch was already processed and checkpointed: nothing is left.
        sources.stop();
        return;
    }
    let mut cut = 0u64;
    loop {
        let last = plan.stop_after.is_some_and(|n| cut + 1 >= n);
        let wait = next
            .to_system_time()
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let stop_requested = match stop_requests.recv_timeout(wait) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
            Err(RecvTimeoutError::Timeout) => plan.signal.is_aborted(),
        };
        sources.completed(&plan.completed.get());
        let mut stopping = last || stop_requested;
        if stopping {
            // Graceful stop: receivers hand over what they hold, which becomes the last batch. It is cut
            // now (labelled with its tick) rather than after waiting out the interval. From here on the
            // stop is bounded.
            plan.signal.begin_graceful_stop(plan.graceful_stop_timeout);
            tracing::info!(
                timeout = ?plan.graceful_stop_timeout,
                "stopping: finishing the data already received"
            );
            sources.stop();
        }
        let crate::source::Cut {
            batch,
            records,
            positions,
        } = sources.cut(next, plan.partitions);
        if let Err(e) = journal(
            plan.journal.as_ref(),
            next,
            plan.partitions,
            &positions,
            &plan.journal_retry,
            &plan.signal,
        ) {
            // Not run: a restart cuts it again from the last checkpoint's positions.
            tracing::error!("{e}; the app stops");
            plan.signal.fail(e);
            sources.stop();
            return;
        }
        // Drained sources are the natural end of the data, as a batch job's: every batch is
        // processed, however long it takes; no deadline (a signal still brings one).
        if plan.stop_when_drained && !stopping && sources.all_finished() {
            sources.stop();
            stopping = true;
        }
        let message = CutBatch {
            time: next,
            submitted: SystemTime::now(),
            sources: sources.stats(),
            batch,
            records,
            positions,
            last: stopping,
        };
        submitted(&plan.listeners, &message);
        if batches.send(message).is_err() || stopping {
            return;
        }
        cut += 1;
        next = next.plus(plan.interval);
    }
}

/// Installs the SIGTERM and SIGINT handlers now, on this thread, so that a signal arriving the moment
/// this returns already stops gracefully; a task then waits for one.
fn watch_signals(runtime: &tokio::runtime::Runtime, stop: StopHandle) {
    let _context = runtime.enter();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::warn!(
                "cannot install signal handlers; stop the app with --batches or --run-for"
            );
            return;
        };
        runtime.spawn(async move {
            for heard in 1.. {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                on_stop_signal(heard, &stop);
            }
        });
    }
    #[cfg(not(unix))]
    runtime.spawn(async move {
        let mut heard = 0;
        while tokio::signal::ctrl_c().await.is_ok() {
            heard += 1;
            on_stop_signal(heard, &stop);
        }
    });
}

/// The first signal stops gracefully, any later one at once.
fn on_stop_signal(heard: u64, stop: &StopHandle) {
    if heard == 1 {
        tracing::info!("stop requested by signal: finishing the data already received (a second signal stops at once)");
        stop.stop();
    } else {
        tracing::warn!("second stop signal: stopping at once, without finishing");
        stop.stop_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// `n` ms after `time`'s tick.
    fn at(time: Time, n: u64) -> SystemTime {
        time.to_system_time() + ms(n)
    }

    fn outcome(
        jobs_ms: u64,
        checkpoint: Option<Result<(Duration, u64), WriteFailure>>,
    ) -> BatchOutcome {
        BatchOutcome {
            failure: None,
            processing: ms(jobs_ms),
            checkpoint,
        }
    }

    fn records(n: usize) -> Vec<(String, usize)> {
        vec![("lines".to_string(), n)]
    }

    // The delays are measured from the batch time, as `BatchInfo` documents: Spark's scheduling delay
    // (start - submission, the wait in the queue) plus the time the cut took. Total delay is then
    // Spark's scheduling + processing, plus the checkpoint when one follows the batch.
    #[test]
    fn delays_come_from_the_batch_submission_start_and_end_times() {
        let first = Time(1_700_000_000_000);
        // Cut 4 ms after its tick, started 1 ms later; its jobs take 2.5 s, over two intervals.
        let slow = batch_info(
            first,
            records(10),
            (at(first, 4), at(first, 5), at(first, 2505)),
            outcome(2500, None),
        );
        assert_eq!(slow.scheduling_delay, ms(5));
        assert_eq!(slow.processing_time, ms(2500));
        assert_eq!(slow.total_delay, ms(2505));
        assert_eq!(
            slow.total_delay,
            slow.scheduling_delay + slow.processing_time
        );
        assert_eq!(slow.total_records(), 10);
        assert_eq!((slow.checkpoint_time, slow.failure), (None, None));

        // The next batch was cut on time, then waited in the queue until the slow one ended.
        let second = first.plus(ms(1000));
        let waited = batch_info(
            second,
            records(3),
            (at(second, 4), at(first, 2505), at(first, 2805)),
            outcome(300, None),
        );
        let in_queue = waited
            .started
            .duration_since(waited.submitted)
            .unwrap_or_default();
        assert_eq!(in_queue, ms(1501));
        assert_eq!(waited.scheduling_delay, ms(4) + in_queue);
        assert_eq!(waited.processing_time, ms(300));
        assert_eq!(waited.total_delay, ms(1805));
        assert_eq!(
            waited.total_delay,
            waited.scheduling_delay + waited.processing_time
        );

        // Behind both; its jobs take 200 ms and a 50 ms checkpoint follows, which processing time
        // leaves out and total delay includes.
        let third = first.plus(ms(2000));
        let checkpointed = batch_info(
            third,
            records(0),
            (at(third, 4), at(first, 2805), at(first, 3055)),
            outcome(200, Some(Ok((ms(50), 4096)))),
        );
        assert_eq!(checkpointed.scheduling_delay, ms(805));
        assert_eq!(checkpointed.processing_time, ms(200));
        assert_eq!(checkpointed.checkpoint_time, Some(ms(50)));
        assert_eq!(checkpointed.checkpoint_bytes, Some(4096));
        assert_eq!(checkpointed.total_delay, ms(1055));
        assert_eq!(
            checkpointed.total_delay,
            checkpointed.scheduling_delay + checkpointed.processing_time + ms(50)
        );
    }

    #[test]
    fn failures_and_a_clock_stepped_back_are_reported_not_fatal() {
        let time = Time(1_700_000_000_000);
        let failed = batch_info(
            time,
            records(1),
            (at(time, 1), at(time, 2), at(time, 30)),
            BatchOutcome {
                failure: Some(Failure {
                    message: "the sink gave up".into(),
                    output_failed: true,
                }),
                processing: ms(28),
                checkpoint: Some(Err(WriteFailure::Failed("disk full".into()))),
            },
        );
        assert_eq!(failed.failure.as_deref(), Some("the sink gave up"));
        assert!(failed.output_failed);
        assert_eq!(
            (failed.checkpoint_time, failed.checkpoint_bytes),
            (None, None)
        );
        // The wall clock went back 10 ms between the tick and the start: zero, not a panic.
        let before = time.to_system_time() - ms(10);
        let stepped = batch_info(
            time,
            records(1),
            (before, before, at(time, 20)),
            outcome(30, None),
        );
        assert_eq!(stepped.scheduling_delay, Duration::ZERO);
        assert_eq!(stepped.total_delay, ms(20));
    }
}
