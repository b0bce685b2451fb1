//! WordCount throughput: the fused pipeline against a hand-written loop over the same data, through
//! `queue_stream` (compute only) and through a loopback socket (receiver + compute), plus the smallest
//! batch interval that keeps up with 1 million words/s, time to the first batch, and the app's peak RSS.
//!
//!     cargo bench --bench word_count            (full corpus: 1M lines, 10M words)
//!     cargo bench --bench word_count -- --quick (a smaller corpus, for a smoke run)
//!     cargo bench --bench word_count -- --only queue|socket|wal|metrics|interval|rss (one section)
//!     cargo bench --bench word_count -- --only metrics-cpu (only the app's CPU with and without monitoring)
//!     cargo bench --bench word_count -- --only intake (the socket receiver against a bare reader)
//!     cargo bench --bench word_count -- --only stateful (update_state_by_key against reduce_by_key, queued)
//!     cargo bench --bench word_count -- --only sustained [--variants owned,borrowed] [--workers 2]
//!         (highest sustained rate per variant, by binary search; with STREAMC_BENCH_EXTERNAL, Spark too)

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::time::{Duration, Instant};
use streamc::prelude::*;
use streamc::testkit::Corpus;

const WORDS_PER_LINE: usize = 10;

#[path = "word_count/intake.rs"]
mod intake;
#[path = "word_count/sustained.rs"]
mod sustained;

/// The queued batches borrow the corpus (leaked once for the whole run), so that, like the hand-written
/// loop reading `&[String]`, the pipeline does not free a million strings per run: the comparison is of
/// the computation, not of who owns the input.
fn queued_batches() -> Vec<Vec<&'static str>> {
    CORPUS.with(|c| c.borrow().clone())
}

thread_local! {
    static CORPUS: std::cell::RefCell<Vec<Vec<&'static str>>> = const { std::cell::RefCell::new(Vec::new()) };
}

stream! {
    app queued_count { batch: 1s, workers: 2 }
    let lines = queue_stream::<&'static str>(crate::queued_batches());
    let counts = lines
        .flat_map(|line| line.split(' '))
        .map(|w| (w.to_string(), 1u64))
        .reduce_by_key(|a, b| a + b);
    counts.foreach_batch(|batch, _| { std::hint::black_box(batch.len()); });
}

