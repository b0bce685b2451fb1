//! What a running batch can reach: its time, the parallelism, and the output channels.

use crate::output::{format_print, Show};
use crate::time::Time;
use std::any::Any;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Handed to the generated code for every batch.
pub struct BatchContext<'a> {
    /// The batch's time.
    pub time: Time,
    /// Partitions after a shuffle, and the size of the worker pool.
    pub workers: usize,
    /// A check of state types against a restored checkpoint: no data, no output, no user code.
    pub dry_run: bool,
    /// The run's zero time: one batch interval before its first batch (Spark's `zeroTime`), kept
    /// across restarts.
    pub zero_time: Time,
    /// The batch interval, in milliseconds.
    pub batch_interval_ms: u64,
    /// Where the replayable sources stood after this batch was cut.
    pub origin: Arc<BatchOrigin>,
    pub(crate) outputs: &'a Outputs,
}

/// Source positions right after a batch was cut (for Kafka they describe the batch's offset ranges).
#[derive(Clone, Debug, Default)]
pub struct BatchOrigin {
    /// `(source name, position)` for each replayable source, in the encoding that source uses;
    /// sources that cannot replay have no entry.
    pub positions: Vec<(String, Vec<u8>)>,
}

impl<'a> BatchContext<'a> {
    /// The same context with `partitions` partitions after a shuffle (an operator's
    /// `partitions = n`, Spark's `numPartitions`); at least one.
    pub fn with_partitions(&self, partitions: usize) -> BatchContext<'a> {
        BatchContext {
            time: self.time,
            workers: partitions.max(1),
            dry_run: self.dry_run,
            zero_time: self.zero_time,
            batch_interval_ms: self.batch_interval_ms,
            origin: self.origin.clone(),
            outputs: self.outputs,
        }
    }
}

impl BatchContext<'_> {
    /// Whether this batch falls on a schedule of `every_ms` counted from the zero time, as Spark
    /// schedules a stream's checkpoints: every 10 batches is the 10th, 20th, ... batch of the run.
    pub fn on_schedule(&self, every_ms: u64) -> bool {
        every_ms > 0
            && self
                .time
                .millis()
                .saturating_sub(self.zero_time.millis())
                .is_multiple_of(every_ms)
    }

    /// Writes Spark's print block for this batch.
    pub fn print<'r, T: Show + 'r>(&self, records: impl Iterator<Item = &'r T>, n: usize) {
        let text = format_print(self.time, records, n);
        let mut sink = match self.outputs.print.lock() {
            Ok(sink) => sink,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Err(e) = sink.write_all(text.as_bytes()).and_then(|_| sink.flush()) {
            tracing::warn!("print output failed: {e}");
        }
    }

    /// Runs output operation `name` (`stream.operator`), timing it for the batch's info and the
    /// listeners, which also hear why it failed.
    pub fn run_output(
        &self,
        name: &'static str,
        output: impl FnOnce() -> crate::sink::OutputResult,
    ) -> crate::sink::OutputResult {
        if self.dry_run {
            return output();
        }
        self.outputs
            .listeners
            .emit(|l| l.on_output_started(self.time, name));
        let mut timer = OutputTimer {
            ctx: self,
            name,
            started: std::time::Instant::now(),
            error: None,
        };
        let result = output();
        if let Err(e) = &result {
            timer.error = Some(e.to_string());
        }
        result
    }

    /// The sinks opened by this run's outputs.
    pub fn sinks(&self) -> &crate::sink::OpenSinks {
        &self.outputs.sinks
    }

    /// What the sinks see of this batch.
    pub fn sink_env(&self) -> crate::sink::SinkEnv<'_> {
        crate::sink::SinkEnv {
            time: self.time,
            workers: self.workers,
            sinks: &self.outputs.sinks,
            settings: &self.outputs.sink_settings,
        }
    }

    /// Destination overrides and the retry policy shared by the sinks.
    pub fn sink_settings(&self) -> &crate::sink::SinkSettings {
        &self.outputs.sink_settings
    }

    /// Keeps `records` as this batch's result of the `collect()` output named `output`.
    pub fn collect<T: Send + 'static>(&self, output: &'static str, records: Vec<T>) {
        self.outputs
            .collector
            .push(output, self.time, Box::new(records));
    }
}

