//! The Kafka sink: each record of a batch partition becomes a message, with headers naming the batch,
//! the partition and the record's place in it, so any reader can deduplicate.
//!
//! Default mode, at least once: an idempotent producer; the partition's messages are sent and every
//! delivery awaited; a failure retries the whole partition (a reader may see some records twice, with
//! identical headers). Transactional mode, exactly once for `read_committed` readers: one
//! transactional producer per sink partition (`transactional.id` = `<pipeline>.<output>.<partition>`)
//! writes the partition's messages and a progress record (`<pipeline>/<output>/<partition>` → batch
//! time, in the progress topic) in one transaction. Before its first write a producer fences its
//! predecessors (`init_transactions`) and reads the progress topic, so a batch replayed after a crash
//! that had already committed is skipped.

use super::{OutputFailed, PartitionId, SinkError, SinkSettings, SinkStats};
use crate::kafka_client::{client_config, describe, ClientLog, KafkaProperties};
use crate::shuffle::Partitions;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The header holding the batch time (ms), on every message.
pub const BATCH_HEADER: &str = "streamc-batch";
/// The header holding the sink partition index.
pub const PARTITION_HEADER: &str = "streamc-partition";
/// The header holding the message's index within its batch partition (in the canonical order of
/// [`encode_partition`]).
pub const SEQUENCE_HEADER: &str = "streamc-seq";

/// What a `save_to_kafka` output writes: `save_to_kafka(brokers, KafkaTopic::new("counts"))`.
#[derive(Clone, Debug)]
pub struct KafkaTopic {
    topic: String,
    output: Option<String>,
    transactional: bool,
    progress_topic: String,
    timeout: Duration,
    properties: KafkaProperties,
}

impl KafkaTopic {
    /// Writes to `topic`: at least once, progress in `streamc_progress`, 30 s per delivery. The
    /// builder methods below change these.
    pub fn new(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            output: None,
            transactional: false,
            progress_topic: "streamc_progress".into(),
            timeout: Duration::from_secs(30),
            properties: KafkaProperties::new(),
        }
    }

    /// A librdkafka property fixed in the pipeline for every client of this sink (its producers and
    /// progress reader); `[kafka.properties]`, `--kafka-property` and `[sinks.NAME.properties]`
    /// override it.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.set(key, value);
        self
    }

    /// Exactly once for `read_committed` readers (see the module docs).
    pub fn transactional(mut self) -> Self {
        self.transactional = true;
        self
    }

    /// Where transactional progress is kept (default `streamc_progress`; a compacted topic is best).
    pub fn progress_topic(mut self, topic: impl Into<String>) -> Self {
        self.progress_topic = topic.into();
        self
    }

    /// How long one delivery or commit may take before the attempt counts as failed (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The name progress is kept under and `--sink NAME=BROKERS` overrides (default: the topic).
    pub fn output_name(mut self, name: impl Into<String>) -> Self {
        self.output = Some(name.into());
        self
    }

    /// The output's name: the `output_name`, else the topic. Transactional progress is kept under
    /// it, and it is the `NAME` of `--sink NAME=BROKERS`.
    pub fn name(&self) -> &str {
        self.output.as_deref().unwrap_or(&self.topic)
    }
}

/// A record field that can be a message key or payload.
pub trait KafkaPart {
    /// Appends this field's bytes to `out`: strings as UTF-8, numbers and `bool` as their `Display`
    /// text, byte vectors as they are.
    fn put(&self, out: &mut Vec<u8>);
}

