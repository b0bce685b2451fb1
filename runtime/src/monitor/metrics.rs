//! The metrics a running app keeps about itself, fed by listener events, rendered as Prometheus text
//! and as the JSON of the `/api/v1` endpoints.

use super::{AppInfo, BatchSubmitted, StreamingListener};
use crate::monitor::report::{BatchInfo, RunReport};
use crate::source::SourceStats;
use crate::time::Time;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bucket bounds of the delay histograms, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A Prometheus histogram of durations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Observations at most each bound (not cumulative; rendering accumulates).
    counts: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    /// Records one duration: counted in the first bucket whose bound (in seconds) it does not
    /// exceed, and added to the sum.
    pub fn observe(&mut self, value: Duration) {
        let seconds = value.as_secs_f64();
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        if let Some(i) = BUCKETS.iter().position(|&b| seconds <= b) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }

    /// How many durations were observed.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {}", self.count);
        let plain = labels.trim_end_matches(',');
        let _ = writeln!(out, "{name}_sum{{{plain}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{plain}}} {}", self.count);
    }
}

/// What a receiver looks like from outside.
#[derive(Clone, Debug, Default)]
struct Receiver {
    /// Running: from its first report until it stops.
    active: bool,
    /// Connected and receiving, as far as its counters, sampled at each cut, tell (see `update`).
    connected: bool,
    /// Its counters at the last cut. Errors and the last error are the receiver's own cumulative
    /// figures, so every failure counts even when several fall between two cuts.
    stats: SourceStats,
}

impl Receiver {
    /// An error since the last cut means not connected; a new connection or new records without one
    /// mean connected again; no change keeps the state, so an idle connection stays connected. When
    /// an error and a sign of life fall between the same two cuts their order is unknown: the error
    /// wins until a later cut shows the receiver alive, as claiming health during an outage is worse.
    fn update(&mut self, stats: &SourceStats) {
        let failed = stats.connection_errors > self.stats.connection_errors;
        let alive =
            stats.connections > self.stats.connections || stats.records > self.stats.records;
        if failed {
            self.connected = false;
        } else if alive {
            self.connected = true;
        }
        self.active = true;
        self.stats = stats.clone();
    }
}

/// The figures behind `/metrics` and the JSON summaries. Small on purpose: readers clone them under
/// the lock and format after releasing it, since the engine's listener calls wait on that lock.
#[derive(Clone, Default)]
struct Figures {
    app: Option<AppInfo>,
    stopped: bool,
    receivers: BTreeMap<String, Receiver>,
    /// Kafka sources: lag per (topic, partition).
    lags: BTreeMap<String, Vec<(String, i32, i64)>>,
    received: BTreeMap<String, u64>,
    /// Records per second of the last batch, per source.
    input_rate: BTreeMap<String, f64>,
    completed: u64,
    failed: u64,
    processing: Histogram,
    scheduling: Histogram,
    total: Histogram,
    checkpoint: Histogram,
    checkpoint_bytes: u64,
    state_keys: Vec<(String, usize)>,
    rate_limits: Vec<(String, u64)>,
    sinks: Vec<(String, crate::sink::SinkCounts)>,
}

#[derive(Default)]
struct State {
    figures: Figures,
    /// When the batch generator last cut a batch (or the app started); `None`: since the metrics
    /// were made.
    last_cut: Option<Instant>,
    /// When the executor last showed progress: it completed a batch, or got work after being idle.
    executor_progress: Option<Instant>,
    /// Whether each source that reports connection figures is connected (receivers and direct
    /// sources alike), for `/readyz`.
    sources: BTreeMap<String, Receiver>,
    /// Batches cut since the app started.
    submitted: u64,
    /// Batches cut but not completed yet.
    queued: BTreeSet<Time>,
    /// Shared, so that a reader copies pointers under the lock rather than whole batches.
    recent: VecDeque<Arc<BatchInfo>>,
}

