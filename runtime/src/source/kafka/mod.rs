//! `kafka_direct_stream`: Spark's direct approach. No receiver: at each batch the source asks the brokers
//! for every partition's latest offset and defines the batch as one offset range per topic-partition,
//! read in parallel, one batch partition per Kafka partition. The ranges are the source's position:
//! they go into checkpoints and the batch journal, so after a crash every message is processed exactly
//! once. Offsets can also be committed to Kafka (consumer group) once their batch is complete.
//!
//! The Kafka room: this direct source, the receiver source (`receiver.rs`) and the settings both
//! share (`KafkaSettings`, the `--kafka-*` flags and `[kafka]` keys).

mod receiver;

pub use receiver::{KafkaReceiver, KafkaReceiverSource};

use crate::kafka_client::{client_config, describe, ClientLog, KafkaProperties};
use crate::settings::{setting, Setting};
use crate::source::{Source, SourceError};
use crate::time::Time;
use rayon::prelude::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One Kafka message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KafkaRecord {
    /// The topic the message was read from.
    pub topic: String,
    /// The topic partition it was read from.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// Milliseconds since the epoch, when the message has a timestamp.
    pub timestamp: Option<i64>,
    /// The message key's bytes; `None` for a message without a key.
    pub key: Option<Vec<u8>>,
    /// The payload's bytes; `None` for a message without a value (a tombstone).
    pub value: Option<Vec<u8>>,
}

impl KafkaRecord {
    /// The value as UTF-8 text (`None` if absent or not UTF-8).
    pub fn value_str(&self) -> Option<&str> {
        self.value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The key as UTF-8 text.
    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }
}

/// Where a source without committed or checkpointed offsets starts.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest offset the brokers still hold.
    Earliest,
    /// The partition's end: only messages produced after the source starts are read.
    Latest,
    /// The consumer group's committed offsets, else the earliest.
    Committed,
}

impl std::str::FromStr for StartAt {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "earliest" => Ok(StartAt::Earliest),
            "latest" => Ok(StartAt::Latest),
            "committed" => Ok(StartAt::Committed),
            other => Err(format!("`{other}` is not earliest, latest or committed")),
        }
    }
}

/// The Kafka sources' settings, as the app's flags and `[kafka]` table give them.
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    /// Where a partition without checkpointed offsets starts.
    pub start: StartAt,
    /// The consumer group (default: the app name).
    pub group: Option<String>,
    /// Commit each completed batch's offsets to the group.
    pub commit: bool,
    /// Messages per second per partition.
    pub max_rate_per_partition: Option<u64>,
    /// Under backpressure, the fewest messages per second a direct source reads from each partition
    /// (Spark's `spark.streaming.kafka.minRatePerPartition`).
    pub min_rate_per_partition: u64,
    /// Explicit starting offsets per (topic, partition).
    pub start_offsets: BTreeMap<(String, i32), i64>,
    /// librdkafka properties for every Kafka client of the app (`[kafka.properties]`,
    /// `--kafka-property`).
    pub properties: KafkaProperties,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            start: StartAt::Committed,
            group: None,
            commit: false,
            max_rate_per_partition: None,
            min_rate_per_partition: 1,
            start_offsets: BTreeMap::new(),
            properties: KafkaProperties::new(),
        }
    }
}

