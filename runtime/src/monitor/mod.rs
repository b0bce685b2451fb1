//! Monitoring: what a running app tells the world about itself.
//!
//! The engine reports events to [`StreamingListener`]s (Spark's `StreamingListener`, with the same
//! events): the app starting and stopping, receivers connecting, failing and stopping, batches being
//! submitted, started and completed, output operations starting and completing. Built on them:
//! [`metrics::Metrics`], which keeps counters, histograms and a bounded batch history and renders them
//! as Prometheus text and JSON; [`server`], which serves those and a live dashboard (`--ui ADDR`); and
//! [`StatsReport`], which prints a summary every N batches (`--stats-every N`).

pub mod metrics;
pub mod server;

pub mod report;

use crate::source::SourceStats;
use crate::time::Time;
pub use report::{BatchInfo, RunReport};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The app, as it starts.
#[derive(Clone, Debug)]
pub struct AppInfo {
    /// The app's name, from the pipeline's `app` header.
    pub name: String,
    /// The batch interval this run uses: the pipeline's, or the one the configuration set.
    pub batch_interval: Duration,
    /// Worker threads, which is also the number of partitions after a shuffle.
    pub workers: usize,
    /// Wall-clock time at which the app started: its sources had started and no batch had been cut
    /// yet.
    pub started: SystemTime,
    /// `(name, kind)` of each source.
    pub sources: Vec<(String, String)>,
    /// `stream.operator` of each output.
    pub outputs: Vec<String>,
}

/// A batch cut from the sources and queued for processing.
#[derive(Clone, Debug)]
pub struct BatchSubmitted {
    /// The batch's time: the end of the interval whose data it holds.
    pub time: Time,
    /// Wall-clock time at which the batch was cut and queued for processing.
    pub submitted: SystemTime,
    /// Records per source in this batch.
    pub records: Vec<(String, usize)>,
    /// Each receiving source's counters when the batch was cut.
    pub sources: Vec<(String, SourceStats)>,
}

/// One output operation of one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputInfo {
    /// `stream.operator`, as `--help` lists outputs.
    pub name: String,
    /// Wall-clock time the output operation took, retries included.
    pub duration: Duration,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// Receives the app's events. Every method has an empty default; implement those you need. Methods
/// are called on the engine's threads: keep them short (hand work off if it is slow).
pub trait StreamingListener: Send + Sync {
    /// The app started: its sources are running and no batch has been cut yet. Called once.
    fn on_app_started(&self, _app: &AppInfo) {}
    /// The run is over, with its summary. Called once, after the sinks were closed, also when the
    /// stop did not finish.
    fn on_app_stopped(&self, _report: &RunReport) {}
    /// A receiver connected to its source (again, after a reconnection).
    fn on_receiver_started(&self, _source: &str) {}
    /// The receiver failed `count` times (refused or broken connections, failed reads) since the last
    /// event; `error` is the newest message, as receivers keep only that one.
    fn on_receiver_error(&self, _source: &str, _error: &str, _count: u64) {}
    /// The app is stopping: called once for each receiving source, after the receivers were shut
    /// down.
    fn on_receiver_stopped(&self, _source: &str) {}
    /// A batch was cut from the sources and queued; it starts once the batches before it are done.
    fn on_batch_submitted(&self, _batch: &BatchSubmitted) {}
    /// Processing of batch `time` started, at `started` on the wall clock.
    fn on_batch_started(&self, _time: Time, _started: SystemTime) {}
    /// A batch's processing ended, with its figures; `BatchInfo::failure` says whether it failed.
    fn on_batch_completed(&self, _batch: &BatchInfo) {}
    /// Output operation `output` (`stream.operator`) of batch `batch` is starting.
    fn on_output_started(&self, _batch: Time, _output: &str) {}
    /// An output operation of batch `batch` ended: its duration, and its error if it failed.
    fn on_output_completed(&self, _batch: Time, _output: &OutputInfo) {}
}

/// The app's listeners.
#[derive(Clone, Default)]
pub struct Listeners(Vec<Arc<dyn StreamingListener>>);

impl Listeners {
    /// Adds a listener; it hears every event from then on, after the listeners added before it.
    pub fn add(&mut self, listener: Arc<dyn StreamingListener>) {
        self.0.push(listener);
    }

    /// Whether no listener was added, so that the engine can skip building events.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn emit(&self, event: impl Fn(&dyn StreamingListener)) {
        for listener in &self.0 {
            event(listener.as_ref());
        }
    }
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Listeners({})", self.0.len())
    }
}

/// Turns the receivers' counters, sampled at each cut, into started / error events: a receiver that
/// made a new connection has started; new connection errors are one error event carrying how many
/// there were, since several can happen between two cuts.
#[derive(Default)]
pub(crate) struct ReceiverWatch {
    seen: std::collections::BTreeMap<String, (u64, u64)>,
}

