//! `kafka_receiver_stream`: Spark's receiver approach. A consumer-group receiver polls the topics on its
//! own thread and hands messages over in blocks. With the write-ahead log (`--wal`) it is a reliable
//! receiver: a block is written and fsynced to the log before it can be used, and only then are its
//! offsets committed to Kafka, so a crash loses nothing — what was received comes back from the log, what
//! was not is read again from Kafka (at-least-once; exact with a sink idempotent on topic, partition and
//! offset). Without the log, offsets are committed as blocks arrive and data received but not processed
//! is lost in a crash, as with Spark's default receiver.

use super::kafka::KafkaRecord;
use super::{ReceiverCounters, ReceiverEnv, Source, SourceError, SourceStats};
use crate::exec::split_even;
use crate::rate::{Pacer, RateControl};
use crate::time::Time;
use crate::wal::{WalPosition, WriteAheadLog};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

type Received = Arc<Mutex<Vec<(Vec<KafkaRecord>, Option<WalPosition>)>>>;

/// A consumer-group receiver.
pub struct KafkaReceiverSource {
    name: String,
    brokers: String,
    topics: Vec<String>,
    group: String,
    received: Received,
    counters: Arc<ReceiverCounters>,
    wal: Option<Arc<Mutex<WriteAheadLog>>>,
    cut_position: WalPosition,
    resume_from: Option<WalPosition>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    checkpointed: Option<super::Checkpointed>,
}

impl KafkaReceiverSource {
    pub fn new(name: &str, brokers: String, topics: Vec<String>, group: String) -> Self {
        Self {
            name: name.to_string(),
            brokers,
            topics,
            group,
            received: Arc::default(),
            counters: Arc::default(),
            wal: None,
            cut_position: WalPosition::default(),
            resume_from: None,
            stop: Arc::default(),
            thread: None,
            checkpointed: None,
        }
    }

    fn error(&self, message: String) -> SourceError {
        SourceError {
            source_name: self.name.clone(),
            message,
        }
    }

    fn open_wal(&mut self, dir: &std::path::Path) -> Result<(), SourceError> {
        let wal = WriteAheadLog::open(&dir.join(&self.name), 64 << 20).map_err(|e| {
            self.error(format!(
                "cannot open the write-ahead log in {}: {e}",
                dir.display()
            ))
        })?;
        let from = self.resume_from.unwrap_or_default();
        let records = wal
            .read_after(from)
            .map_err(|e| self.error(format!("cannot read the write-ahead log: {e}")))?;
        let mut received = self.received.lock().unwrap_or_else(|p| p.into_inner());
        for (position, payload) in records {
            match postcard::from_bytes::<Vec<KafkaRecord>>(&payload) {
                Ok(block) => received.push((block, Some(position))),
                Err(e) => {
                    tracing::warn!(source = %self.name, "skipping an unreadable write-ahead log record: {e}")
                }
            }
        }
        drop(received);
        self.cut_position = from;
        self.wal = Some(Arc::new(Mutex::new(wal)));
        Ok(())
    }

    fn take(&mut self, up_to: Option<WalPosition>, partitions: usize) -> Vec<Vec<KafkaRecord>> {
        let mut received = self.received.lock().unwrap_or_else(|p| p.into_inner());
        let keep = match up_to {
            None => received.len(),
            Some(limit) => received
                .iter()
                .position(|(_, p)| p.is_some_and(|p| p > limit))
                .unwrap_or(received.len()),
        };
        let taken: Vec<_> = received.drain(..keep).collect();
        drop(received);
        if let Some(last) = taken.iter().filter_map(|(_, p)| *p).max() {
            self.cut_position = last;
        }
        self.forget_checkpointed_log();
        split_even(
            taken.into_iter().flat_map(|(block, _)| block).collect(),
            partitions,
        )
    }
}

impl KafkaReceiverSource {
    /// Deletes log segments a checkpoint has made unnecessary.
    fn forget_checkpointed_log(&self) {
        let (Some(wal), Some(checkpointed)) = (&self.wal, &self.checkpointed) else {
            return;
        };
        let Some(position) = checkpointed
            .position_of(&self.name)
            .and_then(|p| postcard::from_bytes::<WalPosition>(&p).ok())
        else {
            return;
        };
        if let Err(e) = wal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .delete_before(position)
        {
            tracing::warn!(source = %self.name, "cannot delete old write-ahead log segments: {e}");
        }
    }
}