impl KafkaSettings {
    /// The `--kafka-*` flags and the `[kafka]` keys.
    #[rustfmt::skip]
    pub(crate) const SETTINGS: &'static [Setting<KafkaSettings>] = &[
        setting!(KafkaSettings { section: "kafka", key: "start", flag: "kafka-start",
            value: "WHERE",
            help: "Kafka: where partitions without checkpointed offsets start: committed (else \
                   earliest), earliest or latest." }
            |kafka, raw| {
                let start: String = raw.get()?;
                kafka.start = start.parse().map_err(|e| format!("{}: {e}", raw.name))?;
                Ok(())
            }),
        setting!(KafkaSettings { section: "kafka", key: "group", flag: "kafka-group",
            value: "GROUP",
            help: "Kafka: the consumer group (default: the app name)." } => Some(group)),
        setting!(KafkaSettings { section: "kafka", key: "commit", flag: "kafka-commit",
            value: "BOOL", switch: true,
            help: "Kafka: commit each completed batch's offsets to the consumer group." }
            => commit),
        setting!(KafkaSettings { section: "kafka", key: "max_rate_per_partition",
            flag: "kafka-max-rate-per-partition", value: "RECORDS",
            help: "Kafka: messages per second per partition." }
            => Some(positive max_rate_per_partition)),
        setting!(KafkaSettings { section: "kafka", key: "min_rate_per_partition",
            flag: "kafka-min-rate-per-partition", value: "RECORDS",
            help: "Kafka: under --backpressure, the fewest messages per second a direct source \
                   reads from each partition (default 1)." }
            => positive min_rate_per_partition),
        setting!(KafkaSettings { section: "kafka", key: "start_offsets",
            flag: "kafka-start-offset", value: "TOPIC:PARTITION=OFFSET", entries: true,
            help: "Kafka: start a partition at an explicit offset (repeatable; \
                   [kafka.start_offsets] \"TOPIC:PARTITION\" = OFFSET in the file)." }
            |kafka, raw| {
                for (key, offset) in raw.entries()? {
                    let Some((topic, partition)) = key
                        .rsplit_once(':')
                        .and_then(|(topic, p)| Some((topic, p.parse::<i32>().ok()?)))
                    else {
                        return Err(format!(
                            "{}: `{key}` is not TOPIC:PARTITION (e.g. \"events:0\" = 42)",
                            raw.name
                        ));
                    };
                    kafka.start_offsets.insert((topic.to_string(), partition), offset.get()?);
                }
                Ok(())
            }),
        setting!(KafkaSettings { section: "kafka", key: "properties", flag: "kafka-property",
            value: "KEY=VALUE", entries: true,
            help: "Kafka: a librdkafka property for every Kafka client (security.protocol, \
                   sasl.*, ssl.*, timeouts, compression...; repeatable; [kafka.properties] in the \
                   file, [sources.NAME.properties] and [sinks.NAME.properties] for one client). \
                   A value may be ${ENV_VAR} or @/path/to/file." }
            |kafka, raw| {
                for (key, value) in raw.properties()? {
                    kafka.properties.set(key, value);
                }
                Ok(())
            }),
    ];
}

/// Options of a direct Kafka source.
#[derive(Clone, Debug)]
pub struct KafkaOptions {
    /// Where a partition without a checkpointed or explicit starting offset starts.
    pub start: StartAt,
    /// Consumer group, for committed offsets.
    pub group: String,
    /// Commit each completed batch's offsets to the group.
    pub commit: bool,
    /// Messages per second per partition (Spark's `spark.streaming.kafka.maxRatePerPartition`).
    pub max_rate_per_partition: Option<u64>,
    /// Under backpressure, the fewest messages per second per partition.
    pub min_rate_per_partition: u64,
    /// The batch interval, to turn the rate into messages per batch.
    pub batch_interval: Duration,
    /// How long to wait on brokers for one request before retrying.
    pub request_timeout: Duration,
    /// Explicit starting offsets, which win over `start` for the partitions they name.
    pub start_offsets: BTreeMap<(String, i32), i64>,
    /// librdkafka properties for every client of the source: the pipeline's, then
    /// `[kafka.properties]` and `--kafka-property`, then `[sources.NAME.properties]`.
    pub properties: KafkaProperties,
}

impl KafkaOptions {
    /// With properties fixed in the pipeline (the source's third argument) under the configured
    /// ones, which override them.
    pub fn with_code_properties<K, V>(
        mut self,
        properties: impl IntoIterator<Item = (K, V)>,
    ) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let code: KafkaProperties = properties.into_iter().collect();
        self.properties = code.overridden_by(&self.properties);
        self
    }
}

