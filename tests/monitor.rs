//! Monitoring as a user sees it: a word count with `--ui` serves `/metrics` and `/api/v1` whose figures
//! match what it was fed; listeners get every event; every refused connection counts as an error and
//! the receiver shows as not connected; a stuck client and bad requests harm nothing; and the
//! dashboard, opened in headless Chromium, shows the data and the falling-behind banner.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use streamc::monitor::metrics::Metrics;
use streamc::monitor::{AppInfo, BatchSubmitted, OutputInfo, StreamingListener};
use streamc::prelude::*;
use streamc::testkit::LineServer;
use streamc::{BatchInfo, RunReport};

stream! {
    app monitored { batch: 200ms, workers: 2 }
    let lines = socket_text_stream("localhost", 9999);
    let counts = lines
        .flat_map(|line: &str| line.split_whitespace())
        .map(|w| (w.to_string(), 1u64))
        .reduce_by_key(|a, b| a + b);
    counts.foreach_batch(|batch, _| { std::hint::black_box(batch.len()); });
    counts.collect();
}

stream! {
    app stateful_monitored { batch: 200ms, workers: 2, checkpoint: "target/streamc-test/stateful_monitored", checkpoint_every: 200ms }
    let lines = socket_text_stream("localhost", 9999);
    let totals = lines
        .flat_map(|line: &str| line.split_whitespace())
        .map(|w| (w.to_string(), 1u64))
        .update_state_by_key(|new: &[u64], old: Option<u64>| Some(old.unwrap_or(0) + new.iter().sum::<u64>()));
    totals.foreach_batch(|batch, _| { std::hint::black_box(batch.len()); });
}

stream! {
    app lagging { batch: 200ms, workers: 2 }
    let lines = socket_text_stream("localhost", 9999);
    // Every batch with data takes three batch intervals: the app falls behind.
    lines.foreach_batch(|batch, _| if !batch.is_empty() { std::thread::sleep(std::time::Duration::from_millis(600)) });
}

/// One HTTP/1.1 GET over a fresh connection: (status, body).
fn get(address: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // Chunked bodies: keep the text between chunk-size lines.
    let body = if response
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body.as_str();
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        body
    };
    (status, body)
}

fn metric(text: &str, line_start: &str) -> f64 {
    metric_if_any(text, line_start).unwrap_or_else(|| panic!("no `{line_start}` in:\n{text}"))
}

