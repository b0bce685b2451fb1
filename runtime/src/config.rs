//! Application configuration: the pipeline's defaults, overridden by a TOML file, overridden by flags.

use crate::source::SocketOptions;
use crate::spec::{AppSpec, StreamCheckpointSpec, WindowSpec};
use clap::{CommandFactory, FromArgMatches, Parser};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Everything a run can be configured with.
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// The app's name, from the pipeline's `app` header. Checkpoints and sink progress records
    /// carry it, and it is the default Kafka consumer group.
    pub name: String,
    /// How often a batch is cut (`--batch`). The pipeline's windows and checkpoint intervals must
    /// be multiples of it, which [`AppConfig::validate`] checks.
    pub batch_interval: Duration,
    /// Worker threads, which is also the number of partitions after a shuffle (`--workers`); at
    /// least 1.
    pub workers: usize,
    /// `HOST:PORT` per socket source name, replacing the address written in the pipeline.
    pub source_addresses: BTreeMap<String, String>,
    /// Buffer, line-length and reconnect settings shared by every socket source
    /// (`--receiver-buffer-bytes`, `--max-line-bytes`).
    pub socket: SocketOptions,
    /// Stop gracefully after this many batches.
    pub stop_after_batches: Option<u64>,
    /// Stop gracefully after this long.
    pub run_for: Option<Duration>,
    /// How long a graceful stop may take before the app stops without finishing (Spark's
    /// `spark.streaming.gracefulStopTimeout`); `None`: 10 batch intervals, at least 10 s.
    pub graceful_stop_timeout: Option<Duration>,
    /// Feed every socket source from a built-in local generator (lines per second).
    pub demo_rate: Option<u64>,
    /// Print a summary of the run when it ends.
    pub report: bool,
    /// Where checkpoints go; `None` disables them.
    pub checkpoint_dir: Option<PathBuf>,
    /// How often a checkpoint is written (a multiple of the batch interval); `None`: the smallest multiple
    /// of the pipeline's slides that is at least 10 s, as Spark does.
    pub checkpoint_every: Option<Duration>,
    /// What default checkpoint intervals are a multiple of (batch interval and window slides).
    pub state_slide: Duration,
    /// How many complete checkpoints are kept.
    pub keep_checkpoints: usize,
    /// Discard existing checkpoints and start from empty state.
    pub reset_state: bool,
    /// Stop gracefully once every source is drained (queue streams).
    pub stop_when_drained: bool,
    /// Records per second each receiver may take in (Spark's `spark.streaming.receiver.maxRate`).
    pub receiver_max_rate: Option<u64>,
    /// Adapt receiving rates to what the pipeline sustains (Spark's `spark.streaming.backpressure.enabled`).
    pub backpressure: bool,
    /// Under backpressure, the rate before the first estimate.
    pub backpressure_initial_rate: Option<u64>,
    /// Kafka: where a partition without checkpointed offsets starts.
    #[cfg(feature = "kafka")]
    pub kafka_start: crate::source::StartAt,
    /// Kafka: the consumer group (default: the app name).
    pub kafka_group: Option<String>,
    /// Kafka: commit each completed batch's offsets to the group.
    pub kafka_commit: bool,
    /// Kafka: messages per second per partition.
    pub kafka_max_rate_per_partition: Option<u64>,
    /// Kafka: explicit starting offsets per (topic, partition).
    pub kafka_start_offsets: BTreeMap<(String, i32), i64>,
    /// Receivers write what they receive to a write-ahead log in the checkpoint directory before it is
    /// used, so a crash loses nothing already received.
    pub write_ahead_log: bool,
    /// How long a receiver may keep failing to store what it received (a full disk under the
    /// write-ahead log) before the app stops; meanwhile it pauses and retries.
    pub receiver_failure_timeout: Duration,
    /// `URL` per sink name (`--sink NAME=URL`), replacing the destination written in the pipeline.
    pub sink_urls: BTreeMap<String, String>,
    /// How long sinks retry a destination that is away before the app stops.
    pub sink_retry: crate::sink::RetryPolicy,
    /// Pooled sink connections unused this long are closed.
    pub sink_idle_timeout: Duration,
    /// Serve the dashboard, `/metrics` and `/api/v1` here (off when `None`).
    pub ui: Option<std::net::SocketAddr>,
    /// Print a summary of delays every this many batches (Spark's StatsReportListener).
    pub stats_every: Option<usize>,
    /// Batches the monitoring keeps (Spark: 1000).
    pub batch_history: usize,
    /// The pipeline's windows: their lengths and slides are compiled in, so a batch interval set at
    /// run time must still divide them.
    pub windows: &'static [WindowSpec],
    /// The pipeline's `.checkpoint(interval)` streams, whose intervals must stay multiples of their
    /// streams' slides.
    pub stream_checkpoints: &'static [StreamCheckpointSpec],
}

