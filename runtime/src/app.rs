//! [`App`]: configure and run a generated pipeline, in real time or driven batch by batch in tests.

use crate::checkpoint::JournaledBatch;
use crate::config::AppConfig;
use crate::context::{CollectError, Collector, Outputs};
use crate::demo::LineServer;
use crate::engine::{
    self, run_batch, BatchInfo, BatchInput, Checkpointer, Machinery, RunError, RunOptions,
    RunReport, StopHandle,
};
use crate::pipeline::Pipeline;
use crate::source::SourceSet;
use crate::time::Time;
use std::io::Write;
use std::marker::PhantomData;
use std::process::ExitCode;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// A pipeline with its configuration, ready to run.
pub struct App<P: Pipeline> {
    config: AppConfig,
    print: Option<Box<dyn Write + Send>>,
    handle_signals: bool,
    listeners: crate::monitor::Listeners,
    _pipeline: PhantomData<fn() -> P>,
}

impl<P: Pipeline> Default for App<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Pipeline> App<P> {
    /// The app with the configuration its pipeline declares.
    pub fn new() -> Self {
        Self {
            config: AppConfig::from_spec(P::spec()),
            print: None,
            handle_signals: false,
            listeners: Default::default(),
            _pipeline: PhantomData,
        }
    }

    /// Adds a listener of the app's events (batches, receivers, outputs).
    pub fn listener(mut self, listener: Arc<dyn crate::monitor::StreamingListener>) -> Self {
        self.listeners.add(listener);
        self
    }

    /// The current configuration.
    pub fn config(&self) -> &AppConfig {
        &self.config
    }