/// The offset range one batch reads from one topic-partition: `[from, until)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetRange {
    /// The topic read.
    pub topic: String,
    /// The partition read.
    pub partition: i32,
    /// The first offset of the range (included).
    pub from: i64,
    /// The offset after the last one of the range (excluded): the range holds `until - from`
    /// offsets.
    pub until: i64,
}

type TopicPartition = (String, i32);

/// At most this many log lines and errors of the metadata client are served per batch.
const EVENTS_SERVED_PER_POLL: usize = 256;

/// Every client of the source logs through `tracing`, naming the source.
type Client = BaseConsumer<ClientLog>;

/// A Kafka topic set read in offset ranges.
pub struct KafkaDirectSource {
    name: String,
    brokers: String,
    topics: Vec<String>,
    options: KafkaOptions,
    metadata: Option<Client>,
    /// The properties every client of the source is made with, resolved at start.
    client_properties: Vec<(String, String)>,
    /// Batches planned with the brokers' answers, and plans that failed (the source's
    /// connection figures).
    plans: u64,
    failed_plans: u64,
    last_error: Option<String>,
    /// The rate backpressure sets for this source (records per second, all partitions).
    rate: Option<std::sync::Arc<crate::rate::RateControl>>,
    /// Topic patterns (`^...`).
    patterns: Vec<regex_lite::Regex>,
    readers: BTreeMap<TopicPartition, Mutex<Reader>>,
    /// Next offset to read per topic-partition.
    next: BTreeMap<TopicPartition, i64>,
    /// Where the last cut started reading, per topic-partition (its ranges end at `next`).
    last_from: BTreeMap<TopicPartition, i64>,
    /// Offsets up to which batches completed and can be committed.
    to_commit: Option<BTreeMap<TopicPartition, i64>>,
    /// Messages between each partition's last cut and its high watermark.
    lag: BTreeMap<TopicPartition, i64>,
    last_committed: Option<BTreeMap<TopicPartition, i64>>,
}

impl KafkaDirectSource {
    /// A source named `name` reading `topics` from `brokers` (`host:port`, comma-separated). A
    /// topic starting with `^` is a regular expression, matched against the brokers' topics at each
    /// batch. Nothing connects before the source starts.
    pub fn new(name: &str, brokers: String, topics: Vec<String>, options: KafkaOptions) -> Self {
        Self {
            name: name.to_string(),
            brokers,
            topics,
            options,
            metadata: None,
            client_properties: Vec::new(),
            plans: 0,
            failed_plans: 0,
            last_error: None,
            rate: None,
            patterns: Vec::new(),
            readers: BTreeMap::new(),
            next: BTreeMap::new(),
            last_from: BTreeMap::new(),
            to_commit: None,
            lag: BTreeMap::new(),
            last_committed: None,
        }
    }

    fn error(&self, message: String) -> SourceError {
        SourceError {
            source_name: self.name.clone(),
            message,
        }
    }

    /// librdkafka queues its log lines and errors for the client's poll (rdkafka sets `log.queue`),
    /// and the metadata client reads nothing: poll it so they reach the log. A poll serves one event
    /// and cannot tell "served a log line" from "nothing queued", hence a bounded number of them.
    fn serve_client_events(&self) {
        if let Some(metadata) = &self.metadata {
            for _ in 0..EVENTS_SERVED_PER_POLL {
                let _ = metadata.poll(Duration::ZERO);
            }
        }
    }

    fn note_failure(&mut self, problem: &str) {
        self.failed_plans += 1;
        self.last_error = Some(problem.to_string());
    }