impl AppConfig {
    /// The configuration a pipeline declares.
    pub fn from_spec(spec: &AppSpec) -> Self {
        Self {
            name: spec.name.to_string(),
            batch_interval: spec.batch_interval,
            workers: spec.workers,
            source_addresses: BTreeMap::new(),
            socket: SocketOptions::default(),
            stop_after_batches: None,
            run_for: None,
            graceful_stop_timeout: None,
            demo_rate: None,
            report: false,
            checkpoint_dir: spec.checkpoint_dir.map(PathBuf::from),
            checkpoint_every: spec.checkpoint_every,
            state_slide: spec.state_slide,
            keep_checkpoints: 3,
            reset_state: false,
            stop_when_drained: false,
            receiver_max_rate: None,
            backpressure: false,
            backpressure_initial_rate: None,
            write_ahead_log: false,
            receiver_failure_timeout: DEFAULT_RECEIVER_FAILURE_TIMEOUT,
            sink_urls: BTreeMap::new(),
            sink_retry: crate::sink::RetryPolicy::default(),
            sink_idle_timeout: Duration::from_secs(60),
            ui: None,
            stats_every: None,
            batch_history: 1000,
            #[cfg(feature = "kafka")]
            kafka_start: crate::source::StartAt::Committed,
            kafka_group: None,
            kafka_commit: false,
            kafka_max_rate_per_partition: None,
            kafka_start_offsets: BTreeMap::new(),
            windows: spec.windows,
            stream_checkpoints: spec.stream_checkpoints,
        }
    }

    /// What the sinks of a run share.
    pub fn sink_settings(&self) -> crate::sink::SinkSettings {
        crate::sink::SinkSettings {
            pipeline: self.name.clone(),
            urls: self.sink_urls.clone(),
            retry: self.sink_retry,
            idle_timeout: self.sink_idle_timeout,
            stop: Default::default(),
        }
    }

    /// The address of socket source `name`: the override, else the pipeline's own.
    pub fn source_address(&self, name: &str, declared: impl FnOnce() -> String) -> String {
        self.source_addresses
            .get(name)
            .cloned()
            .unwrap_or_else(declared)
    }

    /// Options for a direct Kafka source.
    #[cfg(feature = "kafka")]
    pub fn kafka_options(&self) -> crate::source::KafkaOptions {
        crate::source::KafkaOptions {
            start: self.kafka_start,
            group: self
                .kafka_group
                .clone()
                .unwrap_or_else(|| self.name.clone()),
            commit: self.kafka_commit,
            max_rate_per_partition: self.kafka_max_rate_per_partition,
            batch_interval: self.batch_interval,
            request_timeout: Duration::from_secs(5),
            start_offsets: self.kafka_start_offsets.clone(),
        }
    }

    /// How long a graceful stop may take: the setting, else 10 batch intervals (Spark's default) and
    /// at least 10 s, since with short batches ten intervals are less than a sink's round trip under
    /// load.
    pub fn graceful_stop_timeout(&self) -> Duration {
        self.graceful_stop_timeout.unwrap_or_else(|| {
            self.batch_interval
                .saturating_mul(10)
                .max(MIN_DEFAULT_GRACEFUL_STOP_TIMEOUT)
        })
    }

    /// How often checkpoints are written.
    pub fn checkpoint_interval(&self) -> Duration {
        self.checkpoint_every.unwrap_or_else(|| {
            // A flag may have changed the batch interval; stay on a multiple of both.
            let batch = self.batch_interval.as_millis().max(1) as u64;
            let slide = self.state_slide.as_millis().max(1) as u64;
            let step = lcm(batch, slide);
            Duration::from_millis(10_000u64.div_ceil(step) * step)
        })
    }

