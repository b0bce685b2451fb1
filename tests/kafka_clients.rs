//! Kafka clients as a production deployment configures them: librdkafka properties from the config
//! file, the command line, per source, per sink and in code reach the clients, in that order of
//! precedence; keys the engine owns and keys librdkafka refuses stop the app before it connects; a
//! zstd-compressed topic is counted exactly; and TLS to a listener in front of the mock cluster
//! (stunnel4) is verified against the test's own CA, a wrong CA failing the start with librdkafka's
//! reason in the app's log.

mod support;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::Message;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{example_binary, free_port, have_program, make_certificates, temp_dir, StderrLines};

mod apps {
    use streamc::prelude::*;

    stream! {
        app plain_counts { batch: 200ms, workers: 2 }
        let records = kafka_direct_stream("127.0.0.1:9", ["words"]);
        let counts = records
            .flat_map(|r: &KafkaRecord| r.value_str().unwrap_or("").split(' '))
            .map(|w| (w.to_string(), 1u64))
            .reduce_by_key(|a, b| a + b);
        counts.collect();
    }

    stream! {
        app tls_in_code { batch: 200ms, workers: 2 }
        let records = kafka_direct_stream("127.0.0.1:9", ["words"], [("security.protocol", "ssl"), ("client.id", "tls-in-code")]);
        let counts = records
            .flat_map(|r: &KafkaRecord| r.value_str().unwrap_or("").split(' '))
            .map(|w| (w.to_string(), 1u64))
            .reduce_by_key(|a, b| a + b);
        counts.collect();
    }

    stream! {
        app owned_in_code { batch: 200ms, workers: 1 }
        let records = kafka_direct_stream("127.0.0.1:9", ["words"], [("enable.auto.commit", "true")]);
        records.count().collect("sizes");
    }

    stream! {
        app to_kafka { batch: 100ms, workers: 2 }
        let lines = queue_stream::<String>(vec![
            (0..50).map(|i| format!("line {i}")).collect::<Vec<String>>(),
            (50..100).map(|i| format!("line {i}")).collect::<Vec<String>>(),
        ]);
        lines.save_to_kafka("127.0.0.1:9", KafkaTopic::new("out").property("linger.ms", "1"));
    }
}

fn producer(brokers: &str, compression: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("compression.type", compression)
        .create()
        .expect("producer")
}

/// `n` lines of words, and how often each word occurs.
fn produce_words(brokers: &str, compression: &str, n: usize) -> BTreeMap<String, u64> {
    let producer = producer(brokers, compression);
    let mut expected = BTreeMap::new();
    for i in 0..n {
        let line = format!("w{} w{} common", i % 17, i % 5);
        for word in line.split(' ') {
            *expected.entry(word.to_string()).or_insert(0) += 1;
        }
        let key = format!("k{i}");
        producer
            .send(
                BaseRecord::to("words")
                    .key(&key)
                    .payload(&line)
                    .partition(i as i32 % 3),
            )
            .map_err(|(e, _)| e)
            .expect("send");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
    expected
}

/// Runs `app` until it has counted `total` words (30 s at most) and returns the counts.
fn counted(app: streamc::RunningApp, total: u64) -> BTreeMap<String, u64> {
    let mut got = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.values().sum::<u64>() < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        for (_, records) in app.take::<(String, u64)>("counts").unwrap() {
            for (w, n) in records {
                *got.entry(w).or_insert(0) += n;
            }
        }
    }
    app.stop().unwrap();
    got
}

