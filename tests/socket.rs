//! The socket receiver end to end over real loopback sockets: word counts equal the reference, graceful
//! stop loses nothing, reconnects, bad input, backpressure, and the WordCount example as a user runs it.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use streamc::prelude::*;
use streamc::testkit::{reference_word_counts, Corpus, LineServer};

mod support;

stream! {
    app socket_count { batch: 200ms, workers: 2 }
    let lines = socket_text_stream("127.0.0.1", 9);
    let counts = lines
        .flat_map(|line: &str| line.split(' '))
        .map(|w| (w.to_string(), 1u64))
        .reduce_by_key(|a, b| a + b);
    counts.collect();
}

type Counts = std::collections::HashMap<String, u64>;

fn summed(batches: Vec<(Time, Vec<(String, u64)>)>, into: &mut Counts) {
    for (_, records) in batches {
        for (w, n) in records {
            *into.entry(w).or_insert(0) += n;
        }
    }
}

/// Polls the running app until the summed counts reach `total` words or `limit` passes.
fn collect_until(app: &streamc::RunningApp, total: u64, limit: Duration) -> Counts {
    let mut counts = Counts::new();
    let deadline = Instant::now() + limit;
    while counts.values().sum::<u64>() < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        summed(app.take("counts").unwrap(), &mut counts);
    }
    counts
}

fn text(lines: &[String]) -> Vec<u8> {
    let mut data = lines.join("\n").into_bytes();
    data.push(b'\n');
    data
}

#[test]
fn word_counts_over_loopback_equal_the_reference() {
    let lines = Corpus::zipf(10_000, 1).lines(20_000, 10);
    let expected = reference_word_counts(lines.iter().map(String::as_str));
    let server = LineServer::once(text(&lines)).unwrap();
    let app = socket_count::app()
        .source_address("lines", server.address().to_string())
        .start()
        .unwrap();
    let counts = collect_until(&app, 200_000, Duration::from_secs(20));
    let report = app.stop().unwrap();
    assert_eq!(counts, expected);
    assert_eq!(report.records, 20_000);
    assert!(report.batches_completed >= 1);
    assert_eq!(report.batches_failed, 0);
}

#[test]
fn graceful_stop_processes_everything_already_received() {
    let lines: Vec<String> = (0..5_000)
        .map(|i| format!("k{} k{}", i % 13, i % 7))
        .collect();
    let expected = reference_word_counts(lines.iter().map(String::as_str));
    let server = LineServer::once(text(&lines)).unwrap();
    let app = socket_count::app()
        .batch_interval(Duration::from_secs(60))
        .source_address("lines", server.address().to_string())
        .start()
        .unwrap();
    // The receiver reconnects once it has read everything and handed it over: stop then, long before the
    // 60 s batch interval, so the data is still unbatched.
    assert!(server.wait_for_connections(2, Duration::from_secs(20)));
    let stop = app.stop_handle();
    stop.stop();
    let mut counts = Counts::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while counts.values().sum::<u64>() < 10_000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        summed(app.take("counts").unwrap(), &mut counts);
    }
    let report = app.wait().unwrap();
    assert_eq!(counts, expected);
    assert_eq!(report.records, 5_000);
    drop(server);
}

#[test]
fn receiver_waits_for_an_absent_peer_and_reconnects_after_it_leaves() {
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let refused = Arc::new(streamc::testkit::ReceiverErrors::default());
    let app = socket_count::app()
        .source_address("lines", format!("127.0.0.1:{port}"))
        .listener(refused.clone())
        .start()
        .unwrap();
    // Wait until an attempt was refused (reported at the next cut), then let the peer come.
    let deadline = Instant::now() + Duration::from_secs(20);
    while refused.count() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    for round in 0..2 {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(format!("round{round} a\nround{round} b\n").as_bytes())
            .unwrap();
        drop(conn);
    }
    let counts = collect_until(&app, 8, Duration::from_secs(15));
    let report = app.stop().unwrap();
    assert_eq!(counts.get("a"), Some(&2));
    assert_eq!(counts.get("round1"), Some(&2));
    let stats = &report.sources[0].1;
    assert!(stats.connections >= 2, "{stats:?}");
    assert!(
        stats.connection_errors >= 1,
        "the first attempts must have failed: {stats:?}"
    );
}

#[test]
fn invalid_utf8_and_oversized_lines_are_counted_not_fatal() {
    let mut data = Vec::new();
    data.extend_from_slice(b"good line\n\xff\xfe\xfd broken\n");
    data.extend_from_slice(&vec![b'x'; 3 << 20]);
    data.extend_from_slice(b"\nlast good\n");
    let server = LineServer::once(data).unwrap();
    let app = socket_count::app()
        .source_address("lines", server.address().to_string())
        .start()
        .unwrap();
    let counts = collect_until(&app, 4, Duration::from_secs(15));
    let report = app.stop().unwrap();
    let expected: Counts = [("good", 2), ("line", 1), ("last", 1)]
        .into_iter()
        .map(|(w, n)| (w.to_string(), n))
        .collect();
    assert_eq!(counts, expected);
    let stats = &report.sources[0].1;
    assert_eq!(stats.invalid_utf8_lines, 1);
    assert_eq!(stats.oversized_lines, 1);
}

