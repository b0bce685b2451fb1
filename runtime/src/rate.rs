//! Rate control: a per-receiver limit in records per second (`--receiver-max-rate`), and backpressure
//! (`--backpressure`): after every batch a PID estimator, with Spark's defaults, computes the rate the
//! pipeline can sustain from the batch's size, processing time and scheduling delay, and receivers are
//! held to it.
//!
//! Without backpressure, a receiver whose memory budget is more than half used paces itself at the
//! rate processing keeps up with (records per second of processing time, smoothed over batches), so
//! that an overloaded app gets batches of even size instead of a full batch and then empty ones
//! while the budget is held.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The rate in force for one receiver, shared between the engine (which sets it) and the receiver
/// (which paces itself by it). 0 means unlimited.
#[derive(Debug, Default)]
pub struct RateControl {
    limit: AtomicU64,
    /// The configured ceiling (`--receiver-max-rate`); backpressure never goes above it.
    ceiling: AtomicU64,
    /// Records per second processing kept up with lately (0 until known): the pace of a receiver
    /// under memory pressure.
    processing_rate: AtomicU64,
}

impl RateControl {
    /// A control whose limit and ceiling are `max_rate` records per second; `None` means unlimited.
    pub fn new(max_rate: Option<u64>) -> Self {
        let max = max_rate.unwrap_or(0);
        Self {
            limit: AtomicU64::new(max),
            ceiling: AtomicU64::new(max),
            processing_rate: AtomicU64::new(0),
        }
    }

    /// Records per second allowed now; 0 when unlimited.
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Folds a batch's processing rate into the smoothed one (half weight each batch).
    pub fn observe_processing(&self, records: u64, processing: Duration) {
        if records == 0 || processing.is_zero() {
            return;
        }
        let rate = (records as f64 / processing.as_secs_f64()) as u64;
        let old = self.processing_rate.load(Ordering::Relaxed);
        let smoothed = if old == 0 { rate } else { (old + rate) / 2 };
        self.processing_rate
            .store(smoothed.max(1), Ordering::Relaxed);
    }

    /// Records per second processing kept up with lately; 0 until a batch with records completed.
    pub fn processing_rate(&self) -> u64 {
        self.processing_rate.load(Ordering::Relaxed)
    }

    /// Sets the rate from backpressure, capped by the configured maximum.
    pub fn set(&self, rate: u64) {
        let ceiling = self.ceiling.load(Ordering::Relaxed);
        let rate = if ceiling > 0 { rate.min(ceiling) } else { rate };
        self.limit.store(rate.max(1), Ordering::Relaxed);
    }
}

/// The rate controls of a run's receivers, by source name.
#[derive(Clone, Debug, Default)]
pub struct RateControls(Arc<Mutex<Vec<NamedControl>>>);

/// A receiver's rate control and its source's name.
pub type NamedControl = (String, Arc<RateControl>);

impl RateControls {
    /// Registers a receiver's control.
    pub fn register(&self, source: &str, control: Arc<RateControl>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((source.to_string(), control));
    }

    /// Every registered control with its source's name, in registration order.
    pub fn all(&self) -> Vec<NamedControl> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Paces a receiver: after delivering `n` records it waits until they fit the rate.
#[derive(Debug)]
pub struct Pacer {
    control: Arc<RateControl>,
    anchor: Instant,
    delivered: u64,
    rate: u64,
    pressed: bool,
}

impl Pacer {
    /// A pacer that follows `control`'s limit, read again at each delivery, so a new limit applies
    /// from the next one.
    pub fn new(control: Arc<RateControl>) -> Self {
        Self {
            control,
            anchor: Instant::now(),
            delivered: 0,
            rate: 0,
            pressed: false,
        }
    }

    /// Whether the receiver's memory budget is under pressure: it then also keeps to the
    /// processing rate.
    pub fn set_pressed(&mut self, pressed: bool) {
        self.pressed = pressed;
    }

    /// The rate in force: the limit, and under memory pressure the processing rate too.
    fn rate(&self) -> u64 {
        let limit = self.control.limit();
        let processing = if self.pressed {
            self.control.processing_rate()
        } else {
            0
        };
        match (limit, processing) {
            (0, rate) | (rate, 0) => rate,
            (limit, processing) => limit.min(processing),
        }
    }