fn cluster_with_words() -> (
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    String,
) {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("words", 3, 1).unwrap();
    (cluster, brokers)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// The seed's direct word count, with `args`; its exit status and standard error.
fn word_count_binary(args: &[&str]) -> (Option<i32>, String) {
    let output = streamc::testkit::output_within(
        Command::new(example_binary("kafka_direct_word_count"))
            .args(args)
            .env("RUST_LOG", "warn"),
        Duration::from_secs(60),
    )
    .expect("the example ends");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn owned_keys_and_refused_properties_stop_the_app_before_it_connects() {
    let dir = temp_dir("kafka-refused");
    let (code, stderr) = word_count_binary(&["--kafka-property", "enable.auto.commit=true"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("`enable.auto.commit`") && stderr.contains("--kafka-commit"),
        "an owned key names the setting to use instead: {stderr}"
    );

    let file = write(
        &dir,
        "unknown.toml",
        "[kafka.properties]\nno.such.property = 1\n",
    );
    let (code, stderr) = word_count_binary(&["--config", &file]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("`no.such.property`") && stderr.contains("librdkafka"),
        "librdkafka's refusal names the key: {stderr}"
    );

    let file = write(
        &dir,
        "bad-value.toml",
        "[sources.lines.properties]\n\"security.protocol\" = \"carrier-pigeon\"\n",
    );
    let (code, stderr) = word_count_binary(&["--config", &file]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("[sources.lines.properties]") && stderr.contains("`security.protocol`"),
        "{stderr}"
    );

    let (code, stderr) = word_count_binary(&[
        "--kafka-property",
        "sasl.password=${STREAMC_TEST_SURELY_UNSET}",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("STREAMC_TEST_SURELY_UNSET"), "{stderr}");

    let file = write(
        &dir,
        "no-source.toml",
        "[sources.nope.properties]\nacks = \"all\"\n",
    );
    let (code, stderr) = word_count_binary(&["--config", &file]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no source `nope`"), "{stderr}");

    // Client properties belong to Kafka sources only.
    let output = streamc::testkit::output_within(
        Command::new(example_binary("word_count")).args([
            "--config",
            &write(
                &dir,
                "socket.toml",
                "[sources.lines.properties]\nacks = 1\n",
            ),
        ]),
        Duration::from_secs(30),
    )
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("are for Kafka sources"), "{stderr}");

    // Owned keys fixed in code are refused at start too.
    let (_cluster, brokers) = cluster_with_words();
    let refused = match apps::owned_in_code::app()
        .source_address("records", brokers)
        .test_driver()
    {
        Ok(_) => panic!("an owned key in code must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(refused.contains("`enable.auto.commit`"), "{refused}");
}

#[test]
fn properties_in_code_are_overridden_by_the_command_line_and_per_source_tables() {
    let (_cluster, brokers) = cluster_with_words();
    let expected = produce_words(&brokers, "none", 300);
    // In code: TLS, which the mock cluster does not speak, so the start fails, saying why.
    let failed = match apps::tls_in_code::app()
        .source_address("records", brokers.clone())
        .test_driver()
    {
        Ok(_) => panic!("TLS against a plaintext broker must fail the start"),
        Err(e) => e.to_string(),
    };
    assert!(
        failed.contains("records") && failed.contains("securely"),
        "{failed}"
    );

    // The command line wins over the code.
    let app = apps::tls_in_code::app()
        .with_args([
            "--source",
            &format!("records={brokers}"),
            "--kafka-start",
            "earliest",
            "--kafka-property",
            "security.protocol=plaintext",
        ])
        .unwrap()
        .start()
        .unwrap();
    assert_eq!(counted(app, 900), expected);

    // A source's own table wins over the shared one, in both directions.
    let dir = temp_dir("kafka-precedence");
    let file = write(
        &dir,
        "own-wins.toml",
        "[kafka]\nstart = \"earliest\"\n[kafka.properties]\nsecurity.protocol = \"ssl\"\n\
         [sources.records.properties]\nsecurity.protocol = \"plaintext\"\n",
    );
    let app = apps::plain_counts::app()
        .with_args(["--config", &file, "--source", &format!("records={brokers}")])
        .unwrap()
        .start()
        .unwrap();
    assert_eq!(counted(app, 900), expected);
    let file = write(
        &dir,
        "shared-loses.toml",
        "[kafka.properties]\nsecurity.protocol = \"plaintext\"\n\
         [sources.records.properties]\nsecurity.protocol = \"ssl\"\n",
    );
    let refused = apps::plain_counts::app()
        .with_args(["--config", &file, "--source", &format!("records={brokers}")])
        .unwrap()
        .test_driver();
    assert!(
        refused.is_err(),
        "the source's own ssl must reach its client"
    );
}

#[test]
fn a_zstd_compressed_topic_is_counted_exactly() {
    let (_cluster, brokers) = cluster_with_words();
    let expected = produce_words(&brokers, "zstd", 2000);
    let app = apps::plain_counts::app()
        .source_address("records", brokers)
        .configure(|c| c.kafka.start = streamc::source::StartAt::Earliest)
        .start()
        .unwrap();
    assert_eq!(counted(app, 6000), expected);
}

/// Every message of topic `out` on `brokers`.
fn read_all(brokers: &str, topic: &str, expect: usize) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "kafka-clients-test")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while values.len() < expect && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            values
                .push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
        }
    }
    values.sort();
    values
}

#[test]
fn a_kafka_sinks_own_properties_reach_its_producers() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("out", 2, 1).unwrap();
    let dir = temp_dir("kafka-sink-properties");
    let broken = write(
        &dir,
        "broken.toml",
        "[sinks.out.properties]\nsecurity.protocol = \"ssl\"\n\
         ssl.ca.location = \"/nonexistent/streamc-test-ca.pem\"\n",
    );
    let failure = apps::to_kafka::app()
        .with_args(["--config", &broken, "--sink", &format!("out={brokers}")])
        .unwrap()
        .configure(|c| c.stop_when_drained = true)
        .run()
        .expect_err("a producer without its CA file cannot be made");
    let failure = failure.to_string();
    assert!(failure.contains("ssl.ca.location"), "{failure}");

    // TLS to a plaintext broker: the handshake fails, and the sink stops at once instead of
    // retrying what no retry fixes.
    let handshake = write(
        &dir,
        "handshake.toml",
        "[sinks.out.properties]\nsecurity.protocol = \"ssl\"\nmessage.timeout.ms = 3000\n",
    );
    let started = Instant::now();
    let failure = apps::to_kafka::app()
        .with_args(["--config", &handshake, "--sink", &format!("out={brokers}")])
        .unwrap()
        .configure(|c| c.stop_when_drained = true)
        .run()
        .expect_err("TLS against a plaintext broker cannot deliver")
        .to_string();
    assert!(failure.contains("securely"), "{failure}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "a refused handshake is not retried: {:?}",
        started.elapsed()
    );

    let compressed = write(
        &dir,
        "zstd.toml",
        "[sinks.out.properties]\ncompression.type = \"zstd\"\n",
    );
    apps::to_kafka::app()
        .with_args(["--config", &compressed, "--sink", &format!("out={brokers}")])
        .unwrap()
        .configure(|c| c.stop_when_drained = true)
        .run()
        .unwrap();
    let mut expected: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
    expected.sort();
    assert_eq!(read_all(&brokers, "out", 100), expected);
}

/// stunnel4 accepting TLS on a loopback port and forwarding to `upstream`.
struct TlsListener {
    child: Child,
    port: u16,
}

impl TlsListener {
    fn start(dir: &Path, cert: &Path, key: &Path, upstream: &str) -> TlsListener {
        let port = free_port();
        let config = dir.join("stunnel.conf");
        std::fs::write(
            &config,
            format!(
                "foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{port}\nconnect = {upstream}\n\
                 cert = {}\nkey = {}\n",
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
        let child = Command::new("stunnel4")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start stunnel4");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "stunnel4 did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsListener { child, port }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tls_to_the_brokers_is_verified_against_the_given_ca() {
    if !have_program("stunnel4", "the Kafka TLS test")
        || !have_program("openssl", "the Kafka TLS test")
    {
        return;
    }
    let dir = temp_dir("kafka-tls");
    let certs = make_certificates(&dir.join("certs"));
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("wordCount", 1, 1).unwrap();
    let upstream = cluster.bootstrap_servers();
    let tls = TlsListener::start(&dir, &certs.cert, &certs.key, &upstream);
    let run = |ca: &Path| {
        let mut child = Command::new(example_binary("kafka_direct_word_count"))
            .args(["--source", &format!("lines=127.0.0.1:{}", tls.port)])
            .args(["--checkpoint", &dir.join("checkpoints").to_string_lossy()])
            .args(["--kafka-property", "security.protocol=ssl"])
            .args([
                "--kafka-property",
                &format!("ssl.ca.location={}", ca.display()),
            ])
            .args([
                "--kafka-property",
                "ssl.endpoint.identification.algorithm=https",
            ])
            .args(
                std::env::var("STREAMC_TEST_TLS_DEBUG")
                    .map(|d| vec!["--kafka-property".to_string(), format!("debug={d}")])
                    .unwrap_or_default(),
            )
            .env(
                "RUST_LOG",
                std::env::var("STREAMC_TEST_TLS_LOG").unwrap_or("info".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        (StderrLines::of(&mut child), child)
    };

    // The right CA: the start-up topic check passes over TLS. (The mock cluster then advertises its
    // plaintext brokers, which only TLS clients reach: the bootstrap connection is what this proves.)
    let (log, mut child) = run(&certs.ca);
    let connected = log.wait_for("connected to Kafka", Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        connected,
        "TLS with the right CA must connect:\n{}",
        log.text()
    );

    // The wrong CA: the start fails, and librdkafka's reason is in the app's log.
    let (log, mut child) = run(&certs.other_ca);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the app must stop:\n{}",
            log.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(200));
    let text = log.text();
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.contains("certificate verify failed"),
        "librdkafka's verification error must be in the log:\n{text}"
    );
    assert!(
        text.contains("source lines metadata"),
        "the log names the client:\n{text}"
    );
    assert!(
        text.contains("securely"),
        "the error says why the start failed:\n{text}"
    );
}

/// The seed's direct word count against a broker that is not there, for a few seconds, logging as
/// `--log-format json` with `RUST_LOG=filter`: its log lines, each parsed.
fn json_log_lines(filter: &str) -> Vec<serde_json::Value> {
    let dir = temp_dir("kafka-json-log");
    let output = streamc::testkit::output_within(
        Command::new(example_binary("kafka_direct_word_count"))
            .args(["--source", "lines=127.0.0.1:1", "--log-format", "json"])
            .args(["--checkpoint", &dir.join("checkpoints").to_string_lossy()])
            .args(["--run-for", "1s"])
            .env("RUST_LOG", filter)
            .env_remove("STREAMC_LOG"),
        Duration::from_secs(60),
    )
    .unwrap();
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
        })
        .collect()
}

#[test]
fn librdkafka_logs_as_json_naming_the_client_and_filtered_by_target() {
    let lines = json_log_lines("info");
    let refused = lines.iter().find(|line| {
        line["target"] == "librdkafka"
            && line["fields"]["client"] == "source lines metadata"
            && line["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("Connection refused"))
    });
    assert!(
        refused.is_some(),
        "librdkafka's refused connection, named: {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line["fields"]["message"] == "started"),
        "{lines:#?}"
    );

    // A per-target filter: streamc's lines stay, librdkafka's go.
    let lines = json_log_lines("info,librdkafka=off");
    assert!(
        !lines.iter().any(|line| line["target"] == "librdkafka"),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line["fields"]["message"] == "started"),
        "{lines:#?}"
    );
}