// The seed's UpdateStateByKeyWordCount on the same queued batches: running totals instead of
// per-batch counts, checkpointed at the default interval.
stream! {
    app queued_state_count { batch: 1s, workers: 2, checkpoint: "target/streamc-bench/word-count-state" }
    let lines = queue_stream::<&'static str>(crate::queued_batches());
    let totals = lines
        .flat_map(|line| line.split(' '))
        .map(|w| (w.to_string(), 1u64))
        .update_state_by_key(|new: &[u64], old: Option<u64>| Some(old.unwrap_or(0) + new.iter().sum::<u64>()));
    totals.foreach_batch(|batch, _| { std::hint::black_box(batch.len()); });
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

// Spark's advice for a receiver-bound app: several input streams, unioned.
stream! {
    app union_count { batch: 1s, workers: 2 }
    let first = socket_text_stream("127.0.0.1", 9);
    let second = socket_text_stream("127.0.0.1", 10);
    let counts = first
        .union(second)
        .flat_map(|line: &str| line.split(' '))
        .map(|w| (w.to_string(), 1u64))
        .reduce_by_key(|a, b| a + b);
    counts.foreach_batch(|batch, _| crate::count_words(&batch));
}

fn count_words(batch: &Batch<(String, u64)>) {
    let words: u64 = batch.iter().map(|(_, n)| n).sum();
    COUNTED.fetch_add(words, std::sync::atomic::Ordering::SeqCst);
}

/// The same work as the pipeline, written by hand as well as it can be: split, look the word up
/// borrowed, own it only when it is new, count in a hash map. With more threads, each counts a
/// contiguous share and the maps are merged at the end.
fn hand_written(lines: &[String]) -> HashMap<String, u64, foldhash::fast::RandomState> {
    let mut counts: HashMap<String, u64, foldhash::fast::RandomState> = HashMap::default();
    for line in lines {
        for w in line.split(' ') {
            match counts.get_mut(w) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(w.to_string(), 1);
                }
            }
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

fn main() {
    if sustained::child_main() {
        return;
    }
    if let Ok(address) = std::env::var(RSS_CHILD) {
        return rss_child(address);
    }
    if let Ok(address) = std::env::var(CPU_CHILD) {
        return cpu_child(address, std::env::var(CPU_CHILD_UI).is_ok());
    }
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only queue|socket|interval` runs the hand-written loops and that one section (for profiling).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let wanted = |section: &str| only.as_deref().is_none_or(|o| o == section);
    let lines_total = if quick { 100_000 } else { 1_000_000 };
    let batch_lines = 100_000;
    let words = lines_total * WORDS_PER_LINE;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("word count benchmark: {lines_total} lines, {words} words, 10,000-word Zipf vocabulary; load average {}", load.trim());
    let all_lines = Corpus::zipf(10_000, 1).lines(lines_total, WORDS_PER_LINE);
    let leaked: &'static [String] = Box::leak(all_lines.clone().into_boxed_slice());
    let batches: Vec<Vec<&'static str>> = leaked
        .chunks(batch_lines)
        .map(|chunk| chunk.iter().map(String::as_str).collect())
        .collect();

    // The machine is shared and noisy: hand-written and fused runs alternate, and the ratio is the median
    // of the per-pair ratios, so a burst of load hits both sides of a pair alike.
    CORPUS.with(|c| *c.borrow_mut() = batches.clone());
    const PAIRS: usize = 15;
    for workers in [1usize, 2] {
        let mut hand = Vec::with_capacity(PAIRS);
        let mut fused = Vec::with_capacity(PAIRS);
        for _ in 0..PAIRS {
            hand.push(best_of(1, || hand_written_parallel(&all_lines, workers)));
            if wanted("queue") {
                // Building the driver clones the queued corpus; only running the batches is timed.
                let mut driver = queued_count::app().workers(workers).test_driver().unwrap();
                let start = Instant::now();
                std::hint::black_box(driver.run_batches(batches.len()));
                fused.push(start.elapsed());
            }
        }
        let threads = if workers == 1 {
            "1 thread "
        } else {
            "2 threads"
        };
        let best_hand = hand.iter().min().copied().unwrap_or_default();
        println!(
            "hand-written loop, {threads}:        {} (best of {PAIRS})",
            million(rate(words, best_hand))
        );
        if fused.is_empty() {
            continue;
        }
        let mut ratios: Vec<f64> = hand
            .iter()
            .zip(&fused)
            .map(|(h, f)| h.as_secs_f64() / f.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let best_fused = fused.iter().min().copied().unwrap_or_default();
        println!(
            "stream! pipeline, queue_stream, {workers} worker{}: {} (best of {PAIRS}); median {:.0}% of the hand-written loop, pairs {:.0}%..{:.0}%",
            if workers == 1 { " " } else { "s" },
            million(rate(words, best_fused)),
            100.0 * ratios[PAIRS / 2],
            100.0 * ratios[0],
            100.0 * ratios[PAIRS - 1],
        );
    }

    if wanted("stateful") {
        stateful_against_stateless(batches.len(), words);
    }

    let mut payload = all_lines.join("\n").into_bytes();
    payload.push(b'\n');
    // Three copies of the corpus, so the tick alignment of 1 s batches weighs less in the figure.
    let repeated = payload.repeat(3);
    for (workers, interval) in [(1, 1000), (2, 1000), (2, 100)]
        .into_iter()
        .filter(|_| wanted("socket"))
    {
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

    if wanted("intake") {
        intake::report(&repeated, 3 * lines_total as u64, 3);
    }
    if wanted("wal") {
        let dir = std::env::temp_dir().join(format!("streamc-bench-wal-{}", std::process::id()));
        let mut pairs = Vec::new();
        for _ in 0..3 {
            let (plain, _) = socket_run(&repeated, 3 * words as u64, 2, Duration::from_millis(100));
            let (logged, _) = socket_run_with(
                &repeated,
                3 * words as u64,
                2,
                Duration::from_millis(100),
                Setup::WriteAheadLog(dir.clone()),
            );
            pairs.push((plain, logged));
        }
        let _ = std::fs::remove_dir_all(&dir);
        let best_plain = pairs.iter().map(|p| p.0).min().unwrap_or_default();
        let best_logged = pairs.iter().map(|p| p.1).min().unwrap_or_default();
        println!(
            "write-ahead log on the loopback socket (2 workers, 100 ms batches): {} without, {} with: {:.0}% throughput loss",
            million(rate(3 * words, best_plain)),
            million(rate(3 * words, best_logged)),
            100.0 * (1.0 - best_plain.as_secs_f64() / best_logged.as_secs_f64())
        );
    }
    if wanted("union") {
        // The same payload through one receiver, or split at a line boundary across two unioned
        // ones (one connection each); alternating pairs.
        let mut pairs = Vec::new();
        for _ in 0..3 {
            let (one, _) = socket_run(&repeated, 3 * words as u64, 2, Duration::from_millis(100));
            let two = union_run(&repeated, 3 * words as u64, Duration::from_millis(100));
            pairs.push((one, two));
        }
        let best_one = pairs.iter().map(|p| p.0).min().unwrap_or_default();
        let best_two = pairs.iter().map(|p| p.1).min().unwrap_or_default();
        println!(
            "two unioned socket receivers against one (2 workers, 100 ms batches, best of 3 pairs): {} with one, {} with two ({:.2}x)",
            million(rate(3 * words, best_one)),
            million(rate(3 * words, best_two)),
            best_one.as_secs_f64() / best_two.as_secs_f64()
        );
    }
    if wanted("metrics") {
        // Median of paired runs (plain, monitored) on the loopback socket; while monitored, a client
        // fetches /metrics and the dashboard's JSON every second, as an open dashboard (which polls each
        // second) and a Prometheus scraper (every 15 s by default) do, with room to spare.
        let mut ratios = Vec::new();
        let (mut plains, mut monitoreds) = (Vec::new(), Vec::new());
        const PAIRS: usize = 9;
        for _ in 0..PAIRS {
            let (plain, _) = socket_run(&repeated, 3 * words as u64, 2, Duration::from_millis(100));
            let (monitored, _) = socket_run_with(
                &repeated,
                3 * words as u64,
                2,
                Duration::from_millis(100),
                Setup::Monitored,
            );
            ratios.push(plain.as_secs_f64() / monitored.as_secs_f64());
            plains.push(plain);
            monitoreds.push(monitored);
        }
        ratios.sort_by(f64::total_cmp);
        plains.sort();
        monitoreds.sort();
        println!(
            "metrics + dashboard on the loopback socket (2 workers, 100 ms batches, polled every second), {PAIRS} pairs: median {} without, {} with; per pair, monitored throughput is {:.1}% of unmonitored at the median (range {:.1}%..{:.1}%)",
            million(rate(3 * words, plains[PAIRS / 2])),
            million(rate(3 * words, monitoreds[PAIRS / 2])),
            100.0 * ratios[PAIRS / 2],
            100.0 * ratios[0],
            100.0 * ratios[PAIRS - 1]
        );
        monitoring_cpu_cost();
    }
    if wanted("metrics") || only.as_deref() == Some("metrics-cpu") {
        monitored_app_cpu(&all_lines);
    }
    if wanted("interval") {
        println!("smallest batch interval that keeps up with 1M words/s on the socket (2 workers, 3 s each):");
    }
    for interval in [100u64, 50, 20, 10, 5]
        .into_iter()
        .filter(|_| wanted("interval"))
    {
        let verdict = keeps_up(&all_lines, Duration::from_millis(interval));
        println!("  {interval:>3} ms: {verdict}");
    }
    if only.as_deref() == Some("sustained") || (only.is_none() && !quick) {
        println!("highest sustained rate per variant (1 s batches, paced loopback sender):");
        // `--variants owned,stateful-owned` and `--workers 2` narrow the search.
        let listed = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>())
        };
        let variants: Vec<&'static str> = match listed("--variants") {
            Some(named) => sustained::VARIANTS
                .iter()
                .copied()
                .filter(|v| named.iter().any(|n| n == v))
                .collect(),
            None => sustained::VARIANTS.to_vec(),
        };
        let workers: Vec<usize> = listed("--workers")
            .map(|w| w.iter().filter_map(|n| n.parse().ok()).collect())
            .unwrap_or_else(|| vec![1, 2]);
        sustained::report(&all_lines, &variants, &workers);
    }
    if wanted("rss") {
        println!(
            "peak RSS of the socket WordCount app (2 workers, 1 s batches), in a child process:"
        );
        app_peak_rss(&all_lines, &repeated);
    }
}

/// Processing time of the running-total word count against the per-batch one, on the same queued
/// batches, alternating; each stateful run starts from an empty checkpoint directory.
fn stateful_against_stateless(batches: usize, words: usize) {
    const PAIRS: usize = 7;
    let dir = std::env::temp_dir().join(format!("streamc-bench-state-{}", std::process::id()));
    for workers in [1usize, 2] {
        let (mut plain, mut stateful) = (Vec::new(), Vec::new());
        for _ in 0..PAIRS {
            let mut driver = queued_count::app().workers(workers).test_driver().unwrap();
            let start = Instant::now();
            std::hint::black_box(driver.run_batches(batches));
            plain.push(start.elapsed());
            let _ = std::fs::remove_dir_all(&dir);
            let mut driver = queued_state_count::app()
                .workers(workers)
                .configure(|c| c.checkpoint_dir = Some(dir.clone().into()))
                .test_driver()
                .unwrap();
            let start = Instant::now();
            std::hint::black_box(driver.run_batches(batches));
            stateful.push(start.elapsed());
        }
        let mut ratios: Vec<f64> = stateful
            .iter()
            .zip(&plain)
            .map(|(s, p)| s.as_secs_f64() / p.as_secs_f64())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let best = |runs: &[Duration]| runs.iter().min().copied().unwrap_or_default();
        println!(
            "update_state_by_key against reduce_by_key, queue_stream, {workers} worker{}: {} against {} (best of {PAIRS}); stateful time median {:.2}x the stateless, pairs {:.2}x..{:.2}x",
            if workers == 1 { " " } else { "s" },
            million(rate(words, best(&stateful))),
            million(rate(words, best(&plain))),
            ratios[PAIRS / 2],
            ratios[0],
            ratios[PAIRS - 1],
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Streams `payload` through a socket into the pipeline; time from connection to the last word counted.
fn socket_run(
    payload: &[u8],
    words: u64,
    workers: usize,
    interval: Duration,
) -> (Duration, streamc::RunReport) {
    socket_run_with(payload, words, workers, interval, Setup::Plain)
}

/// What a socket run turns on.
enum Setup {
    Plain,
    /// The write-ahead log, in a fresh checkpoint directory.
    WriteAheadLog(std::path::PathBuf),
    /// Metrics and the dashboard server, scraped every second.
    Monitored,
}

/// [`socket_run`] with the write-ahead log or the monitoring on.
fn socket_run_with(
    payload: &[u8],
    words: u64,
    workers: usize,
    interval: Duration,
    setup: Setup,
) -> (Duration, streamc::RunReport) {
    COUNTED.store(0, std::sync::atomic::Ordering::SeqCst);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let app = socket_count::app()
        .workers(workers)
        .batch_interval(interval)
        .source_address("lines", address.to_string())
        .configure(|c| match setup {
            Setup::Plain => {}
            Setup::WriteAheadLog(dir) => {
                let _ = std::fs::remove_dir_all(&dir);
                c.checkpoint_dir = Some(dir.into());
                c.write_ahead_log = true;
            }
            Setup::Monitored => c.ui = Some("127.0.0.1:0".parse().unwrap()),
        })
        .start()
        .unwrap();
    let poller = app.ui_address().map(Poller::start);
    let (mut conn, _) = listener.accept().unwrap();
    let start = Instant::now();
    conn.write_all(payload).unwrap();
    while COUNTED.load(std::sync::atomic::Ordering::SeqCst) < words
        && start.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed();
    drop(poller);
    drop(conn);
    let report = app.stop().unwrap();
    (elapsed, report)
}

/// Streams `payload`, split in two at a line boundary, through the two unioned receivers of
/// `union_count`; time from both connections to the last word counted.
fn union_run(payload: &[u8], words: u64, interval: Duration) -> Duration {
    COUNTED.store(0, std::sync::atomic::Ordering::SeqCst);
    let listeners = [
        TcpListener::bind("127.0.0.1:0").unwrap(),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    ];
    let app = union_count::app()
        .batch_interval(interval)
        .source_address("first", listeners[0].local_addr().unwrap().to_string())
        .source_address("second", listeners[1].local_addr().unwrap().to_string())
        .start()
        .unwrap();
    let middle = payload.len() / 2;
    let cut = middle
        + payload[middle..]
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(0)
        + 1;
    let halves = [&payload[..cut], &payload[cut..]];
    let mut conns: Vec<_> = listeners.iter().map(|l| l.accept().unwrap().0).collect();
    let start = Instant::now();
    std::thread::scope(|scope| {
        for (conn, half) in conns.iter_mut().zip(halves) {
            scope.spawn(move || conn.write_all(half).unwrap());
        }
    });
    while COUNTED.load(std::sync::atomic::Ordering::SeqCst) < words
        && start.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed();
    drop(conns);
    app.stop().unwrap();
    assert_eq!(
        COUNTED.load(std::sync::atomic::Ordering::SeqCst),
        words,
        "every word counted"
    );
    elapsed
}

/// Fetches the endpoints an open dashboard and a Prometheus scraper read, every second, until dropped.
struct Poller {
    polling: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    fn start(address: std::net::SocketAddr) -> Self {
        let polling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let still = polling.clone();
        let thread = std::thread::spawn(move || {
            while still.load(std::sync::atomic::Ordering::SeqCst) {
                for path in [
                    "/metrics",
                    "/api/v1/app",
                    "/api/v1/receivers",
                    "/api/v1/batches?limit=300",
                ] {
                    scrape(address, path);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        Self {
            polling,
            thread: Some(thread),
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.polling
            .store(false, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One GET, response read and dropped.
fn scrape(address: std::net::SocketAddr, path: &str) {
    use std::io::Read;
    if let Ok(mut s) = std::net::TcpStream::connect(address) {
        let _ = write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let _ = s.read_to_end(&mut Vec::new());
    }
}

/// Writes `lines` (10 words each) to `conn` at `words_per_second` for `duration`, in millisecond steps.
fn pace(
    conn: &mut std::net::TcpStream,
    lines: &[String],
    words_per_second: usize,
    duration: Duration,
) {
    let lines_per_ms = words_per_second / WORDS_PER_LINE / 1000;
    let begin = Instant::now();
    let mut sent = 0usize;
    let mut text = Vec::new();
    while begin.elapsed() < duration {
        let due = (begin.elapsed().as_millis() as usize + 1) * lines_per_ms;
        text.clear();
        while sent < due {
            text.extend_from_slice(lines[sent % lines.len()].as_bytes());
            text.push(b'\n');
            sent += 1;
        }
        if conn.write_all(&text).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Peak resident memory of the WordCount app alone, in a child process (this one holds the corpus):
/// at a paced 1M words/s, and with the sender writing as fast as it can.
fn app_peak_rss(lines: &[String], payload: &[u8]) {
    for (label, paced) in [
        ("paced at 1M words/s", true),
        ("sender unthrottled, 30M words", false),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .env(RSS_CHILD, listener.local_addr().unwrap().to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        let status = format!("/proc/{}/status", child.id());
        let sampler = std::thread::spawn(move || sustained::peak_rss(&status));
        if paced {
            pace(&mut conn, lines, 1_000_000, Duration::from_secs(4));
        } else {
            let _ = conn.write_all(payload);
        }
        drop(conn);
        let _ = child.wait();
        let peak_kib = sampler.join().unwrap_or(0);
        println!("  {label}: {:.0} MiB", peak_kib as f64 / 1024.0);
    }
}

/// In the child process of [`app_peak_rss`]: runs the socket WordCount (2 workers, 1 s batches) for 6 batches.
fn rss_child(address: String) {
    let report = socket_count::app()
        .workers(2)
        .batch_interval(Duration::from_secs(1))
        .source_address("lines", address)
        .configure(|c| c.stop_after_batches = Some(6))
        .run()
        .unwrap();
    println!("{}", report.records);
}

const RSS_CHILD: &str = "STREAMC_BENCH_RSS_CHILD";
const CPU_CHILD: &str = "STREAMC_BENCH_CPU_CHILD";
const CPU_CHILD_UI: &str = "STREAMC_BENCH_CPU_CHILD_UI";

/// CPU time the app itself spends on the same paced load, without and with the monitoring (metrics, the
/// server, and a client polling the four endpoints every second from this process), in alternating
/// child processes. Unlike wall-clock throughput, CPU time per record barely moves with the other load
/// on a shared machine, and a CPU-bound pipeline loses throughput in proportion to the CPU it adds.
fn monitored_app_cpu(lines: &[String]) {
    const PAIRS: usize = 15;
    const WORDS_PER_SECOND: usize = 2_000_000;
    let mut ratios = Vec::new();
    let (mut plain_costs, mut monitored_costs) = (Vec::new(), Vec::new());
    for pair in 0..PAIRS {
        // Which side runs first alternates, so that a drift in the machine's load hits both alike.
        let (plain, monitored) = if pair % 2 == 0 {
            let plain = cpu_run(lines, WORDS_PER_SECOND, false);
            (plain, cpu_run(lines, WORDS_PER_SECOND, true))
        } else {
            let monitored = cpu_run(lines, WORDS_PER_SECOND, true);
            (cpu_run(lines, WORDS_PER_SECOND, false), monitored)
        };
        ratios.push(monitored / plain);
        plain_costs.push(plain);
        monitored_costs.push(monitored);
    }
    for v in [&mut ratios, &mut plain_costs, &mut monitored_costs] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "app CPU per million words at a paced 2M words/s (2 workers, 100 ms batches, 4 s), {PAIRS} pairs of child processes: median {:.1} ms without, {:.1} ms with metrics + dashboard polled every second; monitored/plain per pair at the median {:.1}% (range {:.1}%..{:.1}%)",
        plain_costs[PAIRS / 2],
        monitored_costs[PAIRS / 2],
        100.0 * ratios[PAIRS / 2],
        100.0 * ratios[0],
        100.0 * ratios[PAIRS - 1]
    );
}

/// One child run of [`monitored_app_cpu`]: CPU milliseconds per million words it received.
fn cpu_run(lines: &[String], words_per_second: usize, monitored: bool) -> f64 {
    use std::io::BufRead;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .env(CPU_CHILD, listener.local_addr().unwrap().to_string())
        .stdout(std::process::Stdio::piped());
    if monitored {
        command.env(CPU_CHILD_UI, "1");
    }
    let mut child = command.spawn().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let poller = first
        .trim()
        .strip_prefix("ui ")
        .map(|ui| Poller::start(ui.parse().unwrap()));
    let (mut conn, _) = listener.accept().unwrap();
    pace(&mut conn, lines, words_per_second, Duration::from_secs(4));
    drop(conn);
    let mut last = String::new();
    stdout.read_line(&mut last).unwrap();
    drop(poller);
    let _ = child.wait();
    // "cpu_ms N words W"
    let fields: Vec<f64> = last
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    match fields[..] {
        [cpu_ms, words] if words > 0.0 => cpu_ms / (words / 1e6),
        _ => panic!("the CPU child printed {last:?}"),
    }
}

/// In the child process of [`cpu_run`]: the socket WordCount for 5 s, then its own CPU time.
fn cpu_child(address: String, monitored: bool) {
    let app = socket_count::app()
        .workers(2)
        .batch_interval(Duration::from_millis(100))
        .source_address("lines", address)
        .configure(|c| {
            c.stop_after_batches = Some(50);
            if monitored {
                c.ui = Some("127.0.0.1:0".parse().unwrap());
            }
        })
        .start()
        .unwrap();
    match app.ui_address() {
        Some(ui) => println!("ui {ui}"),
        None => println!("plain"),
    }
    let report = app.wait().unwrap();
    // User and system time of the whole process, the threads that have ended included.
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    let cpu_ms = (micros(usage.ru_utime) + micros(usage.ru_stime)) / 1e3;
    println!(
        "cpu_ms {cpu_ms:.3} words {}",
        report.records * WORDS_PER_LINE as u64
    );
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
    pace(&mut conn, lines, 1_000_000, Duration::from_secs(3));
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

/// What the monitoring itself costs, measured on its parts: the listener's work per batch (one source,
/// two outputs, a full history of 1000 batches) and one dashboard poll plus a Prometheus scrape
/// (`/metrics`, `/api/v1/app`, `/api/v1/receivers`, `/api/v1/batches?limit=300`, encoded as the server
/// sends them). Wall-clock pairs are too noisy here to resolve 2%; these parts bound the CPU share.
fn monitoring_cpu_cost() {
    use std::time::SystemTime;
    use streamc::monitor::metrics::Metrics;
    use streamc::monitor::{AppInfo, BatchSubmitted, OutputInfo, StreamingListener};
    let metrics = Metrics::new(1000);
    metrics.on_app_started(&AppInfo {
        name: "socket_count".into(),
        batch_interval: Duration::from_millis(100),
        workers: 2,
        started: SystemTime::now(),
        sources: vec![("lines".into(), "socket_text_stream".into())],
        outputs: vec!["counts.foreach_batch".into(), "counts.print".into()],
    });
    let outputs = ["counts.foreach_batch", "counts.print"];
    let batches = 20_000u64;
    let started = Instant::now();
    for b in 1..=batches {
        let time = streamc::Time(b * 100);
        let now = SystemTime::now();
        let stats = streamc::source::SourceStats {
            records: b * 10_000,
            receiver: true,
            connections: 1,
            ..Default::default()
        };
        metrics.on_batch_submitted(&BatchSubmitted {
            time,
            submitted: now,
            records: vec![("lines".into(), 10_000)],
            sources: vec![("lines".into(), stats)],
        });
        metrics.on_batch_started(time, now);
        let mut infos = Vec::new();
        for output in outputs {
            metrics.on_output_started(time, output);
            let info = OutputInfo {
                name: output.into(),
                duration: Duration::from_micros(300),
                error: None,
            };
            metrics.on_output_completed(time, &info);
            infos.push(info);
        }
        metrics.on_batch_completed(&streamc::BatchInfo {
            time,
            submitted: now,
            started: now,
            ended: now,
            records: vec![("lines".into(), 10_000)],
            scheduling_delay: Duration::from_millis(2),
            processing_time: Duration::from_millis(40),
            total_delay: Duration::from_millis(42),
            outputs: infos,
            ..Default::default()
        });
    }
    let per_batch = started.elapsed() / batches as u32;
    let polls = 500u32;
    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..polls {
        bytes += metrics.prometheus(None).len();
        for json in [
            metrics.app_json(),
            metrics.receivers_json(),
            metrics.batches_json(300),
        ] {
            bytes += serde_json::to_string(&json).map(|t| t.len()).unwrap_or(0);
        }
    }
    let per_poll = started.elapsed() / polls;
    std::hint::black_box(bytes);
    // At 100 ms batches (10 a second) and one poll a second, as in the pairs above.
    let per_second = per_batch * 10 + per_poll;
    println!(
        "monitoring's own work: {:.1} µs per batch (listener), {:.0} µs per poll (4 endpoints, {} KiB); at 10 batches/s and 1 poll/s: {:.0} µs of CPU per second = {:.3}% of one core",
        per_batch.as_secs_f64() * 1e6,
        per_poll.as_secs_f64() * 1e6,
        bytes / polls as usize / 1024,
        per_second.as_secs_f64() * 1e6,
        per_second.as_secs_f64() * 100.0
    );
}