impl KafkaPart for str {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl KafkaPart for String {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl KafkaPart for [u8] {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl KafkaPart for Vec<u8> {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl<T: KafkaPart + ?Sized> KafkaPart for &T {
    fn put(&self, out: &mut Vec<u8>) {
        (**self).put(out)
    }
}

macro_rules! kafka_part_display {
    ($($t:ty),*) => {$(
        impl KafkaPart for $t {
            fn put(&self, out: &mut Vec<u8>) {
                let mut text = String::new();
                let _ = write!(text, "{self}");
                out.extend_from_slice(text.as_bytes());
            }
        }
    )*};
}
kafka_part_display!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize, f32, f64, bool);

/// A record that is one message: a value (payload only) or a `(key, value)` pair.
pub trait KafkaMessage {
    /// Appends the key (returning whether there is one) and the payload.
    fn encode(&self, key: &mut Vec<u8>, payload: &mut Vec<u8>) -> bool;
}

macro_rules! kafka_message_value {
    ($($t:ty),*) => {$(
        impl KafkaMessage for $t {
            fn encode(&self, _key: &mut Vec<u8>, payload: &mut Vec<u8>) -> bool {
                self.put(payload);
                false
            }
        }
    )*};
}
kafka_message_value!(String, &str, &String, Vec<u8>);

impl<K: KafkaPart, V: KafkaPart> KafkaMessage for (K, V) {
    fn encode(&self, key: &mut Vec<u8>, payload: &mut Vec<u8>) -> bool {
        self.0.put(key);
        self.1.put(payload);
        true
    }
}

/// Collects the first delivery failure of the current attempt; logs through the producer's
/// [`ClientLog`].
struct DeliveryTracker {
    failure: Mutex<Option<String>>,
    log: ClientLog,
}

impl ClientContext for DeliveryTracker {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
            failure.get_or_insert_with(|| e.to_string());
        }
    }
}

type TrackedProducer = ThreadedProducer<DeliveryTracker>;

/// A record encoded as a message: its key, if any, and payload.
pub type Encoded = (Option<Vec<u8>>, Vec<u8>);

/// A partition's records as messages, in a canonical order (sorted by key, then payload), so that
/// the sequence numbers in the headers are the same however a replayed batch's records arrive.
pub fn encode_partition<T: KafkaMessage>(records: Vec<T>) -> Vec<Encoded> {
    let mut encoded: Vec<Encoded> = records
        .into_iter()
        .map(|record| {
            let (mut key, mut payload) = (Vec::new(), Vec::new());
            let keyed = record.encode(&mut key, &mut payload);
            (keyed.then_some(key), payload)
        })
        .collect();
    encoded.sort_unstable();
    encoded
}

/// One sink partition's producer and what it knows has been committed.
struct Lane {
    producer: TrackedProducer,
    committed: Option<u64>,
}

/// An open Kafka sink.
pub struct KafkaSink {
    brokers: String,
    spec: KafkaTopic,
    /// The properties every client of the sink is made with, resolved when it opened.
    properties: Vec<(String, String)>,
    pipeline: String,
    /// Per sink partition; `None` until first used, and again after a failure (the next attempt
    /// starts a fresh producer, which fences the failed one).
    lanes: Mutex<Vec<Option<Arc<Mutex<Lane>>>>>,
    /// An abort ends a delivery in flight (a transaction's commit excepted: librdkafka waits for it).
    stop: crate::stop::StopSignal,
}

/// What a delivery cut short by an abort says.
const STOPPING: &str = "the app is stopping without finishing";

impl KafkaSink {
    /// Checks the topic names and prepares a sink writing to `brokers`; producers are created per
    /// partition at the first write. An invalid topic name is a [`SinkError::Fatal`].
    pub fn open(
        brokers: &str,
        spec: KafkaTopic,
        settings: &SinkSettings,
    ) -> Result<Self, SinkError> {
        let valid = |t: &str| {
            !t.is_empty()
                && t.len() <= 249
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        };
        for topic in [&spec.topic, &spec.progress_topic] {
            if !valid(topic) {
                return Err(SinkError::Fatal(format!(
                    "`{topic}` is not a valid Kafka topic name (letters, digits, `.`, `_`, `-`)"
                )));
            }
        }
        let name = spec.name().to_string();
        let properties = settings
            .kafka_properties(&name, &spec.properties)
            .resolved(&format!("Kafka sink `{name}`"))
            .map_err(SinkError::Fatal)?;
        Ok(Self {
            brokers: brokers.to_string(),
            spec,
            properties,
            pipeline: settings.pipeline.clone(),
            lanes: Mutex::new(Vec::new()),
            stop: settings.stop.clone(),
        })
    }

    fn progress_key(&self, partition: usize) -> String {
        format!("{}/{}/{partition}", self.pipeline, self.spec.name())
    }