    /// The largest block to deliver at once: a twentieth of a second of records, so pacing stays smooth.
    pub fn block_limit(&self) -> Option<usize> {
        match self.rate() {
            0 => None,
            rate => Some((rate as usize / 20).max(1)),
        }
    }

    /// How long to wait after delivering `records` more.
    pub fn delay_after(&mut self, records: u64) -> Duration {
        let rate = self.rate();
        let now = Instant::now();
        if rate != self.rate || rate == 0 {
            // The limit changed (or there is none): pace afresh from now.
            self.rate = rate;
            self.anchor = now;
            self.delivered = 0;
        }
        if rate == 0 {
            return Duration::ZERO;
        }
        // Idle time is not credit for a later burst beyond a second's worth.
        let earliest = now - Duration::from_secs(1);
        if self.anchor + Duration::from_secs_f64(self.delivered as f64 / rate as f64) < earliest {
            self.anchor = earliest;
            self.delivered = 0;
        }
        self.delivered += records;
        let due = self.anchor + Duration::from_secs_f64(self.delivered as f64 / rate as f64);
        due.saturating_duration_since(now)
    }
}

/// The PID rate estimator's gains and floor (Spark's `spark.streaming.backpressure.pid.*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PidGains {
    /// How much the error between the rate and the processing rate moves the rate.
    pub proportional: f64,
    /// How much the backlog (scheduling delay) pulls the rate down.
    pub integral: f64,
    /// How much the error's change moves the rate.
    pub derived: f64,
    /// The lowest rate it sets, records per second.
    pub min_rate: f64,
}

impl Default for PidGains {
    /// Spark's defaults: 1.0, 0.2, 0.0 and 100 records/s.
    fn default() -> Self {
        Self {
            proportional: 1.0,
            integral: 0.2,
            derived: 0.0,
            min_rate: 100.0,
        }
    }
}

/// Spark's PID rate estimator (by default proportional 1.0, integral 0.2, derivative 0.0, minimum
/// 100 records/s).
#[derive(Debug, Clone)]
pub struct PidRateEstimator {
    batch_interval_ms: f64,
    proportional: f64,
    integral: f64,
    derivative: f64,
    min_rate: f64,
    first_run: bool,
    latest_time_ms: u64,
    latest_rate: f64,
    latest_error: f64,
}

impl PidRateEstimator {
    /// An estimator with the given gains for batches of `batch_interval`. It gives no rate for the
    /// first batch it sees.
    pub fn with_gains(batch_interval: Duration, gains: PidGains) -> Self {
        Self {
            batch_interval_ms: batch_interval.as_millis().max(1) as f64,
            proportional: gains.proportional,
            integral: gains.integral,
            derivative: gains.derived,
            min_rate: gains.min_rate,
            first_run: true,
            latest_time_ms: 0,
            latest_rate: -1.0,
            latest_error: -1.0,
        }
    }

