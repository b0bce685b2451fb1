//! The highest offered rate each WordCount variant sustains at 1 s batches, found by binary search,
//! with the app's peak RSS at every rate tried.
//!
//! Each trial runs the app in a child process (so that its RSS is its own) fed by a paced loopback
//! sender in this one. Sustained, as in Spark's tuning guide ("stable"): after the warm-up
//! batches, processing time stays under the interval on average, no batch waits a whole interval
//! to start, batches hold what arrived in their interval, and the sender kept its pace (a receiver that cannot keep up slows it down through
//! TCP). An external app (Spark's own
//! WordCount) can be searched the same way: see [`external`].

use std::io::{BufRead, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};
use streamc::prelude::*;

/// Batches per trial, of which the first two warm up.
const BATCHES: u64 = 10;
/// Three, so that a JVM's just-in-time compiler has warmed up as well.
const WARM_UP: usize = 3;
const CHILD: &str = "STREAMC_BENCH_SUSTAIN_CHILD";

// The seed's WordCount as written: every word owned before the shuffle.
stream! {
    app owned_keys { batch: 1s, workers: 2 }
    let lines = socket_text_stream("127.0.0.1", 9);
    let counts = lines
        .flat_map(|line: &str| line.split(' '))
        .map(|w| (w.to_string(), 1u64))
        .reduce_by_key(|a, b| a + b);
    counts.foreach_batch(|batch, _| { std::hint::black_box(batch.len()); });
}

// The same count with the words borrowed from the received text.
stream! {
    app borrowed_keys { batch: 1s, workers: 2 }
    let lines = socket_text_stream("127.0.0.1", 9);
    let counts = lines
        .flat_map(|line: &str| line.split(' '))
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b);
    counts.foreach_batch(|batch, _| { std::hint::black_box(batch.len()); });
}

// The seed's UpdateStateByKeyWordCount as written.
stream! {
    app stateful_owned { batch: 1s, workers: 2, checkpoint: "target/streamc-bench/sustained-state" }
    let lines = socket_text_stream("127.0.0.1", 9);
    let totals = lines
        .flat_map(|line: &str| line.split(' '))
        .map(|w| (w.to_string(), 1u64))
        .update_state_by_key(|new: &[u64], old: Option<u64>| Some(old.unwrap_or(0) + new.iter().sum::<u64>()));
    totals.foreach_batch(|batch, _| { std::hint::black_box(batch.len()); });
}

// Running totals, counted per batch on borrowed words first: only one key per distinct word is owned.
stream! {
    app stateful_borrowed { batch: 1s, workers: 2, checkpoint: "target/streamc-bench/sustained-state" }
    let lines = socket_text_stream("127.0.0.1", 9);
    let totals = lines
        .flat_map(|line: &str| line.split(' '))
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b)
        .map(|(w, n)| (w.to_string(), n))
        .update_state_by_key(|new: &[u64], old: Option<u64>| Some(old.unwrap_or(0) + new.iter().sum::<u64>()));
    totals.foreach_batch(|batch, _| { std::hint::black_box(batch.len()); });
}

/// The variants searched, by name.
pub const VARIANTS: &[&str] = &["owned", "borrowed", "stateful-owned", "stateful-borrowed"];

/// In a child process: runs `variant` with `workers` against `address` for [`BATCHES`] batches and
/// prints one `batch <records> <processing ms> <scheduling delay ms>` line per batch.
pub fn child_main() -> bool {
    let Ok(spec) = std::env::var(CHILD) else {
        return false;
    };
    let mut fields = spec.split(';');
    let (Some(address), Some(variant), Some(workers)) =
        (fields.next(), fields.next(), fields.next())
    else {
        panic!("{CHILD}: address;variant;workers");
    };
    let workers: usize = workers.parse().expect("workers");
    let checkpoints = std::env::temp_dir().join(format!("streamc-sustain-{}", std::process::id()));
    let configure = |c: &mut streamc::AppConfig| {
        c.stop_after_batches = Some(BATCHES);
        c.checkpoint_dir = Some(checkpoints.clone().into());
    };
    let report = match variant {
        "owned" => run(owned_keys::app(), workers, address, configure),
        "borrowed" => run(borrowed_keys::app(), workers, address, configure),
        "stateful-owned" => run(stateful_owned::app(), workers, address, configure),
        "stateful-borrowed" => run(stateful_borrowed::app(), workers, address, configure),
        other => panic!("unknown variant {other}"),
    };
    let _ = std::fs::remove_dir_all(&checkpoints);
    for b in &report.recent_batches {
        let records: usize = b.records.iter().map(|(_, n)| n).sum();
        println!(
            "batch {records} {} {}",
            b.processing_time.as_millis(),
            b.scheduling_delay.as_millis()
        );
    }
    true
}