    /// Changes the configuration in code, as flags and the config file would (they are applied
    /// later, by [`App::main`] or [`App::with_args`], and win).
    ///
    /// ```no_run
    /// # use streamc::prelude::*;
    /// # stream! {
    /// #     app word_count { batch: 1s }
    /// #     let lines = socket_text_stream("localhost", 9999);
    /// #     lines.print();
    /// # }
    /// # fn main() -> Result<(), streamc::RunError> {
    /// let report = word_count::app()
    ///     .configure(|c| {
    ///         c.workers = 4;
    ///         c.run_for = Some(std::time::Duration::from_secs(30));
    ///     })
    ///     .run()?;
    /// println!("{} batches", report.batches_completed);
    /// # Ok(())
    /// # }
    /// ```
    pub fn configure(mut self, f: impl FnOnce(&mut AppConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Sets the batch interval.
    pub fn batch_interval(self, interval: Duration) -> Self {
        self.configure(|c| c.batch_interval = interval)
    }

    /// Sets the number of workers.
    pub fn workers(self, workers: usize) -> Self {
        self.configure(|c| c.workers = workers)
    }

    /// Points socket source `name` at `address` (`HOST:PORT`).
    pub fn source_address(self, name: &str, address: impl Into<String>) -> Self {
        let address = address.into();
        self.configure(|c| {
            c.source_addresses.insert(name.to_string(), address);
        })
    }

    /// Stops gracefully on Ctrl-C and SIGTERM (`main` always does).
    pub fn stop_on_signals(mut self) -> Self {
        self.handle_signals = true;
        self
    }

    /// Sends `print` output to `writer` instead of standard output.
    pub fn print_to(mut self, writer: impl Write + Send + 'static) -> Self {
        self.print = Some(Box::new(writer));
        self
    }

    /// Applies command-line flags and the `--config` file they name.
    pub fn with_args<I, S>(mut self, args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        self.config.apply_args(P::spec(), args)?;
        Ok(self)
    }

    /// The whole program: reads flags, runs until Ctrl-C / SIGTERM (or `--batches` / `--run-for`), stops
    /// gracefully. Exit code 0 on a clean stop, 2 on bad flags, and otherwise as
    /// [`App::run_as_process`] says.
    pub fn main(self) -> ExitCode {
        let app = match self.with_args(std::env::args_os().skip(1)) {
            Ok(app) => app,
            Err(e) if e.use_stderr() => {
                // A refused value may be a secret that was meant for another flag.
                eprint!("{}", crate::secret::redact(&e.render().to_string()));
                return ExitCode::from(2);
            }
            Err(e) => {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
        };
        init_logging_as(app.config.log_format);
        ExitCode::from(app.run_as_process())
    }

    /// Runs as `main` does once the flags are applied, and returns the process exit code. Ctrl-C and
    /// SIGTERM stop gracefully, within `--graceful-stop-timeout`; a second one stops at once; a batch
    /// stuck in user code past the stop's end cannot hold the process up for more than a few seconds.
    /// Exit codes: 0 a complete stop, 1 a failure, 124 a graceful stop that timed out, 130 a stop at
    /// once (see [`RunError::exit_code`]). Errors and `--report` go to standard error.
    pub fn run_as_process(mut self) -> u8 {
        let report_wanted = self.config.report;
        self.handle_signals = true;
        let (stop, requests) = StopHandle::new();
        exit_if_stuck_after_abort(stop.signal().clone());
        match self.run_with(Arc::default(), (stop, requests), Arc::default()) {
            Ok(report) => {
                if report_wanted {
                    eprint!("{}", report.summary());
                }
                0
            }
            Err(e) => {
                eprintln!("error: {}", crate::secret::redact(&e.to_string()));
                e.exit_code()
            }
        }
    }

    /// Runs in real time on this thread until a stop is requested.
    pub fn run(self) -> Result<RunReport, RunError> {
        self.run_with(Arc::default(), StopHandle::new(), Arc::default())
    }

    fn run_with(
        mut self,
        collector: Arc<Collector>,
        stop: (StopHandle, mpsc::Receiver<()>),
        ui_bound: Arc<std::sync::OnceLock<std::net::SocketAddr>>,
    ) -> Result<RunReport, RunError> {
        let _demo = self.start_demo_feeds()?;
        let options = RunOptions {
            print: self
                .print
                .take()
                .unwrap_or_else(|| Box::new(std::io::stdout())),
            collector,
            handle_signals: self.handle_signals,
            listeners: std::mem::take(&mut self.listeners),
            ui_bound,
        };
        engine::run::<P>(self.config, options, stop)
    }

    /// With `--demo`, every socket source reads from a local generator instead of its address.
    fn start_demo_feeds(&mut self) -> Result<Vec<LineServer>, RunError> {
        let Some(rate) = self.config.demo_rate() else {
            return Ok(Vec::new());
        };
        let mut servers = Vec::new();
        for source in P::spec().sources.iter().filter(|s| s.demo) {
            let server = LineServer::generated(rate, 42)
                .map_err(|e| RunError::Failed(format!("cannot start the demo generator: {e}")))?;
            tracing::info!(source = source.name, address = %server.address(), "demo: feeding the source from a local generator");
            self.config
                .source_addresses
                .insert(source.name.to_string(), server.address().to_string());
            servers.push(server);
        }
        Ok(servers)
    }

    /// Runs in real time on a background thread.
    ///
    /// ```no_run
    /// # use streamc::prelude::*;
    /// # stream! {
    /// #     app word_count { batch: 1s }
    /// #     let lines = socket_text_stream("localhost", 9999);
    /// #     lines.print();
    /// # }
    /// # fn main() -> Result<(), streamc::RunError> {
    /// let running = word_count::app().start()?;
    /// // ... later, from this thread or with `running.stop_handle()` from another:
    /// let report = running.stop()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn start(self) -> Result<RunningApp, RunError> {
        let collector: Arc<Collector> = Arc::default();
        let (stop, rx) = StopHandle::new();
        let thread_collector = collector.clone();
        let thread_stop = stop.clone();
        let ui_bound: Arc<std::sync::OnceLock<std::net::SocketAddr>> = Arc::default();
        let thread_ui = ui_bound.clone();
        let serves_ui = self.config.ui.is_some();
        let thread = std::thread::Builder::new()
            .name(format!("streamc-{}", self.config.name))
            .spawn(move || self.run_with(thread_collector, (thread_stop, rx), thread_ui))
            .map_err(|e| RunError::Failed(format!("cannot start the app thread: {e}")))?;
        Ok(RunningApp {
            stop,
            thread,
            collector,
            ui_bound,
            serves_ui,
        })
    }

    /// A driver that runs batches on demand with a manual clock: deterministic tests. Batch `k`
    /// has time `k` × the batch interval.
    ///
    /// ```
    /// use streamc::prelude::*;
    ///
    /// fn batches() -> Vec<Vec<String>> {
    ///     vec![vec!["to be or not to be".to_string()]]
    /// }
    ///
    /// stream! {
    ///     app words { batch: 1s, workers: 2 }
    ///     let lines = queue_stream::<String>(crate::batches());
    ///     let counts = lines
    ///         .flat_map(|line: &String| line.split(' ').map(str::to_string).collect::<Vec<_>>())
    ///         .map(|word| (word, 1u64))
    ///         .reduce_by_key(|a, b| a + b);
    ///     counts.collect();
    /// }
    ///
    /// fn main() {
    ///     let mut driver = words::app().test_driver().unwrap();
    ///     driver.run_batch();
    ///     let (time, mut counts) = driver.take::<(String, u64)>("counts").unwrap().remove(0);
    ///     counts.sort();
    ///     assert_eq!(time.millis(), 1000);
    ///     assert_eq!(counts[0], ("be".to_string(), 2));
    /// }
    /// ```
    pub fn test_driver(mut self) -> Result<TestDriver<P>, RunError> {
        let machinery = Machinery::new(&self.config)?;
        let (mut sources, pipeline) = P::build(&self.config)
            .map_err(|e| RunError::Failed(format!("cannot build the pipeline: {e}")))?;
        let printed = SharedBuffer::default();
        let print: Box<dyn Write + Send> = match self.print.take() {
            Some(w) => w,
            None => Box::new(printed.clone()),
        };
        let collector: Arc<Collector> = Arc::default();
        let outputs = Outputs::new(print, collector.clone(), self.config.sink_settings());
        let (checkpointer, recovered) = Checkpointer::open_and_recover(
            &self.config,
            &pipeline,
            &mut sources,
            &machinery,
            &outputs,
        )?;
        sources
            .start(&machinery.env(&self.config, &StopHandle::new().0))
            .map_err(|e| RunError::Failed(e.to_string()))?;
        let interval = self.config.batch_interval;
        Ok(TestDriver {
            outputs,
            collector,
            printed,
            checkpointer,
            last_checkpoint: None,
            time: recovered.as_ref().map(|r| r.time).unwrap_or(Time(0)),
            replay: recovered.map(|r| r.pending.into()).unwrap_or_default(),
            interval,
            workers: self.config.workers,
            sources,
            pipeline,
            machinery,
        })
    }
}

/// An app running on a background thread.
pub struct RunningApp {
    stop: StopHandle,
    thread: std::thread::JoinHandle<Result<RunReport, RunError>>,
    collector: Arc<Collector>,
    ui_bound: Arc<std::sync::OnceLock<std::net::SocketAddr>>,
    serves_ui: bool,
}

impl RunningApp {
    /// Where the dashboard and metrics are served (`--ui`), once the server listens (waiting up to 5 s
    /// for it); `None` at once for an app without `--ui`.
    pub fn ui_address(&self) -> Option<std::net::SocketAddr> {
        if !self.serves_ui {
            return None;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(address) = self.ui_bound.get() {
                return Some(*address);
            }
            if std::time::Instant::now() > deadline || self.thread.is_finished() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A handle that can request a graceful stop from anywhere.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Batches collected so far by the `collect()` output named `output`.
    pub fn take<T: 'static>(&self, output: &str) -> Result<Vec<(Time, Vec<T>)>, CollectError> {
        self.collector.take(output)
    }

    /// Stops gracefully and waits for the end of the run (at most `--graceful-stop-timeout`, plus the
    /// batch running when it expires).
    pub fn stop(self) -> Result<RunReport, RunError> {
        self.stop.stop();
        self.wait()
    }

    /// Stops at once, without finishing the batches still queued (Spark's `stop(stopGracefully =
    /// false)`), and waits for the end of the run: the batch running now is the last, and a sink that
    /// is retrying gives up. The result is [`RunError::StoppedAtOnce`], which says what was left for a
    /// restart to replay.
    pub fn stop_now(self) -> Result<RunReport, RunError> {
        self.stop.stop_now();
        self.wait()
    }

    /// Waits at most `timeout` for the run to end (Spark's `awaitTerminationOrTimeout`). True if it
    /// has; [`RunningApp::wait`] then returns at once.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while !self.thread.is_finished() {
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(10)));
        }
        true
    }

    /// Waits for the run to end by itself (`--batches`, `--run-for`, a signal).
    pub fn wait(self) -> Result<RunReport, RunError> {
        self.thread
            .join()
            .map_err(|_| RunError::Failed("the app thread panicked".into()))?
    }
}

