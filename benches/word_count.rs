//! WordCount throughput: the fused pipeline against a hand-written loop over the same data, through
//! `queue_stream` (compute only) and through a loopback socket (receiver + compute), plus the smallest
//! batch interval that keeps up with 1 million words/s, time to the first batch, and peak RSS.
//!
//!     cargo bench --bench word_count            (full corpus: 1M lines, 10M words)
//!     cargo bench --bench word_count -- --quick (a smaller corpus, for a smoke run)

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::time::{Duration, Instant};
use streamc::prelude::*;
use streamc::testkit::Corpus;

const WORDS_PER_LINE: usize = 10;

fn queued_batches() -> Vec<Vec<String>> {
    CORPUS.with(|c| c.borrow().clone())
}

thread_local! {
    static CORPUS: std::cell::RefCell<Vec<Vec<String>>> = const { std::cell::RefCell::new(Vec::new()) };
}

stream! {
    app queued_count { batch: 1s, workers: 2 }
    let lines = queue_stream::<String>(crate::queued_batches());
    let counts = lines
        .flat_map(|line| line.split(' '))
        .map(|w| (w.to_string(), 1u64))
        .reduce_by_key(|a, b| a + b);
    counts.foreach_batch(|batch, _| { std::hint::black_box(batch.len()); });
}

stream! {
    app socket_count { batch: 1s, workers: 2 }
    let lines = socket_text_stream("127.0.0.1", 9);
    let counts = lines
        .flat_map(|line: &str| line.split(' '))
        .map(|w| (w.to_string(), 1u64))
        .reduce_by_key(|a, b| a + b);
    counts.foreach_batch(|batch, _| crate::count_words(&batch));
}

static COUNTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn count_words(batch: &Batch<(String, u64)>) {
    let words: u64 = batch.iter().map(|(_, n)| n).sum();
    COUNTED.fetch_add(words, std::sync::atomic::Ordering::SeqCst);
}