    /// A client of the source (`role`: `metadata`, `reader topic/partition`), with the resolved
    /// properties of its start.
    fn consumer(&self, role: &str) -> Result<Client, SourceError> {
        client_config(
            &self.brokers,
            &[("socket.timeout.ms", "10000")],
            &self.client_properties,
            &[
                ("group.id", &self.options.group),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "false"),
            ],
        )
        .create_with_context(ClientLog::new(format!("source {} {role}", self.name)))
        .map_err(|e| {
            self.error(format!(
                "cannot create a Kafka client for {}: {}",
                self.brokers,
                describe(&e)
            ))
        })
    }

    /// The topics to read: the named ones, and those matching the patterns (names starting with `^`,
    /// as librdkafka's subscriptions do), looked up anew each batch so new topics are picked up.
    fn topic_names(&self, consumer: &Client) -> Result<Vec<String>, String> {
        let mut names: Vec<String> = self
            .topics
            .iter()
            .filter(|t| !t.starts_with('^'))
            .cloned()
            .collect();
        if !self.patterns.is_empty() {
            let all = consumer
                .fetch_metadata(None, self.options.request_timeout)
                .map_err(|e| format!("cannot list the topics of {}: {e}", self.brokers))?;
            for topic in all.topics() {
                let name = topic.name();
                if !name.starts_with("__")
                    && self.patterns.iter().any(|p| p.is_match(name))
                    && !names.iter().any(|n| n == name)
                {
                    names.push(name.to_string());
                }
            }
        }
        Ok(names)
    }

    /// The partitions of every topic, from the brokers.
    fn partitions(&self) -> Result<Vec<TopicPartition>, String> {
        let consumer = self.metadata.as_ref().ok_or("not started")?;
        let mut out = Vec::new();
        for topic in &self.topic_names(consumer)? {
            let metadata = consumer
                .fetch_metadata(Some(topic), self.options.request_timeout)
                .map_err(|e| {
                    format!(
                        "cannot fetch metadata of topic `{topic}` from {}: {e}",
                        self.brokers
                    )
                })?;
            let Some(described) = metadata.topics().first() else {
                return Err(format!("the brokers do not describe topic `{topic}`"));
            };
            if let Some(err) = described.error() {
                let code = err;
                if code == rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART {
                    return Err(format!("topic `{topic}` does not exist"));
                }
                return Err(format!("topic `{topic}`: {code:?}"));
            }
            if described.partitions().is_empty() {
                return Err(format!("topic `{topic}` does not exist (no partitions)"));
            }
            out.extend(
                described
                    .partitions()
                    .iter()
                    .map(|p| (topic.clone(), p.id())),
            );
        }
        Ok(out)
    }

    /// Where a partition seen for the first time starts.
    fn starting_offset(&self, tp: &TopicPartition, low: i64, high: i64) -> i64 {
        if let Some(&explicit) = self.options.start_offsets.get(tp) {
            return explicit.clamp(low, high);
        }
        match self.options.start {
            StartAt::Earliest => low,
            StartAt::Latest => high,
            StartAt::Committed => {
                let committed = self.metadata.as_ref().and_then(|c| {
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition(&tp.0, tp.1);
                    let list = c
                        .committed_offsets(tpl, self.options.request_timeout)
                        .ok()?;
                    let offset = list.find_partition(&tp.0, tp.1).map(|e| e.offset());
                    drop(list);
                    match offset {
                        Some(Offset::Offset(o)) => Some(o),
                        _ => None,
                    }
                });
                committed.unwrap_or(low).clamp(low, high)
            }
        }
    }

    /// The ranges of the next batch, and the offsets after it.
    fn plan(&mut self) -> Result<Vec<OffsetRange>, String> {
        let consumer = self.metadata.as_ref().ok_or("not started")?;
        let partitions = self.partitions()?;
        // The configured per-partition rate, and backpressure's rate for the whole source (or its
        // initial rate, which bounds the very first batch) shared out over the partitions.
        let seconds = self.options.batch_interval.as_secs_f64();
        let configured = self
            .options
            .max_rate_per_partition
            .map(|rate| rate as f64 * seconds);
        let pressured = self
            .rate
            .as_ref()
            .map(|c| c.limit())
            .filter(|&limit| limit > 0)
            .map(|limit| {
                let share = limit as f64 / partitions.len().max(1) as f64;
                share.max(self.options.min_rate_per_partition as f64) * seconds
            });
        let per_batch = match (configured, pressured) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .map(|n| (n.ceil() as i64).max(1));
        let mut ranges = Vec::new();
        for tp in partitions {
            let (low, high) = consumer
                .fetch_watermarks(&tp.0, tp.1, self.options.request_timeout)
                .map_err(|e| format!("cannot fetch offsets of {}/{}: {e}", tp.0, tp.1))?;
            let from = match self.next.get(&tp) {
                Some(&next) if next < low => {
                    tracing::error!(
                        source = %self.name,
                        topic = %tp.0,
                        partition = tp.1,
                        "offsets {next}..{low} were deleted by the broker's retention before they were read: those messages are lost"
                    );
                    low
                }
                Some(&next) => next,
                None => self.starting_offset(&tp, low, high),
            };
            let until = match per_batch {
                Some(limit) => high.min(from + limit),
                None => high,
            }
            .max(from);
            self.lag.insert(tp.clone(), high - until);
            ranges.push(OffsetRange {
                topic: tp.0.clone(),
                partition: tp.1,
                from,
                until,
            });
        }
        Ok(ranges)
    }

    /// Reads the ranges, one Kafka partition per batch partition, in parallel.
    fn read(&mut self, ranges: &[OffsetRange]) -> Result<Vec<Vec<KafkaRecord>>, String> {
        for range in ranges {
            let tp = (range.topic.clone(), range.partition);
            if !self.readers.contains_key(&tp) {
                let reader = self
                    .consumer(&format!("reader {}/{}", range.topic, range.partition))
                    .map_err(|e| e.message)?;
                self.readers.insert(
                    tp,
                    Mutex::new(Reader {
                        consumer: reader,
                        next: None,
                        assigned: false,
                    }),
                );
            }
        }
        let timeout = self.options.request_timeout;
        let readers = &self.readers;
        ranges
            .par_iter()
            .map(|range| {
                if range.until <= range.from {
                    return Ok(Vec::new());
                }
                let mut reader = readers[&(range.topic.clone(), range.partition)]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                read_range(&mut reader, range, timeout)
            })
            .collect()
    }

    /// Plans and reads a batch. If the brokers cannot be reached the batch is empty and the offsets stay
    /// where they were: the data comes with a later batch, nothing is skipped.
    fn next_batch(
        &mut self,
        target: Option<&BTreeMap<TopicPartition, i64>>,
    ) -> Result<Vec<Vec<KafkaRecord>>, String> {
        let ranges = match target {
            None => self.plan()?,
            Some(target) => target
                .iter()
                .map(|(tp, &until)| OffsetRange {
                    topic: tp.0.clone(),
                    partition: tp.1,
                    from: self.next.get(tp).copied().unwrap_or(until),
                    until,
                })
                .collect(),
        };
        let records = self.read(&ranges)?;
        self.last_from.clear();
        for range in &ranges {
            let tp = (range.topic.clone(), range.partition);
            self.last_from.insert(tp.clone(), range.from);
            self.next.insert(tp, range.until);
        }
        Ok(records)
    }

    fn commit_completed(&mut self) {
        let Some(offsets) = self.to_commit.take() else {
            return;
        };
        if !self.options.commit || offsets.is_empty() {
            return;
        }
        let Some(consumer) = &self.metadata else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &offsets {
            if tpl
                .add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .is_err()
            {
                return;
            }
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => self.last_committed = Some(offsets),
            Err(e) => {
                tracing::warn!(source = %self.name, "cannot commit offsets to Kafka (they are safe in the checkpoint): {e}")
            }
        }
    }
}