fn metric_if_any(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[derive(Default)]
struct Events(Mutex<Vec<String>>);

impl StreamingListener for Events {
    fn on_app_started(&self, app: &AppInfo) {
        self.push(format!("app started {}", app.name));
    }
    fn on_app_stopped(&self, report: &RunReport) {
        self.push(format!(
            "app stopped after {} batches",
            report.batches_completed
        ));
    }
    fn on_receiver_started(&self, source: &str) {
        self.push(format!("receiver started {source}"));
    }
    fn on_receiver_error(&self, source: &str, error: &str, count: u64) {
        self.push(format!("receiver error {source} x{count}: {error}"));
    }
    fn on_receiver_stopped(&self, source: &str) {
        self.push(format!("receiver stopped {source}"));
    }
    fn on_batch_submitted(&self, batch: &BatchSubmitted) {
        self.push(format!("submitted {}", batch.time.millis()));
    }
    fn on_batch_started(&self, time: Time, _: std::time::SystemTime) {
        self.push(format!("started {}", time.millis()));
    }
    fn on_batch_completed(&self, batch: &BatchInfo) {
        self.push(format!("completed {}", batch.time.millis()));
    }
    fn on_output_started(&self, batch: Time, output: &str) {
        self.push(format!("output started {} {output}", batch.millis()));
    }
    fn on_output_completed(&self, batch: Time, output: &OutputInfo) {
        self.push(format!(
            "output completed {} {}",
            batch.millis(),
            output.name
        ));
    }
}

impl Events {
    fn push(&self, e: String) {
        self.0.lock().unwrap().push(e);
    }
}

/// Waits until the completed batches hold `records` and the receiver has counted them all: lines
/// are counted as received when their batch is submitted, which comes before it completes, and the
/// receiver's own count is sampled at each cut.
fn wait_for_completed(address: SocketAddr, records: usize) {
    let json = |path: &str| -> serde_json::Value {
        serde_json::from_str(&get(address, path).1).unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut processed, mut counted) = (0, serde_json::Value::Null);
    while Instant::now() < deadline {
        processed = json("/api/v1/batches?limit=1000")
            .as_array()
            .map(|batches| batches.iter().filter_map(|b| b["records"].as_u64()).sum())
            .unwrap_or(0);
        counted = json("/api/v1/receivers")[0]["records"].clone();
        if processed == records as u64 && counted == records {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{records} records expected: {processed} in completed batches, {counted} counted by the receiver");
}

/// Starts `app` reading `source`, with the UI on a free loopback port; returns it and the UI address.
fn start_with_ui<P: streamc::Pipeline>(
    app: streamc::App<P>,
    source: SocketAddr,
) -> (streamc::RunningApp, SocketAddr) {
    let app = app
        .source_address("lines", source.to_string())
        .configure(|c| c.ui = Some("127.0.0.1:0".parse().unwrap()))
        .start()
        .unwrap();
    let address = app.ui_address().expect("the UI listens");
    (app, address)
}

fn words(lines: &[String]) -> usize {
    lines.iter().map(|l| l.split_whitespace().count()).sum()
}

#[test]
fn metrics_and_the_json_api_report_what_was_fed() {
    let lines: Vec<String> = (0..500)
        .map(|i| format!("w{} w{} w{}", i % 7, i % 3, i % 11))
        .collect();
    let server = LineServer::once((lines.join("\n") + "\n").into_bytes()).unwrap();
    let events = Arc::new(Events::default());
    let (app, address) = start_with_ui(monitored::app().listener(events.clone()), server.address());
    wait_for_completed(address, lines.len());
    let text = get(address, "/metrics").1;
    assert_eq!(
        metric(
            &text,
            "streamc_records_received_total{app=\"monitored\",source=\"lines\"}"
        ),
        lines.len() as f64,
        "{text}"
    );
    assert!(metric(&text, "streamc_batches_completed_total{app=\"monitored\"}") >= 1.0);
    assert_eq!(
        metric(&text, "streamc_batches_failed_total{app=\"monitored\"}"),
        0.0
    );
    assert_eq!(
        metric(
            &text,
            "streamc_receiver_active{app=\"monitored\",source=\"lines\"}"
        ),
        1.0
    );
    // The line server closes the first connection cleanly and accepts the next: no error.
    assert_eq!(
        metric(
            &text,
            "streamc_receiver_connected{app=\"monitored\",source=\"lines\"}"
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "streamc_receiver_errors_total{app=\"monitored\",source=\"lines\"}"
        ),
        0.0,
        "{text}"
    );
    let completed = metric(&text, "streamc_batches_completed_total{app=\"monitored\"}");
    assert_eq!(
        metric(
            &text,
            "streamc_batch_processing_seconds_count{app=\"monitored\"}"
        ),
        completed,
        "one processing-time observation per batch"
    );
    for family in [
        "# TYPE streamc_batch_scheduling_delay_seconds histogram",
        "# TYPE streamc_batch_total_delay_seconds histogram",
        "# TYPE streamc_input_rate gauge",
        "# TYPE streamc_rate_limit gauge",
        "streamc_batch_processing_seconds_bucket{app=\"monitored\",le=\"+Inf\"}",
    ] {
        assert!(text.contains(family), "{family} in:\n{text}");
    }

    let (status, app_json) = get(address, "/api/v1/app");
    assert_eq!(status, 200);
    let app_json: serde_json::Value = serde_json::from_str(&app_json).unwrap();
    assert_eq!(app_json["name"], "monitored");
    assert_eq!(app_json["batch_interval_ms"], 200);
    assert_eq!(app_json["records_received"], lines.len());
    assert_eq!(
        app_json["outputs"],
        serde_json::json!(["counts.foreach_batch", "counts.collect"])
    );

    let receivers: serde_json::Value =
        serde_json::from_str(&get(address, "/api/v1/receivers").1).unwrap();
    assert_eq!(receivers[0]["name"], "lines");
    assert_eq!(receivers[0]["active"], true);
    assert_eq!(receivers[0]["connected"], true);
    assert_eq!(receivers[0]["errors"], 0);
    assert_eq!(receivers[0]["records"], lines.len());

    let batches: serde_json::Value =
        serde_json::from_str(&get(address, "/api/v1/batches?limit=1000").1).unwrap();
    let batches = batches.as_array().unwrap();
    let total: u64 = batches.iter().map(|b| b["records"].as_u64().unwrap()).sum();
    assert_eq!(
        total,
        lines.len() as u64,
        "the batches hold every line once"
    );
    let with_data = batches
        .iter()
        .find(|b| b["records"].as_u64().unwrap() > 0)
        .unwrap();
    let time = with_data["time"].as_u64().unwrap();
    for b in batches {
        let (sched, proc_, total) = (
            b["scheduling_delay_ms"].as_f64().unwrap(),
            b["processing_time_ms"].as_f64().unwrap(),
            b["total_delay_ms"].as_f64().unwrap(),
        );
        assert!(
            total + 0.01 >= sched + proc_,
            "total delay covers waiting and processing: {b}"
        );
        assert!(b["started_ms"].as_u64().unwrap() >= b["submitted_ms"].as_u64().unwrap());
    }
    let (status, detail) = get(address, &format!("/api/v1/batches/{time}"));
    assert_eq!(status, 200);
    let detail: serde_json::Value = serde_json::from_str(&detail).unwrap();
    let outputs: Vec<&str> = detail["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(outputs, vec!["counts.foreach_batch", "counts.collect"]);
    assert_eq!(detail["records_per_source"][0]["source"], "lines");

    // Bad requests are answered, and the server goes on.
    assert_eq!(get(address, "/api/v1/batches/yesterday").0, 400);
    assert_eq!(get(address, "/api/v1/batches/1").0, 404);
    assert_eq!(get(address, "/no/such/page").0, 404);
    let mut garbage = TcpStream::connect(address).unwrap();
    garbage
        .write_all(b"\x00\x01 not http at all\r\n\r\n")
        .unwrap();
    drop(garbage);
    assert_eq!(get(address, "/metrics").0, 200);
    let (status, page) = get(address, "/");
    assert_eq!(status, 200);
    assert!(
        page.contains("<title>streamc</title>")
            && !page.contains("http://")
            && !page.contains("https://"),
        "self-contained"
    );

    let collected: usize = app
        .take::<(String, u64)>("counts")
        .unwrap()
        .iter()
        .flat_map(|(_, r)| r)
        .map(|(_, n)| *n as usize)
        .sum();
    assert_eq!(collected, words(&lines));
    let report = app.stop().unwrap();
    let events = events.0.lock().unwrap().clone();
    assert_eq!(
        events.first().map(String::as_str),
        Some("app started monitored")
    );
    assert_eq!(
        events.last().unwrap(),
        &format!("app stopped after {} batches", report.batches_completed)
    );
    assert!(events.contains(&"receiver started lines".to_string()));
    assert!(events.contains(&"receiver stopped lines".to_string()));
    assert!(
        !events.iter().any(|e| e.starts_with("receiver error")),
        "{events:?}"
    );
    let order: Vec<&String> = events
        .iter()
        .filter(|e| e.ends_with(&format!(" {time}")) || e.contains(&format!(" {time} ")))
        .collect();
    assert_eq!(
        order,
        vec![
            &format!("submitted {time}"),
            &format!("started {time}"),
            &format!("output started {time} counts.foreach_batch"),
            &format!("output completed {time} counts.foreach_batch"),
            &format!("output started {time} counts.collect"),
            &format!("output completed {time} counts.collect"),
            &format!("completed {time}"),
        ]
    );
}

#[test]
fn a_stuck_client_does_not_slow_the_pipeline() {
    let server = LineServer::generated(2000, 7).unwrap();
    let (app, address) = start_with_ui(monitored::app(), server.address());
    // Half a request, never finished, and a client that never reads a large response.
    let mut stuck = TcpStream::connect(address).unwrap();
    stuck
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x")
        .unwrap();
    let mut unread = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(address).unwrap();
        s.write_all(b"GET /api/v1/batches?limit=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        unread.push(s);
    }
    // Meanwhile, the input rate, as a dashboard polls it (absent until the first cut).
    let rate_line = "streamc_input_rate{app=\"monitored\",source=\"lines\"}";
    let completed_line = "streamc_batches_completed_total{app=\"monitored\"}";
    let completed_before = metric(&get(address, "/metrics").1, completed_line);
    let mut rates = Vec::new();
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(250));
        rates.extend(metric_if_any(&get(address, "/metrics").1, rate_line));
    }
    let (status, text) = get(address, "/metrics");
    assert_eq!(status, 200);
    let report = app.stop().unwrap();
    // Batches went on completing while the clients were stuck (2 s: about 10 batches of 200 ms; a
    // server that blocked the pipeline would let none through), and none waited long to start. The
    // bounds leave room for a loaded machine: a stall would exceed them many times over.
    let completed = metric(&text, completed_line) - completed_before;
    assert!(
        completed >= 3.0,
        "{completed} batches completed in 2 s: {:?}",
        report.recent_batches
    );
    let latest = report
        .recent_batches
        .iter()
        .map(|b| b.scheduling_delay)
        .max();
    assert!(
        latest < Some(Duration::from_secs(1)),
        "batches kept their schedule: {:?}",
        report.recent_batches
    );

    // Each rate shown is one batch's records over the 200 ms interval.
    let fed: Vec<usize> = report
        .recent_batches
        .iter()
        .map(BatchInfo::total_records)
        .collect();
    let interval = 0.2;
    for rate in &rates {
        assert!(
            fed.iter()
                .any(|&n| (n as f64 / interval - rate).abs() < 1e-6),
            "input rate {rate} is no batch's records over the interval: {fed:?}"
        );
    }
    assert!(rates.iter().any(|&r| r > 0.0), "{rates:?}");
    let received = metric(
        &text,
        "streamc_records_received_total{app=\"monitored\",source=\"lines\"}",
    );
    assert!(
        received > 0.0 && received <= report.records as f64,
        "{received} received by the last scrape, {} in all",
        report.records
    );
    // The feed's 2000 lines/s shows through, over the batches between the first with data (the
    // connection came mid-interval) and the last (cut at the stop). The bounds are loose because the
    // feeding thread shares two cores with the app and the other tests.
    let first = fed.iter().position(|&n| n > 0).expect("data arrived");
    let steady = fed.get(first + 1..fed.len() - 1).unwrap_or(&[]);
    assert!(steady.len() >= 3, "{fed:?}");
    let mean = steady.iter().sum::<usize>() as f64 / (steady.len() as f64 * interval);
    assert!(
        (400.0..=5000.0).contains(&mean),
        "{mean} lines/s from a 2000 lines/s feed: {fed:?}"
    );
    drop(stuck);
}

#[test]
fn every_refused_connection_counts_and_the_receiver_shows_not_connected() {
    // A loopback port nothing listens on (bound, then released): every attempt is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let metrics = Arc::new(Metrics::new(100));
    let errors = Arc::new(streamc::testkit::ReceiverErrors::default());
    let app = monitored::app()
        .listener(metrics.clone())
        .listener(errors.clone());
    let (app, address) = start_with_ui(app, closed);
    // The receiver retries after 100 ms, 200 ms, 400 ms...: three refusals within half a second, but
    // they fall between fewer cuts, so counting events instead of errors would fall short.
    let errors_line = "streamc_receiver_errors_total{app=\"monitored\",source=\"lines\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = get(address, "/metrics").1;
        if metric_if_any(&text, errors_line).is_some_and(|n| n >= 3.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(metric(&text, errors_line) >= 3.0, "{text}");
    assert_eq!(
        metric(
            &text,
            "streamc_receiver_connected{app=\"monitored\",source=\"lines\"}"
        ),
        0.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "streamc_receiver_active{app=\"monitored\",source=\"lines\"}"
        ),
        1.0,
        "running, though not connected: {text}"
    );
    let receivers: serde_json::Value =
        serde_json::from_str(&get(address, "/api/v1/receivers").1).unwrap();
    assert_eq!(receivers[0]["connected"], false, "{receivers}");
    assert!(receivers[0]["errors"].as_u64().unwrap() >= 3, "{receivers}");
    assert!(
        receivers[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot connect")),
        "{receivers}"
    );
    let report = app.stop().unwrap();
    // The last cut comes after the receiver stopped, so the metrics and the events end on the
    // receiver's own final count: each refusal once.
    let refused = report
        .sources
        .iter()
        .find(|(name, _)| name == "lines")
        .map(|(_, stats)| stats.connection_errors)
        .expect("the receiver's counters");
    assert!(refused >= 3);
    assert_eq!(metrics.receivers_json()[0]["errors"], refused);
    assert_eq!(errors.count(), refused);
    assert_eq!(metrics.receivers_json()[0]["connected"], false);
}

/// The browser the dashboard test drives, if installed (`.ci/run` installs Debian's chromium).
fn chromium() -> Option<std::path::PathBuf> {
    for candidate in [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ] {
        if std::path::Path::new(candidate).exists() {
            return Some(candidate.into());
        }
    }
    if std::env::var("STREAMC_REQUIRE_SERVICES").is_ok() {
        panic!("no Chromium found, but STREAMC_REQUIRE_SERVICES asks for the browser test");
    }
    eprintln!("Chromium is not installed: skipping the dashboard browser test");
    None
}

/// Loads `url` in headless Chromium, lets its scripts run for `wait`, and returns the DOM; with
/// `screenshot`, also saves a PNG.
fn browse(
    browser: &std::path::Path,
    url: &str,
    wait: Duration,
    screenshot: Option<&std::path::Path>,
) -> String {
    let profile = std::env::temp_dir().join(format!("streamc-chromium-{}", std::process::id()));
    let mut command = std::process::Command::new(browser);
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--window-size=1280,1100",
        &format!("--user-data-dir={}", profile.display()),
        &format!("--virtual-time-budget={}", wait.as_millis()),
    ]);
    match screenshot {
        Some(path) => command.arg(format!("--screenshot={}", path.display())),
        None => command.arg("--dump-dom"),
    };
    let out = command.arg(url).output().expect("run chromium");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn text_of(dom: &str, id: &str) -> String {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("#{id} in the page"));
    let after = &dom[start..];
    let open = after.find('>').unwrap() + 1;
    let close = after[open..].find('<').unwrap() + open;
    after[open..close].to_string()
}

#[test]
fn the_dashboard_shows_live_data_and_warns_when_falling_behind() {
    let Some(browser) = chromium() else { return };
    let lines: Vec<String> = (0..300).map(|i| format!("a{} b{}", i % 5, i % 2)).collect();
    let server = LineServer::once((lines.join("\n") + "\n").into_bytes()).unwrap();
    let (app, address) = start_with_ui(monitored::app(), server.address());
    wait_for_completed(address, lines.len());
    let url = format!("http://{address}/");
    let dom = browse(&browser, &url, Duration::from_secs(3), None);
    assert_eq!(text_of(&dom, "app"), "monitored");
    assert_eq!(
        text_of(&dom, "stat-records"),
        lines.len().to_string(),
        "the records received"
    );
    assert_eq!(text_of(&dom, "stat-failed"), "0");
    assert!(
        dom.contains("<polyline class=\"line\" points=\""),
        "the charts are drawn"
    );
    assert!(
        dom.contains("<td>lines</td><td>yes</td><td>yes</td><td>300</td>"),
        "the receivers table: active, connected, records"
    );
    assert!(
        dom.contains("class=\"batch\" data-time="),
        "the batches table"
    );
    assert!(!dom.contains("id=\"behind\" class=\"on\""), "not behind");
    assert!(
        dom.contains("<rect class=\"bar\""),
        "the histograms are drawn"
    );
    // Drill-down: the batch named in the address is shown in detail, as a click on its row does.
    let (_, newest) = get(address, "/api/v1/batches?limit=1");
    let newest: serde_json::Value = serde_json::from_str(&newest).unwrap();
    let time = newest[0]["time"].as_u64().expect("a batch time");
    let records = newest[0]["records"].as_u64().expect("its records");
    let dom = browse(
        &browser,
        &format!("{url}#batch={time}"),
        Duration::from_secs(2),
        None,
    );
    let shown = text_of(&dom, "detail");
    assert!(
        shown.starts_with(&format!("batch {time}: {records} records")),
        "the batch detail: {shown}"
    );
    assert!(
        shown.contains("source lines:") && shown.contains("output "),
        "per source and per output: {shown}"
    );
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let shot = shots.join("dashboard.png");
    browse(&browser, &url, Duration::from_secs(3), Some(&shot));
    assert!(
        std::fs::metadata(&shot)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false),
        "a screenshot at {}",
        shot.display()
    );
    app.stop().unwrap();

    // Now each batch with data takes 3 batch intervals: the banner must come up.
    let feed = LineServer::generated(200, 3).unwrap();
    let (app, address) = start_with_ui(lagging::app(), feed.address());
    // The banner looks at the newest five batches.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let batches: serde_json::Value =
            serde_json::from_str(&get(address, "/api/v1/batches?limit=5").1).unwrap_or_default();
        let slow = batches.as_array().map_or(0, |b| {
            b.iter()
                .filter(|b| b["processing_time_ms"].as_f64() > Some(200.0))
                .count()
        });
        if slow == 5 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let url = format!("http://{address}/");
    let dom = browse(&browser, &url, Duration::from_secs(3), None);
    let shot = shots.join("dashboard-behind.png");
    browse(&browser, &url, Duration::from_secs(3), Some(&shot));
    // A graceful stop would work through the whole backlog, which outlasts its timeout.
    match app.stop_now() {
        Ok(_) | Err(streamc::RunError::StoppedAtOnce { .. }) => {}
        Err(e) => panic!("{e}"),
    }
    assert!(
        dom.contains("id=\"behind\" class=\"on\""),
        "the falling-behind banner shows"
    );
}