    fn lane(&self, partition: usize) -> Result<Arc<Mutex<Lane>>, SinkError> {
        {
            let lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(Some(lane)) = lanes.get(partition) {
                return Ok(lane.clone());
            }
        }
        let lane = Arc::new(Mutex::new(self.new_lane(partition)?));
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        if lanes.len() <= partition {
            lanes.resize(partition + 1, None);
        }
        lanes[partition] = Some(lane.clone());
        Ok(lane)
    }

    fn drop_lane(&self, partition: usize) {
        let mut lanes = self.lanes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = lanes.get_mut(partition) {
            *slot = None;
        }
    }

    fn new_lane(&self, partition: usize) -> Result<Lane, SinkError> {
        let unavailable = |what: &str, e: KafkaError| {
            SinkError::Unavailable(format!("{what} ({}): {e}", self.brokers))
        };
        let timeout = self.spec.timeout.as_millis().to_string();
        let transactional_id = format!("{}.{}.{partition}", self.pipeline, self.spec.name());
        let mut owns = vec![("enable.idempotence", "true")];
        if self.spec.transactional {
            owns.push(("transactional.id", &transactional_id));
        }
        let log = ClientLog::new(format!("sink {} producer {partition}", self.spec.name()));
        let producer: TrackedProducer = client_config(
            &self.brokers,
            &[("message.timeout.ms", &timeout), ("linger.ms", "5")],
            &self.properties,
            &owns,
        )
        .create_with_context(DeliveryTracker {
            failure: Mutex::default(),
            log,
        })
        .map_err(|e| {
            SinkError::Fatal(format!("cannot create a Kafka producer: {}", describe(&e)))
        })?;
        let mut committed = None;
        if self.spec.transactional {
            producer.init_transactions(self.spec.timeout).map_err(|e| {
                self.unless_refused(
                    &producer.context().log,
                    unavailable("cannot start transactions", e),
                )
            })?;
            committed = self
                .read_progress(&self.progress_key(partition))
                .map_err(SinkError::Unavailable)?;
        }
        Ok(Lane {
            producer,
            committed,
        })
    }

