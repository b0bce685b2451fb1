//! `kafka_receiver_stream`: Spark's receiver approach. A consumer-group receiver polls the topics on its
//! own thread and hands messages over in blocks. With the write-ahead log (`--wal`) it is a reliable
//! receiver: a block is written and fsynced to the log before it can be used, and only then are its
//! offsets committed to Kafka, so a crash loses nothing — what was received comes back from the log, what
//! was not is read again from Kafka (at-least-once; exact with a sink idempotent on topic, partition and
//! offset). Without the log, offsets are committed as blocks arrive and data received but not processed
//! is lost in a crash, as with Spark's default receiver.

use super::KafkaOptions;
use super::KafkaRecord;
use crate::kafka_client::{client_config, describe, ClientLog};
use crate::rate::{Pacer, RateControl};
use crate::shuffle::split_even;
use crate::source::blocks::{BlockSink, Loggable, ReceivedBlocks, StoreRetry, Unstored};
use crate::source::{ReceiverCounters, ReceiverEnv, Source, SourceError, SourceStats};
use crate::time::Time;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The receiver's consumer logs through `tracing`, naming the source.
type Client = BaseConsumer<ClientLog>;

/// A consumer-group receiver.
pub struct KafkaReceiverSource {
    name: String,
    brokers: String,
    topics: Vec<String>,
    options: KafkaOptions,
    blocks: ReceivedBlocks<Vec<KafkaRecord>>,
    counters: Arc<ReceiverCounters>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    lag_thread: Option<JoinHandle<()>>,
}

impl KafkaReceiverSource {
    /// A receiver named `name` that joins the consumer group of `options` on `brokers` and
    /// subscribes to `topics`, its client made with the options' properties; a partition without
    /// committed offsets starts at the earliest. Nothing connects before the source starts.
    pub fn new(name: &str, brokers: String, topics: Vec<String>, options: KafkaOptions) -> Self {
        Self {
            name: name.to_string(),
            brokers,
            topics,
            options,
            blocks: ReceivedBlocks::new(name),
            counters: Arc::default(),
            stop: Arc::default(),
            thread: None,
            lag_thread: None,
        }
    }

    fn error(&self, message: String) -> SourceError {
        SourceError {
            source_name: self.name.clone(),
            message,
        }
    }
}

/// In the write-ahead log a block is its records, postcard-encoded.
impl Loggable for Vec<KafkaRecord> {
    fn encode(&self) -> Result<Vec<u8>, String> {
        postcard::to_stdvec(self).map_err(|e| format!("a Kafka block cannot be encoded: {e}"))
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        postcard::from_bytes(bytes).map_err(|e| e.to_string())
    }
}

/// What the receiving thread owns.
struct Receiving {
    name: String,
    sink: BlockSink<Vec<KafkaRecord>>,
    counters: Arc<ReceiverCounters>,
    stop: Arc<AtomicBool>,
    pacer: Pacer,
    /// The app's: to stop it when storing keeps failing, and to hear that the run was aborted.
    app_stop: crate::stop::StopHandle,
    store_retry: StoreRetry,
}

impl Receiving {
    /// Hands `block` over (durably first, under the write-ahead log). While that fails the receiver
    /// pauses — it polls nothing more and commits nothing, so Kafka keeps the rest — and tries the same
    /// block again until it succeeds, the failure outlasts `--receiver-failure-timeout` (the app
    /// stops; the block's offsets were never committed, so a restart reads it again), or the run is
    /// aborted. False if the block could not be handed over.
    fn store(&mut self, block: Vec<KafkaRecord>) -> bool {
        let signal = self.app_stop.signal();
        match self
            .store_retry
            .push(&self.sink, block, &self.name, &self.counters, signal)
        {
            Ok(()) => true,
            Err(Unstored::GaveUp(message)) => {
                self.app_stop.fail(format!(
                    "{message}; its offsets are not committed, so a restart reads it from Kafka again"
                ));
                false
            }
            Err(Unstored::Aborted) => false,
        }
    }
}

