//! The cost model of state and windows:
//! - a window's cost per slide with an inverse function does not grow with the window length; without
//!   one, per-batch partial aggregates are combined (never raw records);
//! - `map_with_state` costs in proportion to the keys a batch touches, not to the keys held;
//! - state memory per key and checkpoint write time for 1M keys.
//!
//!     cargo bench --bench state

use std::time::{Duration, Instant};
use streamc::prelude::*;

thread_local! {
    static BATCHES: std::cell::RefCell<Vec<Vec<(u64, u64)>>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn batches() -> Vec<Vec<(u64, u64)>> {
    BATCHES.with(|b| std::mem::take(&mut *b.borrow_mut()))
}

/// `count` batches of `records` (key, 1) records over keys `0..keys` (cycling, so every key recurs).
fn load(count: usize, records: usize, keys: u64) {
    let mut next = 0u64;
    let data = (0..count)
        .map(|_| {
            (0..records)
                .map(|_| {
                    next = (next + 7919) % keys;
                    (next, 1u64)
                })
                .collect()
        })
        .collect();
    BATCHES.with(|b| *b.borrow_mut() = data);
}

stream! {
    app short_inverse { batch: 1s, workers: 2, checkpoint: "target/streamc-bench/short" }
    let pairs = queue_stream::<(u64, u64)>(crate::batches());
    let counts = pairs.map(|p| *p).reduce_by_key_and_window(|a, b| a + b, |a, b| a - b, 10s, 1s);
    counts.foreach_batch(|batch, _| { std::hint::black_box(batch.len()); });
}

stream! {
    app long_inverse { batch: 1s, workers: 2, checkpoint: "target/streamc-bench/long" }
    let pairs = queue_stream::<(u64, u64)>(crate::batches());
    let counts = pairs.map(|p| *p).reduce_by_key_and_window(|a, b| a + b, |a, b| a - b, 60s, 1s);
    counts.foreach_batch(|batch, _| { std::hint::black_box(batch.len()); });
}

stream! {
    app short_plain { batch: 1s, workers: 2 }
    let pairs = queue_stream::<(u64, u64)>(crate::batches());
    let counts = pairs.map(|p| *p).reduce_by_key_and_window(|a, b| a + b, 10s, 1s);
    counts.foreach_batch(|batch, _| { std::hint::black_box(batch.len()); });
}

stream! {
    app long_plain { batch: 1s, workers: 2 }
    let pairs = queue_stream::<(u64, u64)>(crate::batches());
    let counts = pairs.map(|p| *p).reduce_by_key_and_window(|a, b| a + b, 60s, 1s);
    counts.foreach_batch(|batch, _| { std::hint::black_box(batch.len()); });
}

stream! {
    app sessions { batch: 1s, workers: 2, checkpoint: "target/streamc-bench/sessions", checkpoint_every: 3600s }
    let pairs = queue_stream::<(u64, u64)>(crate::batches());
    let latest = pairs.map(|p| *p).map_with_state(|_key: &u64, value: Option<u64>, state: &mut StateCell<u64>| {
        let total = state.get().copied().unwrap_or(0) + value.unwrap_or(0);
        state.update(total);
        total
    });
    latest.foreach_batch(|batch, _| { std::hint::black_box(batch.len()); });
}

stream! {
    app totals { batch: 1s, workers: 2, checkpoint: "target/streamc-bench/totals", checkpoint_every: 1s }
    let pairs = queue_stream::<(u64, u64)>(crate::batches());
    let held = pairs.map(|p| *p).update_state_by_key(|new: &[u64], old: Option<u64>| Some(old.unwrap_or(0) + new.iter().sum::<u64>()));
    held.foreach_batch(|batch, _| { std::hint::black_box(batch.len()); });
}

/// Mean processing time of the batches after the first `skip`.
fn mean_after(infos: &[streamc::BatchInfo], skip: usize) -> Duration {
    let tail = &infos[skip.min(infos.len())..];
    let total: Duration = tail.iter().map(|i| i.processing_time).sum();
    total / tail.len().max(1) as u32
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn fresh_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("streamc-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

macro_rules! window_cost {
    ($app:ident, $label:expr) => {{
        load(90, 50_000, 20_000);
        let mut driver = $app::app()
            .configure(|c| c.checkpoint_dir = Some(fresh_dir(stringify!($app)).into()))
            .test_driver()
            .unwrap();
        let infos = driver.run_batches(90);
        let checkpoints: Vec<Duration> = infos[60..]
            .iter()
            .filter_map(|i| i.checkpoint_time)
            .collect();
        let per_checkpoint = checkpoints.iter().sum::<Duration>() / checkpoints.len().max(1) as u32;
        let checkpointed = if checkpoints.is_empty() {
            "no checkpoints".to_string()
        } else {
            format!("checkpoint every 10 s: {}", ms(per_checkpoint))
        };
        println!(
            "  {:<32} {} per slide (mean of batches 61-90); {checkpointed}",
            $label,
            ms(mean_after(&infos, 60))
        );
    }};
}

fn main() {
    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "state and window benchmark; load average {}",
        load_avg.trim()
    );
    println!("window cost per 1 s slide, 50,000 records and 20,000 keys per batch, 2 workers:");
    window_cost!(short_inverse, "10 s window, inverse function");
    window_cost!(long_inverse, "60 s window, inverse function");
    window_cost!(short_plain, "10 s window, no inverse");
    window_cost!(long_plain, "60 s window, no inverse");

    println!("map_with_state, batches touching 1,000 keys:");
    for held in [10_000u64, 1_000_000] {
        // One batch that creates `held` keys, then 30 batches that touch 1,000 of them.
        let mut data: Vec<Vec<(u64, u64)>> = vec![(0..held).map(|k| (k, 1)).collect()];
        data.extend((0..30u64).map(|b| {
            (0..1_000u64)
                .map(|i| ((b * 1_000 + i) * 31 % held, 1))
                .collect()
        }));
        BATCHES.with(|b| *b.borrow_mut() = data);
        let mut driver = sessions::app()
            .configure(|c| c.checkpoint_dir = Some(fresh_dir("sessions").into()))
            .test_driver()
            .unwrap();
        let infos = driver.run_batches(31);
        println!(
            "  {held:>9} keys held: {} per batch",
            ms(mean_after(&infos, 1))
        );
    }

    println!("update_state_by_key with 1,000,000 keys:");
    BATCHES
        .with(|b| *b.borrow_mut() = vec![(0..1_000_000u64).map(|k| (k, 1)).collect(), Vec::new()]);
    let dir = fresh_dir("totals");
    let mut driver = totals::app()
        .configure(|c| c.checkpoint_dir = Some(dir.clone().into()))
        .test_driver()
        .unwrap();
    // Once the queue holds its input, which is not state.
    let before = rss_kib();
    let started = Instant::now();
    driver.run_batch();
    let first = started.elapsed();
    let after = rss_kib();
    let keys: usize = driver.state_keys().iter().map(|(_, n)| n).sum();
    let write = driver.last_checkpoint_duration().unwrap_or_default();
    let size: u64 = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    println!(
        "  keys held: {keys}; first batch (build + output + checkpoint): {}",
        ms(first)
    );
    println!(
        "  resident memory growth: {:.0} bytes per key (state, plus what the allocator keeps of the batch's freed temporaries)",
        (after.saturating_sub(before) * 1024) as f64 / keys.max(1) as f64
    );
    println!(
        "  checkpoint write: {} for {:.1} MiB ({:.1} bytes per key)",
        ms(write),
        size as f64 / 1048576.0,
        size as f64 / keys.max(1) as f64
    );
    // The directory is locked by its running app: the first one must be gone before it restarts.
    drop(driver);
    let started = Instant::now();
    let restored = totals::app()
        .configure(|c| c.checkpoint_dir = Some(dir.clone().into()))
        .test_driver()
        .unwrap();
    println!(
        "  restore (read, verify, decode, dry run): {}",
        ms(started.elapsed())
    );
    drop(restored);
}
