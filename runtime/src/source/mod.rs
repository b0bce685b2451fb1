//! Sources: where a pipeline's records come from.
//!
//! A [`Source`] hands the engine one batch of data per tick ([`Source::cut`]). Sources with a receiver
//! (sockets) start it on the engine's receiver runtime, which is separate from the worker pool: receiving
//! never takes a worker away, so `workers: 1` works (unlike Spark's `local[1]`).

mod blocks;
mod custom;
mod files;
#[cfg(feature = "kafka")]
mod kafka;
mod queue;
mod socket;
mod socket_records;
mod text;

pub use custom::{
    Receiver, ReceiverContext, ReceiverOptions, ReceiverSource, RecordBlock, RecordPartition,
    StoreError,
};
pub use files::{glob_matches, FileOptions, TextFileSource};
#[cfg(feature = "kafka")]
pub use kafka::{
    offset_ranges, KafkaDirectSource, KafkaOptions, KafkaRecord, KafkaSettings, OffsetRange,
    StartAt,
};
#[cfg(feature = "kafka")]
pub use kafka::{KafkaReceiver, KafkaReceiverSource};
pub use queue::QueueSource;
pub use socket::{SocketOptions, SocketTextSource};
pub use socket_records::{Converter, SocketRecords};
pub use text::{MemoryBudget, Pressure, TextBlock, TextLines, TextPartition};

use crate::time::Time;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What receivers need from the engine: the runtime they run on.
#[derive(Clone, Debug)]
pub struct ReceiverEnv {
    pub(crate) handle: tokio::runtime::Handle,
    /// Where receivers register their rate controls, so backpressure can reach them.
    pub(crate) rates: crate::rate::RateControls,
    /// `--receiver-max-rate`: records per second per receiver.
    pub(crate) max_rate: Option<u64>,
    /// The rate a receiver starts at under backpressure, before the first estimate.
    pub(crate) initial_rate: Option<u64>,
    /// Where receivers keep write-ahead logs, when they are on: a directory or an object store
    /// prefix.
    pub(crate) wal_location: Option<crate::store::Location>,
    /// How an object store holding the logs is reached.
    pub(crate) storage: crate::store::StorageOptions,
    /// How often a log in a local directory starts a new segment file.
    pub(crate) wal_roll_interval: std::time::Duration,
    /// Source positions of the last checkpoint written, so logs can drop what it covers.
    pub(crate) checkpointed: Checkpointed,
    /// Stops the app when a receiver cannot go on; its signal says when waits must end.
    pub(crate) stop: crate::stop::StopHandle,
    /// How long a receiver may fail to store what it received before it stops the app.
    pub(crate) failure_timeout: std::time::Duration,
}

/// The source positions of the newest checkpoint, shared with the sources.
#[derive(Clone, Debug, Default)]
pub struct Checkpointed(Arc<Mutex<Positions>>);

pub use crate::checkpoint::Positions;

impl Checkpointed {
    pub(crate) fn set(&self, positions: Vec<(String, Vec<u8>)>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = positions;
    }

    pub(crate) fn get(&self) -> Positions {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn position_of(&self, source: &str) -> Option<Vec<u8>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(n, _)| n == source)
            .map(|(_, p)| p.clone())
    }
}

/// A producer of batches.
pub trait Source: Send + 'static {
    /// One batch of this source's data, already split into partitions. `Default` is the empty batch.
    type Batch: Send + Default;

    /// The name the pipeline gave the source (its `let` binding).
    fn name(&self) -> &str;

    /// Nothing was restored (no checkpoint, no journaled batch): the app runs for the first time.
    /// Called before [`Source::start`].
    fn fresh_start(&mut self) {}

    /// Starts receivers, if the source has any.
    fn start(&mut self, _env: &ReceiverEnv) -> Result<(), SourceError> {
        Ok(())
    }

    /// Takes everything that arrived up to `time` as that batch, split into `partitions` partitions.
    fn cut(&mut self, time: Time, partitions: usize) -> Self::Batch;

    /// Records in a batch this source cut (for reports and metrics).
    fn records_in(batch: &Self::Batch) -> usize;

    /// Stops receiving; blocks until every receiver has handed over what it already received, so that the
    /// next [`Source::cut`] includes it.
    fn stop(&mut self) {}

    /// Whether the source can never produce data again (a drained queue); sources with receivers never are.
    fn is_finished(&self) -> bool {
        false
    }

    /// Counters of this source's receiver, if it has one.
    fn stats(&self) -> Option<SourceStats> {
        None
    }

    /// Where a replayable source stands after its last cut, for checkpoints; `None` if it cannot replay.
    fn position(&self) -> Option<Vec<u8>> {
        None
    }

    /// Cuts again, after a restart, a batch that was cut before the crash but not completed: exactly the
    /// data between the current position and `position` (the position journaled after that cut).
    fn recut(
        &mut self,
        time: Time,
        partitions: usize,
        _position: &[u8],
    ) -> Result<Self::Batch, SourceError> {
        Ok(self.cut(time, partitions))
    }

    /// The batches up to the one cut at `position` are complete (for sources that acknowledge upstream,
    /// such as Kafka offset commits).
    fn completed(&mut self, _position: &[u8]) {}

    /// The run is over and every batch completed: last acknowledgements.
    fn finish(&mut self) {}

    /// Moves a replayable source to a position from a checkpoint.
    fn seek(&mut self, _position: &[u8]) -> Result<(), SourceError> {
        Err(SourceError {
            source_name: self.name().to_string(),
            message: "this source cannot replay from a checkpoint position".into(),
        })
    }
}

