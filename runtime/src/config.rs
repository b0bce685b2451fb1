//! Application configuration: the pipeline's defaults, overridden by a TOML file, overridden by flags.

pub use crate::rate::PidGains;
use crate::settings::{setting, Raw, Setting, SettingInfo};
use crate::source::SocketOptions;
use crate::spec::{AppSpec, StreamCheckpointSpec, WindowSpec};
use crate::store::{is_secret_option, Location, StorageOptions};
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
    /// A Kafka source's own librdkafka properties (`[sources.NAME.properties]`), over the shared
    /// `[kafka.properties]`.
    pub source_properties: BTreeMap<String, BTreeMap<String, String>>,
    /// Buffer, line-length and reconnect settings shared by every socket source
    /// (`--receiver-buffer-bytes`, `--max-line-bytes`; declared in the socket source's module).
    pub socket: SocketOptions,
    /// The Kafka sources' settings (`--kafka-*`, `[kafka]`; declared in the Kafka source's module).
    #[cfg(feature = "kafka")]
    pub kafka: crate::source::KafkaSettings,
    /// Where sinks write and how they retry (`--sink`, `--sink-retries`, ...; declared in the sink
    /// module).
    pub sinks: crate::sink::SinkOptions,
    /// Stop gracefully after this many batches.
    pub stop_after_batches: Option<u64>,
    /// Stop gracefully after this long.
    pub run_for: Option<Duration>,
    /// How long a graceful stop may take before the app stops without finishing (Spark's
    /// `spark.streaming.gracefulStopTimeout`); `None`: 10 batch intervals, at least 10 s.
    pub graceful_stop_timeout: Option<Duration>,
    /// Feed every socket source from a built-in local generator (`--demo`): on, off, or, when not
    /// said, on exactly when a rate is given.
    pub demo: Option<bool>,
    /// The demo generator's lines per second (`--demo-rate`).
    pub demo_lines_per_second: Option<u64>,
    /// Print a summary of the run when it ends.
    pub report: bool,
    /// Where checkpoints go (a directory or an object store prefix); `None` disables them.
    pub checkpoint_dir: Option<Location>,
    /// Directory sources ignore files modified longer than this before a batch and forget them
    /// once taken (`None`: every file present is taken).
    pub files_remember: Option<Duration>,
    /// Directory sources also read the files already there when the app first starts (Spark's
    /// `newFilesOnly = false`); by default those are ignored.
    pub files_include_existing: bool,
    /// How object stores (checkpoints, file streams and outputs on `s3://`, `gs://`, `az://`) are
    /// reached.
    pub storage: StorageOptions,
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
    /// The backpressure estimator's gains and minimum rate.
    pub backpressure_pid: PidGains,
    /// How often the write-ahead log starts a new segment file, so that what a checkpoint covers
    /// can be deleted soon (Spark's `writeAheadLog.rollingIntervalSecs`); also at 64 MiB.
    pub wal_roll_interval: Duration,
    /// Receivers write what they receive to a write-ahead log in the checkpoint directory before it is
    /// used, so a crash loses nothing already received.
    pub write_ahead_log: bool,
    /// How long a receiver may keep failing to store what it received (a full disk under the
    /// write-ahead log) before the app stops; meanwhile it pauses and retries.
    pub receiver_failure_timeout: Duration,
    /// Serve the dashboard, `/metrics`, `/api/v1`, `/healthz` and `/readyz` here (off when `None`).
    pub ui: Option<std::net::SocketAddr>,
    /// `/healthz` answers 503 once no batch was cut, or a batch has not completed, for this long;
    /// `None`: 10 batch intervals, at least 60 s.
    pub health_stuck_after: Option<Duration>,
    /// `/readyz` answers 503 while more batches than this wait to be processed.
    pub ready_max_queued_batches: usize,
    /// How log lines are written: text for people, JSON (one object per line) for log shippers.
    pub log_format: LogFormat,
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
            source_properties: BTreeMap::new(),
            socket: SocketOptions::default(),
            #[cfg(feature = "kafka")]
            kafka: Default::default(),
            sinks: Default::default(),
            stop_after_batches: None,
            run_for: None,
            graceful_stop_timeout: None,
            demo: None,
            demo_lines_per_second: None,
            report: false,
            checkpoint_dir: spec.checkpoint_dir.map(Location::from_spec),
            checkpoint_every: spec.checkpoint_every,
            storage: StorageOptions::default(),
            files_remember: None,
            files_include_existing: false,
            state_slide: spec.state_slide,
            keep_checkpoints: 3,
            reset_state: false,
            stop_when_drained: false,
            receiver_max_rate: None,
            backpressure: false,
            backpressure_initial_rate: None,
            backpressure_pid: Default::default(),
            wal_roll_interval: Duration::from_secs(60),
            write_ahead_log: false,
            receiver_failure_timeout: DEFAULT_RECEIVER_FAILURE_TIMEOUT,
            ui: None,
            health_stuck_after: None,
            ready_max_queued_batches: 10,
            log_format: LogFormat::Text,
            stats_every: None,
            batch_history: 1000,
            windows: spec.windows,
            stream_checkpoints: spec.stream_checkpoints,
        }
    }

    /// What the sinks of a run share.
    pub fn sink_settings(&self) -> crate::sink::SinkSettings {
        crate::sink::SinkSettings {
            pipeline: self.name.clone(),
            urls: self.sinks.urls.clone(),
            properties: self.sinks.properties.clone(),
            #[cfg(feature = "kafka")]
            kafka: self.kafka.properties.clone(),
            retry: self.sinks.retry,
            idle_timeout: self.sinks.idle_timeout,
            stop: Default::default(),
            storage: self.storage.clone(),
        }
    }

    /// The address of socket source `name`: the override, else the pipeline's own.
    pub fn source_address(&self, name: &str, declared: impl FnOnce() -> String) -> String {
        self.source_addresses
            .get(name)
            .cloned()
            .unwrap_or_else(declared)
    }

    /// Options for the supervisor of a custom receiver (`receiver_stream`, `socket_stream`): the
    /// `[receiver]` settings.
    pub fn receiver_options(&self) -> crate::source::ReceiverOptions {
        crate::source::ReceiverOptions {
            block_interval: self.socket.block_interval,
            buffer_bytes: self.socket.buffer_bytes,
            ..Default::default()
        }
    }

    /// Options for Kafka source `name`: the `[kafka]` settings, its client properties those of
    /// `[kafka.properties]` and `--kafka-property` with `[sources.NAME.properties]` over them.
    #[cfg(feature = "kafka")]
    pub fn kafka_options(&self, name: &str) -> crate::source::KafkaOptions {
        let own = crate::kafka_client::KafkaProperties::of(&self.source_properties, name);
        crate::source::KafkaOptions {
            start: self.kafka.start,
            group: self
                .kafka
                .group
                .clone()
                .unwrap_or_else(|| self.name.clone()),
            commit: self.kafka.commit,
            max_rate_per_partition: self.kafka.max_rate_per_partition,
            min_rate_per_partition: self.kafka.min_rate_per_partition,
            batch_interval: self.batch_interval,
            request_timeout: Duration::from_secs(5),
            start_offsets: self.kafka.start_offsets.clone(),
            properties: self.kafka.properties.overridden_by(&own),
        }
    }

    /// The demo generator's lines per second, when the demo is on.
    pub fn demo_rate(&self) -> Option<u64> {
        match self.demo {
            Some(false) => None,
            Some(true) => Some(self.demo_lines_per_second.unwrap_or(DEFAULT_DEMO_RATE)),
            None => self.demo_lines_per_second,
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

    /// How long without progress `/healthz` tolerates: the setting, else 10 batch intervals and at
    /// least 60 s, so a long batch or a checkpoint is not taken for a hang.
    pub fn health_stuck_after(&self) -> Duration {
        self.health_stuck_after.unwrap_or_else(|| {
            self.batch_interval
                .saturating_mul(10)
                .max(Duration::from_secs(60))
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
        self.check_secrets_and_properties()?;
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

    /// Every Kafka property layer refused or accepted as a client would be (owned keys, librdkafka's
    /// checks, `${NAME}` and `@/path` references), and every sink URL's references readable: a
    /// mistake stops the app before anything connects.
    fn check_secrets_and_properties(&self) -> Result<(), ConfigError> {
        #[cfg(feature = "kafka")]
        {
            self.kafka
                .properties
                .resolved("[kafka.properties] / --kafka-property")
                .map_err(ConfigError)?;
            use crate::kafka_client::KafkaProperties;
            for (kind, tables) in [
                ("sources", &self.source_properties),
                ("sinks", &self.sinks.properties),
            ] {
                for name in tables.keys() {
                    KafkaProperties::of(tables, name)
                        .resolved(&format!("[{kind}.{name}.properties]"))
                        .map_err(ConfigError)?;
                }
            }
        }
        for (name, url) in &self.sinks.urls {
            crate::secret::expand_url(url, &format!("sink `{name}` URL")).map_err(ConfigError)?;
        }
        Ok(())
    }

    /// Applies a TOML configuration file. Every error names the file.
    pub fn apply_file(&mut self, path: &std::path::Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        let file: toml::Table = toml::from_str(&text)
            .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?;
        self.apply_config_file(&file)
            .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))
    }

    /// Each key of the file goes to the setting declared under it; a key no setting declares is an
    /// error, so a typo is never silently ignored.
    fn apply_config_file(&mut self, file: &toml::Table) -> Result<(), String> {
        let settings = settings();
        let find = |section: &str, key: &str| {
            settings
                .iter()
                .find(|s| s.info.section == section && s.info.key == key)
        };
        for (key, value) in file {
            let section = settings.iter().any(|s| s.info.section == key.as_str());
            match (value, section) {
                (toml::Value::Table(table), true) => {
                    for (inner, value) in table {
                        let setting = find(key, inner)
                            .ok_or_else(|| format!("unknown field `{key}.{inner}`"))?;
                        (setting.apply)(self, setting.info.file_value(value))?;
                    }
                }
                (_, true) => {
                    return Err(format!("`{key}`: invalid type: expected a table ([{key}])"))
                }
                (_, false) => {
                    let setting = find("", key).ok_or_else(|| format!("unknown field `{key}`"))?;
                    (setting.apply)(self, setting.info.file_value(value))?;
                }
            }
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
        let settings = settings();
        let mut command = clap::Command::new(spec.name)
            .about(format!("streamc pipeline `{}`", spec.name))
            .after_help(sources_help)
            .arg(
                clap::Arg::new(CONFIG_FLAG)
                    .long(CONFIG_FLAG)
                    .value_name("FILE")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help(CONFIG_HELP),
            );
        for setting in &settings {
            command = command.arg(setting.info.arg());
        }
        let program = std::iter::once(std::ffi::OsString::from(spec.name));
        let matches =
            command.try_get_matches_from(program.chain(args.into_iter().map(Into::into)))?;
        let invalid = |message: String| {
            clap::Error::raw(clap::error::ErrorKind::InvalidValue, message + "\n")
        };
        if let Some(path) = matches.get_one::<PathBuf>(CONFIG_FLAG) {
            self.apply_file(path).map_err(|e| invalid(e.0))?;
        }
        if let Some(sources) = matches.get_many::<String>(SOURCE_FLAG) {
            for source in sources {
                let name = source
                    .split_once('=')
                    .map_or(source.as_str(), |(name, _)| name);
                if !spec.sources.iter().any(|s| s.name == name) {
                    let known: Vec<&str> = spec.sources.iter().map(|s| s.name).collect();
                    return Err(invalid(format!(
                        "--source: the pipeline has no source `{name}` (it has: {})",
                        known.join(", ")
                    )));
                }
            }
        }
        // Flags in the order they are declared, each after the file: a flag wins over its key.
        for setting in &settings {
            for value in matches
                .get_many::<String>(setting.info.flag)
                .into_iter()
                .flatten()
            {
                (setting.apply)(self, setting.info.flag_value(value)).map_err(invalid)?;
            }
        }
        for name in self.source_properties.keys() {
            match spec.sources.iter().find(|s| s.name == name) {
                None => {
                    return Err(invalid(format!(
                        "[sources.{name}.properties]: the pipeline has no source `{name}`"
                    )))
                }
                Some(source) if !source.kind.starts_with("kafka") => {
                    return Err(invalid(format!(
                        "[sources.{name}.properties]: client properties are for Kafka sources; `{name}` is a {}",
                        source.kind
                    )))
                }
                Some(_) => {}
            }
        }
        self.validate().map_err(|e| invalid(e.0))
    }
}

/// `--config`, read before every other flag.
const CONFIG_FLAG: &str = "config";
const CONFIG_HELP: &str = "TOML configuration file: every flag's setting, under the flag's name in \
    snake case (batch = \"500ms\", workers = 4, ...), grouped in [sources.NAME], [receiver], [kafka], \
    [sinks.NAME], [sink_retry] and [health] tables (see the book's Running chapter); flags override it.";
const SOURCE_FLAG: &str = "source";

/// A setting of some options struct inside [`AppConfig`], applied to the whole configuration.
struct AnySetting {
    info: &'static SettingInfo,
    apply: Box<ApplyToConfig>,
}

/// A setting's `apply`, reaching its options struct inside the configuration.
type ApplyToConfig = dyn Fn(&mut AppConfig, Raw<'_>) -> Result<(), String>;

/// The settings of the options struct `place` gives, applied through it.
fn lift<T: 'static>(
    settings: &'static [Setting<T>],
    place: fn(&mut AppConfig) -> &mut T,
    all: &mut Vec<AnySetting>,
) {
    for setting in settings {
        all.push(AnySetting {
            info: &setting.info,
            apply: Box::new(move |config, raw| (setting.apply)(place(config), raw)),
        });
    }
}

/// Every setting of an app: the engine's, then each connector's, in `--help` order.
fn settings() -> Vec<AnySetting> {
    let mut all = Vec::new();
    lift(SETTINGS, |config| config, &mut all);
    lift(
        SocketOptions::SETTINGS,
        |config| &mut config.socket,
        &mut all,
    );
    lift(RECEIVER_SETTINGS, |config| config, &mut all);
    #[cfg(feature = "kafka")]
    lift(
        crate::source::KafkaSettings::SETTINGS,
        |config| &mut config.kafka,
        &mut all,
    );
    lift(WAL_SETTINGS, |config| config, &mut all);
    lift(
        crate::sink::SinkOptions::SETTINGS,
        |config| &mut config.sinks,
        &mut all,
    );
    lift(MONITOR_SETTINGS, |config| config, &mut all);
    lift(STORAGE_SETTINGS, |config| &mut config.storage, &mut all);
    all
}

impl crate::settings::SettingValue for Location {
    fn from_text(text: &str) -> Result<Self, String> {
        Location::parse(text)
    }

    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        Location::parse(&String::from_toml(value)?)
    }
}

/// How object stores are reached (`[storage]`).
#[rustfmt::skip]
const STORAGE_SETTINGS: &[Setting<StorageOptions>] = &[
    setting!(StorageOptions { section: "storage", key: "options", flag: "storage-option",
        value: "KEY=VALUE", entries: true,
        help: "An object store client option, by the object_store crate's names (aws_endpoint, \
               aws_region, aws_allow_http, aws_virtual_hosted_style_request, \
               aws_access_key_id, aws_secret_access_key, google_service_account, \
               azure_storage_account_name, ...; repeatable; [storage.options] in the file), over \
               the usual environment variables. A value may be ${ENV_VAR} or @/path/to/file; \
               credentials are masked in logs and errors." }
        |storage, raw| {
            for (key, value) in raw.properties()? {
                let value = crate::secret::expand(&value, &format!("storage option `{key}`"))?;
                if is_secret_option(&key) {
                    crate::secret::register(&value);
                }
                storage.options.retain(|(k, _)| *k != key);
                storage.options.push((key, value));
            }
            Ok(())
        }),
    setting!(StorageOptions { section: "storage", key: "request_timeout",
        flag: "storage-request-timeout", value: "DURATION",
        help: "How long one object store request may take before it is retried (default \
               30s)." } => request_timeout),
    setting!(StorageOptions { section: "storage", key: "retry_timeout",
        flag: "storage-retry-timeout", value: "DURATION",
        help: "How long a failing object store request is retried before the operation fails \
               (default 60s)." } => retry_timeout),
    setting!(StorageOptions { section: "storage", key: "lease", flag: "storage-lease",
        value: "DURATION",
        help: "How long a checkpoint location on an object store stays claimed by an app that \
               stopped renewing it: a restart after a crash waits this long (default 10s)." }
        |storage, raw| {
            let lease: Duration = raw.get()?;
            if lease < Duration::from_secs(1) {
                return Err(format!("{} must be at least 1s", raw.name));
            }
            storage.lease = lease;
            Ok(())
        }),
];

/// How a run is shaped, where it reads and checkpoints, and when it stops.
#[rustfmt::skip]
const SETTINGS: &[Setting<AppConfig>] = &[
    setting!(AppConfig { key: "batch", flag: "batch", value: "DURATION",
        help: "Batch interval, e.g. 500ms, 1s, 2min." }
        => checked(check_batch_interval) batch_interval),
    setting!(AppConfig { key: "workers", flag: "workers", value: "N",
        help: "Worker threads (and partitions after a shuffle)." }
        => checked(check_workers) workers),
    setting!(AppConfig { key: "sources", flag: "source", value: "NAME=ADDRESS", entries: true,
        help: "Where a source reads, replacing the pipeline's: HOST:PORT for a socket, brokers for \
               Kafka, a directory for a file stream ([sources.NAME] address = ... in the file, and \
               a Kafka source's own client properties in [sources.NAME.properties]). Repeatable." }
        |config, raw| raw.insert_with_properties(
            "address", &mut config.source_addresses, &mut config.source_properties)),
    setting!(AppConfig { key: "batches", flag: "batches", value: "N",
        help: "Stop gracefully after N batches." } => Some(stop_after_batches)),
    setting!(AppConfig { key: "run_for", flag: "run-for", value: "DURATION",
        help: "Stop gracefully after this long, e.g. 30s." } => Some(run_for)),
    setting!(AppConfig { key: "graceful_stop_timeout", flag: "graceful-stop-timeout",
        value: "DURATION",
        help: "How long a graceful stop (Ctrl-C, SIGTERM, --run-for, --batches) may take to finish \
               the data already received (default: 10 batch intervals, at least 10s). Past it the \
               app stops without finishing and exits 124; a second Ctrl-C or SIGTERM stops at once \
               and exits 130. Either way a restart with the same checkpoint directory resumes what \
               was left (under --wal, or from Kafka)." } => Some(graceful_stop_timeout)),
    setting!(AppConfig { key: "demo", flag: "demo", value: "BOOL", switch: true,
        help: "Feed every socket source from a built-in local generator of words (no `nc` \
               needed)." } => Some(demo)),
    setting!(AppConfig { key: "demo_rate", flag: "demo-rate", value: "LINES",
        help: "Lines per second the demo generator writes (default 2); a rate alone turns the \
               demo on." } => Some(positive demo_lines_per_second)),
    setting!(AppConfig { key: "report", flag: "report", value: "BOOL", switch: true,
        help: "Print a summary of the run (batches, delays, records) when it stops." } => report),
    setting!(AppConfig { key: "checkpoint", flag: "checkpoint", value: "DIR",
        help: "Checkpoint directory (state, source positions); replaces the pipeline's \
               `checkpoint`." } => Some(checkpoint_dir)),
    setting!(AppConfig { key: "checkpoint_every", flag: "checkpoint-every", value: "DURATION",
        help: "How often to checkpoint, a multiple of the batch interval (default: at least \
               10 s)." }
        |config, raw| {
            let every: Duration = raw.get()?;
            if every.is_zero() {
                return Err(format!("{} must be longer than zero", raw.name));
            }
            config.checkpoint_every = Some(every);
            Ok(())
        }),
    setting!(AppConfig { section: "files", key: "remember", flag: "files-remember",
        value: "DURATION",
        help: "Directory sources (text_file_stream) ignore files last modified longer than this \
               before a batch, and forget them once taken, as Spark's minRememberDuration does: \
               what keeps a checkpoint small over a bucket nobody empties (default: every file \
               present is taken, and remembered while it is there)." }
        => Some(files_remember)),
    setting!(AppConfig { section: "files", key: "include_existing", flag: "files-include-existing",
        value: "BOOL", switch: true,
        help: "Directory sources also read the files already in the directory when the app first \
               starts (default: only files that appear after the start, as Spark's newFilesOnly; a \
               restart from a checkpoint reads what arrived while the app was down either way)." }
        => files_include_existing),
    setting!(AppConfig { key: "keep_checkpoints", flag: "keep-checkpoints", value: "N",
        help: "How many complete checkpoints to keep (default 3)." } => positive keep_checkpoints),
    setting!(AppConfig { key: "reset_state", flag: "reset-state", value: "BOOL", switch: true,
        help: "Discard the checkpoints in the checkpoint directory and start from empty state \
               (after an incompatible pipeline change)." } => reset_state),
    setting!(AppConfig { key: "until_drained", flag: "until-drained", value: "BOOL", switch: true,
        help: "Stop gracefully once every source is drained (queue streams)." }
        => stop_when_drained),
];

/// What every receiver obeys, whatever it reads.
#[rustfmt::skip]
const RECEIVER_SETTINGS: &[Setting<AppConfig>] = &[
    setting!(AppConfig { section: "receiver", key: "max_rate", flag: "receiver-max-rate",
        value: "RECORDS",
        help: "Records per second each receiver may take in." }
        => Some(positive receiver_max_rate)),
    setting!(AppConfig { section: "receiver", key: "failure_timeout",
        flag: "receiver-failure-timeout", value: "DURATION",
        help: "How long a receiver may keep failing to store what it received (a full disk under \
               --wal) before the app stops and exits 1; meanwhile receiving pauses and retries \
               (default 60s)." } => receiver_failure_timeout),
    setting!(AppConfig { key: "backpressure", flag: "backpressure", value: "BOOL", switch: true,
        help: "Adapt receiving rates to what the pipeline sustains (PID estimator, Spark's \
               defaults)." } => backpressure),
    setting!(AppConfig { key: "backpressure_initial_rate", flag: "backpressure-initial-rate",
        value: "RECORDS",
        help: "Under --backpressure, the receiving rate before the first estimate." }
        => Some(positive backpressure_initial_rate)),
    setting!(AppConfig { section: "backpressure_pid", key: "proportional",
        flag: "backpressure-pid-proportional", value: "GAIN",
        help: "Under --backpressure, how much the gap between the rate and the processing rate \
               moves the rate (Spark's pid.proportional, default 1.0)." }
        => checked(non_negative) backpressure_pid.proportional),
    setting!(AppConfig { section: "backpressure_pid", key: "integral",
        flag: "backpressure-pid-integral", value: "GAIN",
        help: "Under --backpressure, how much the scheduling delay pulls the rate down (Spark's \
               pid.integral, default 0.2)." }
        => checked(non_negative) backpressure_pid.integral),
    setting!(AppConfig { section: "backpressure_pid", key: "derived",
        flag: "backpressure-pid-derived", value: "GAIN",
        help: "Under --backpressure, how much the gap's change moves the rate (Spark's \
               pid.derived, default 0)." }
        => checked(non_negative) backpressure_pid.derived),
    setting!(AppConfig { section: "backpressure_pid", key: "min_rate",
        flag: "backpressure-min-rate", value: "RECORDS",
        help: "Under --backpressure, the lowest rate it sets, records per second (Spark's \
               pid.minRate, default 100)." }
        => checked(positive_number) backpressure_pid.min_rate),
];

/// A gain: zero or more.
fn non_negative(n: f64) -> Result<(), String> {
    if n >= 0.0 {
        Ok(())
    } else {
        Err(format!("{n} is negative"))
    }
}

/// A rate: more than zero.
fn positive_number(n: f64) -> Result<(), String> {
    if n > 0.0 {
        Ok(())
    } else {
        Err(format!("{n} is not above zero"))
    }
}

#[rustfmt::skip]
const WAL_SETTINGS: &[Setting<AppConfig>] = &[
    setting!(AppConfig { key: "wal", flag: "wal", value: "BOOL", switch: true,
        help: "Write received data to a write-ahead log in the checkpoint directory before using \
               it." } => write_ahead_log),
    setting!(AppConfig { key: "wal_roll_interval", flag: "wal-roll-interval", value: "DURATION",
        help: "How often the write-ahead log starts a new segment file, so that what a checkpoint \
               covers can be deleted (default 60s; also every 64 MiB)." }
        |config, raw| {
            let every: Duration = raw.get()?;
            if every.is_zero() {
                return Err(format!("{} must be longer than zero", raw.name));
            }
            config.wal_roll_interval = every;
            Ok(())
        }),
];

#[rustfmt::skip]
const MONITOR_SETTINGS: &[Setting<AppConfig>] = &[
    setting!(AppConfig { key: "ui", flag: "ui", value: "ADDR",
        help: "Serve the live dashboard, /metrics (Prometheus) and /api/v1 (JSON) at this \
               address, e.g. 127.0.0.1:4040 (or a bare port, on loopback)." } => Some(ui)),
    setting!(AppConfig { key: "stats_every", flag: "stats-every", value: "N",
        help: "Print a summary of processing time and delays every N batches." }
        => Some(stats_every)),
    setting!(AppConfig { key: "batch_history", flag: "batch-history", value: "N",
        help: "Batches the monitoring (--ui) keeps for its pages and API (default 1000)." }
        => positive batch_history),
    setting!(AppConfig { section: "health", key: "stuck_after", flag: "health-stuck-after",
        value: "DURATION",
        help: "With --ui: /healthz answers 503 once no batch was cut or completed for this long \
               (default 10 batch intervals, at least 60s)." } => Some(health_stuck_after)),
    setting!(AppConfig { section: "health", key: "ready_max_queued_batches",
        flag: "ready-max-queued-batches", value: "N",
        help: "With --ui: /readyz answers 503 while more batches than this wait to be processed \
               (default 10)." } => ready_max_queued_batches),
    setting!(AppConfig { key: "log_format", flag: "log-format", value: "FORMAT",
        help: "Log lines as text (default) or json, one object per line, for log shippers. \
               RUST_LOG (or STREAMC_LOG) filters them: info, or per target as \
               info,librdkafka=debug." }
        |config, raw| {
            let format: String = raw.get()?;
            config.log_format = match format.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => return Err(format!("{}: `{other}` is not text or json", raw.name)),
            };
            Ok(())
        }),
];

/// How log lines are written.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line: time, level, target, fields and message.
    Json,
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

/// The default graceful stop timeout is never shorter than this.
const MIN_DEFAULT_GRACEFUL_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a receiver may fail to store what it received before the app stops, unless set.
const DEFAULT_RECEIVER_FAILURE_TIMEOUT: Duration = Duration::from_secs(60);

/// Lines per second of `--demo` when no rate is given.
const DEFAULT_DEMO_RATE: u64 = 2;

pub use crate::settings::{parse_duration, parse_ui_address};

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
            demo: true,
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
        let config = configured(&[
            "--config",
            path.as_str(),
            "--report=false",
            "--backpressure=false",
            "--wal",
            "--reset-state=true",
            "--run-for",
            "1d",
        ]);
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

    /// The configuration `args` give the test app.
    fn configured(args: &[&str]) -> AppConfig {
        let mut config = AppConfig::from_spec(&SPEC);
        config.apply_args(&SPEC, args).unwrap();
        config
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
             backpressure_initial_rate = 100\ndemo_rate = 9\nwal_roll_interval = \"5s\"\n\
             [receiver]\nmax_rate = 1000\nblock_interval = \"50ms\"\n\
             [backpressure_pid]\nproportional = 0.5\nintegral = 0\nderived = 0.1\nmin_rate = 10\n\
             [kafka]\ngroup = \"g\"\ncommit = true\nmax_rate_per_partition = 20\nmin_rate_per_partition = 3\n\
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
        assert_eq!(config.demo_rate(), Some(9));
        assert_eq!(config.receiver_max_rate, Some(1000));
        assert_eq!(config.socket.block_interval, Duration::from_millis(50));
        assert_eq!(config.wal_roll_interval, Duration::from_secs(5));
        assert_eq!(
            config.backpressure_pid,
            PidGains {
                proportional: 0.5,
                integral: 0.0,
                derived: 0.1,
                min_rate: 10.0
            }
        );
        #[cfg(feature = "kafka")]
        assert_eq!(config.kafka.min_rate_per_partition, 3);
        #[cfg(feature = "kafka")]
        assert_eq!(config.kafka.group.as_deref(), Some("g"));
        #[cfg(feature = "kafka")]
        assert!(config.kafka.commit);
        #[cfg(feature = "kafka")]
        assert_eq!(config.kafka.max_rate_per_partition, Some(20));
        #[cfg(feature = "kafka")]
        assert_eq!(
            config.kafka.start_offsets.get(&("events".to_string(), 1)),
            Some(&42)
        );
        let config = configured(&[
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
        ]);
        assert_eq!(config.stop_after_batches, Some(2));
        assert_eq!(config.receiver_max_rate, Some(5));
        assert_eq!(config.batch_history, 3);
        assert_eq!(config.demo_rate(), Some(4));
        let config = configured(&[
            "--config",
            path.as_str(),
            "--backpressure-pid-proportional",
            "2",
            "--backpressure-min-rate",
            "7.5",
            "--wal-roll-interval",
            "1m",
        ]);
        assert_eq!(config.backpressure_pid.proportional, 2.0);
        assert_eq!(config.backpressure_pid.min_rate, 7.5);
        assert_eq!(config.wal_roll_interval, Duration::from_secs(60));
        std::fs::remove_file(&file).ok();
    }

    #[test]
    fn storage_options_expand_their_secrets_which_are_then_masked() {
        std::env::set_var(
            "STREAMC_CONFIG_TEST_S3_SECRET",
            "s3-secret-for-the-config-test",
        );
        let file = config_file(
            "storage.toml",
            "checkpoint = \"s3://bucket/app\"\n[storage]\nlease = \"2s\"\n\
             [storage.options]\naws_endpoint = \"http://127.0.0.1:9000\"\n\
             aws_secret_access_key = \"${STREAMC_CONFIG_TEST_S3_SECRET}\"\n",
        );
        let path = file.to_string_lossy().into_owned();
        let config = configured(&[
            "--config",
            path.as_str(),
            "--storage-option",
            "aws_region=eu-west-1",
        ]);
        assert_eq!(
            config.checkpoint_dir,
            Some(Location::Remote("s3://bucket/app".into()))
        );
        assert_eq!(config.storage.lease, Duration::from_secs(2));
        let option = |key: &str| {
            config
                .storage
                .options
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            option("aws_secret_access_key").as_deref(),
            Some("s3-secret-for-the-config-test")
        );
        assert_eq!(option("aws_region").as_deref(), Some("eu-west-1"));
        assert!(!format!("{:?}", config.storage).contains("s3-secret"));
        assert_eq!(
            crate::secret::redact("denied with key s3-secret-for-the-config-test"),
            "denied with key ***"
        );
        let mut config = AppConfig::from_spec(&SPEC);
        let err = config
            .apply_args(&SPEC, ["--storage-lease", "100ms"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least 1s"), "{err}");
        let err = config
            .apply_args(&SPEC, ["--checkpoint", "hdfs://namenode/ckpt"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("s3://"), "{err}");
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
