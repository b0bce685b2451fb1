//! The receiver-based Kafka source on librdkafka's mock cluster: a consumer-group receiver counts every
//! message, and with the write-ahead log a receiver killed with SIGKILL after receiving loses nothing:
//! deduplicated on (partition, offset) the result is exact.

mod support;

use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use streamc::prelude::*;
use support::{child, dir_bytes, published, setting, temp_dir, terminate, CHECKPOINTS, PEER};

fn produce(brokers: &str, topic: &str, from: usize, n: usize) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    for i in from..from + n {
        let payload = format!("message {i}");
        producer
            .send(
                BaseRecord::<(), str>::to(topic)
                    .payload(&payload)
                    .partition(i as i32 % 2),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

stream! {
    app received_count { batch: 200ms, workers: 2 }
    let records = kafka_receiver_stream("127.0.0.1:9", ["events"]);
    records.map(|r| r.value_str().unwrap_or("").to_string()).collect("values");
}

#[test]
fn a_consumer_group_receiver_gets_every_message() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("events", 2, 1).unwrap();
    produce(&brokers, "events", 0, 500);
    let app = received_count::app()
        .source_address("records", brokers.clone())
        .start()
        .unwrap();
    let mut got = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 500 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        for (_, values) in app.take::<String>("values").unwrap() {
            got.extend(values);
        }
    }
    let report = app.stop().unwrap();
    let expected: BTreeSet<String> = (0..500).map(|i| format!("message {i}")).collect();
    assert_eq!(got, expected);
    assert_eq!(report.records, 500);
}

/// Whether the receiver has joined its group and been given partitions (its receiver row counts a
/// connection then).
fn assigned(address: std::net::SocketAddr) -> bool {
    let body = scrape(address, "/api/v1/receivers");
    let json = body.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|r| r[0]["connections"].as_u64())
        .is_some_and(|n| n > 0)
}

/// `--kafka-start latest`: a new group's receiver skips what was in the topic before it joined and
/// reads what comes after.
#[test]
fn a_receiver_started_at_latest_reads_only_what_comes_after_it_joined() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("events", 2, 1).unwrap();
    produce(&brokers, "events", 0, 100);
    let app = received_count::app()
        .source_address("records", brokers.clone())
        .configure(|c| {
            c.kafka.start = streamc::source::StartAt::Latest;
            c.kafka.group = Some("starts-at-latest".into());
            c.ui = Some("127.0.0.1:0".parse().unwrap());
        })
        .start()
        .unwrap();
    let address = app.ui_address().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !assigned(address) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(assigned(address), "the receiver joined its group");
    produce(&brokers, "events", 100, 50);
    let mut got = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 50 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        for (_, values) in app.take::<String>("values").unwrap() {
            got.extend(values);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    for (_, values) in app.take::<String>("values").unwrap() {
        got.extend(values);
    }
    app.stop().unwrap();
    let expected: BTreeSet<String> = (100..150).map(|i| format!("message {i}")).collect();
    assert_eq!(got, expected, "only the messages produced after it joined");
}

stream! {
    app slow_received { batch: 500ms, workers: 2 }
    let records = kafka_receiver_stream("127.0.0.1:9", ["events"]);
    let sizes = records.map(|r| r.value.as_ref().map_or(0, Vec::len));
    // 1 ms per record, about 1,000 records/s: the receiver runs ahead of processing.
    sizes.foreach_batch(|batch, _| {
        crate::SLOW_BATCHES.lock().unwrap().push(batch.len());
        std::thread::sleep(std::time::Duration::from_millis(batch.len() as u64));
    });
}

static SLOW_BATCHES: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