    /// Checks values that flags or files may have set wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_workers(self.workers).map_err(ConfigError)?;
        check_batch_interval(self.batch_interval).map_err(ConfigError)?;
        // The compile-time rules, against the interval the run actually uses (`--batch` may differ).
        let batch = self.batch_interval.as_millis();
        for window in self.windows {
            let (length, slide) = (window.length.as_millis(), window.slide.as_millis());
            if !length.is_multiple_of(batch) || !slide.is_multiple_of(batch) {
                return Err(ConfigError(format!(
                    "the window of `{}` ({}, {}, sliding {}) is not a multiple of the batch interval {}: use a batch interval that divides {}",
                    window.stream,
                    window.operator,
                    format_duration(window.length),
                    format_duration(window.slide),
                    format_duration(self.batch_interval),
                    format_millis(gcd(length, slide)),
                )));
            }
        }
        // Downstream of a window, interval and slide are both compiled in and were checked then.
        for checkpoint in self.stream_checkpoints {
            if checkpoint.window_slide.is_none()
                && !checkpoint.interval.as_millis().is_multiple_of(batch)
            {
                return Err(ConfigError(format!(
                    "the checkpoint interval of `{}` ({}, from `.checkpoint` in the pipeline) is not a multiple of the batch interval {}: use a batch interval that divides {}",
                    checkpoint.stream,
                    format_duration(checkpoint.interval),
                    format_duration(self.batch_interval),
                    format_duration(checkpoint.interval),
                )));
            }
        }
        if self.write_ahead_log && self.checkpoint_dir.is_none() {
            return Err(ConfigError(
                "the write-ahead log lives in the checkpoint directory: set one (`checkpoint:` in the app header, or --checkpoint DIR)".into(),
            ));
        }
        if let Some(every) = self.checkpoint_every {
            let batch = self.batch_interval.as_millis().max(1);
            if every.is_zero() || every.as_millis() % batch != 0 {
                return Err(ConfigError(format!(
                    "the checkpoint interval ({} ms) must be a multiple of the batch interval ({batch} ms)",
                    every.as_millis()
                )));
            }
        }
        Ok(())
    }

    /// Applies a TOML configuration file. Every error names the file.
    pub fn apply_file(&mut self, path: &std::path::Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        let file: ConfigFile = toml::from_str(&text)
            .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?;
        self.apply_config_file(file)
            .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))
    }

    fn apply_config_file(&mut self, file: ConfigFile) -> Result<(), String> {
        let duration =
            |key: &str, text: &str| parse_duration(text).map_err(|e| format!("`{key}`: {e}"));
        // The flags refuse 0 for these; so does the file.
        let positive = |key: &str, value: u64| {
            if value == 0 {
                Err(format!("`{key}` must be at least 1"))
            } else {
                Ok(value)
            }
        };
        if let Some(batch) = file.batch {
            let interval = duration("batch", &batch)?;
            check_batch_interval(interval).map_err(|e| format!("`batch`: {e}"))?;
            self.batch_interval = interval;
        }
        if let Some(workers) = file.workers {
            check_workers(workers).map_err(|e| format!("`workers`: {e}"))?;
            self.workers = workers;
        }
        if let Some(dir) = file.checkpoint {
            self.checkpoint_dir = Some(dir);
        }
        if let Some(every) = file.checkpoint_every {
            let every = duration("checkpoint_every", &every)?;
            if every.is_zero() {
                return Err("`checkpoint_every` must be longer than zero".into());
            }
            self.checkpoint_every = Some(every);
        }
        if let Some(keep) = file.keep_checkpoints {
            self.keep_checkpoints = positive("keep_checkpoints", keep as u64)? as usize;
        }
        if let Some(reset) = file.reset_state {
            self.reset_state = reset;
        }
        if let Some(wal) = file.wal {
            self.write_ahead_log = wal;
        }
        if let Some(batches) = file.batches {
            self.stop_after_batches = Some(batches);
        }
        if let Some(run_for) = file.run_for {
            self.run_for = Some(duration("run_for", &run_for)?);
        }
        if let Some(timeout) = file.graceful_stop_timeout {
            self.graceful_stop_timeout = Some(duration("graceful_stop_timeout", &timeout)?);
        }
        if let Some(drained) = file.until_drained {
            self.stop_when_drained = drained;
        }
        // `demo_rate` alone turns the demo on: a rate is only ever given to be used.
        match (file.demo, file.demo_rate) {
            (Some(false), _) => self.demo_rate = None,
            (Some(true), rate) => self.demo_rate = Some(rate.unwrap_or(DEFAULT_DEMO_RATE)),
            (None, Some(rate)) => self.demo_rate = Some(rate),
            (None, None) => {}
        }
        if let Some(report) = file.report {
            self.report = report;
        }
        if let Some(ui) = file.ui {
            self.ui = Some(parse_ui_address(&ui).map_err(|e| format!("`ui`: {e}"))?);
        }
        if let Some(every) = file.stats_every {
            self.stats_every = Some(every);
        }
        if let Some(history) = file.batch_history {
            self.batch_history = positive("batch_history", history as u64)? as usize;
        }
        if let Some(enabled) = file.backpressure {
            self.backpressure = enabled;
        }
        if let Some(rate) = file.backpressure_initial_rate {
            self.backpressure_initial_rate = Some(positive("backpressure_initial_rate", rate)?);
        }
        for (name, sink) in file.sinks {
            if let Some(url) = sink.url {
                self.sink_urls.insert(name, url);
            }
        }
        if let Some(retry) = file.sink_retry {
            if let Some(attempts) = retry.attempts {
                self.sink_retry.attempts = attempts.max(1);
            }
            if let Some(backoff) = retry.initial_backoff {
                self.sink_retry.initial_backoff = duration("sink_retry.initial_backoff", &backoff)?;
            }
            if let Some(backoff) = retry.max_backoff {
                self.sink_retry.max_backoff = duration("sink_retry.max_backoff", &backoff)?;
            }
        }
        for (name, source) in file.sources {
            if let Some(address) = source.address {
                self.source_addresses.insert(name, address);
            }
        }
        if let Some(receiver) = file.receiver {
            if let Some(bytes) = receiver.buffer_bytes {
                self.socket.buffer_bytes = bytes;
            }
            if let Some(bytes) = receiver.max_line_bytes {
                self.socket.max_line_bytes = bytes;
            }
            if let Some(rate) = receiver.max_rate {
                self.receiver_max_rate = Some(positive("receiver.max_rate", rate)?);
            }
            if let Some(timeout) = receiver.failure_timeout {
                self.receiver_failure_timeout = duration("receiver.failure_timeout", &timeout)?;
            }
        }
        if let Some(kafka) = file.kafka {
            self.apply_kafka_file(kafka)?;
        }
        Ok(())
    }

    fn apply_kafka_file(&mut self, kafka: KafkaFile) -> Result<(), String> {
        #[cfg(feature = "kafka")]
        if let Some(start) = &kafka.start {
            self.kafka_start = start
                .parse()
                .map_err(|e: String| format!("`kafka.start`: {e}"))?;
        }
        // Without Kafka support there is no Kafka source to start; `--kafka-start` is ignored too.
        #[cfg(not(feature = "kafka"))]
        let _ = &kafka.start;
        if let Some(group) = kafka.group {
            self.kafka_group = Some(group);
        }
        if let Some(commit) = kafka.commit {
            self.kafka_commit = commit;
        }
        if let Some(rate) = kafka.max_rate_per_partition {
            if rate == 0 {
                return Err("`kafka.max_rate_per_partition` must be at least 1".into());
            }
            self.kafka_max_rate_per_partition = Some(rate);
        }
        for (key, offset) in kafka.start_offsets {
            let Some((topic, partition)) = key
                .rsplit_once(':')
                .and_then(|(topic, p)| Some((topic, p.parse::<i32>().ok()?)))
            else {
                return Err(format!(
                    "`kafka.start_offsets`: `{key}` is not TOPIC:PARTITION (e.g. \"events:0\" = 42)"
                ));
            };
            self.kafka_start_offsets
                .insert((topic.to_string(), partition), offset);
        }
        Ok(())
    }

    /// Applies command-line arguments (without the program name). `Err` carries clap's message, which is
    /// also the `--help` text when help was asked for.
    pub fn apply_args<I, S>(&mut self, spec: &AppSpec, args: I) -> Result<(), clap::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString> + Clone,
    {
        let mut sources_help =
            String::from("Pipeline sources (override with --source NAME=ADDRESS):\n");
        for source in spec.sources {
            sources_help.push_str(&format!("  {:<20} {}\n", source.name, source.kind));
        }
        sources_help.push_str("Outputs:\n");
        for output in spec.outputs {
            sources_help.push_str(&format!("  {:<20} {}\n", output.stream, output.kind));
        }
        sources_help.push_str(
            "Stopping: Ctrl-C or SIGTERM stops gracefully (the data already received is processed, \
             written and checkpointed; exit 0), within --graceful-stop-timeout; past it the app stops \
             without finishing (exit 124), and a second Ctrl-C or SIGTERM stops at once (exit 130). \
             Either way a restart with the same checkpoint directory resumes what was left.\n",
        );
        let command = AppArgs::command()
            .name(spec.name)
            .about(format!("streamc pipeline `{}`", spec.name))
            .after_help(sources_help);
        let program = std::iter::once(std::ffi::OsString::from(spec.name));
        let matches =
            command.try_get_matches_from(program.chain(args.into_iter().map(Into::into)))?;
        let args = AppArgs::from_arg_matches(&matches)?;
        let invalid = |message: String| {
            clap::Error::raw(clap::error::ErrorKind::InvalidValue, message + "\n")
        };
        if let Some(path) = &args.config {
            self.apply_file(path).map_err(|e| invalid(e.0))?;
        }
        if let Some(batch) = args.batch {
            self.batch_interval = batch;
        }
        if let Some(workers) = args.workers {
            self.workers = workers;
        }
        for source in &args.source {
            let Some((name, address)) = source.split_once('=') else {
                return Err(invalid(format!(
                    "--source expects NAME=ADDRESS, got `{source}`"
                )));
            };
            if !spec.sources.iter().any(|s| s.name == name) {
                let known: Vec<&str> = spec.sources.iter().map(|s| s.name).collect();
                return Err(invalid(format!(
                    "--source: the pipeline has no source `{name}` (it has: {})",
                    known.join(", ")
                )));
            }
            self.source_addresses
                .insert(name.to_string(), address.to_string());
        }
        if let Some(ui) = args.ui {
            self.ui = Some(ui);
        }
        if let Some(every) = args.stats_every {
            self.stats_every = Some(every);
        }
        if let Some(history) = args.batch_history {
            self.batch_history = history;
        }
        for sink in &args.sink {
            let Some((name, url)) = sink.split_once('=') else {
                return Err(invalid(format!("--sink expects NAME=URL, got `{sink}`")));
            };
            self.sink_urls.insert(name.to_string(), url.to_string());
        }
        if let Some(attempts) = args.sink_retries {
            self.sink_retry.attempts = attempts;
        }
        if let Some(backoff) = args.sink_backoff {
            self.sink_retry.initial_backoff = backoff;
        }
        if let Some(backoff) = args.sink_max_backoff {
            self.sink_retry.max_backoff = backoff;
        }
        if let Some(bytes) = args.receiver_buffer_bytes {
            self.socket.buffer_bytes = bytes;
        }
        if let Some(bytes) = args.max_line_bytes {
            self.socket.max_line_bytes = bytes;
        }
        self.stop_after_batches = args.batches.or(self.stop_after_batches);
        self.run_for = args.run_for.or(self.run_for);
        if let Some(timeout) = args.graceful_stop_timeout {
            self.graceful_stop_timeout = Some(timeout);
        }
        if let Some(timeout) = args.receiver_failure_timeout {
            self.receiver_failure_timeout = timeout;
        }
        match args.demo {
            Some(true) => {
                let rate = args.demo_rate.or(self.demo_rate);
                self.demo_rate = Some(rate.unwrap_or(DEFAULT_DEMO_RATE));
            }
            Some(false) => self.demo_rate = None,
            None => {
                if let (Some(rate), Some(_)) = (args.demo_rate, self.demo_rate) {
                    // The file turned the demo on; the flag only changes its rate.
                    self.demo_rate = Some(rate);
                }
            }
        }
        self.report = args.report.unwrap_or(self.report);
        if let Some(dir) = args.checkpoint {
            self.checkpoint_dir = Some(dir);
        }
        if let Some(every) = args.checkpoint_every {
            self.checkpoint_every = Some(every);
        }
        if let Some(keep) = args.keep_checkpoints {
            self.keep_checkpoints = keep.max(1);
        }
        self.reset_state = args.reset_state.unwrap_or(self.reset_state);
        self.stop_when_drained = args.until_drained.unwrap_or(self.stop_when_drained);
        if let Some(rate) = args.receiver_max_rate {
            self.receiver_max_rate = Some(rate);
        }
        self.backpressure = args.backpressure.unwrap_or(self.backpressure);
        self.write_ahead_log = args.wal.unwrap_or(self.write_ahead_log);
        #[cfg(feature = "kafka")]
        if let Some(start) = &args.kafka_start {
            self.kafka_start = start
                .parse()
                .map_err(|e: String| invalid(format!("--kafka-start: {e}")))?;
        }
        if let Some(group) = &args.kafka_group {
            self.kafka_group = Some(group.clone());
        }
        self.kafka_commit = args.kafka_commit.unwrap_or(self.kafka_commit);
        if let Some(rate) = args.kafka_max_rate_per_partition {
            self.kafka_max_rate_per_partition = Some(rate);
        }
        for spec in &args.kafka_start_offset {
            let parsed = spec.rsplit_once('=').and_then(|(tp, offset)| {
                let (topic, partition) = tp.rsplit_once(':')?;
                Some((
                    (topic.to_string(), partition.parse::<i32>().ok()?),
                    offset.parse::<i64>().ok()?,
                ))
            });
            let Some((tp, offset)) = parsed else {
                return Err(invalid(format!(
                    "--kafka-start-offset expects TOPIC:PARTITION=OFFSET, got `{spec}`"
                )));
            };
            self.kafka_start_offsets.insert(tp, offset);
        }
        if let Some(rate) = args.backpressure_initial_rate {
            self.backpressure_initial_rate = Some(rate);
        }
        self.validate().map_err(|e| invalid(e.0))
    }
}