    /// A new rate (records/s) after batch `time_ms` of `records` records, or `None` while it learns.
    pub fn compute(
        &mut self,
        time_ms: u64,
        records: u64,
        processing: Duration,
        scheduling: Duration,
    ) -> Option<f64> {
        let processing_ms = processing.as_secs_f64() * 1000.0;
        if time_ms <= self.latest_time_ms || records == 0 || processing_ms <= 0.0 {
            return None;
        }
        let since_update = (time_ms - self.latest_time_ms) as f64 / 1000.0;
        let processing_rate = records as f64 / processing_ms * 1000.0;
        let error = self.latest_rate - processing_rate;
        let historical_error =
            scheduling.as_secs_f64() * 1000.0 * processing_rate / self.batch_interval_ms;
        let d_error = (error - self.latest_error) / since_update;
        let new_rate = (self.latest_rate
            - self.proportional * error
            - self.integral * historical_error
            - self.derivative * d_error)
            .max(self.min_rate);
        self.latest_time_ms = time_ms;
        if self.first_run {
            self.latest_rate = processing_rate;
            self.latest_error = 0.0;
            self.first_run = false;
            None
        } else {
            self.latest_rate = new_rate;
            self.latest_error = error;
            Some(new_rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gains_and_the_floor_are_the_ones_given() {
        let interval = Duration::from_secs(1);
        let batch = |pid: &mut PidRateEstimator, t: u64, records: u64| {
            pid.compute(
                t * 1000,
                records,
                Duration::from_millis(500),
                Duration::ZERO,
            )
        };
        // Spark's: the processing rate (2 records/ms = 2,000/s) wins at the second batch, but never
        // below the minimum.
        let mut spark = PidRateEstimator::with_gains(interval, PidGains::default());
        assert_eq!(
            batch(&mut spark, 1, 1000),
            None,
            "the first batch only teaches it"
        );
        assert_eq!(batch(&mut spark, 2, 1000), Some(2000.0));
        let floor = PidGains {
            min_rate: 5000.0,
            ..PidGains::default()
        };
        let mut floored = PidRateEstimator::with_gains(interval, floor);
        batch(&mut floored, 1, 1000);
        assert_eq!(batch(&mut floored, 2, 1000), Some(5000.0));
        // No proportional gain: the rate stays where the first batch left it.
        let still = PidGains {
            proportional: 0.0,
            ..PidGains::default()
        };
        let mut still = PidRateEstimator::with_gains(interval, still);
        batch(&mut still, 1, 1000);
        assert_eq!(batch(&mut still, 2, 4000), Some(2000.0));
    }

    #[test]
    fn pid_matches_a_hand_computed_step() {
        let mut pid = PidRateEstimator::with_gains(Duration::from_secs(1), PidGains::default());
        // First batch: 10,000 records in 500 ms learns a processing rate of 20,000/s.
        assert_eq!(
            pid.compute(1000, 10_000, Duration::from_millis(500), Duration::ZERO),
            None
        );
        // Second: 30,000 records in 2,000 ms (15,000/s), scheduled 1,000 ms late.
        // error = 20,000 - 15,000 = 5,000; historical = 1,000 * 15,000 / 1,000 = 15,000;
        // new = 20,000 - 5,000 - 0.2 * 15,000 = 12,000.
        let rate = pid
            .compute(
                2000,
                30_000,
                Duration::from_millis(2000),
                Duration::from_millis(1000),
            )
            .unwrap();
        assert!((rate - 12_000.0).abs() < 1e-6, "{rate}");
        // Never below the minimum.
        let rate = pid
            .compute(
                3000,
                10,
                Duration::from_millis(5000),
                Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(rate, 100.0);
        // Stale or empty batches change nothing.
        assert_eq!(
            pid.compute(3000, 10, Duration::from_millis(5), Duration::ZERO),
            None
        );
        assert_eq!(
            pid.compute(4000, 0, Duration::from_millis(5), Duration::ZERO),
            None
        );
    }

    #[test]
    fn the_ceiling_caps_backpressure() {
        let control = RateControl::new(Some(5_000));
        control.set(9_000);
        assert_eq!(control.limit(), 5_000);
        control.set(1_000);
        assert_eq!(control.limit(), 1_000);
        let unlimited = RateControl::new(None);
        assert_eq!(unlimited.limit(), 0);
        unlimited.set(700);
        assert_eq!(unlimited.limit(), 700);
    }

    #[test]
    fn under_memory_pressure_a_receiver_keeps_to_the_processing_rate() {
        let control = Arc::new(RateControl::new(None));
        let mut pacer = Pacer::new(control.clone());
        pacer.set_pressed(true);
        assert_eq!(pacer.block_limit(), None, "no rate known yet");
        control.observe_processing(10_000, Duration::from_millis(500));
        control.observe_processing(40_000, Duration::from_millis(1000));
        assert_eq!(
            control.processing_rate(),
            30_000,
            "the mean of 20,000 and 40,000"
        );
        assert_eq!(pacer.block_limit(), Some(1_500));
        pacer.set_pressed(false);
        assert_eq!(pacer.block_limit(), None, "no pressure, no pace");
        control.set(1_000);
        pacer.set_pressed(true);
        assert_eq!(pacer.block_limit(), Some(50), "the lower of the two");
        control.observe_processing(0, Duration::from_millis(5));
        assert_eq!(
            control.processing_rate(),
            30_000,
            "empty batches say nothing"
        );
    }

    #[test]
    fn pacing_spreads_records_over_time() {
        let mut pacer = Pacer::new(Arc::new(RateControl::new(Some(1_000))));
        assert_eq!(pacer.block_limit(), Some(50));
        let wait = pacer.delay_after(500);
        assert!(
            wait > Duration::from_millis(450) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
    }
}
