//! `kafka_receiver_stream`: Spark's receiver approach, a [`Receiver`] like any app's own. A
//! consumer-group member polls the topics on its own thread and stores messages in blocks. With the
//! write-ahead log (`--wal`) it is a reliable receiver: a block is written and fsynced to the log
//! before it can be used, and only then are its offsets committed to Kafka, so a crash loses nothing —
//! what was received comes back from the log, what was not is read again from Kafka (at-least-once;
//! exact with a sink idempotent on topic, partition and offset). Without the log, offsets are
//! committed as blocks are stored and data received but not processed is lost in a crash, as with
//! Spark's default receiver. Stored blocks count against the receiver's memory budget: when it is used
//! up, the receiver stops polling and the messages wait in Kafka.

use super::{KafkaOptions, KafkaRecord, StartAt};
use crate::kafka_client::{client_config, describe, ClientLog};
use crate::source::custom::{Receiver, ReceiverContext, ReceiverSource};
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

/// The source of `kafka_receiver_stream`.
pub type KafkaReceiverSource = ReceiverSource<KafkaReceiver>;

/// A consumer-group receiver.
pub struct KafkaReceiver {
    brokers: String,
    topics: Vec<String>,
    options: KafkaOptions,
    consumer: Option<Arc<Client>>,
    running: Option<(Arc<AtomicBool>, Vec<JoinHandle<()>>)>,
}

impl KafkaReceiver {
    /// A receiver that joins the consumer group of `options` on `brokers` and subscribes to
    /// `topics`, its client made with the options' properties. A partition without committed
    /// offsets starts where `options.start` says (`committed` and `earliest`: the earliest; `latest`:
    /// the end). Nothing connects before the source starts.
    pub fn new(brokers: String, topics: Vec<String>, options: KafkaOptions) -> Self {
        Self {
            brokers,
            topics,
            options,
            consumer: None,
            running: None,
        }
    }

    /// The consumer, made and subscribed on first use.
    fn consumer(&mut self, source: &str) -> Result<Arc<Client>, String> {
        if let Some(consumer) = &self.consumer {
            return Ok(consumer.clone());
        }
        let properties = self
            .options
            .properties
            .resolved(&format!("Kafka source `{source}`"))?;
        let reset = match self.options.start {
            StartAt::Latest => "latest",
            StartAt::Earliest | StartAt::Committed => "earliest",
        };
        let consumer: Client = client_config(
            &self.brokers,
            &[("session.timeout.ms", "6000")],
            &properties,
            &[
                ("group.id", &self.options.group),
                ("enable.auto.commit", "false"),
                ("auto.offset.reset", reset),
            ],
        )
        .create_with_context(ClientLog::new(format!("source {source} group consumer")))
        .map_err(|e| {
            format!(
                "cannot create a Kafka consumer for {}: {}",
                self.brokers,
                describe(&e)
            )
        })?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| format!("cannot subscribe to {}: {e}", self.topics.join(", ")))?;
        let consumer = Arc::new(consumer);
        self.consumer = Some(consumer.clone());
        Ok(consumer)
    }
}

impl Receiver for KafkaReceiver {
    type Record = KafkaRecord;

    fn prepare(&mut self, source: &str) -> Result<(), String> {
        self.consumer(source).map(drop)
    }

    fn on_start(&mut self, ctx: &ReceiverContext<KafkaRecord>) -> Result<(), String> {
        let consumer = self.consumer(ctx.name())?;
        let stop = Arc::new(AtomicBool::new(false));
        let receiving = {
            let (consumer, ctx, stop) = (consumer.clone(), ctx.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("streamc-kafka-{}", ctx.name()))
                .spawn(move || receive(&consumer, &ctx, &stop))
                .map_err(|e| format!("cannot start the receiver thread: {e}"))?
        };
        let watching = {
            let (ctx, stop) = (ctx.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("streamc-kafka-lag-{}", ctx.name()))
                .spawn(move || watch_lag(&consumer, &ctx, &stop))
                .map_err(|e| format!("cannot start the lag thread: {e}"))?
        };
        self.running = Some((stop, vec![receiving, watching]));
        Ok(())
    }