static GATE_OPEN: AtomicBool = AtomicBool::new(false);
static SLOW_RECORDS: AtomicUsize = AtomicUsize::new(0);

fn wait_for_gate(records: usize) {
    while !GATE_OPEN.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
    SLOW_RECORDS.fetch_add(records, Ordering::SeqCst);
}

stream! {
    app slow_sink { batch: 100ms, workers: 1 }
    let lines = socket_text_stream("127.0.0.1", 9);
    lines.foreach_batch(|batch, _time| crate::wait_for_gate(batch.len()));
}

#[test]
fn a_stuck_pipeline_pushes_back_on_the_sender_instead_of_buffering() {
    const TOTAL: usize = 64 << 20;
    const CHUNK: usize = 64 * 1024;
    let line = b"abcdefghijklmnopqrstuvwxyz0123456789012345678901234567890123456789012\n";
    let chunk: Vec<u8> = line.iter().copied().cycle().take(CHUNK).collect();
    let expected_lines = (TOTAL / CHUNK) * chunk.iter().filter(|&&b| b == b'\n').count();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let writer_progress = written.clone();
    let writer = std::thread::spawn(move || {
        let chunk = chunk;
        let (mut conn, _) = listener.accept().unwrap();
        let mut sent = 0;
        while sent < TOTAL {
            if conn.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len();
            writer_progress.store(sent, Ordering::SeqCst);
        }
        let mut sink = [0u8; 1];
        let _ = conn.read(&mut sink);
    });
    let app = streamc::App::<slow_sink::Pipeline>::new()
        .source_address("lines", address.to_string())
        .configure(|c| c.socket.buffer_bytes = 2 << 20)
        .start()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let stalled_at = written.load(Ordering::SeqCst);
    assert!(
        stalled_at < 24 << 20,
        "the sender got {stalled_at} bytes through a stuck pipeline with a 2 MiB budget"
    );
    GATE_OPEN.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(30);
    while SLOW_RECORDS.load(Ordering::SeqCst) < expected_lines && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = app.stop().unwrap();
    assert_eq!(SLOW_RECORDS.load(Ordering::SeqCst), expected_lines);
    assert_eq!(report.records as usize, expected_lines);
    drop(writer);
}

/// The example binary, built by `cargo test` along with the tests.
fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    dir.join("examples").join(name)
}

#[test]
fn the_word_count_example_prints_spark_blocks_and_stops_on_sigterm() {
    let binary = example_binary("word_count");
    assert!(
        binary.exists(),
        "build the examples first (cargo test builds them): {}",
        binary.display()
    );
    let lines: Vec<String> = (0..300)
        .map(|i| format!("hello world hello w{}", i % 3))
        .collect();
    let server = LineServer::once(text(&lines)).unwrap();
    let mut child = std::process::Command::new(&binary)
        .args([
            "--source",
            &format!("lines={}", server.address()),
            "--batch",
            "300ms",
        ])
        .env("STREAMC_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Stop once the receiver has read everything (it reconnects after the end of the data).
    assert!(server.wait_for_connections(2, Duration::from_secs(20)));
    support::ask_to_stop(&mut child);
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "exit status {:?}, stderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("-------------------------------------------\nTime: "),
        "{stdout}"
    );
    let mut counts = Counts::new();
    for line in stdout.lines().filter(|l| l.starts_with('(')) {
        let (word, n) = line
            .trim_matches(|c| c == '(' || c == ')')
            .rsplit_once(',')
            .unwrap();
        *counts.entry(word.to_string()).or_insert(0) += n.parse::<u64>().unwrap();
    }
    assert_eq!(
        counts,
        reference_word_counts(lines.iter().map(String::as_str))
    );
}