/// An assign-only consumer of one partition, and the offset it will return next when known.
struct Reader {
    consumer: Client,
    /// Where the consumer stands after the last range it read in full. A range starting there is read
    /// on without a new assignment: reassigning every batch churns librdkafka's fetcher start/stop,
    /// whose teardown has a known race (librdkafka issue 5573, an assertion in
    /// `rd_kafka_assignment_partition_stopped`).
    next: Option<i64>,
    /// Whether the partition is assigned. It is assigned once, and a range that does not continue
    /// the last one seeks instead: a second assignment stops the fetcher while the first stop may
    /// still be pending, which is the race above (it aborted a CI run even with the churn reduced).
    assigned: bool,
}

fn read_range(
    reader: &mut Reader,
    range: &OffsetRange,
    timeout: Duration,
) -> Result<Vec<KafkaRecord>, String> {
    let continues = reader.next == Some(range.from);
    // Until this range has been read in full, where the consumer stands is not known.
    reader.next = None;
    if !continues {
        let sought = reader.assigned
            && reader
                .consumer
                .seek(
                    &range.topic,
                    range.partition,
                    Offset::Offset(range.from),
                    timeout,
                )
                .is_ok();
        if !sought {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&range.topic, range.partition, Offset::Offset(range.from))
                .map_err(|e| e.to_string())?;
            reader
                .consumer
                .assign(&tpl)
                .map_err(|e| format!("cannot assign {}/{}: {e}", range.topic, range.partition))?;
            reader.assigned = true;
        }
    }
    let consumer = &reader.consumer;
    let mut overran = false;
    let mut records = Vec::with_capacity((range.until - range.from) as usize);
    let mut next = range.from;
    let mut last_progress = Instant::now();
    while next < range.until {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                last_progress = Instant::now();
                let offset = message.offset();
                if offset < next || message.partition() != range.partition {
                    continue;
                }
                if offset >= range.until {
                    // A message past the range was taken from the queue: the next range must
                    // reassign to read it again.
                    overran = true;
                    break;
                }
                records.push(KafkaRecord {
                    topic: message.topic().to_string(),
                    partition: message.partition(),
                    offset,
                    timestamp: message.timestamp().to_millis(),
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().map(<[u8]>::to_vec),
                });
                next = offset + 1;
            }
            Some(Err(e)) => {
                return Err(format!("reading {}/{}: {e}", range.topic, range.partition))
            }
            None if last_progress.elapsed() > timeout => {
                return Err(format!(
                    "reading {}/{} stalled at offset {next} of [{}, {})",
                    range.topic, range.partition, range.from, range.until
                ))
            }
            None => {}
        }
    }
    if !overran {
        reader.next = Some(range.until);
    }
    Ok(records)
}