#[test]
fn the_stats_report_and_the_ui_flag_parse() {
    let app = monitored::app()
        .with_args(["--ui", "4041", "--stats-every", "5"])
        .unwrap();
    assert_eq!(
        app.config().ui,
        Some("127.0.0.1:4041".parse().unwrap()),
        "a bare port means loopback"
    );
    assert_eq!(app.config().stats_every, Some(5));
    assert!(monitored::app().with_args(["--ui", "nowhere"]).is_err());
}

#[test]
fn state_checkpoint_and_write_ahead_log_figures_match_the_run() {
    let lines: Vec<String> = (0..300).map(|i| format!("a{} b{}", i % 5, i % 2)).collect();
    let payload = lines.join("\n") + "\n";
    let server = LineServer::once(payload.clone().into_bytes()).unwrap();
    let dir = std::env::temp_dir().join(format!("streamc-monitor-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let app = stateful_monitored::app()
        .source_address("lines", server.address().to_string())
        .configure(|c| {
            c.ui = Some("127.0.0.1:0".parse().unwrap());
            c.checkpoint_dir = Some(dir.clone().into());
            c.write_ahead_log = true;
        })
        .start()
        .unwrap();
    let address = app.ui_address().expect("the UI listens");
    let app_label = "{app=\"stateful_monitored\"}";
    let line_bytes: usize = lines.iter().map(String::len).sum();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = get(address, "/metrics").1;
        // Every line received, and a checkpoint written after the last of them was counted.
        let received = metric_if_any(
            &text,
            "streamc_records_received_total{app=\"stateful_monitored\",source=\"lines\"}",
        );
        let keys = metric_if_any(
            &text,
            "streamc_state_keys{app=\"stateful_monitored\",operator=\"totals\"}",
        );
        // The log's size is measured at most once a second: wait for a measurement after the lines.
        let logged = metric_if_any(&text, &format!("streamc_wal_bytes{app_label}"));
        let checkpoints = metric_if_any(
            &text,
            &format!("streamc_checkpoint_seconds_count{app_label}"),
        );
        if received == Some(lines.len() as f64)
            && keys == Some(7.0)
            && checkpoints.is_some_and(|n| n >= 1.0)
            && logged.is_some_and(|b| b >= line_bytes as f64)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        metric(
            &text,
            "streamc_state_keys{app=\"stateful_monitored\",operator=\"totals\"}"
        ),
        7.0,
        "a0..a4, b0, b1: {text}"
    );
    assert!(
        metric(
            &text,
            &format!("streamc_checkpoint_seconds_count{app_label}")
        ) >= 1.0,
        "{text}"
    );
    // The state's size is that of a checkpoint the app wrote (they are all alike once the counts stop
    // changing).
    let state_bytes = metric(&text, &format!("streamc_state_bytes{app_label}")) as u64;
    let sizes: Vec<u64> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("checkpoint-"))
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .collect();
    assert!(
        sizes.contains(&state_bytes),
        "{state_bytes} among {sizes:?}"
    );
    // The log holds every line received, framed, and nothing was deleted yet (it is one segment).
    let wal = metric(&text, &format!("streamc_wal_bytes{app_label}")) as usize;
    assert!(
        wal >= line_bytes && wal < payload.len() * 3,
        "{wal} bytes logged for {line_bytes} bytes of lines"
    );
    app.stop().unwrap();
}