#[test]
fn bad_flags_exit_with_status_2_and_a_message() {
    let output = std::process::Command::new(example_binary("word_count"))
        .args(["--workers", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("workers must be at least 1"));
    let help = std::process::Command::new(example_binary("word_count"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--batch") && help.contains("lines") && help.contains("socket_text_stream"),
        "{help}"
    );
}

/// Runs `command` (logging warnings only) to completion; one still running after `limit` fails the
/// test.
fn output_within(command: &mut std::process::Command, limit: Duration) -> std::process::Output {
    streamc::testkit::output_within(command.env("STREAMC_LOG", "warn"), limit)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A configuration file for the example apps, in a directory of this test process.
fn config_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("streamc-app-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file
}

/// Runs the word_count example with `args`, expecting it to refuse them: exit status 2 and every one
/// of `expected` in its message.
fn assert_refused(args: &[&str], expected: &[&str]) {
    let output = output_within(
        std::process::Command::new(example_binary("word_count")).args(args),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    for expected in expected {
        assert!(
            stderr.contains(expected),
            "{args:?}: `{expected}` in:\n{stderr}"
        );
    }
}

#[test]
fn a_missing_config_file_is_refused_with_its_path() {
    let missing = std::env::temp_dir().join("streamc-no-such-dir/streamc.toml");
    let missing = missing.to_string_lossy().into_owned();
    let named = format!("cannot read config file {missing}");
    assert_refused(
        &["--config", missing.as_str()],
        &[named.as_str(), "No such file"],
    );
}

#[test]
fn invalid_toml_is_refused_with_the_file_and_the_line() {
    let file = config_file("syntax.toml", "workers = 2\nbatch = 500ms\n");
    let path = file.to_string_lossy().into_owned();
    let named = format!("config file {path}");
    assert_refused(
        &["--config", path.as_str()],
        &[named.as_str(), "TOML parse error at line 2"],
    );
}

#[test]
fn an_unknown_config_key_is_refused_by_name() {
    let file = config_file("unknown.toml", "workers = 2\nbatch_intervall = \"1s\"\n");
    let path = file.to_string_lossy().into_owned();
    let named = format!("config file {path}");
    assert_refused(
        &["--config", path.as_str()],
        &[named.as_str(), "unknown field `batch_intervall`"],
    );
}

#[test]
fn config_values_of_the_wrong_type_or_out_of_range_are_refused() {
    for (name, text, problem) in [
        (
            "type.toml",
            "workers = \"four\"\n",
            "invalid type: string \"four\"",
        ),
        (
            "zero-batch.toml",
            "batch = \"0s\"\n",
            "`batch`: the batch interval must be longer than zero",
        ),
        (
            "zero-workers.toml",
            "workers = 0\n",
            "`workers`: workers must be at least 1",
        ),
        (
            "bad-duration.toml",
            "run_for = \"soon\"\n",
            "`run_for`: `soon` is not a duration",
        ),
        (
            "zero-rate.toml",
            "[receiver]\nmax_rate = 0\n",
            "`receiver.max_rate` must be at least 1",
        ),
    ] {
        let file = config_file(name, text);
        let path = file.to_string_lossy().into_owned();
        let named = format!("config file {path}");
        assert_refused(&["--config", path.as_str()], &[named.as_str(), problem]);
    }
}

/// `Time: <ms> ms` of every `print` block.
fn printed_batch_times(stdout: &str) -> Vec<u64> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("Time: ")?.strip_suffix(" ms")?.parse().ok())
        .collect()
}

#[test]
fn config_file_values_take_effect_and_flags_override_them() {
    let server = LineServer::once(text(&["hello world".to_string()])).unwrap();
    let file = config_file(
        "run.toml",
        &format!(
            "batch = \"200ms\"\nbatches = 3\nworkers = 1\n[sources.lines]\naddress = \"{}\"\n",
            server.address()
        ),
    );
    let path = file.to_string_lossy().into_owned();
    // The file alone: three batches of 200 ms, then a clean stop.
    let output = output_within(
        std::process::Command::new(example_binary("word_count")).args(["--config", path.as_str()]),
        Duration::from_secs(30),
    );
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let times = printed_batch_times(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(times.len(), 3, "{times:?}");
    assert!(times.windows(2).all(|w| w[1] - w[0] == 200), "{times:?}");
    // Flags replace the file's values.
    let output = output_within(
        std::process::Command::new(example_binary("word_count")).args([
            "--config",
            path.as_str(),
            "--batches",
            "2",
            "--batch",
            "300ms",
        ]),
        Duration::from_secs(30),
    );
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let times = printed_batch_times(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(times.len(), 2, "{times:?}");
    assert_eq!(times[1] - times[0], 300, "{times:?}");
}

#[test]
fn a_batch_interval_that_does_not_divide_a_window_is_refused_at_start() {
    let output = output_within(
        std::process::Command::new(example_binary("window_hot_word")).args(["--batch", "7s"]),
        Duration::from_secs(30),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "the window of `word_counts` (reduce_by_key_and_window, 1min, sliding 10s) is not a \
             multiple of the batch interval 7s: use a batch interval that divides 10s"
        ),
        "{stderr}"
    );
    // 5 s divides both the length and the slide: the app runs.
    let output = output_within(
        std::process::Command::new(example_binary("window_hot_word")).args([
            "--batch",
            "5s",
            "--demo",
            "--run-for",
            "1s",
        ]),
        Duration::from_secs(60),
    );
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}