    /// The last batch committed under `key`, from the progress topic, read `read_committed` to its end.
    fn read_progress(&self, key: &str) -> Result<Option<u64>, String> {
        let consumer: BaseConsumer<ClientLog> = client_config(
            &self.brokers,
            &[],
            &self.properties,
            &[
                ("group.id", "streamc-progress-reader"),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "false"),
                ("isolation.level", "read_committed"),
            ],
        )
        .create_with_context(ClientLog::new(format!(
            "sink {} progress reader",
            self.spec.name()
        )))
        .map_err(|e| format!("cannot create a Kafka consumer: {}", describe(&e)))?;
        let topic = self.spec.progress_topic.as_str();
        let metadata = consumer
            .fetch_metadata(Some(topic), self.spec.timeout)
            .map_err(|e| format!("cannot read the metadata of `{topic}`: {e}"))?;
        let Some(info) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Ok(None);
        };
        if info.error().is_some() || info.partitions().is_empty() {
            // No progress topic yet: nothing was ever committed.
            return Ok(None);
        }
        let mut assignment = TopicPartitionList::new();
        let mut ends = Vec::new();
        for p in info.partitions() {
            let (_, high) = consumer
                .fetch_watermarks(topic, p.id(), self.spec.timeout)
                .map_err(|e| format!("cannot read the offsets of `{topic}`: {e}"))?;
            if high > 0 {
                assignment
                    .add_partition_offset(topic, p.id(), Offset::Beginning)
                    .map_err(|e| e.to_string())?;
                ends.push((p.id(), high));
            }
        }
        if ends.is_empty() {
            return Ok(None);
        }
        consumer.assign(&assignment).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + self.spec.timeout;
        let mut last: Option<u64> = None;
        loop {
            let positions = consumer.position().map_err(|e| e.to_string())?;
            let done = ends.iter().all(|(p, high)| {
                positions
                    .find_partition(topic, *p)
                    .and_then(|tp| tp.offset().to_raw())
                    .is_some_and(|at| at >= *high)
            });
            if done {
                return Ok(last);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "reading the progress topic `{topic}` took longer than {:?}",
                    self.spec.timeout
                ));
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) if message.key() == Some(key.as_bytes()) => {
                    let batch = message
                        .payload()
                        .and_then(|p| std::str::from_utf8(p).ok())
                        .and_then(|p| p.parse::<u64>().ok());
                    if let Some(batch) = batch {
                        last = last.max(Some(batch));
                    }
                }
                Some(Err(e)) => return Err(format!("cannot read `{topic}`: {e}")),
                _ => {}
            }
        }
    }

    /// `error`, or, when librdkafka reported a TLS or authentication failure, a fatal error saying so:
    /// no retry fixes a refused certificate or password.
    fn unless_refused(&self, log: &ClientLog, error: SinkError) -> SinkError {
        match log.security_failure() {
            Some(failure) => SinkError::Fatal(format!(
                "cannot write to Kafka at {} securely: {failure} (check security.protocol, ssl.* \
                 and sasl.* in the Kafka properties)",
                self.brokers
            )),
            None => error,
        }
    }

    /// Writes one batch partition. Returns whether it was written (`false`: committed before).
    pub fn write(
        &self,
        at: PartitionId,
        records: &[Encoded],
        stats: &SinkStats,
    ) -> Result<bool, SinkError> {
        let lane = self.lane(at.partition)?;
        let mut lane = lane.lock().unwrap_or_else(|p| p.into_inner());
        let batch = at.batch.millis();
        if self.spec.transactional && lane.committed.is_some_and(|c| c >= batch) {
            stats.skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        match self.send(&lane, at, records) {
            Ok(()) => {
                lane.committed = Some(batch);
                stats
                    .records
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                Ok(true)
            }
            Err(e) => {
                if self.spec.transactional {
                    let _ = lane.producer.abort_transaction(self.spec.timeout);
                }
                let e = self.unless_refused(&lane.producer.context().log, e);
                drop(lane);
                self.drop_lane(at.partition);
                Err(e)
            }
        }
    }

    fn send(&self, lane: &Lane, at: PartitionId, records: &[Encoded]) -> Result<(), SinkError> {
        let producer = &lane.producer;
        let unavailable = |what: &str, e: KafkaError| {
            SinkError::Unavailable(format!("{what} `{}`: {e}", self.spec.topic))
        };
        if self.spec.transactional {
            producer
                .begin_transaction()
                .map_err(|e| unavailable("cannot begin a transaction on", e))?;
        }
        let (batch, partition) = (at.batch.millis().to_string(), at.partition.to_string());
        *producer
            .context()
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        for (seq, (key, payload)) in records.iter().enumerate() {
            let seq = seq.to_string();
            let headers = OwnedHeaders::new_with_capacity(3)
                .insert(Header {
                    key: BATCH_HEADER,
                    value: Some(&batch),
                })
                .insert(Header {
                    key: PARTITION_HEADER,
                    value: Some(&partition),
                })
                .insert(Header {
                    key: SEQUENCE_HEADER,
                    value: Some(&seq),
                });
            let mut message = BaseRecord::to(&self.spec.topic)
                .payload(payload)
                .headers(headers);
            if let Some(key) = key {
                message = message.key(key);
            }
            self.enqueue(producer, message)?;
        }
        if self.spec.transactional {
            let progress = self.progress_key(at.partition);
            let marker = BaseRecord::to(&self.spec.progress_topic)
                .key(&progress)
                .payload(&batch);
            self.enqueue(producer, marker)?;
            super::failpoint("kafka.before_commit");
            producer
                .commit_transaction(self.spec.timeout)
                .map_err(|e| unavailable("cannot commit the batch to", e))?;
            super::failpoint("kafka.after_commit");
            return Ok(());
        }
        // In short slices, so that an abort does not wait out the delivery timeout.
        let deadline = Instant::now() + self.spec.timeout;
        loop {
            match producer.flush(Duration::from_millis(100)) {
                Ok(()) => break,
                Err(_) if self.stop.is_aborted() => {
                    return Err(SinkError::Unavailable(STOPPING.into()))
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(unavailable("cannot deliver to", e))
                }
                Err(_) => {}
            }
        }
        let failure = producer
            .context()
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match failure {
            Some(e) => Err(SinkError::Unavailable(format!(
                "cannot deliver to `{}`: {e}",
                self.spec.topic
            ))),
            None => Ok(()),
        }
    }

    /// Queues a message, waiting while the producer's queue is full.
    fn enqueue<K, P>(
        &self,
        producer: &TrackedProducer,
        mut message: BaseRecord<'_, K, P>,
    ) -> Result<(), SinkError>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        loop {
            match producer.send(message) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The producer's thread is delivering; wait for room.
                    message = back;
                    if self.stop.is_aborted() {
                        return Err(SinkError::Unavailable(STOPPING.into()));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => {
                    return Err(SinkError::Unavailable(format!(
                        "cannot queue a message for `{}`: {e}",
                        self.spec.topic
                    )))
                }
            }
        }
    }
}