/// One batch cut from all sources.
pub struct Cut<B> {
    /// One batch per source, as a tuple in the source set's order.
    pub batch: B,
    /// Records per source.
    pub records: Vec<(String, usize)>,
    /// Positions of the replayable sources after this cut.
    pub positions: Vec<(String, Vec<u8>)>,
}

/// A source failed to start.
#[derive(Debug)]
pub struct SourceError {
    /// The name the pipeline gave the source (its `let` binding).
    pub source_name: String,
    /// What went wrong, for the user.
    pub message: String,
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "source `{}`: {}", self.source_name, self.message)
    }
}

impl std::error::Error for SourceError {}

/// A receiver's counters, as a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Records taken in so far: lines for text sources, messages for a Kafka receiver (a direct
    /// Kafka source counts none here).
    pub records: u64,
    /// Bytes of those records, for text sources (0 for Kafka).
    pub bytes: u64,
    /// Lines skipped because they were not valid UTF-8.
    pub invalid_utf8_lines: u64,
    /// Lines skipped because they were longer than the source's `max_line_bytes`.
    pub oversized_lines: u64,
    /// Connections made to the source, reconnections included (socket receivers).
    pub connections: u64,
    /// Failures met: refused or broken connections, failed reads or directory listings, and pauses
    /// while what was received could not be stored.
    pub connection_errors: u64,
    /// The message of the most recent failure; `None` if there was none.
    pub last_error: Option<String>,
    /// Kafka: messages behind the high watermark, per (topic, partition), at the last cut.
    pub lag: Vec<(String, i32, i64)>,
    /// Whether the source is a receiver (a task that takes data in), as opposed to a source read
    /// directly at each cut.
    pub receiver: bool,
}

/// Live counters shared between a receiver task and the engine.
#[derive(Debug, Default)]
pub(crate) struct ReceiverCounters {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub invalid_utf8_lines: AtomicU64,
    pub oversized_lines: AtomicU64,
    pub connections: AtomicU64,
    pub connection_errors: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    /// Kafka receivers: messages behind the high watermark, per (topic, partition).
    pub lag: Mutex<Vec<(String, i32, i64)>>,
}

impl ReceiverCounters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set_error(&self, message: String) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = Some(message);
        }
    }

    pub(crate) fn snapshot(&self) -> SourceStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SourceStats {
            records: get(&self.records),
            bytes: get(&self.bytes),
            invalid_utf8_lines: get(&self.invalid_utf8_lines),
            oversized_lines: get(&self.oversized_lines),
            connections: get(&self.connections),
            connection_errors: get(&self.connection_errors),
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
            lag: self.lag.lock().map(|l| l.clone()).unwrap_or_default(),
            receiver: true,
        }
    }
}