/// How long an aborted run may take to end before the process exits without it: a batch stuck in a
/// user function cannot be interrupted, and a stop must not wait without bound. Exiting then is as
/// safe as a crash, which the checkpoint directory recovers from.
const HARD_EXIT_AFTER_ABORT: Duration = Duration::from_secs(5);

/// Watches an app run by `main`: once the run is aborted, it has [`HARD_EXIT_AFTER_ABORT`] to end.
fn exit_if_stuck_after_abort(signal: crate::stop::StopSignal) {
    let watchdog = std::thread::Builder::new()
        .name("streamc-stop-watchdog".into())
        .spawn(move || {
            if !signal.wait_for_abort(Duration::MAX)
                || signal.wait_for_finish(HARD_EXIT_AFTER_ABORT)
            {
                return;
            }
            let code = match signal.abort_reason() {
                Some(crate::stop::AbortReason::Immediate) => 130,
                _ => 124,
            };
            eprintln!(
                "error: the app did not end within {HARD_EXIT_AFTER_ABORT:?} of stopping without \
                 finishing (a batch is still running); exiting now. A restart from the checkpoint \
                 directory resumes from the last checkpoint"
            );
            std::process::exit(code);
        });
    if let Err(e) = watchdog {
        tracing::warn!("cannot start the stop watchdog ({e}); a stuck batch can hold up a stop");
    }
}