/// While set, every batch with data waits: the executor looks stuck.
static HOLD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

stream! {
    app supervised { batch: 100ms, workers: 2 }
    let lines = socket_text_stream("localhost", 9999);
    lines.foreach_batch(|batch, _| {
        while !batch.is_empty() && crate::HOLD.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    });
}

/// Polls `path` until its status is `status` (10 s at most); the body it answered last.
fn wait_for_status(address: SocketAddr, path: &str, status: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (got, body) = get(address, path);
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} answers {got}, not {status}: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn healthz_and_readyz_follow_every_state_of_the_engine() {
    use std::sync::atomic::Ordering;
    // Nothing listens on the source's port yet: the receiver retries.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = supervised::app()
        .with_args([
            "--source",
            &format!("lines=127.0.0.1:{port}"),
            "--ui",
            "127.0.0.1:0",
            "--health-stuck-after",
            "1s",
            "--ready-max-queued-batches",
            "3",
        ])
        .unwrap()
        .start()
        .unwrap();
    let address = app.ui_address().expect("the UI listens");
    let body = wait_for_status(address, "/healthz", 200);
    assert!(body.contains("\"alive\""), "{body}");
    let body = wait_for_status(address, "/readyz", 503);
    assert!(
        body.contains("not connected") || body.contains("starting"),
        "{body}"
    );
    // Batches are cut while the source stays away: alive, but not ready, naming the source.
    std::thread::sleep(Duration::from_millis(500));
    let (status, body) = get(address, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"lines\""), "{body}");
    assert_eq!(get(address, "/healthz").0, 200);

    // The source comes: ready.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let feeder = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut sent = 0;
        while sent < 600 {
            if writeln!(stream, "line {sent}").is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let body = wait_for_status(address, "/readyz", 200);
    assert!(body.contains("\"ready\""), "{body}");

    // A batch that does not complete: batches queue up (not ready), then the engine is stuck (not
    // live).
    HOLD.store(true, Ordering::SeqCst);
    let body = wait_for_status(address, "/readyz", 503);
    assert!(body.contains("falling behind"), "{body}");
    let body = wait_for_status(address, "/healthz", 503);
    assert!(body.contains("stuck"), "{body}");

    // It completes: live again at once, ready once the queue is short.
    HOLD.store(false, Ordering::SeqCst);
    wait_for_status(address, "/healthz", 200);
    wait_for_status(address, "/readyz", 200);

    // A graceful stop under way: neither live nor ready.
    HOLD.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    app.stop_handle().stop();
    let body = wait_for_status(address, "/healthz", 503);
    assert!(body.contains("stopping"), "{body}");
    let body = wait_for_status(address, "/readyz", 503);
    assert!(body.contains("stopping"), "{body}");
    HOLD.store(false, Ordering::SeqCst);
    app.wait().unwrap();
    feeder.join().unwrap();
}