fn run<P: streamc::Pipeline>(
    app: streamc::App<P>,
    workers: usize,
    address: &str,
    configure: impl FnOnce(&mut streamc::AppConfig),
) -> streamc::RunReport {
    app.workers(workers)
        .batch_interval(Duration::from_secs(1))
        .source_address("lines", address.to_string())
        .configure(configure)
        .run()
        .expect("the app runs")
}

/// One batch as the app reported it.
#[derive(Clone, Copy, Debug)]
pub struct BatchFigures {
    pub records: u64,
    pub processing_ms: u64,
    pub scheduling_ms: u64,
}

/// What one trial at an offered rate showed.
#[derive(Debug)]
pub struct Trial {
    pub offered: u64,
    /// Lines per second the sender actually wrote.
    pub sent_rate: f64,
    pub batches: Vec<BatchFigures>,
    pub peak_rss_kib: u64,
}

impl Trial {
    /// Stable in Spark's sense, after the warm-up: processing keeps up with the interval on
    /// average (a checkpoint batch may take longer once), no batch waits a whole interval to start,
    /// every batch holds a second's worth of input (within 20%: no full/empty alternation), and
    /// the sender kept its pace.
    pub fn sustained(&self) -> bool {
        let steady: Vec<_> = self.batches.iter().skip(WARM_UP).collect();
        let mean_processing =
            steady.iter().map(|b| b.processing_ms).sum::<u64>() / steady.len().max(1) as u64;
        let per_batch = self.offered as f64;
        let even = |b: &&BatchFigures| (b.records as f64 - per_batch).abs() <= 0.2 * per_batch;
        !steady.is_empty()
            && mean_processing < 1000
            && steady.iter().all(|b| b.scheduling_ms < 1000)
            && steady.iter().all(even)
            && self.sent_rate >= 0.97 * self.offered as f64
    }

    fn worst(&self, figure: impl Fn(&BatchFigures) -> u64) -> u64 {
        self.batches
            .iter()
            .skip(WARM_UP)
            .map(figure)
            .max()
            .unwrap_or(0)
    }

    fn fewest(&self, figure: impl Fn(&BatchFigures) -> u64) -> u64 {
        self.batches
            .iter()
            .skip(WARM_UP)
            .map(figure)
            .min()
            .unwrap_or(0)
    }

    pub fn describe(&self) -> String {
        format!(
            "{:>5.2} M lines/s offered, {:>5.2} M sent: {}; lines per batch {:.2}..{:.2} M, longest batch {} ms, mean {} ms, worst scheduling delay {} ms, peak RSS {:.0} MiB",
            self.offered as f64 / 1e6,
            self.sent_rate / 1e6,
            if self.sustained() { "sustained" } else { "falls behind" },
            self.fewest(|b| b.records) as f64 / 1e6,
            self.worst(|b| b.records) as f64 / 1e6,
            self.worst(|b| b.processing_ms),
            self.batches.iter().skip(WARM_UP).map(|b| b.processing_ms).sum::<u64>()
                / self.batches.len().saturating_sub(WARM_UP).max(1) as u64,
            self.worst(|b| b.scheduling_ms),
            self.peak_rss_kib as f64 / 1024.0
        )
    }
}

/// How a trial starts the app under test: given the address it must read lines from, a child
/// process whose stdout carries `batch` lines.
pub type Launch<'a> = &'a dyn Fn(&str) -> std::process::Child;