fn lcm(a: u64, b: u64) -> u64 {
    a / gcd(u128::from(a), u128::from(b)) as u64 * b
}

fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// A duration the way a user writes one: `1s`, `500ms`, `10min`, `2h`.
fn format_duration(duration: Duration) -> String {
    format_millis(duration.as_millis())
}

fn format_millis(millis: u128) -> String {
    streamc_duration::format_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

fn check_workers(workers: usize) -> Result<(), String> {
    if workers == 0 {
        return Err("workers must be at least 1".into());
    }
    Ok(())
}

fn check_batch_interval(interval: Duration) -> Result<(), String> {
    if interval.is_zero() {
        return Err("the batch interval must be longer than zero".into());
    }
    if !interval.subsec_nanos().is_multiple_of(1_000_000) {
        return Err("the batch interval must be a whole number of milliseconds".into());
    }
    Ok(())
}

/// A configuration value is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The flags every streamc application accepts.
#[derive(Parser, Debug)]
struct AppArgs {
    /// TOML configuration file: every flag's setting, under the flag's name in snake case (batch =
    /// "500ms", workers = 4, ...), grouped in [sources.NAME], [receiver], [kafka], [sinks.NAME] and
    /// [sink_retry] tables (see the book's Running chapter); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Batch interval, e.g. 500ms, 1s, 2min.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    batch: Option<Duration>,
    /// Worker threads (and partitions after a shuffle).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Where a source reads, replacing the pipeline's: HOST:PORT for a socket, a directory for a file
    /// stream. Repeatable.
    #[arg(long, value_name = "NAME=ADDRESS")]
    source: Vec<String>,
    /// Bytes a receiver may hold before it stops reading (backpressure).
    #[arg(long, value_name = "BYTES")]
    receiver_buffer_bytes: Option<usize>,
    /// Longer lines are skipped and counted.
    #[arg(long, value_name = "BYTES")]
    max_line_bytes: Option<usize>,
    /// Stop gracefully after N batches.
    #[arg(long, value_name = "N")]
    batches: Option<u64>,
    /// Stop gracefully after this long, e.g. 30s.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    run_for: Option<Duration>,
    /// How long a graceful stop (Ctrl-C, SIGTERM, --run-for, --batches) may take to finish the data
    /// already received (default: 10 batch intervals, at least 10s). Past it the app stops without
    /// finishing and
    /// exits 124; a second Ctrl-C or SIGTERM stops at once and exits 130. Either way a restart with the
    /// same checkpoint directory resumes what was left (under --wal, or from Kafka).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    graceful_stop_timeout: Option<Duration>,
    /// How long a receiver may keep failing to store what it received (a full disk under --wal)
    /// before the app stops and exits 1; meanwhile receiving pauses and retries (default 60s).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    receiver_failure_timeout: Option<Duration>,
    /// Feed every socket source from a built-in local generator of words (no `nc` needed).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    demo: Option<bool>,
    /// Lines per second the demo generator writes (default 2).
    #[arg(long, value_name = "LINES")]
    demo_rate: Option<u64>,
    /// Print a summary of the run (batches, delays, records) when it stops.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    report: Option<bool>,
    /// Checkpoint directory (state, source positions); replaces the pipeline's `checkpoint`.
    #[arg(long, value_name = "DIR")]
    checkpoint: Option<PathBuf>,
    /// How often to checkpoint, a multiple of the batch interval (default: at least 10 s).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    checkpoint_every: Option<Duration>,
    /// How many complete checkpoints to keep (default 3).
    #[arg(long, value_name = "N")]
    keep_checkpoints: Option<usize>,
    /// Discard the checkpoints in the checkpoint directory and start from empty state (after an
    /// incompatible pipeline change).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    reset_state: Option<bool>,
    /// Stop gracefully once every source is drained (queue streams).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    until_drained: Option<bool>,
    /// Records per second each receiver may take in.
    #[arg(long, value_name = "RECORDS", value_parser = clap::value_parser!(u64).range(1..))]
    receiver_max_rate: Option<u64>,
    /// Adapt receiving rates to what the pipeline sustains (PID estimator, Spark's defaults).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    backpressure: Option<bool>,
    /// Kafka: where partitions without checkpointed offsets start: committed (else earliest), earliest
    /// or latest.
    #[arg(long, value_name = "WHERE")]
    kafka_start: Option<String>,
    /// Kafka: the consumer group (default: the app name).
    #[arg(long, value_name = "GROUP")]
    kafka_group: Option<String>,
    /// Kafka: commit each completed batch's offsets to the consumer group.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    kafka_commit: Option<bool>,
    /// Kafka: messages per second per partition.
    #[arg(long, value_name = "RECORDS", value_parser = clap::value_parser!(u64).range(1..))]
    kafka_max_rate_per_partition: Option<u64>,
    /// Kafka: start a partition at an explicit offset (repeatable).
    #[arg(long, value_name = "TOPIC:PARTITION=OFFSET")]
    kafka_start_offset: Vec<String>,
    /// Write received data to a write-ahead log in the checkpoint directory before using it.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    wal: Option<bool>,
    /// Under --backpressure, the receiving rate before the first estimate.
    #[arg(long, value_name = "RECORDS", value_parser = clap::value_parser!(u64).range(1..))]
    backpressure_initial_rate: Option<u64>,
    /// Where a sink writes, replacing the pipeline's (e.g. wordcount=postgres://user@host/db). The
    /// name is the sink's output name: for SQL, the table. Repeatable.
    #[arg(long, value_name = "NAME=URL")]
    sink: Vec<String>,
    /// Tries a sink makes to write a batch before the app stops (default 10).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    sink_retries: Option<u32>,
    /// A sink's wait after its first failed try; it doubles after each further one (default 100ms).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    sink_backoff: Option<Duration>,
    /// The longest wait between a sink's tries (default 8s).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    sink_max_backoff: Option<Duration>,
    /// Serve the live dashboard, /metrics (Prometheus) and /api/v1 (JSON) at this address, e.g.
    /// 127.0.0.1:4040 (or a bare port, on loopback).
    #[arg(long, value_parser = parse_ui_address, value_name = "ADDR")]
    ui: Option<std::net::SocketAddr>,
    /// Print a summary of processing time and delays every N batches.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(usize))]
    stats_every: Option<usize>,
    /// Batches the monitoring (--ui) keeps for its pages and API (default 1000).
    #[arg(long, value_name = "N", value_parser = parse_positive_count)]
    batch_history: Option<usize>,
}

fn parse_positive_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

/// The default graceful stop timeout is never shorter than this.
const MIN_DEFAULT_GRACEFUL_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a receiver may fail to store what it received before the app stops, unless set.
const DEFAULT_RECEIVER_FAILURE_TIMEOUT: Duration = Duration::from_secs(60);

/// Lines per second of `--demo` when no rate is given.
const DEFAULT_DEMO_RATE: u64 = 2;

/// The `--config` file. Keys are the flags' names in snake case; a flag's value replaces the key's, and
/// a boolean set in the file can be turned either way by its flag (`--report=false`).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    batch: Option<String>,
    workers: Option<usize>,
    checkpoint: Option<PathBuf>,
    checkpoint_every: Option<String>,
    keep_checkpoints: Option<usize>,
    reset_state: Option<bool>,
    wal: Option<bool>,
    batches: Option<u64>,
    run_for: Option<String>,
    graceful_stop_timeout: Option<String>,
    until_drained: Option<bool>,
    demo: Option<bool>,
    demo_rate: Option<u64>,
    report: Option<bool>,
    ui: Option<String>,
    stats_every: Option<usize>,
    batch_history: Option<usize>,
    backpressure: Option<bool>,
    backpressure_initial_rate: Option<u64>,
    #[serde(default)]
    sources: BTreeMap<String, SourceFile>,
    receiver: Option<ReceiverFile>,
    kafka: Option<KafkaFile>,
    #[serde(default)]
    sinks: BTreeMap<String, SinkFile>,
    sink_retry: Option<SinkRetryFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaFile {
    start: Option<String>,
    group: Option<String>,
    commit: Option<bool>,
    max_rate_per_partition: Option<u64>,
    /// `"TOPIC:PARTITION" = OFFSET`.
    #[serde(default)]
    start_offsets: BTreeMap<String, i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkFile {
    url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkRetryFile {
    attempts: Option<u32>,
    initial_backoff: Option<String>,
    max_backoff: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFile {
    address: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiverFile {
    buffer_bytes: Option<usize>,
    max_line_bytes: Option<usize>,
    max_rate: Option<u64>,
    failure_timeout: Option<String>,
}

/// `HOST:PORT`, or a bare port on the loopback interface (monitoring stays local unless asked).
pub fn parse_ui_address(text: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .map_err(|e| format!("`{text}` is not an address (HOST:PORT or PORT): {e}"))?
        .next()
        .ok_or_else(|| format!("`{text}` resolves to no address"))
}

/// Parses `500ms`, `1s`, `1.5s`, `10min` (or `10m`), `2h`, `1d`, as the `stream!` language does.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    streamc_duration::parse_millis(text)
        .map(Duration::from_millis)
        .map_err(|e| format!("`{}` is {e}", text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{OutputSpec, SourceSpec};

    const SPEC: AppSpec = AppSpec {
        name: "demo",
        batch_interval: Duration::from_secs(1),
        workers: 2,
        checkpoint_dir: None,
        checkpoint_every: None,
        state_slide: Duration::from_secs(1),
        sources: &[SourceSpec {
            name: "lines",
            kind: "socket_text_stream",
        }],
        outputs: &[OutputSpec {
            stream: "counts",
            kind: "print",
        }],
        windows: &[],
        stream_checkpoints: &[],
    };

    const WINDOWED: AppSpec = AppSpec {
        checkpoint_dir: Some("checkpoints/demo"),
        state_slide: Duration::from_secs(10),
        windows: &[WindowSpec {
            stream: "hot",
            operator: "reduce_by_key_and_window",
            length: Duration::from_secs(60),
            slide: Duration::from_secs(10),
        }],
        stream_checkpoints: &[StreamCheckpointSpec {
            stream: "counts",
            interval: Duration::from_secs(4),
            window_slide: None,
        }],
        ..SPEC
    };

    #[test]
    fn default_checkpoint_interval_is_a_multiple_of_the_slides_of_at_least_10s() {
        let mut config = AppConfig::from_spec(&SPEC);
        assert_eq!(config.checkpoint_interval(), Duration::from_secs(10));
        config.batch_interval = Duration::from_millis(3000);
        assert_eq!(config.checkpoint_interval(), Duration::from_secs(12));
        config.state_slide = Duration::from_secs(7);
        assert_eq!(config.checkpoint_interval(), Duration::from_secs(21));
        config.checkpoint_every = Some(Duration::from_secs(6));
        assert_eq!(config.checkpoint_interval(), Duration::from_secs(6));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10min"), Ok(Duration::from_secs(600)));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("0.5ms").is_err());
    }

    #[test]
    fn flags_override_file_override_spec() {
        let dir = std::env::temp_dir().join(format!("streamc-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("app.toml");
        std::fs::write(
            &file,
            "batch = \"2s\"\nworkers = 4\n[sources.lines]\naddress = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let mut config = AppConfig::from_spec(&SPEC);
        let file_arg = file.to_string_lossy().to_string();
        config
            .apply_args(&SPEC, ["--config", file_arg.as_str(), "--workers", "3"])
            .unwrap();
        assert_eq!(config.batch_interval, Duration::from_secs(2));
        assert_eq!(config.workers, 3);
        assert_eq!(config.source_address("lines", || "x".into()), "127.0.0.1:1");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_flags_are_refused_clearly() {
        let mut config = AppConfig::from_spec(&SPEC);
        let err = config
            .apply_args(&SPEC, ["--workers", "0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("workers must be at least 1"), "{err}");
        let err = config
            .apply_args(&SPEC, ["--source", "nope=1.2.3.4:5"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no source `nope`"), "{err}");
        let err = config
            .apply_args(&SPEC, ["--batch", "fast"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a duration"), "{err}");
    }

    #[test]
    fn a_batch_interval_set_at_run_time_must_divide_windows_and_stream_checkpoints() {
        let err = AppConfig::from_spec(&WINDOWED)
            .apply_args(&WINDOWED, ["--batch", "7s"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "the window of `hot` (reduce_by_key_and_window, 1min, sliding 10s) is not a multiple \
                 of the batch interval 7s: use a batch interval that divides 10s"
            ),
            "{err}"
        );
        let err = AppConfig::from_spec(&WINDOWED)
            .apply_args(&WINDOWED, ["--batch", "5s"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the checkpoint interval of `counts` (4s")
                && err.contains("not a multiple of the batch interval 5s"),
            "{err}"
        );
        for batch in ["2s", "500ms"] {
            let mut config = AppConfig::from_spec(&WINDOWED);
            config.apply_args(&WINDOWED, ["--batch", batch]).unwrap();
        }
        // Set in code rather than by a flag: the engine validates before it starts.
        let mut config = AppConfig::from_spec(&WINDOWED);
        config.batch_interval = Duration::from_secs(3);
        assert!(config.validate().is_err());
    }

    #[test]
    fn a_boolean_from_the_file_is_turned_either_way_by_its_flag() {
        let file = config_file(
            "booleans.toml",
            "report = true\nbackpressure = true\nuntil_drained = true\ncheckpoint = \"ckpt\"\n\
             graceful_stop_timeout = \"1m\"\n",
        );
        let path = file.to_string_lossy().into_owned();
        let mut config = AppConfig::from_spec(&SPEC);
        config
            .apply_args(
                &SPEC,
                [
                    "--config",
                    path.as_str(),
                    "--report=false",
                    "--backpressure=false",
                    "--wal",
                    "--reset-state=true",
                    "--run-for",
                    "1d",
                ],
            )
            .unwrap();
        assert!(
            !config.report && !config.backpressure,
            "turned off by a flag"
        );
        assert!(config.stop_when_drained, "left as the file says");
        assert!(config.write_ahead_log && config.reset_state, "turned on");
        assert_eq!(
            config.graceful_stop_timeout,
            Some(Duration::from_secs(60)),
            "Spark's `1m`"
        );
        assert_eq!(config.run_for, Some(Duration::from_secs(86_400)));
        let err = AppConfig::from_spec(&SPEC)
            .apply_args(&SPEC, ["--wal=maybe"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("maybe"), "{err}");
    }

    fn config_file(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("streamc-config-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        file
    }

    #[test]
    fn every_flag_has_a_config_key_and_flags_override_them() {
        let file = config_file(
            "all.toml",
            "batches = 5\nrun_for = \"30s\"\nkeep_checkpoints = 7\nreport = true\n\
             until_drained = true\nstats_every = 10\nbatch_history = 50\nbackpressure = true\n\
             backpressure_initial_rate = 100\ndemo_rate = 9\n\
             [receiver]\nmax_rate = 1000\n\
             [kafka]\ngroup = \"g\"\ncommit = true\nmax_rate_per_partition = 20\n\
             [kafka.start_offsets]\n\"events:1\" = 42\n",
        );
        let path = file.to_string_lossy().to_string();
        let mut config = AppConfig::from_spec(&SPEC);
        config
            .apply_args(&SPEC, ["--config", path.as_str()])
            .unwrap();
        assert_eq!(config.stop_after_batches, Some(5));
        assert_eq!(config.run_for, Some(Duration::from_secs(30)));
        assert_eq!(config.keep_checkpoints, 7);
        assert!(config.report && config.stop_when_drained && config.backpressure);
        assert_eq!(config.stats_every, Some(10));
        assert_eq!(config.batch_history, 50);
        assert_eq!(config.backpressure_initial_rate, Some(100));
        assert_eq!(config.demo_rate, Some(9));
        assert_eq!(config.receiver_max_rate, Some(1000));
        assert_eq!(config.kafka_group.as_deref(), Some("g"));
        assert!(config.kafka_commit);
        assert_eq!(config.kafka_max_rate_per_partition, Some(20));
        assert_eq!(
            config.kafka_start_offsets.get(&("events".to_string(), 1)),
            Some(&42)
        );
        let mut config = AppConfig::from_spec(&SPEC);
        config
            .apply_args(
                &SPEC,
                [
                    "--config",
                    path.as_str(),
                    "--batches",
                    "2",
                    "--receiver-max-rate",
                    "5",
                    "--batch-history",
                    "3",
                    "--demo-rate",
                    "4",
                ],
            )
            .unwrap();
        assert_eq!(config.stop_after_batches, Some(2));
        assert_eq!(config.receiver_max_rate, Some(5));
        assert_eq!(config.batch_history, 3);
        assert_eq!(config.demo_rate, Some(4));
        std::fs::remove_file(&file).ok();
    }

    #[test]
    fn config_file_errors_name_the_file_and_the_key() {
        for (name, text, problem) in [
            ("unknown.toml", "bogus = 1\n", "unknown field `bogus`"),
            ("type.toml", "workers = \"four\"\n", "invalid type"),
            (
                "zero.toml",
                "batch = \"0s\"\n",
                "`batch`: the batch interval must be longer than zero",
            ),
            (
                "workers.toml",
                "workers = 0\n",
                "`workers`: workers must be at least 1",
            ),
            (
                "rate.toml",
                "[receiver]\nmax_rate = 0\n",
                "`receiver.max_rate` must be at least 1",
            ),
            (
                "offsets.toml",
                "[kafka.start_offsets]\nevents = 1\n",
                "`events` is not TOPIC:PARTITION",
            ),
            ("syntax.toml", "batch = \n", "TOML parse error"),
        ] {
            let file = config_file(name, text);
            let err = AppConfig::from_spec(&SPEC)
                .apply_file(&file)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("config file {}", file.display())),
                "{err}"
            );
            assert!(err.contains(problem), "{name}: {err}");
            std::fs::remove_file(&file).ok();
        }
        let err = AppConfig::from_spec(&SPEC)
            .apply_file(std::path::Path::new("/no/such/streamc.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot read config file /no/such/streamc.toml"),
            "{err}"
        );
    }
}