    fn on_stop(&mut self) {
        if let Some((stop, threads)) = self.running.take() {
            stop.store(true, Ordering::Relaxed);
            for thread in threads {
                let _ = thread.join();
            }
        }
    }
}

/// The most messages in one block, and the most bytes of keys and values, so that one block is
/// never much of the memory budget.
const BLOCK_MESSAGES: usize = 10_000;
const BLOCK_BYTES: usize = 1 << 20;
/// How long a block gathers messages at most.
const BLOCK_WAIT: Duration = Duration::from_millis(50);

/// The receiving loop: poll, gather a block (at most 50 ms, 10,000 messages, 1 MiB, or what the rate
/// allows),
/// store it (durably first, under the write-ahead log), then commit its offsets. A block that could
/// not be stored is not committed: Kafka keeps its messages for the restart.
fn receive(consumer: &Client, ctx: &ReceiverContext<KafkaRecord>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) && !ctx.is_stopped() {
        let (mut block, mut bytes) = (Vec::new(), 0);
        let started = Instant::now();
        let limit = ctx
            .block_limit()
            .unwrap_or(BLOCK_MESSAGES)
            .min(BLOCK_MESSAGES);
        while block.len() < limit && bytes < BLOCK_BYTES && started.elapsed() < BLOCK_WAIT {
            match consumer.poll(Duration::from_millis(20)) {
                Some(Ok(message)) => {
                    let (key, value) = (message.key(), message.payload());
                    bytes += key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len);
                    block.push(KafkaRecord {
                        topic: message.topic().to_string(),
                        partition: message.partition(),
                        offset: message.offset(),
                        timestamp: message.timestamp().to_millis(),
                        key: key.map(<[u8]>::to_vec),
                        value: value.map(<[u8]>::to_vec),
                    })
                }
                Some(Err(e)) => {
                    ctx.report_error(format!("Kafka consumer error: {e}"));
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
        if ctx.store_block(block).is_err() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &offsets {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
            tracing::warn!(source = %ctx.name(), "cannot commit offsets to Kafka (messages may be received twice): {e}");
        }
    }
}

/// How often the receiver measures its lag (a watermark request per assigned partition).
const LAG_EVERY: Duration = Duration::from_secs(2);

/// Measures the lag every [`LAG_EVERY`] on its own thread, so that watermark requests to a slow broker
/// never hold up receiving.
fn watch_lag(consumer: &Client, ctx: &ReceiverContext<KafkaRecord>, stop: &AtomicBool) {
    let mut measured = Instant::now();
    // Connected once the group gave the receiver partitions; a TLS or authentication failure
    // librdkafka reports counts as a connection error until the next assignment.
    let (mut connected, mut failure) = (false, None);
    while !stop.load(Ordering::Relaxed) && !ctx.is_stopped() {
        std::thread::sleep(Duration::from_millis(100));
        let latest = consumer.context().security_failure();
        if latest.is_some() && latest != failure {
            failure.clone_from(&latest);
            connected = false;
            ctx.report_error(latest.unwrap_or_default());
        }
        if !connected && consumer.assignment().is_ok_and(|a| a.count() > 0) {
            connected = true;
            ctx.report_connected();
        }
        if measured.elapsed() >= LAG_EVERY {
            if let Some(lag) = measure_lag(consumer) {
                ctx.set_lag(lag);
            }
            measured = Instant::now();
        }
    }
}

/// Messages between the consumer's position and each assigned partition's high watermark; `None`
/// when the position is unknown.
fn measure_lag(consumer: &Client) -> Option<Vec<(String, i32, i64)>> {
    let positions = consumer.position().ok()?;
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
    Some(lag)
}