/// A streamc variant in a child process of this benchmark.
pub fn streamc_child(
    variant: &'static str,
    workers: usize,
) -> impl Fn(&str) -> std::process::Child {
    move |address: &str| {
        std::process::Command::new(std::env::current_exe().expect("the benchmark binary"))
            .env(CHILD, format!("{address};{variant};{workers}"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("a child process")
    }
}

/// Offers `lines_per_second` to the app `launch` starts for the length of its run.
pub fn trial(lines: &[String], lines_per_second: u64, launch: Launch<'_>) -> Trial {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let mut child = launch(&listener.local_addr().expect("its address").to_string());
    let (mut conn, _) = listener.accept().expect("the app connects");
    let status = format!("/proc/{}/status", child.id());
    let sampler = std::thread::spawn(move || peak_rss(&status));
    // Longer than the app's run: it closes the connection when it stops.
    let sent_rate = pace(
        &mut conn,
        lines,
        lines_per_second,
        Duration::from_secs(BATCHES + 1),
    );
    drop(conn);
    let stdout = child.stdout.take().expect("piped stdout");
    let batches = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| parse_batch(&line))
        .collect();
    let _ = child.wait();
    Trial {
        offered: lines_per_second,
        sent_rate,
        batches,
        peak_rss_kib: sampler.join().unwrap_or(0),
    }
}

fn parse_batch(line: &str) -> Option<BatchFigures> {
    let mut fields = line.strip_prefix("batch ")?.split_whitespace();
    Some(BatchFigures {
        records: fields.next()?.parse().ok()?,
        processing_ms: fields.next()?.parse().ok()?,
        scheduling_ms: fields.next()?.parse().ok()?,
    })
}

/// The highest VmHWM of a process, in KiB, sampled until it exits.
pub fn peak_rss(status: &str) -> u64 {
    let mut peak_kib = 0u64;
    while let Ok(text) = std::fs::read_to_string(status) {
        let hwm = text
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
        match hwm {
            Some(kib) => peak_kib = peak_kib.max(kib),
            None => break,
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    peak_kib
}

/// Writes `lines` at `lines_per_second` in millisecond steps until `duration` ends or the peer
/// closes; returns the rate achieved, in lines per second, over the time it wrote.
fn pace(
    conn: &mut std::net::TcpStream,
    lines: &[String],
    lines_per_second: u64,
    duration: Duration,
) -> f64 {
    let begin = Instant::now();
    let mut sent = 0u64;
    let mut text = Vec::new();
    let mut next = 0usize;
    loop {
        let elapsed = begin.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = (elapsed.as_secs_f64() + 0.001) * lines_per_second as f64;
        text.clear();
        while (sent as f64) < due {
            text.extend_from_slice(lines[next].as_bytes());
            text.push(b'\n');
            next = (next + 1) % lines.len();
            sent += 1;
        }
        if conn.write_all(&text).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    sent as f64 / begin.elapsed().as_secs_f64()
}

/// The highest sustained rate, in lines per second: doubling from `start` until a trial falls
/// behind, then `steps` bisections. Every trial is printed.
pub fn search(lines: &[String], start: u64, steps: usize, launch: Launch<'_>) -> (u64, Vec<Trial>) {
    let mut trials = Vec::new();
    let mut low = 0u64;
    let mut high: Option<u64> = None;
    let mut rate = start;
    while high.is_none() && rate <= 64_000_000 {
        let t = trial(lines, rate, launch);
        println!("    {}", t.describe());
        if t.sustained() {
            low = rate;
            rate *= 2;
        } else {
            high = Some(rate);
        }
        trials.push(t);
    }
    for _ in 0..steps {
        let Some(h) = high else { break };
        let mid = (low + h) / 2;
        let t = trial(lines, mid, launch);
        println!("    {}", t.describe());
        if t.sustained() {
            low = mid;
        } else {
            high = Some(mid);
        }
        trials.push(t);
    }
    (low, trials)
}

/// An app outside this benchmark under the same search: `STREAMC_BENCH_EXTERNAL` is a command whose
/// `{host}` and `{port}` are replaced by the sender's address, `{mode}` by `stateless` or
/// `stateful` and `{batches}` by the batches to run, and which prints the same `batch` lines (for
/// Spark, a StreamingListener does: benches/spark/SparkWordCount.java).
pub fn external(mode: &'static str) -> Option<impl Fn(&str) -> std::process::Child> {
    let command = std::env::var("STREAMC_BENCH_EXTERNAL").ok()?;
    Some(move |address: &str| {
        let (host, port) = address.rsplit_once(':').expect("host:port");
        let line = command
            .replace("{host}", host)
            .replace("{port}", port)
            .replace("{mode}", mode)
            .replace("{batches}", &BATCHES.to_string());
        // `exec`, so that the RSS sampled is the app's, not the shell's.
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec {line}"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the external app starts")
    })
}

/// Searches the `variants` with the `workers` counts (and the external app in both modes, if one
/// is given), then prints a summary with the bytes of one batch at each maximum.
pub fn report(lines: &[String], variants: &[&'static str], workers: &[usize]) {
    let bytes_per_line =
        lines.iter().map(|l| l.len() + 1).sum::<usize>() as f64 / lines.len() as f64;
    let mut summary = Vec::new();
    for mode in ["stateless", "stateful"] {
        let Some(launch) = external(mode) else { break };
        println!("  external app, {mode}:");
        let (max, trials) = search(lines, 100_000, 4, &launch);
        summary.push((format!("external, {mode}"), max, trials));
    }
    for &workers in workers {
        for &variant in variants {
            println!("  {variant}, {workers} worker(s):");
            let launch = streamc_child(variant, workers);
            let (max, trials) = search(lines, 500_000, 4, &launch);
            summary.push((format!("{variant}, {workers} worker(s)"), max, trials));
        }
    }
    println!(
        "sustained at 1 s batches (binary search, {BATCHES} batches per trial, {WARM_UP} warm-up):"
    );
    for (name, max, trials) in &summary {
        let at_max = trials.iter().find(|t| t.offered == *max);
        let batch_mib = *max as f64 * bytes_per_line / (1 << 20) as f64;
        println!(
            "  {name:<30} {:>5.2} M lines/s ({:.1} M words/s); one batch of input {:.0} MiB, peak RSS there {}",
            *max as f64 / 1e6,
            *max as f64 * 10.0 / 1e6,
            batch_mib,
            at_max
                .map(|t| format!("{:.0} MiB", t.peak_rss_kib as f64 / 1024.0))
                .unwrap_or_else(|| "-".into())
        );
    }
}