/// A position: per topic-partition, the range the last batch read (`from`, `until`); the next batch
/// starts at `until`.
type Ranges = Vec<(String, i32, i64, i64)>;

fn encode(
    next: &BTreeMap<TopicPartition, i64>,
    last_from: &BTreeMap<TopicPartition, i64>,
) -> Vec<u8> {
    let flat: Ranges = next
        .iter()
        .map(|((t, p), until)| {
            (
                t.clone(),
                *p,
                last_from.get(&(t.clone(), *p)).copied().unwrap_or(*until),
                *until,
            )
        })
        .collect();
    postcard::to_stdvec(&flat).unwrap_or_default()
}

fn decode_ranges(bytes: &[u8]) -> Result<Ranges, String> {
    postcard::from_bytes(bytes).map_err(|e| e.to_string())
}

/// The offsets a position ends at.
fn decode(bytes: &[u8]) -> Result<BTreeMap<TopicPartition, i64>, String> {
    Ok(decode_ranges(bytes)?
        .into_iter()
        .map(|(t, p, _, until)| ((t, p), until))
        .collect())
}

/// The offset ranges a batch read, from the direct Kafka source's position after the batch was cut.
pub fn offset_ranges(position: &[u8]) -> Vec<OffsetRange> {
    decode_ranges(position)
        .unwrap_or_default()
        .into_iter()
        .map(|(topic, partition, from, until)| OffsetRange {
            topic,
            partition,
            from,
            until,
        })
        .collect()
}

impl Source for KafkaDirectSource {
    type Batch = Vec<Vec<KafkaRecord>>;

    fn name(&self) -> &str {
        &self.name
    }