/// What the receiving thread owns.
struct Receiving {
    name: String,
    received: Received,
    wal: Option<Arc<Mutex<WriteAheadLog>>>,
    counters: Arc<ReceiverCounters>,
    stop: Arc<AtomicBool>,
    pacer: Pacer,
}

/// The receiving loop: poll, gather a block (at most 50 ms, 10,000 messages, or what the rate allows),
/// make it durable, hand it over, then commit its offsets.
fn receive(consumer: BaseConsumer, mut r: Receiving) {
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
        let position = match &r.wal {
            Some(wal) => match log_block(wal, &block) {
                Ok(position) => Some(position),
                Err(e) => {
                    // Not durable, so not acknowledged: stop; Kafka keeps the messages for the restart.
                    tracing::error!(source = %r.name, "cannot write the write-ahead log, the receiver stops: {e}");
                    r.counters.set_error(e);
                    return;
                }
            },
            None => None,
        };
        let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for record in &block {
            let next = offsets
                .entry((record.topic.clone(), record.partition))
                .or_insert(0);
            *next = (*next).max(record.offset + 1);
        }
        let records = block.len() as u64;
        ReceiverCounters::add(&r.counters.records, records);
        r.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((block, position));
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

/// Appends a block to the log and makes it durable.
fn log_block(wal: &Mutex<WriteAheadLog>, block: &[KafkaRecord]) -> Result<WalPosition, String> {
    let payload = postcard::to_stdvec(block).map_err(|e| e.to_string())?;
    let mut wal = wal.lock().unwrap_or_else(|p| p.into_inner());
    let position = wal.append(&payload).map_err(|e| e.to_string())?;
    wal.sync().map_err(|e| e.to_string())?;
    Ok(position)
}

impl Source for KafkaReceiverSource {
    type Batch = Vec<Vec<KafkaRecord>>;

    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self, env: &ReceiverEnv) -> Result<(), SourceError> {
        if let Some(dir) = &env.wal_dir {
            self.open_wal(dir)?;
        }
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .create()
            .map_err(|e| {
                self.error(format!(
                    "cannot create a Kafka consumer for {}: {e}",
                    self.brokers
                ))
            })?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(|e| {
            self.error(format!(
                "cannot subscribe to {}: {e}",
                self.topics.join(", ")
            ))
        })?;
        self.checkpointed = Some(env.checkpointed.clone());
        let control = Arc::new(RateControl::new(env.max_rate));
        if let Some(initial) = env.initial_rate {
            control.set(initial);
        }
        env.rates.register(&self.name, control.clone());
        let receiving = Receiving {
            name: self.name.clone(),
            received: self.received.clone(),
            wal: self.wal.clone(),
            counters: self.counters.clone(),
            stop: self.stop.clone(),
            pacer: Pacer::new(control),
        };
        let thread = std::thread::Builder::new()
            .name(format!("streamc-kafka-{}", self.name))
            .spawn(move || receive(consumer, receiving))
            .map_err(|e| self.error(format!("cannot start the receiver thread: {e}")))?;
        self.thread = Some(thread);
        Ok(())
    }

    fn cut(&mut self, _time: Time, partitions: usize) -> Self::Batch {
        self.take(None, partitions)
    }

    fn records_in(batch: &Self::Batch) -> usize {
        batch.iter().map(Vec::len).sum()
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    fn stats(&self) -> Option<SourceStats> {
        Some(self.counters.snapshot())
    }

    fn position(&self) -> Option<Vec<u8>> {
        self.wal.as_ref()?;
        postcard::to_stdvec(&self.cut_position).ok()
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        let position = postcard::from_bytes(position)
            .map_err(|e| self.error(format!("malformed log position: {e}")))?;
        self.resume_from = Some(position);
        Ok(())
    }

    fn recut(
        &mut self,
        _time: Time,
        partitions: usize,
        position: &[u8],
    ) -> Result<Self::Batch, SourceError> {
        let target = postcard::from_bytes(position)
            .map_err(|e| self.error(format!("malformed log position: {e}")))?;
        Ok(self.take(Some(target), partitions))
    }
}

impl Drop for KafkaReceiverSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
