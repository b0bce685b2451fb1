//! What the listener API reports: one batch's figures ([`BatchInfo`]) and a run's ([`RunReport`]).

use crate::source::SourceStats;
use crate::time::Time;
use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

/// How many completed batches a report keeps (Spark's UI keeps 1000).
pub const RETAINED_BATCHES: usize = 1000;

/// What happened to one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchInfo {
    /// The batch's time, which identifies it: the end of the interval whose data it holds.
    pub time: Time,
    /// When it was cut and queued.
    pub submitted: SystemTime,
    /// When processing started.
    pub started: SystemTime,
    /// When processing (and the checkpoint that followed) ended.
    pub ended: SystemTime,
    /// Records per source.
    pub records: Vec<(String, usize)>,
    /// From the batch time until processing started.
    pub scheduling_delay: Duration,
    /// The batch's jobs (outputs included), without its checkpoint.
    pub processing_time: Duration,
    /// Writing the checkpoint that followed the batch, if one did.
    pub checkpoint_time: Option<Duration>,
    /// From the batch time until processing (and checkpointing) ended.
    pub total_delay: Duration,
    /// The panic message, if a user function panicked, or why an output could not write the batch.
    pub failure: Option<String>,
    /// An output could not write the batch: the app stops without checkpointing past it.
    pub output_failed: bool,
    /// Each output operation's duration and error.
    pub outputs: Vec<crate::monitor::OutputInfo>,
    /// Keys held per stateful operator after the batch.
    pub state_keys: Vec<(&'static str, usize)>,
    /// The rate each receiver was held to after the batch (0: unlimited).
    pub rate_limits: Vec<(String, u64)>,
    /// Size of the checkpoint written after the batch, if one was.
    pub checkpoint_bytes: Option<u64>,
    /// Each sink's counters so far (records written, replays skipped, retries, dead letters).
    pub sinks: Vec<(String, crate::sink::SinkCounts)>,
}

impl Default for BatchInfo {
    fn default() -> Self {
        Self {
            time: Time(0),
            submitted: SystemTime::UNIX_EPOCH,
            started: SystemTime::UNIX_EPOCH,
            ended: SystemTime::UNIX_EPOCH,
            records: Vec::new(),
            scheduling_delay: Duration::ZERO,
            processing_time: Duration::ZERO,
            checkpoint_time: None,
            total_delay: Duration::ZERO,
            failure: None,
            output_failed: false,
            outputs: Vec::new(),
            state_keys: Vec::new(),
            rate_limits: Vec::new(),
            checkpoint_bytes: None,
            sinks: Vec::new(),
        }
    }
}

impl BatchInfo {
    /// Records of all sources.
    pub fn total_records(&self) -> usize {
        self.records.iter().map(|(_, n)| n).sum()
    }
}

/// A summary of a run.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// Batches that ran without a failure.
    pub batches_completed: u64,
    /// Batches in which a user function panicked or an output could not write (see
    /// `BatchInfo::failure`).
    pub batches_failed: u64,
    /// Records of every batch, failed ones included, summed over the sources.
    pub records: u64,
    /// The most recent batches, oldest first.
    pub recent_batches: VecDeque<BatchInfo>,
    /// Each source's counters at the end of the run (sources that keep none are left out); empty
    /// when the sources did not stop in time.
    pub sources: Vec<(String, SourceStats)>,
    /// From start until the first batch was completed.
    pub time_to_first_batch: Option<Duration>,
    /// The rate each receiver was held to at the end (0: unlimited).
    pub rate_limits: Vec<(String, u64)>,
    /// Checkpoints written during the run.
    pub checkpoints_written: u64,
    /// Checkpoints that could not be written (a full disk, say); the run went on with the previous
    /// one in force.
    pub checkpoints_failed: u64,
    /// How long the most recent successful checkpoint took to write; `None` if none was written.
    pub last_checkpoint_duration: Option<Duration>,
    /// Per sink output: records written, replays skipped, retries, records set aside.
    pub outputs: Vec<(String, crate::sink::SinkCounts)>,
}

impl RunReport {
    pub(crate) fn record(&mut self, info: BatchInfo) {
        self.records += info.total_records() as u64;
        if info.failure.is_some() {
            self.batches_failed += 1;
        } else {
            self.batches_completed += 1;
        }
        if self.recent_batches.len() == RETAINED_BATCHES {
            self.recent_batches.pop_front();
        }
        self.recent_batches.push_back(info);
    }

    /// A human summary, in the spirit of Spark's StatsReportListener.
    pub fn summary(&self) -> String {
        let delays: Vec<u128> = self
            .recent_batches
            .iter()
            .map(|b| b.processing_time.as_millis())
            .collect();
        let sched: Vec<u128> = self
            .recent_batches
            .iter()
            .map(|b| b.scheduling_delay.as_millis())
            .collect();
        let stat = |v: &[u128]| -> String {
            let mut v = v.to_vec();
            v.sort_unstable();
            match (v.first(), v.get(v.len() / 2), v.last()) {
                (Some(min), Some(median), Some(max)) => {
                    format!("min {min} ms, median {median} ms, max {max} ms")
                }
                _ => "n/a".into(),
            }
        };
        let mut out = format!(
            "batches: {} completed, {} failed; records: {}\nprocessing time: {}\nscheduling delay: {}\n",
            self.batches_completed,
            self.batches_failed,
            self.records,
            stat(&delays),
            stat(&sched)
        );
        for (name, s) in &self.sources {
            if !s.receiver {
                let behind: i64 = s.lag.iter().map(|(_, _, lag)| lag).sum();
                out.push_str(&format!(
                    "source {name}: {behind} messages behind the high watermarks\n"
                ));
                continue;
            }
            out.push_str(&format!(
                "source {name}: {} records, {} bytes, {} invalid UTF-8 lines, {} oversized lines, {} connections, {} connection errors\n",
                s.records, s.bytes, s.invalid_utf8_lines, s.oversized_lines, s.connections, s.connection_errors
            ));
        }
        for (name, c) in &self.outputs {
            out.push_str(&format!(
                "output {name}: {} records written, {} replayed partitions skipped, {} retries, {} records dead-lettered\n",
                c.records, c.skipped, c.retries, c.dead_lettered
            ));
        }
        out
    }
}