/// The metrics of one app. A listener: add it to the app (`--ui` does) and read it from anywhere.
pub struct Metrics {
    state: Mutex<State>,
    history: usize,
    created: Instant,
    limits: HealthLimits,
    /// The run's stop state: a stopping app is neither live nor ready.
    stop: Option<crate::stop::StopSignal>,
}

/// What `/healthz` and `/readyz` tolerate.
#[derive(Clone, Copy, Debug)]
pub struct HealthLimits {
    /// No progress for this long: the engine is stuck.
    pub stuck_after: Duration,
    /// More batches than this waiting: the app is falling behind, so not ready.
    pub max_queued_batches: usize,
}

impl Default for HealthLimits {
    fn default() -> Self {
        Self {
            stuck_after: Duration::from_secs(60),
            max_queued_batches: 10,
        }
    }
}

/// A health answer: good or not, and why, as JSON for the body.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// 200 when true, 503 when false.
    pub ok: bool,
    /// `{"status": ..., ...}`.
    pub body: Value,
}

impl Metrics {
    /// Keeps the last `history` batches (Spark keeps 1000).
    pub fn new(history: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            history: history.max(1),
            created: Instant::now(),
            limits: HealthLimits::default(),
            stop: None,
        }
    }

    /// With health limits, and the run's stop state.
    pub fn with_health(mut self, limits: HealthLimits, stop: crate::stop::StopSignal) -> Self {
        self.limits = limits;
        self.stop = Some(stop);
        self
    }

    fn stopping(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.is_stopping() || s.is_aborted())
    }

    /// Liveness (`/healthz`): the engine makes progress. Not live once the generator has cut no
    /// batch for `stuck_after`, or the executor has had work but completed nothing for that long (a
    /// batch or a sink hanging), nor once the app is stopping or stopped, so that a supervisor
    /// restarts it.
    pub fn health(&self) -> Verdict {
        let s = self.lock();
        let cut = s.last_cut.unwrap_or(self.created).elapsed();
        let executor = s.executor_progress.unwrap_or(self.created).elapsed();
        let busy = !s.queued.is_empty();
        let limit = self.limits.stuck_after;
        let (ok, status) = if s.figures.stopped {
            (false, "stopped")
        } else if self.stopping() {
            (false, "stopping")
        } else if cut > limit {
            (false, "stuck: no batch cut")
        } else if busy && executor > limit {
            (false, "stuck: a batch does not complete")
        } else {
            (true, "alive")
        };
        Verdict {
            ok,
            body: json!({
                "status": status,
                "seconds_since_cut": cut.as_secs_f64(),
                "seconds_since_executor_progress": if busy { executor.as_secs_f64() } else { 0.0 },
                "stuck_after_seconds": limit.as_secs_f64(),
            }),
        }
    }

    /// Readiness (`/readyz`): started, a batch cut, every source connected, and at most
    /// `max_queued_batches` batches waiting.
    pub fn readiness(&self) -> Verdict {
        let s = self.lock();
        let queued = s.queued.len();
        let waiting: Vec<&str> = s
            .sources
            .iter()
            .filter(|(_, r)| !r.connected)
            .map(|(name, _)| name.as_str())
            .collect();
        let (ok, status) = if s.figures.stopped || self.stopping() {
            (false, "stopping")
        } else if s.figures.app.is_none() || s.submitted == 0 {
            (false, "starting")
        } else if !waiting.is_empty() {
            (false, "sources not connected")
        } else if queued > self.limits.max_queued_batches {
            (false, "falling behind")
        } else {
            (true, "ready")
        };
        Verdict {
            ok,
            body: json!({
                "status": status,
                "sources_not_connected": waiting,
                "queued_batches": queued,
                "max_queued_batches": self.limits.max_queued_batches,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the figures and the number of batches queued.
    fn snapshot(&self) -> (Figures, usize) {
        let s = self.lock();
        (s.figures.clone(), s.queued.len())
    }

    /// Prometheus text exposition (format 0.0.4). `wal_bytes` is measured by the caller.
    pub fn prometheus(&self, wal_bytes: Option<u64>) -> String {
        let (s, queued) = self.snapshot();
        let app = escape(s.app.as_ref().map(|a| a.name.as_str()).unwrap_or(""));
        let mut out = String::new();
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            &mut out,
            "streamc_records_received_total",
            "counter",
            "Records received, per source.",
        );
        for (source, n) in &s.received {
            let _ = writeln!(
                out,
                "streamc_records_received_total{{app=\"{app}\",source=\"{}\"}} {n}",
                escape(source)
            );
        }
        family(
            &mut out,
            "streamc_input_rate",
            "gauge",
            "Records per second in the last batch, per source.",
        );
        for (source, rate) in &s.input_rate {
            let _ = writeln!(
                out,
                "streamc_input_rate{{app=\"{app}\",source=\"{}\"}} {rate}",
                escape(source)
            );
        }
        let labels = format!("app=\"{app}\",");
        for (name, help, h) in [
            (
                "streamc_batch_processing_seconds",
                "Time to process a batch.",
                &s.processing,
            ),
            (
                "streamc_batch_scheduling_delay_seconds",
                "Time a batch waited before processing started.",
                &s.scheduling,
            ),
            (
                "streamc_batch_total_delay_seconds",
                "From a batch's time until it was processed.",
                &s.total,
            ),
            (
                "streamc_checkpoint_seconds",
                "Time to write a checkpoint.",
                &s.checkpoint,
            ),
        ] {
            family(&mut out, name, "histogram", help);
            h.render(&mut out, name, &labels);
        }
        family(
            &mut out,
            "streamc_batches_completed_total",
            "counter",
            "Batches processed without failure.",
        );
        let _ = writeln!(
            out,
            "streamc_batches_completed_total{{app=\"{app}\"}} {}",
            s.completed
        );
        family(
            &mut out,
            "streamc_batches_failed_total",
            "counter",
            "Batches that failed.",
        );
        let _ = writeln!(
            out,
            "streamc_batches_failed_total{{app=\"{app}\"}} {}",
            s.failed
        );
        family(
            &mut out,
            "streamc_batches_queued",
            "gauge",
            "Batches cut and waiting or running.",
        );
        let _ = writeln!(out, "streamc_batches_queued{{app=\"{app}\"}} {queued}");
        family(
            &mut out,
            "streamc_state_keys",
            "gauge",
            "Keys held, per stateful operator.",
        );
        for (operator, keys) in &s.state_keys {
            let _ = writeln!(
                out,
                "streamc_state_keys{{app=\"{app}\",operator=\"{}\"}} {keys}",
                escape(operator)
            );
        }
        family(
            &mut out,
            "streamc_state_bytes",
            "gauge",
            "Bytes of state in the last checkpoint written.",
        );
        let _ = writeln!(
            out,
            "streamc_state_bytes{{app=\"{app}\"}} {}",
            s.checkpoint_bytes
        );
        if let Some(bytes) = wal_bytes {
            family(
                &mut out,
                "streamc_wal_bytes",
                "gauge",
                "Bytes in the write-ahead logs.",
            );
            let _ = writeln!(out, "streamc_wal_bytes{{app=\"{app}\"}} {bytes}");
        }
        family(
            &mut out,
            "streamc_receiver_errors_total",
            "counter",
            "Failed connections and reads, per receiver.",
        );
        for (source, r) in &s.receivers {
            let _ = writeln!(
                out,
                "streamc_receiver_errors_total{{app=\"{app}\",source=\"{}\"}} {}",
                escape(source),
                r.stats.connection_errors
            );
        }
        family(
            &mut out,
            "streamc_receiver_active",
            "gauge",
            "1 from a receiver's start until it stops, connected or not.",
        );
        for (source, r) in &s.receivers {
            let _ = writeln!(
                out,
                "streamc_receiver_active{{app=\"{app}\",source=\"{}\"}} {}",
                escape(source),
                u8::from(r.active)
            );
        }
        family(
            &mut out,
            "streamc_receiver_connected",
            "gauge",
            "1 while a receiver is connected: 0 after an error until it reconnects or receives again.",
        );
        for (source, r) in &s.receivers {
            let _ = writeln!(
                out,
                "streamc_receiver_connected{{app=\"{app}\",source=\"{}\"}} {}",
                escape(source),
                u8::from(r.connected)
            );
        }
        family(
            &mut out,
            "streamc_kafka_lag",
            "gauge",
            "Messages behind the high watermark, per topic-partition.",
        );
        for (source, lags) in &s.lags {
            for (topic, partition, lag) in lags {
                let _ = writeln!(
                    out,
                    "streamc_kafka_lag{{app=\"{app}\",source=\"{}\",topic=\"{}\",partition=\"{partition}\"}} {lag}",
                    escape(source),
                    escape(topic)
                );
            }
        }
        type Pick = fn(&crate::sink::SinkCounts) -> u64;
        let outputs: [(&str, &str, Pick); 4] = [
            (
                "streamc_output_records_total",
                "Records a sink wrote (committed).",
                |c| c.records,
            ),
            (
                "streamc_output_skipped_total",
                "Batch partitions a sink skipped because it already held them (replays).",
                |c| c.skipped,
            ),
            (
                "streamc_output_retries_total",
                "Writes a sink retried after its destination failed.",
                |c| c.retries,
            ),
            (
                "streamc_output_dead_lettered_total",
                "Records a sink set aside in its dead-letter file.",
                |c| c.dead_lettered,
            ),
        ];
        for (name, help, pick) in outputs {
            family(&mut out, name, "counter", help);
            for (output, counts) in &s.sinks {
                let _ = writeln!(
                    out,
                    "{name}{{app=\"{app}\",output=\"{}\"}} {}",
                    escape(output),
                    pick(counts)
                );
            }
        }
        family(
            &mut out,
            "streamc_rate_limit",
            "gauge",
            "Records per second a receiver is held to (0: unlimited).",
        );
        for (source, limit) in &s.rate_limits {
            let _ = writeln!(
                out,
                "streamc_rate_limit{{app=\"{app}\",source=\"{}\"}} {limit}",
                escape(source)
            );
        }
        out
    }

    /// `/api/v1/app`.
    pub fn app_json(&self) -> Value {
        let (s, queued) = self.snapshot();
        let Some(app) = &s.app else {
            return json!({ "status": "starting" });
        };
        let started = millis(app.started);
        let uptime = SystemTime::now()
            .duration_since(app.started)
            .unwrap_or_default();
        json!({
            "name": app.name,
            "status": if s.stopped { "stopped" } else { "running" },
            "batch_interval_ms": app.batch_interval.as_millis() as u64,
            "workers": app.workers,
            "started_ms": started,
            "uptime_ms": uptime.as_millis() as u64,
            "sources": app.sources.iter().map(|(n, k)| json!({"name": n, "kind": k})).collect::<Vec<_>>(),
            "outputs": app.outputs,
            "batches_completed": s.completed,
            "batches_failed": s.failed,
            "batches_queued": queued,
            "records_received": s.received.values().sum::<u64>(),
            "state_keys": s.state_keys.iter().map(|(o, k)| json!({"operator": o, "keys": k})).collect::<Vec<_>>(),
        })
    }

    /// `/api/v1/receivers`.
    pub fn receivers_json(&self) -> Value {
        let (s, _) = self.snapshot();
        Value::Array(
            s.receivers
                .iter()
                .map(|(name, r)| {
                    json!({
                        "name": name,
                        "active": r.active,
                        "connected": r.connected,
                        "records": r.stats.records,
                        "bytes": r.stats.bytes,
                        "connections": r.stats.connections,
                        "errors": r.stats.connection_errors,
                        "last_error": r.stats.last_error,
                        "invalid_utf8_lines": r.stats.invalid_utf8_lines,
                        "oversized_lines": r.stats.oversized_lines,
                        "input_rate": s.input_rate.get(name).copied().unwrap_or(0.0),
                    })
                })
                .collect(),
        )
    }

    /// `/api/v1/batches`: the newest `limit` batches, newest first.
    pub fn batches_json(&self, limit: usize) -> Value {
        let newest: Vec<Arc<BatchInfo>> = self
            .lock()
            .recent
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect();
        Value::Array(newest.iter().map(|b| batch_json(b.as_ref())).collect())
    }

    /// `/api/v1/batches/{time}`.
    pub fn batch_json(&self, time: u64) -> Option<Value> {
        let found = self
            .lock()
            .recent
            .iter()
            .find(|b| b.time.millis() == time)
            .cloned();
        found.map(|b| {
            let mut detail = batch_json(&b);
            detail["outputs"] = b
                .outputs
                .iter()
                .map(|o| json!({"name": o.name, "duration_ms": ms(o.duration), "error": o.error}))
                .collect();
            detail["records_per_source"] = b
                .records
                .iter()
                .map(|(source, n)| json!({"source": source, "records": n}))
                .collect();
            detail
        })
    }
}

fn batch_json(b: &BatchInfo) -> Value {
    json!({
        "time": b.time.millis(),
        "records": b.total_records(),
        "submitted_ms": millis(b.submitted),
        "started_ms": millis(b.started),
        "ended_ms": millis(b.ended),
        "scheduling_delay_ms": ms(b.scheduling_delay),
        "processing_time_ms": ms(b.processing_time),
        "total_delay_ms": ms(b.total_delay),
        "checkpoint_ms": b.checkpoint_time.map(ms),
        "failure": b.failure,
    })
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// A Prometheus label value: backslash, double quote and line feed escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl StreamingListener for Metrics {
    fn on_app_started(&self, app: &AppInfo) {
        let mut s = self.lock();
        s.figures.app = Some(app.clone());
        s.last_cut = Some(Instant::now());
    }

    fn on_app_stopped(&self, _report: &RunReport) {
        let mut s = self.lock();
        s.figures.stopped = true;
        for r in s.figures.receivers.values_mut() {
            r.active = false;
            r.connected = false;
        }
    }

    // Receiver started and error events are not used: they are derived from the same counters that
    // `on_batch_submitted` brings, but later (when the batch starts), so mixing them in could let a
    // stale error mark a receiver that has reconnected since.

    fn on_receiver_stopped(&self, source: &str) {
        // Only known receivers: the event also names sources read at each cut, which have none.
        if let Some(r) = self.lock().figures.receivers.get_mut(source) {
            r.active = false;
            r.connected = false;
        }
    }

    fn on_batch_submitted(&self, batch: &BatchSubmitted) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let now = Instant::now();
        if state.queued.is_empty() {
            state.executor_progress = Some(now);
        }
        state.queued.insert(batch.time);
        state.last_cut = Some(now);
        state.submitted += 1;
        for (source, stats) in &batch.sources {
            state
                .sources
                .entry(source.clone())
                .or_insert_with(|| Receiver {
                    connected: !stats.receiver,
                    ..Receiver::default()
                })
                .update(stats);
        }
        let s = &mut state.figures;
        let interval = s
            .app
            .as_ref()
            .map(|a| a.batch_interval.as_secs_f64())
            .unwrap_or(1.0)
            .max(1e-3);
        for (source, n) in &batch.records {
            *s.received.entry(source.clone()).or_default() += *n as u64;
            s.input_rate.insert(source.clone(), *n as f64 / interval);
        }
        for (source, stats) in &batch.sources {
            if !stats.lag.is_empty() {
                s.lags.insert(source.clone(), stats.lag.clone());
            }
            if stats.receiver {
                s.receivers.entry(source.clone()).or_default().update(stats);
            }
        }
    }

    fn on_batch_completed(&self, batch: &BatchInfo) {
        // Copied before taking the lock, which the server's readers share.
        let entry = Arc::new(batch.clone());
        let state_keys: Vec<(String, usize)> = batch
            .state_keys
            .iter()
            .map(|(o, k)| (o.to_string(), *k))
            .collect();
        let mut guard = self.lock();
        let state = &mut *guard;
        state.queued.remove(&batch.time);
        state.executor_progress = Some(Instant::now());
        if state.recent.len() == self.history {
            state.recent.pop_front();
        }
        state.recent.push_back(entry);
        let s = &mut state.figures;
        if batch.failure.is_some() {
            s.failed += 1;
        } else {
            s.completed += 1;
        }
        s.processing.observe(batch.processing_time);
        s.scheduling.observe(batch.scheduling_delay);
        s.total.observe(batch.total_delay);
        if let Some(took) = batch.checkpoint_time {
            s.checkpoint.observe(took);
        }
        if let Some(bytes) = batch.checkpoint_bytes {
            s.checkpoint_bytes = bytes;
        }
        s.state_keys = state_keys;
        s.rate_limits.clone_from(&batch.rate_limits);
        s.sinks.clone_from(&batch.sinks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(time: u64, records: usize, scheduling_ms: u64, processing_ms: u64) -> BatchInfo {
        BatchInfo {
            time: Time(time),
            records: vec![("lines".into(), records)],
            scheduling_delay: Duration::from_millis(scheduling_ms),
            processing_time: Duration::from_millis(processing_ms),
            total_delay: Duration::from_millis(scheduling_ms + processing_ms),
            ..BatchInfo::default()
        }
    }

    fn started(metrics: &Metrics) {
        metrics.on_app_started(&AppInfo {
            name: "wc".into(),
            batch_interval: Duration::from_millis(500),
            workers: 2,
            started: SystemTime::now(),
            sources: vec![("lines".into(), "socket_text_stream".into())],
            outputs: vec!["counts.print".into()],
        });
    }

    #[test]
    fn rates_delays_and_counters_follow_the_batches() {
        let metrics = Metrics::new(2);
        started(&metrics);
        for (time, records) in [(500, 100), (1000, 250), (1500, 50)] {
            metrics.on_batch_submitted(&BatchSubmitted {
                time: Time(time),
                submitted: SystemTime::now(),
                records: vec![("lines".into(), records)],
                sources: vec![],
            });
        }
        assert_eq!(metrics.app_json()["batches_queued"], 3);
        metrics.on_batch_completed(&batch(500, 100, 2, 30));
        let mut second = batch(1000, 250, 20, 700);
        second.sinks = vec![(
            "wordcount".into(),
            crate::sink::SinkCounts {
                records: 12,
                skipped: 1,
                retries: 3,
                dead_lettered: 0,
            },
        )];
        metrics.on_batch_completed(&second);
        let text = metrics.prometheus(Some(42));
        // 400 records over three 500 ms batches; the last batch's rate is 50 / 0.5 s.
        assert!(
            text.contains("streamc_records_received_total{app=\"wc\",source=\"lines\"} 400"),
            "{text}"
        );
        assert!(
            text.contains("streamc_input_rate{app=\"wc\",source=\"lines\"} 100"),
            "{text}"
        );
        assert!(
            text.contains("streamc_batches_completed_total{app=\"wc\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("streamc_batches_queued{app=\"wc\"} 1"),
            "{text}"
        );
        // 30 ms falls in the 0.05 bucket, 700 ms in the 1.0 bucket; buckets are cumulative.
        assert!(
            text.contains("streamc_batch_processing_seconds_bucket{app=\"wc\",le=\"0.025\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("streamc_batch_processing_seconds_bucket{app=\"wc\",le=\"0.05\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("streamc_batch_processing_seconds_bucket{app=\"wc\",le=\"0.5\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("streamc_batch_processing_seconds_bucket{app=\"wc\",le=\"1\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("streamc_batch_processing_seconds_sum{app=\"wc\"} 0.73"),
            "{text}"
        );
        assert!(
            text.contains("streamc_batch_scheduling_delay_seconds_count{app=\"wc\"} 2"),
            "{text}"
        );
        assert!(text.contains("streamc_wal_bytes{app=\"wc\"} 42"), "{text}");
        assert!(
            text.contains("streamc_output_retries_total{app=\"wc\",output=\"wordcount\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("streamc_output_records_total{app=\"wc\",output=\"wordcount\"} 12"),
            "{text}"
        );
        // The history is bounded; the newest first.
        metrics.on_batch_completed(&batch(1500, 50, 1, 10));
        let batches = metrics.batches_json(10);
        let times: Vec<u64> = batches
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["time"].as_u64().unwrap())
            .collect();
        assert_eq!(times, vec![1500, 1000]);
        assert_eq!(batches[1]["processing_time_ms"], 700.0);
        assert_eq!(batches[1]["total_delay_ms"], 720.0);
        assert!(
            metrics.batch_json(500).is_none(),
            "dropped from the bounded history"
        );
        assert_eq!(metrics.batch_json(1000).unwrap()["records"], 250);
    }

    #[test]
    fn receivers_count_every_error_and_show_outages() {
        let metrics = Metrics::new(10);
        started(&metrics);
        let cut = |time: u64, connections: u64, connection_errors: u64, records: u64| {
            metrics.on_batch_submitted(&BatchSubmitted {
                time: Time(time),
                submitted: SystemTime::now(),
                records: vec![("lines".into(), 0)],
                sources: vec![(
                    "lines".into(),
                    SourceStats {
                        connections,
                        connection_errors,
                        records,
                        last_error: (connection_errors > 0).then(|| "refused".to_string()),
                        receiver: true,
                        ..SourceStats::default()
                    },
                )],
            });
        };
        let seen = || {
            let r = metrics.receivers_json();
            (
                r[0]["active"].as_bool().unwrap(),
                r[0]["connected"].as_bool().unwrap(),
                r[0]["errors"].as_u64().unwrap(),
            )
        };
        // Three refusals before the first cut count three, not one.
        cut(500, 0, 3, 0);
        assert_eq!(seen(), (true, false, 3));
        cut(1000, 1, 3, 40);
        assert_eq!(seen(), (true, true, 3));
        cut(1500, 1, 3, 40);
        assert_eq!(
            seen(),
            (true, true, 3),
            "an idle connection stays connected"
        );
        cut(2000, 1, 5, 40);
        assert_eq!(seen(), (true, false, 5));
        cut(2500, 2, 6, 40);
        assert_eq!(
            seen(),
            (true, false, 6),
            "a reconnection and an error between two cuts: the error wins"
        );
        cut(3000, 2, 6, 90);
        assert_eq!(seen(), (true, true, 6), "records again: connected");
        cut(3500, 2, 7, 90);
        let text = metrics.prometheus(None);
        for line in [
            "streamc_receiver_errors_total{app=\"wc\",source=\"lines\"} 7",
            "streamc_receiver_active{app=\"wc\",source=\"lines\"} 1",
            "streamc_receiver_connected{app=\"wc\",source=\"lines\"} 0",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
        assert_eq!(metrics.receivers_json()[0]["last_error"], "refused");
        metrics.on_receiver_stopped("lines");
        assert_eq!(seen(), (false, false, 7));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