impl super::OpenSink for KafkaSink {}

/// `save_to_kafka(brokers, topic)`: the batch's partitions in parallel, retried under the app's policy.
/// `save_to_kafka(brokers, topic)`: the topic at a bootstrap broker list.
pub struct KafkaDestination {
    brokers: String,
    topic: KafkaTopic,
}

impl KafkaDestination {
    /// `topic` at `brokers` (which `--sink TOPIC=BROKERS` can replace).
    pub fn new(brokers: impl AsRef<str>, topic: KafkaTopic) -> Self {
        Self {
            brokers: brokers.as_ref().to_string(),
            topic,
        }
    }
}

/// Each record a message with batch headers, at least once or, with
/// `KafkaTopic::transactional()`, exactly once for `read_committed` readers.
impl<T: KafkaMessage + Send + Sync> super::BatchDestination<T> for KafkaDestination {
    fn write_batch(self, env: &super::SinkEnv<'_>, parts: Partitions<T>) -> super::OutputResult {
        write_batch(env, &self.brokers, self.topic, parts)
    }
}

fn write_batch<T: KafkaMessage + Send + Sync>(
    env: &super::SinkEnv<'_>,
    brokers: &str,
    spec: KafkaTopic,
    parts: Partitions<T>,
) -> Result<(), OutputFailed> {
    let name = spec.name().to_string();
    let settings = env.settings;
    let brokers = settings
        .url(&name, brokers)
        .map_err(|e| OutputFailed::new(&name, e))?;
    let sink = env
        .sinks
        .get_or_open(&name, || KafkaSink::open(&brokers, spec, settings))
        .map_err(|e| OutputFailed::new(&name, e))?;
    super::write_partitions(
        env,
        &name,
        parts,
        |_, records| Ok(encode_partition(records)),
        |at, records, stats| sink.write(at, records, stats),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_encode_as_key_and_payload() {
        let (mut k, mut p) = (Vec::new(), Vec::new());
        assert!(("hello".to_string(), 3u64).encode(&mut k, &mut p));
        assert_eq!((k.as_slice(), p.as_slice()), (&b"hello"[..], &b"3"[..]));
        let (mut k, mut p) = (Vec::new(), Vec::new());
        assert!(!"just a value".encode(&mut k, &mut p));
        assert_eq!((k.len(), p.as_slice()), (0, &b"just a value"[..]));
    }

    #[test]
    fn a_partition_is_numbered_in_one_order_whatever_order_it_arrives_in() {
        let first = encode_partition(vec![("b".to_string(), 2u64), ("a".to_string(), 1)]);
        let replay = encode_partition(vec![("a".to_string(), 1u64), ("b".to_string(), 2)]);
        assert_eq!(first, replay);
        assert_eq!(first[0], (Some(b"a".to_vec()), b"1".to_vec()));
    }

    #[test]
    fn topic_names_are_checked() {
        let settings = SinkSettings::default();
        assert!(KafkaSink::open("127.0.0.1:9", KafkaTopic::new("bad topic"), &settings).is_err());
        assert!(
            KafkaSink::open("127.0.0.1:9", KafkaTopic::new("good.topic-1_x"), &settings).is_ok()
        );
    }
}