    fn stats(&self) -> Option<super::SourceStats> {
        Some(super::SourceStats {
            lag: self
                .lag
                .iter()
                .map(|((topic, partition), lag)| (topic.clone(), *partition, *lag))
                .collect(),
            connections: self.plans,
            connection_errors: self.failed_plans,
            last_error: self.last_error.clone(),
            ..Default::default()
        })
    }

    fn start(&mut self, env: &super::ReceiverEnv) -> Result<(), SourceError> {
        let control = std::sync::Arc::new(crate::rate::RateControl::new(None));
        if let Some(initial) = env.initial_rate {
            control.set(initial);
        }
        env.rates.register(&self.name, control.clone());
        self.rate = Some(control);
        for pattern in self.topics.iter().filter(|t| t.starts_with('^')) {
            let regex = regex_lite::Regex::new(pattern).map_err(|e| {
                self.error(format!(
                    "topic pattern `{pattern}` is not a valid regular expression: {e}"
                ))
            })?;
            self.patterns.push(regex);
        }
        self.client_properties = self
            .options
            .properties
            .resolved(&format!("Kafka source `{}`", self.name))
            .map_err(|e| self.error(e))?;
        let metadata = self.consumer("metadata")?;
        let log = metadata.context().clone();
        self.metadata = Some(metadata);
        // Fail fast on a topic that does not exist or a broker that refuses our credentials or
        // certificate; an unreachable broker only delays (retried per batch).
        let checked = self.partitions();
        self.serve_client_events();
        match checked {
            Err(problem) if problem.contains("does not exist") => Err(self.error(problem)),
            // No retry fixes a refused certificate or password: stop now, saying why.
            Err(_) if log.security_failure().is_some() => Err(self.error(format!(
                "cannot connect to Kafka at {} securely: {} (check security.protocol, ssl.* \
                 and sasl.* in the Kafka properties)",
                self.brokers,
                log.security_failure().unwrap_or_default()
            ))),
            Err(problem) => {
                self.note_failure(&problem);
                tracing::warn!(source = %self.name, "Kafka not reachable yet, batches will retry: {problem}");
                Ok(())
            }
            Ok(partitions) => {
                self.plans += 1;
                tracing::info!(
                    source = %self.name,
                    brokers = %self.brokers,
                    partitions = partitions.len(),
                    "connected to Kafka: every topic found"
                );
                Ok(())
            }
        }
    }

    fn cut(&mut self, _time: Time, _partitions: usize) -> Self::Batch {
        self.commit_completed();
        let next = self.next_batch(None);
        self.serve_client_events();
        match next {
            Ok(records) => {
                self.plans += 1;
                records
            }
            Err(problem) => {
                self.last_from.clear();
                self.note_failure(&problem);
                tracing::warn!(source = %self.name, "Kafka unavailable, this batch is empty and the next one retries: {problem}");
                Vec::new()
            }
        }
    }

    fn records_in(batch: &Self::Batch) -> usize {
        batch.iter().map(Vec::len).sum()
    }

    fn position(&self) -> Option<Vec<u8>> {
        Some(encode(&self.next, &self.last_from))
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        self.next = decode(position)
            .map_err(|e| self.error(format!("malformed offsets in the checkpoint: {e}")))?;
        Ok(())
    }

    fn recut(
        &mut self,
        _time: Time,
        _partitions: usize,
        position: &[u8],
    ) -> Result<Self::Batch, SourceError> {
        let target = decode(position)
            .map_err(|e| self.error(format!("malformed offsets in the batch journal: {e}")))?;
        self.next_batch(Some(&target))
            .map_err(|problem| self.error(problem))
    }

    fn completed(&mut self, position: &[u8]) {
        if let Ok(offsets) = decode(position) {
            if self.last_committed.as_ref() != Some(&offsets) {
                self.to_commit = Some(offsets);
            }
        }
    }

    fn stop(&mut self) {}

    fn finish(&mut self) {
        self.commit_completed();
    }
}