/// All sources of a pipeline, as one value: a tuple of [`Source`]s.
pub trait SourceSet: Send + 'static {
    /// A tuple with one batch per source; `Default` is the empty batch.
    type Batch: Send + Default;
    /// Nothing was restored (see [`Source::fresh_start`]).
    fn fresh_start(&mut self);
    /// Starts every source's receivers, in order; the first failure ends the start and is returned.
    fn start(&mut self, env: &ReceiverEnv) -> Result<(), SourceError>;
    /// Cuts every source at `time` into `partitions` partitions: the batches, each source's record
    /// count, and the replayable sources' positions.
    fn cut(&mut self, time: Time, partitions: usize) -> Cut<Self::Batch>;
    /// Moves every source named in `positions` to its checkpointed position.
    fn seek(&mut self, positions: &[(String, Vec<u8>)]) -> Result<(), SourceError>;
    /// Re-cuts a batch that was journaled with `positions` before a crash (see [`Source::recut`]).
    fn recut(
        &mut self,
        time: Time,
        partitions: usize,
        positions: &[(String, Vec<u8>)],
    ) -> Cut<Self::Batch>;
    /// Where every replayable source stands now.
    fn positions(&self) -> Positions;
    /// Batches up to the one cut at `positions` completed (see [`Source::completed`]).
    fn completed(&mut self, positions: &[(String, Vec<u8>)]);
    /// The run is over (see [`Source::finish`]).
    fn finish(&mut self);
    /// Stops every source's receivers (see [`Source::stop`]).
    fn stop(&mut self);
    /// Whether every source is finished (see [`Source::is_finished`]): a run set to stop once its
    /// sources are drained stops then.
    fn all_finished(&self) -> bool;
    /// The counters of every source that keeps them, by source name.
    fn stats(&self) -> Vec<(String, SourceStats)>;
}

macro_rules! tuple_source_set {
    ($($name:ident $idx:tt),+) => {
        impl<$($name: Source),+> SourceSet for ($($name,)+) {
            type Batch = ($($name::Batch,)+);
            fn fresh_start(&mut self) {
                $(self.$idx.fresh_start();)+
            }
            fn start(&mut self, env: &ReceiverEnv) -> Result<(), SourceError> {
                $(self.$idx.start(env)?;)+
                Ok(())
            }
            fn cut(&mut self, time: Time, partitions: usize) -> Cut<Self::Batch> {
                let batch = ($(self.$idx.cut(time, partitions),)+);
                let records = vec![$((self.$idx.name().to_string(), $name::records_in(&batch.$idx))),+];
                let positions = self.positions();
                Cut { batch, records, positions }
            }
            fn recut(&mut self, time: Time, partitions: usize, positions: &[(String, Vec<u8>)]) -> Cut<Self::Batch> {
                let batch = ($({
                    let source = &mut self.$idx;
                    let journaled = positions.iter().find(|(name, _)| name == source.name());
                    match journaled.map(|(_, p)| source.recut(time, partitions, p)) {
                        Some(Ok(batch)) => batch,
                        Some(Err(e)) => {
                            tracing::warn!("{e}; cutting the batch afresh instead");
                            source.cut(time, partitions)
                        }
                        None => source.cut(time, partitions),
                    }
                },)+);
                let records = vec![$((self.$idx.name().to_string(), $name::records_in(&batch.$idx))),+];
                let positions = self.positions();
                Cut { batch, records, positions }
            }
            fn positions(&self) -> Positions {
                let mut positions = Vec::new();
                $(if let Some(p) = self.$idx.position() { positions.push((self.$idx.name().to_string(), p)); })+
                positions
            }
            fn completed(&mut self, positions: &[(String, Vec<u8>)]) {
                for (name, position) in positions {
                    $(if self.$idx.name() == name {
                        self.$idx.completed(position);
                    })+
                }
            }
            fn finish(&mut self) {
                $(self.$idx.finish();)+
            }
            fn seek(&mut self, positions: &[(String, Vec<u8>)]) -> Result<(), SourceError> {
                for (name, position) in positions {
                    $(if self.$idx.name() == name {
                        self.$idx.seek(position)?;
                        continue;
                    })+
                    return Err(SourceError {
                        source_name: name.clone(),
                        message: "the checkpoint has a position for this source, which the pipeline no longer has".into(),
                    });
                }
                Ok(())
            }
            fn stop(&mut self) {
                $(self.$idx.stop();)+
            }
            fn all_finished(&self) -> bool {
                true $(&& self.$idx.is_finished())+
            }
            fn stats(&self) -> Vec<(String, SourceStats)> {
                let mut out = Vec::new();
                $(if let Some(s) = self.$idx.stats() { out.push((self.$idx.name().to_string(), s)); })+
                out
            }
        }
    };
}

tuple_source_set!(A 0);
tuple_source_set!(A 0, B 1);
tuple_source_set!(A 0, B 1, C 2);
tuple_source_set!(A 0, B 1, C 2, D 3);
tuple_source_set!(A 0, B 1, C 2, D 3, E 4);
tuple_source_set!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_source_set!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_source_set!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