/// A receiver ahead of processing holds at most its memory budget: batches stay small and the
/// rest waits in Kafka, none lost.
#[test]
fn a_receiver_ahead_of_processing_keeps_to_its_memory_budget() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("events", 2, 1).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let payload = vec![b'x'; 1000];
    for i in 0..8000 {
        producer
            .send(
                BaseRecord::<(), [u8]>::to("events")
                    .payload(&payload)
                    .partition(i % 2),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let app = slow_received::app()
        .source_address("records", brokers.clone())
        .configure(|c| c.socket.buffer_bytes = 1 << 20)
        .start()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let total = || SLOW_BATCHES.lock().unwrap().iter().sum::<usize>();
    while total() < 8000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    app.stop().unwrap();
    let batches = SLOW_BATCHES.lock().unwrap().clone();
    assert_eq!(total(), 8000, "every message, once: {batches:?}");
    // 1 MiB holds about 900 of these records; a block is at most 1 MiB more.
    let largest = batches.iter().max().copied().unwrap_or(0);
    assert!(
        largest <= 2500,
        "a batch holds at most about the budget, not the backlog: {batches:?}"
    );
}

/// A rate-limited receiver falls behind a backlog: its lag per partition shows in `/metrics`.
#[test]
fn the_receiver_reports_its_lag_per_partition() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("events", 2, 1).unwrap();
    produce(&brokers, "events", 0, 10_000);
    let app = received_count::app()
        .source_address("records", brokers.clone())
        .configure(|c| {
            c.receiver_max_rate = Some(1000);
            c.ui = Some("127.0.0.1:0".parse().unwrap());
        })
        .start()
        .unwrap();
    let address = app.ui_address().unwrap();
    let lag = |partition: i32| -> Option<i64> {
        let text = scrape(address, "/metrics");
        let prefix = format!(
            "streamc_kafka_lag{{app=\"received_count\",source=\"records\",topic=\"events\",partition=\"{partition}\"}} "
        );
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.parse().ok())
    };
    // Joining the mock's consumer group can take seconds; the backlog lasts about ten more.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut behind = None;
    while behind.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        behind = lag(0).zip(lag(1)).filter(|(a, b)| a + b > 0);
    }
    let Some((a, b)) = behind else {
        let text = scrape(address, "/metrics");
        let kafka: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("kafka") || l.contains("received"))
            .collect();
        panic!("no lag per partition while the backlog drains: {kafka:#?}");
    };
    assert!(a + b <= 10_000, "at most the backlog: {a} + {b}");
    app.stop().unwrap();
}

/// One GET; the body.
fn scrape(address: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

mod logged {
    use streamc::prelude::*;

    stream! {
        app logged_receiver { batch: 5s, workers: 2, checkpoint: "target/streamc-test/logged_receiver", checkpoint_every: 5s }
        let records = kafka_receiver_stream("127.0.0.1:9", ["events"]);
        // Keyed by where the message sits in Kafka: a message received twice is stored once.
        let seen = records
            .map(|r| ((r.partition, r.offset), r.value_str().unwrap_or("").to_string()))
            .update_state_by_key(|new: &[String], old: Option<String>| old.or_else(|| new.first().cloned()));
        seen.foreach_batch(|batch, _| crate::support::publish("seen.txt", batch.collect().into_iter().map(|(_, v)| v)));
    }
}

#[test]
#[ignore = "run by a_logged_receiver_loses_nothing_across_sigkills in a child process"]
fn logged_receiver_child() {
    logged::logged_receiver::app()
        .source_address("records", setting(PEER))
        .configure(|c| {
            c.checkpoint_dir =
                Some(streamc::store::Location::parse(&setting(CHECKPOINTS)).unwrap());
            c.write_ahead_log = true;
        })
        .stop_on_signals()
        .run()
        .unwrap();
}

#[test]
fn a_logged_receiver_loses_nothing_across_sigkills() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("events", 2, 1).unwrap();
    let (out, checkpoints) = (temp_dir("kr-out"), temp_dir("kr-ckpt"));
    let log = checkpoints.join("wal").join("records");
    let mut sent = 0;
    for wave in 0..3 {
        let before = dir_bytes(&log);
        produce(&brokers, "events", sent, 200);
        sent += 200;
        let mut app = child("logged_receiver_child", &out, &checkpoints, &brokers);
        // Kill once the receiver has logged this wave, before its 5 s batch processes it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while dir_bytes(&log) <= before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            dir_bytes(&log) > before,
            "wave {wave}: nothing was received"
        );
        std::thread::sleep(Duration::from_millis(300));
        app.kill().unwrap();
        app.wait().unwrap();
    }
    let app = child("logged_receiver_child", &out, &checkpoints, &brokers);
    std::thread::sleep(Duration::from_millis(1500));
    let deadline = Instant::now() + Duration::from_secs(40);
    while published(&out, "seen.txt").len() < sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    terminate(app);
    let expected: BTreeSet<String> = (0..sent).map(|i| format!("message {i}")).collect();
    let got: BTreeSet<String> = published(&out, "seen.txt").into_iter().collect();
    assert_eq!(
        got, expected,
        "every message received before the kills is there, once"
    );
}