impl ReceiverWatch {
    pub(crate) fn update(&mut self, sources: &[(String, SourceStats)], listeners: &Listeners) {
        for (name, stats) in sources {
            let (connections, errors) = self.seen.entry(name.clone()).or_insert((0, 0));
            if stats.connections > *connections {
                listeners.emit(|l| l.on_receiver_started(name));
            }
            if stats.connection_errors > *errors {
                let error = stats.last_error.as_deref().unwrap_or("connection error");
                let count = stats.connection_errors - *errors;
                listeners.emit(|l| l.on_receiver_error(name, error, count));
            }
            *connections = stats.connections;
            *errors = stats.connection_errors;
        }
    }

    pub(crate) fn stopped(&self, listeners: &Listeners) {
        for name in self.seen.keys() {
            listeners.emit(|l| l.on_receiver_stopped(name));
        }
    }
}

/// Spark's StatsReportListener: every `every` batches, the min / median / max of processing time,
/// scheduling delay and total delay over those batches, to standard error.
pub struct StatsReport {
    every: usize,
    batches: std::sync::Mutex<Vec<BatchInfo>>,
}

impl StatsReport {
    /// A listener that prints a summary to standard error every `every` batches (0 counts as 1).
    pub fn new(every: usize) -> Self {
        Self {
            every: every.max(1),
            batches: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The summary of `batches`.
    pub fn summary(batches: &[BatchInfo]) -> String {
        let line = |what: &str, pick: &dyn Fn(&BatchInfo) -> Duration| {
            let mut values: Vec<Duration> = batches.iter().map(pick).collect();
            values.sort();
            match (values.first(), values.get(values.len() / 2), values.last()) {
                (Some(min), Some(median), Some(max)) => format!(
                    "  {what:<18} min {:>7.1} ms  median {:>7.1} ms  max {:>7.1} ms\n",
                    ms(*min),
                    ms(*median),
                    ms(*max)
                ),
                _ => String::new(),
            }
        };
        let records: usize = batches.iter().map(BatchInfo::total_records).sum();
        format!(
            "batches {} .. {}: {} batches, {records} records\n{}{}{}",
            batches.first().map(|b| b.time.millis()).unwrap_or(0),
            batches.last().map(|b| b.time.millis()).unwrap_or(0),
            batches.len(),
            line("processing time", &|b| b.processing_time),
            line("scheduling delay", &|b| b.scheduling_delay),
            line("total delay", &|b| b.total_delay),
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl StreamingListener for StatsReport {
    fn on_batch_completed(&self, batch: &BatchInfo) {
        let mut batches = self.batches.lock().unwrap_or_else(|p| p.into_inner());
        batches.push(batch.clone());
        if batches.len() >= self.every {
            eprint!("{}", Self::summary(&batches));
            batches.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Record(Mutex<Vec<String>>);

    impl StreamingListener for Record {
        fn on_receiver_started(&self, source: &str) {
            self.0.lock().unwrap().push(format!("started {source}"));
        }
        fn on_receiver_error(&self, source: &str, error: &str, count: u64) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{count} errors {source}: {error}"));
        }
        fn on_receiver_stopped(&self, source: &str) {
            self.0.lock().unwrap().push(format!("stopped {source}"));
        }
    }

    #[test]
    fn receiver_events_come_from_counter_changes() {
        let record = Arc::new(Record::default());
        let mut listeners = Listeners::default();
        listeners.add(record.clone());
        let mut watch = ReceiverWatch::default();
        let stats = |connections, connection_errors, last_error: Option<&str>| {
            vec![(
                "lines".to_string(),
                SourceStats {
                    connections,
                    connection_errors,
                    last_error: last_error.map(str::to_string),
                    ..SourceStats::default()
                },
            )]
        };
        watch.update(&stats(0, 0, None), &listeners);
        watch.update(&stats(1, 0, None), &listeners);
        watch.update(&stats(1, 0, None), &listeners);
        watch.update(&stats(1, 1, Some("connection refused")), &listeners);
        // Three refusals between two cuts are one event that says three.
        watch.update(&stats(1, 4, Some("connection refused")), &listeners);
        watch.update(&stats(2, 4, Some("connection refused")), &listeners);
        watch.stopped(&listeners);
        assert_eq!(
            *record.0.lock().unwrap(),
            vec![
                "started lines",
                "1 errors lines: connection refused",
                "3 errors lines: connection refused",
                "started lines",
                "stopped lines"
            ]
        );
    }

    #[test]
    fn the_stats_report_summarizes_delays() {
        let batch = |ms: u64| BatchInfo {
            time: Time(ms * 1000),
            records: vec![("lines".into(), 10)],
            scheduling_delay: Duration::from_millis(ms),
            processing_time: Duration::from_millis(10 * ms),
            total_delay: Duration::from_millis(11 * ms),
            ..BatchInfo::default()
        };
        let text = StatsReport::summary(&[batch(1), batch(3), batch(2)]);
        assert!(
            text.starts_with("batches 1000 .. 2000: 3 batches, 30 records\n"),
            "{text}"
        );
        assert!(
            text.contains("processing time    min    10.0 ms  median    20.0 ms  max    30.0 ms"),
            "{text}"
        );
    }
}