/// The same work as the pipeline, written by hand: split, own the word, count in a hash map.
fn hand_written(lines: &[String]) -> HashMap<String, u64, foldhash::fast::RandomState> {
    let mut counts: HashMap<String, u64, foldhash::fast::RandomState> = HashMap::default();
    for line in lines {
        for w in line.split(' ') {
            *counts.entry(w.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

fn hand_written_parallel(lines: &[String], threads: usize) -> usize {
    let chunk = lines.len().div_ceil(threads);
    let maps: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = lines
            .chunks(chunk)
            .map(|part| s.spawn(move || hand_written(part)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut total = HashMap::<String, u64>::new();
    for map in maps {
        for (k, v) in map {
            *total.entry(k).or_insert(0) += v;
        }
    }
    total.len()
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn rate(words: usize, time: Duration) -> f64 {
    words as f64 / time.as_secs_f64()
}

fn million(x: f64) -> String {
    format!("{:.2} M words/s", x / 1e6)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let lines_total = if quick { 100_000 } else { 1_000_000 };
    let batch_lines = 100_000;
    let words = lines_total * WORDS_PER_LINE;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("word count benchmark: {lines_total} lines, {words} words, 10,000-word Zipf vocabulary; load average {}", load.trim());
    let all_lines = Corpus::zipf(10_000, 1).lines(lines_total, WORDS_PER_LINE);
    let batches: Vec<Vec<String>> = all_lines
        .chunks(batch_lines)
        .map(<[String]>::to_vec)
        .collect();

    let hand_1 = best_of(3, || hand_written(&all_lines).len());
    let hand_2 = best_of(3, || hand_written_parallel(&all_lines, 2));
    println!(
        "hand-written loop, 1 thread:        {}",
        million(rate(words, hand_1))
    );
    println!(
        "hand-written loop, 2 threads:       {}",
        million(rate(words, hand_2))
    );

    CORPUS.with(|c| *c.borrow_mut() = batches.clone());
    for workers in [1, 2] {
        // Building the driver clones the queued corpus; only running the batches is timed.
        let elapsed = (0..3)
            .map(|_| {
                let mut driver = queued_count::app().workers(workers).test_driver().unwrap();
                let start = Instant::now();
                std::hint::black_box(driver.run_batches(batches.len()));
                start.elapsed()
            })
            .min()
            .unwrap_or_default();
        let reference = if workers == 1 { hand_1 } else { hand_2 };
        println!(
            "stream! pipeline, queue_stream, {workers} worker{}: {} ({:.0}% of the hand-written loop with {workers} thread{})",
            if workers == 1 { " " } else { "s" },
            million(rate(words, elapsed)),
            100.0 * reference.as_secs_f64() / elapsed.as_secs_f64(),
            if workers == 1 { "" } else { "s" },
        );
    }

    let mut payload = all_lines.join("\n").into_bytes();
    payload.push(b'\n');
    // Three copies of the corpus, so the tick alignment of 1 s batches weighs less in the figure.
    let repeated = payload.repeat(3);
    for (workers, interval) in [(1, 1000), (2, 1000), (2, 100)] {
        let (elapsed, report) = socket_run(
            &repeated,
            3 * words as u64,
            workers,
            Duration::from_millis(interval),
        );
        let max_processing = report
            .recent_batches
            .iter()
            .map(|b| b.processing_time)
            .max()
            .unwrap_or_default();
        println!(
            "stream! pipeline, loopback socket, {workers} worker{}, {interval} ms batches: {} end to end (first byte to last count; longest batch {} ms)",
            if workers == 1 { " " } else { "s" },
            million(rate(3 * words, elapsed)),
            max_processing.as_millis()
        );
    }

    println!("smallest batch interval that keeps up with 1M words/s on the socket (2 workers, 3 s each):");
    for interval in [100u64, 50, 20, 10, 5] {
        let verdict = keeps_up(&all_lines, Duration::from_millis(interval));
        println!("  {interval:>3} ms: {verdict}");
    }
    println!("peak RSS of this benchmark process (it holds the {} MiB corpus several times over: lines, queued batches, socket payload): {:.0} MiB", payload.len() >> 20, peak_rss_mib());
}

/// Streams `payload` through a socket into the pipeline; time from connection to the last word counted.
fn socket_run(
    payload: &[u8],
    words: u64,
    workers: usize,
    interval: Duration,
) -> (Duration, streamc::RunReport) {
    COUNTED.store(0, std::sync::atomic::Ordering::SeqCst);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let app = socket_count::app()
        .workers(workers)
        .batch_interval(interval)
        .source_address("lines", address.to_string())
        .start()
        .unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    let start = Instant::now();
    conn.write_all(payload).unwrap();
    while COUNTED.load(std::sync::atomic::Ordering::SeqCst) < words
        && start.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed();
    drop(conn);
    let report = app.stop().unwrap();
    (elapsed, report)
}

/// Feeds 1M words/s for 3 s; the interval keeps up if no batch waited longer than two intervals.
fn keeps_up(lines: &[String], interval: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let started = Instant::now();
    let app = socket_count::app()
        .batch_interval(interval)
        .source_address("lines", address.to_string())
        .start()
        .unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    let first_batch_wait = started.elapsed();
    let lines_per_ms = 100; // 100 lines × 10 words per millisecond = 1M words/s
    let begin = Instant::now();
    let mut sent = 0usize;
    let mut text = Vec::new();
    while begin.elapsed() < Duration::from_secs(3) {
        let due = (begin.elapsed().as_millis() as usize + 1) * lines_per_ms;
        text.clear();
        while sent < due {
            text.extend_from_slice(lines[sent % lines.len()].as_bytes());
            text.push(b'\n');
            sent += 1;
        }
        if conn.write_all(&text).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    drop(conn);
    let report = app.stop().unwrap();
    let worst = report
        .recent_batches
        .iter()
        .map(|b| b.scheduling_delay)
        .max()
        .unwrap_or_default();
    let worst_processing = report
        .recent_batches
        .iter()
        .map(|b| b.processing_time)
        .max()
        .unwrap_or_default();
    let ok = worst <= interval * 2;
    format!(
        "{} (worst scheduling delay {} ms, worst processing {} ms, {} batches, time to first batch {} ms, connect {} ms)",
        if ok { "keeps up" } else { "falls behind" },
        worst.as_millis(),
        worst_processing.as_millis(),
        report.batches_completed,
        report.time_to_first_batch.unwrap_or_default().as_millis(),
        first_batch_wait.as_millis()
    )
}
