//! Secrets stay secret: a sink URL's password given as `${NAME}` or in a file, and a Kafka SASL
//! password given as `@/path`, never appear in anything a run prints or serves: standard output and
//! error (at debug level, librdkafka included), `--help`, the dashboard, `/metrics`, `/api/v1`,
//! `/healthz` and `/readyz`, even while the destination fails and its errors quote the URL.

mod support;

use rdkafka::mocking::MockCluster;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use streamc::testkit::LineServer;
use support::{example_binary, free_port, temp_dir};

/// The body of `GET path`, or the error met.
fn fetch(port: u16, path: &str) -> String {
    let attempt = || -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    };
    attempt().unwrap_or_else(|e| format!("(GET {path}: {e})"))
}

/// Everything the UI of a running app on `port` serves.
fn every_page(port: u16) -> String {
    [
        "/",
        "/metrics",
        "/api/v1/app",
        "/api/v1/receivers",
        "/api/v1/batches",
        "/healthz",
        "/readyz",
    ]
    .iter()
    .map(|path| fetch(port, path))
    .collect::<Vec<_>>()
    .join("\n")
}

/// Runs `child` for `run` (its UI on `ui_port` read meanwhile), then stops it; every output.
fn outputs_of(mut child: Child, ui_port: u16, run: Duration) -> String {
    let started = Instant::now();
    let mut pages = String::new();
    while started.elapsed() < run {
        std::thread::sleep(Duration::from_millis(500));
        pages.push_str(&every_page(ui_port));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    format!("{stdout}\n{stderr}\n{pages}")
}

fn help_of(binary: &str) -> String {
    let output = Command::new(example_binary(binary))
        .arg("--help")
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_sink_urls_password_is_in_no_output() {
    const PASSWORD: &str = "sink-pw-4417-from-env";
    const FILE_PASSWORD: &str = "sink-pw-9083-from-file";
    let dir = temp_dir("secrets-sink");
    let server = LineServer::generated(50, 3).unwrap();
    // No database listens here: every write fails, and the driver's errors name the URL.
    let dead = free_port();
    let url_file = dir.join("url");
    std::fs::write(
        &url_file,
        // A port out of range: the URL is refused, and the refusal quotes it.
        format!("mysql://app:{FILE_PASSWORD}@127.0.0.1:99999/test\n"),
    )
    .unwrap();
    for (label, url) in [
        (
            "environment",
            format!("mysql://app:${{STREAMC_TEST_SINK_PASSWORD}}@127.0.0.1:{dead}/test"),
        ),
        ("file", format!("@{}", url_file.display())),
    ] {
        let ui = free_port();
        let child = Command::new(example_binary("persist_word_count"))
            .args(["--source", &format!("lines={}", server.address())])
            .args([
                "--batch",
                "200ms",
                "--sink-retries",
                "4",
                "--sink-backoff",
                "200ms",
            ])
            .args(["--checkpoint", &dir.join(label).to_string_lossy()])
            .args(["--sink", &format!("wordcount={url}")])
            .args(["--ui", &format!("127.0.0.1:{ui}")])
            .env("STREAMC_TEST_SINK_PASSWORD", PASSWORD)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let all = outputs_of(child, ui, Duration::from_secs(4)) + &help_of("persist_word_count");
        for secret in [PASSWORD, FILE_PASSWORD] {
            assert!(
                !all.contains(secret),
                "{label}: the password leaked:\n{all}"
            );
        }
        // The run did write (and fail) to the destination; the bad URL is quoted, its password
        // masked.
        if label == "file" {
            assert!(
                all.contains("mysql://app:***@127.0.0.1:99999"),
                "{label}:\n{all}"
            );
        } else {
            assert!(all.contains("output `wordcount`"), "{label}:\n{all}");
            // Why the database cannot be reached, not only that the pool timed out.
            assert!(all.contains("Connection refused"), "{label}:\n{all}");
        }
    }
}

#[test]
fn a_kafka_sasl_password_is_in_no_output() {
    const PASSWORD: &str = "kafka-pw-2290-from-file";
    let dir = temp_dir("secrets-kafka");
    let password_file = dir.join("kafka-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("wordCount", 1, 1).unwrap();
    let ui = free_port();
    let child = Command::new(example_binary("kafka_direct_word_count"))
        .args([
            "--source",
            &format!("lines={}", cluster.bootstrap_servers()),
        ])
        .args(["--checkpoint", &dir.join("checkpoints").to_string_lossy()])
        .args(["--kafka-property", "security.protocol=sasl_plaintext"])
        .args(["--kafka-property", "sasl.mechanism=PLAIN"])
        .args(["--kafka-property", "sasl.username=app"])
        .args([
            "--kafka-property",
            &format!("sasl.password=@{}", password_file.display()),
        ])
        .args(["--kafka-property", "debug=security,broker,conf"])
        .args(["--ui", &format!("127.0.0.1:{ui}")])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let all = outputs_of(child, ui, Duration::from_secs(3)) + &help_of("kafka_direct_word_count");
    assert!(!all.contains(PASSWORD), "the password leaked:\n{all}");
    // The run did use SASL, as librdkafka's own log lines say.
    assert!(all.contains("SASL"), "{all}");
}