stream! {
    app watched_dir { batch: 100ms, workers: 1 }
    let lines = text_file_stream("unused");
    lines.count().foreach_batch(|batch, _| { std::hint::black_box(batch.len()); });
}

/// A directory is read at each cut, not received: it has its counters but no receiver row.
#[test]
fn a_file_source_is_not_listed_as_a_receiver() {
    let dir = std::env::temp_dir().join(format!("streamc-monitor-dir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let app = watched_dir::app()
        .source_address("lines", dir.to_string_lossy())
        .configure(|c| {
            c.ui = Some("127.0.0.1:0".parse().unwrap());
            // The file may arrive before the source first looks.
            c.files_include_existing = true;
        })
        .start()
        .unwrap();
    let address = app.ui_address().unwrap();
    std::fs::write(dir.join(".a.tmp"), "one\ntwo\n").unwrap();
    std::fs::rename(dir.join(".a.tmp"), dir.join("a.txt")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let batches = loop {
        let batches: serde_json::Value =
            serde_json::from_str(&get(address, "/api/v1/batches").1).unwrap();
        let counted: u64 = batches
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["records"].as_u64())
            .sum();
        if counted >= 2 || Instant::now() > deadline {
            break counted;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(batches, 2, "the file's lines were read");
    let receivers: serde_json::Value =
        serde_json::from_str(&get(address, "/api/v1/receivers").1).unwrap();
    assert_eq!(receivers, serde_json::json!([]), "no receiver row");
    let metrics = get(address, "/metrics").1;
    assert!(
        !metrics.contains("streamc_receiver_active{"),
        "no receiver metrics: {metrics}"
    );
    app.stop().unwrap();
}