/// Runs a pipeline batch by batch with a manual clock: batch `k` has time `k × interval`.
pub struct TestDriver<P: Pipeline> {
    checkpointer: Option<Checkpointer>,
    /// Batches journaled before a crash, to be cut again first.
    replay: std::collections::VecDeque<JournaledBatch>,
    last_checkpoint: Option<Duration>,
    sources: P::Sources,
    pipeline: P,
    machinery: Machinery,
    outputs: Outputs,
    collector: Arc<Collector>,
    printed: SharedBuffer,
    time: Time,
    interval: Duration,
    workers: usize,
}

impl<P: Pipeline> TestDriver<P> {
    /// Cuts and runs the next batch.
    pub fn run_batch(&mut self) -> BatchInfo {
        let cut = match self.replay.pop_front() {
            Some(pending) => {
                self.time = Time(pending.time_ms);
                self.sources
                    .recut(self.time, self.workers, &pending.positions)
            }
            None => {
                self.time = self.time.plus(self.interval);
                let cut = self.sources.cut(self.time, self.workers);
                let dir = self.checkpointer.as_ref().map(Checkpointer::journal_dir);
                // The driver runs the batch anyway: a test sees the failure in the log, and
                // real runs stop on it (see `engine::journal`).
                let once = crate::sink::RetryPolicy {
                    attempts: 1,
                    ..Default::default()
                };
                if let Err(e) = engine::journal(
                    dir.as_ref(),
                    self.time,
                    self.workers,
                    &cut.positions,
                    &once,
                    &Default::default(),
                ) {
                    tracing::error!("{e}");
                }
                cut
            }
        };
        let outcome = run_batch(
            &self.pipeline,
            &self.machinery,
            &self.outputs,
            self.workers,
            self.checkpointer.as_ref(),
            BatchInput {
                time: self.time,
                batch: cut.batch,
                positions: cut.positions,
            },
            false,
        );
        self.sources.completed(&self.machinery.completed.get());
        let checkpoint_time = match outcome.checkpoint {
            Some(Ok((took, _))) => {
                self.last_checkpoint = Some(took);
                Some(took)
            }
            Some(Err(e)) => {
                tracing::error!(batch = %self.time, "checkpoint failed: {e}");
                None
            }
            None => None,
        };
        BatchInfo {
            time: self.time,
            records: cut.records,
            scheduling_delay: Duration::ZERO,
            processing_time: outcome.processing,
            checkpoint_time,
            total_delay: Duration::ZERO,
            output_failed: outcome.failure.as_ref().is_some_and(|f| f.output_failed),
            failure: outcome.failure.map(|f| f.message),
            outputs: self.outputs.take_batch_outputs(),
            state_keys: self.pipeline.state().key_counts(),
            ..BatchInfo::default()
        }
    }