/// Where outputs go: the `print` writer, the collected results, and the sinks opened so far.
pub struct Outputs {
    pub(crate) print: Mutex<Box<dyn Write + Send>>,
    pub(crate) collector: Arc<Collector>,
    pub(crate) sinks: crate::sink::OpenSinks,
    pub(crate) sink_settings: crate::sink::SinkSettings,
    pub(crate) listeners: crate::monitor::Listeners,
    /// The current batch's output operations, as they complete.
    batch_outputs: Mutex<Vec<crate::monitor::OutputInfo>>,
}

impl Outputs {
    pub(crate) fn new(
        print: Box<dyn Write + Send>,
        collector: Arc<Collector>,
        sink_settings: crate::sink::SinkSettings,
    ) -> Self {
        Self {
            print: Mutex::new(print),
            collector,
            sinks: Default::default(),
            sink_settings,
            listeners: Default::default(),
            batch_outputs: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn with_listeners(mut self, listeners: crate::monitor::Listeners) -> Self {
        self.listeners = listeners;
        self
    }

    /// The output operations of the batch that just ran.
    pub(crate) fn take_batch_outputs(&self) -> Vec<crate::monitor::OutputInfo> {
        std::mem::take(&mut *self.batch_outputs.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Times one output operation and reports it, also when it fails (with its error, or as a panic in
/// user code).
struct OutputTimer<'a> {
    ctx: &'a BatchContext<'a>,
    name: &'static str,
    started: std::time::Instant,
    error: Option<String>,
}

impl Drop for OutputTimer<'_> {
    fn drop(&mut self) {
        let info = crate::monitor::OutputInfo {
            name: self.name.to_string(),
            duration: self.started.elapsed(),
            error: self.error.take().or_else(|| {
                std::thread::panicking()
                    .then(|| "a user function in the output panicked".to_string())
            }),
        };
        let outputs = self.ctx.outputs;
        outputs
            .listeners
            .emit(|l| l.on_output_completed(self.ctx.time, &info));
        outputs
            .batch_outputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(info);
    }
}

/// One batch's records of one output, type-erased until taken.
type CollectedBatch = (Time, Box<dyn Any + Send>);

/// The results of `collect()` outputs, per output name and batch, kept until taken.
#[derive(Default)]
pub struct Collector {
    batches: Mutex<HashMap<&'static str, Vec<CollectedBatch>>>,
}

/// Taking collected results failed.
#[derive(Debug, PartialEq, Eq)]
pub enum CollectError {
    /// The records are not of the requested type.
    WrongType {
        /// The name of the `collect()` output whose records were asked for.
        output: String,
        /// The Rust type name of the records that were asked for (from `std::any::type_name`).
        requested: &'static str,
    },
}

impl std::fmt::Display for CollectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CollectError::WrongType { output, requested } => {
                write!(
                    f,
                    "output `{output}` does not hold records of type `{requested}`"
                )
            }
        }
    }
}

impl std::error::Error for CollectError {}

impl Collector {
    fn push(&self, output: &'static str, time: Time, records: Box<dyn Any + Send>) {
        let mut batches = self.batches.lock().unwrap_or_else(|p| p.into_inner());
        batches.entry(output).or_default().push((time, records));
    }

    /// Takes every batch collected so far by the output named `output`, oldest first.
    pub fn take<T: 'static>(&self, output: &str) -> Result<Vec<(Time, Vec<T>)>, CollectError> {
        let mut batches = self.batches.lock().unwrap_or_else(|p| p.into_inner());
        let Some(list) = batches.get_mut(output) else {
            return Ok(Vec::new());
        };
        if let Some((_, first)) = list.first() {
            if !first.is::<Vec<T>>() {
                return Err(CollectError::WrongType {
                    output: output.to_string(),
                    requested: std::any::type_name::<T>(),
                });
            }
        }
        Ok(std::mem::take(list)
            .into_iter()
            .filter_map(|(time, records)| records.downcast::<Vec<T>>().ok().map(|r| (time, *r)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_checks_the_type_and_drains() {
        let c = Collector::default();
        c.push("out", Time(1000), Box::new(vec![1u64, 2]));
        assert!(matches!(
            c.take::<String>("out"),
            Err(CollectError::WrongType { .. })
        ));
        assert_eq!(c.take::<u64>("out"), Ok(vec![(Time(1000), vec![1, 2])]));
        assert_eq!(c.take::<u64>("out"), Ok(vec![]));
    }
}