/// The receiving loop: poll, gather a block (at most 50 ms, 10,000 messages, or what the rate allows),
/// make it durable, hand it over, then commit its offsets.
fn receive(consumer: Arc<Client>, mut r: Receiving) {
    while !r.stop.load(Ordering::Relaxed) {
        let mut block = Vec::new();
        let started = Instant::now();
        let limit = r.pacer.block_limit().unwrap_or(10_000).min(10_000);
        while block.len() < limit && started.elapsed() < Duration::from_millis(50) {
            match consumer.poll(Duration::from_millis(20)) {
                Some(Ok(message)) => block.push(KafkaRecord {
                    topic: message.topic().to_string(),
                    partition: message.partition(),
                    offset: message.offset(),
                    timestamp: message.timestamp().to_millis(),
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().map(<[u8]>::to_vec),
                }),
                Some(Err(e)) => {
                    let text = format!("Kafka consumer error: {e}");
                    tracing::warn!(source = %r.name, "{text}");
                    ReceiverCounters::add(&r.counters.connection_errors, 1);
                    r.counters.set_error(text);
                    break;
                }
                None => {}
            }
        }
        if block.is_empty() {
            continue;
        }
        let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for record in &block {
            let next = offsets
                .entry((record.topic.clone(), record.partition))
                .or_insert(0);
            *next = (*next).max(record.offset + 1);
        }
        let records = block.len() as u64;
        // With the write-ahead log the block is durable before it is handed over, and its offsets are
        // committed only after that.
        if !r.store(block) {
            // Not durable, so not acknowledged: Kafka keeps the messages for the restart.
            return;
        }
        ReceiverCounters::add(&r.counters.records, records);
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &offsets {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
            tracing::warn!(source = %r.name, "cannot commit offsets to Kafka (messages may be received twice): {e}");
        }
        let wait = r.pacer.delay_after(records);
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// How often the receiver measures its lag (a watermark request per assigned partition).
const LAG_EVERY: Duration = Duration::from_secs(2);

/// Measures the lag every [`LAG_EVERY`] on its own thread, so that watermark requests to a slow broker
/// never hold up receiving.
fn watch_lag(consumer: Arc<Client>, counters: Arc<ReceiverCounters>, stop: Arc<AtomicBool>) {
    let mut measured = Instant::now();
    // Connected once the group gave the receiver partitions; a TLS or authentication failure
    // librdkafka reports counts as a connection error until the next assignment.
    let (mut connected, mut failure) = (false, None);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let latest = consumer.context().security_failure();
        if latest.is_some() && latest != failure {
            failure.clone_from(&latest);
            connected = false;
            ReceiverCounters::add(&counters.connection_errors, 1);
            counters.set_error(latest.unwrap_or_default());
        }
        if !connected && consumer.assignment().is_ok_and(|a| a.count() > 0) {
            connected = true;
            ReceiverCounters::add(&counters.connections, 1);
        }
        if measured.elapsed() >= LAG_EVERY {
            measure_lag(&consumer, &counters);
            measured = Instant::now();
        }
    }
}

/// Messages between the consumer's position and each assigned partition's high watermark.
fn measure_lag(consumer: &Client, counters: &ReceiverCounters) {
    let Ok(positions) = consumer.position() else {
        return;
    };
    let mut lag = Vec::new();
    for tp in positions.elements() {
        let Some(position) = tp.offset().to_raw().filter(|p| *p >= 0) else {
            continue;
        };
        if let Ok((_, high)) =
            consumer.fetch_watermarks(tp.topic(), tp.partition(), Duration::from_secs(2))
        {
            lag.push((
                tp.topic().to_string(),
                tp.partition(),
                (high - position).max(0),
            ));
        }
    }
    if let Ok(mut kept) = counters.lag.lock() {
        *kept = lag;
    }
}

impl Source for KafkaReceiverSource {
    type Batch = Vec<Vec<KafkaRecord>>;

    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self, env: &ReceiverEnv) -> Result<(), SourceError> {
        let sink = self.blocks.start(env)?;
        let properties = self
            .options
            .properties
            .resolved(&format!("Kafka source `{}`", self.name))
            .map_err(|e| self.error(e))?;
        let consumer: Client = client_config(
            &self.brokers,
            &[("session.timeout.ms", "6000")],
            &properties,
            &[
                ("group.id", &self.options.group),
                ("enable.auto.commit", "false"),
                ("auto.offset.reset", "earliest"),
            ],
        )
        .create_with_context(ClientLog::new(format!(
            "source {} group consumer",
            self.name
        )))
        .map_err(|e| {
            self.error(format!(
                "cannot create a Kafka consumer for {}: {}",
                self.brokers,
                describe(&e)
            ))
        })?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(|e| {
            self.error(format!(
                "cannot subscribe to {}: {e}",
                self.topics.join(", ")
            ))
        })?;
        let control = Arc::new(RateControl::new(env.max_rate));
        if let Some(initial) = env.initial_rate {
            control.set(initial);
        }
        env.rates.register(&self.name, control.clone());
        let receiving = Receiving {
            name: self.name.clone(),
            sink,
            counters: self.counters.clone(),
            stop: self.stop.clone(),
            pacer: Pacer::new(control),
            app_stop: env.stop.clone(),
            store_retry: StoreRetry::new(env.failure_timeout),
        };
        let consumer = Arc::new(consumer);
        let watched = (consumer.clone(), self.counters.clone(), self.stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("streamc-kafka-{}", self.name))
            .spawn(move || receive(consumer, receiving))
            .map_err(|e| self.error(format!("cannot start the receiver thread: {e}")))?;
        self.thread = Some(thread);
        let lag = std::thread::Builder::new()
            .name(format!("streamc-kafka-lag-{}", self.name))
            .spawn(move || watch_lag(watched.0, watched.1, watched.2))
            .map_err(|e| self.error(format!("cannot start the lag thread: {e}")))?;
        self.lag_thread = Some(lag);
        Ok(())
    }

    fn cut(&mut self, _time: Time, partitions: usize) -> Self::Batch {
        let blocks = self.blocks.take(None).unwrap_or_default();
        split_even(blocks.into_iter().flatten().collect(), partitions)
    }

    fn records_in(batch: &Self::Batch) -> usize {
        batch.iter().map(Vec::len).sum()
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in [self.thread.take(), self.lag_thread.take()]
            .into_iter()
            .flatten()
        {
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
        let blocks = self.blocks.take(Some(position))?;
        Ok(split_even(
            blocks.into_iter().flatten().collect(),
            partitions,
        ))
    }
}

impl Drop for KafkaReceiverSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