    /// How long the most recent checkpoint took to write.
    pub fn last_checkpoint_duration(&self) -> Option<Duration> {
        self.last_checkpoint
    }

    /// Keys held by each stateful operator that has run.
    pub fn state_keys(&self) -> Vec<(&'static str, usize)> {
        self.pipeline.state().key_counts()
    }

    /// Runs `n` batches.
    pub fn run_batches(&mut self, n: usize) -> Vec<BatchInfo> {
        (0..n).map(|_| self.run_batch()).collect()
    }

    /// Runs batches until every source is drained (queue streams), at most `max` of them.
    pub fn run_until_drained(&mut self, max: usize) -> Vec<BatchInfo> {
        let mut infos = Vec::new();
        while !self.sources.all_finished() && infos.len() < max {
            infos.push(self.run_batch());
        }
        infos
    }

    /// Batches collected so far by the `collect()` output named `output`.
    pub fn take<T: 'static>(&self, output: &str) -> Result<Vec<(Time, Vec<T>)>, CollectError> {
        self.collector.take(output)
    }

    /// Everything `print` wrote so far (unless `print_to` sent it elsewhere); clears it.
    pub fn take_printed(&self) -> String {
        self.printed.take()
    }

    /// Stops the sources' receivers.
    pub fn stop(mut self) {
        self.sources.stop();
        self.sources.completed(&self.machinery.completed.get());
        self.sources.finish();
    }
}

/// A `Write` into memory that can be read from another handle.
#[derive(Clone, Default)]
pub struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    /// What was written so far, as text; clears it.
    pub fn take(&self) -> String {
        let mut bytes = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&std::mem::take(&mut *bytes)).into_owned()
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Logs to standard error as text (see [`init_logging_as`]).
pub fn init_logging() {
    init_logging_as(crate::config::LogFormat::Text);
}

/// Logs to standard error, as text or JSON lines, every line passed through
/// [`crate::secret::redact`]. `RUST_LOG` (or `STREAMC_LOG`) filters: a level (`debug`) or per-target
/// directives (`info,librdkafka=debug,streamc::sink=trace`); `info` by default.
pub fn init_logging_as(format: crate::config::LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let directives = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("STREAMC_LOG"))
        .unwrap_or_default();
    let filter = directives
        .parse::<tracing_subscriber::filter::Targets>()
        .ok()
        .filter(|_| !directives.trim().is_empty())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
        });
    // Colours only on a terminal: a log redirected to a file or a collector stays plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_writer(|| RedactedStderr(Vec::new()))
        .with_max_level(tracing::Level::TRACE);
    let _ = match format {
        crate::config::LogFormat::Text => builder
            .with_ansi(colour)
            .with_target(false)
            .finish()
            .with(filter)
            .try_init(),
        crate::config::LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .finish()
            .with(filter)
            .try_init(),
    };
}

/// One log line, written to standard error with its secrets masked once it is complete.
struct RedactedStderr(Vec<u8>);

impl Write for RedactedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactedStderr {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let _ = std::io::stderr().write_all(crate::secret::redact(&text).as_bytes());
    }
}
