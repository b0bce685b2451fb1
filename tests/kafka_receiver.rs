//! The receiver-based Kafka source on librdkafka's mock cluster: a consumer-group receiver counts every
//! message, and with the write-ahead log a receiver killed with SIGKILL after receiving loses nothing:
//! deduplicated on (partition, offset) the result is exact.

use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use streamc::prelude::*;

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

mod logged {
    use streamc::prelude::*;

    stream! {
        app logged_receiver { batch: 5s, workers: 2, checkpoint: "target/streamc-test/logged_receiver", checkpoint_every: 5s }
        let records = kafka_receiver_stream("127.0.0.1:9", ["events"]);
        // Keyed by where the message sits in Kafka: a message received twice is stored once.
        let seen = records
            .map(|r| ((r.partition, r.offset), r.value_str().unwrap_or("").to_string()))
            .update_state_by_key(|new: &[String], old: Option<String>| old.or_else(|| new.first().cloned()));
        seen.foreach_batch(|batch, _| crate::publish(batch));
    }
}

const OUT: &str = "STREAMC_KR_OUT";
const CKPT: &str = "STREAMC_KR_CKPT";
const BROKERS: &str = "STREAMC_KR_BROKERS";

fn publish(batch: streamc::Batch<((i32, i64), String)>) {
    let Ok(out) = std::env::var(OUT) else { return };
    let mut lines: Vec<String> = batch.collect().into_iter().map(|(_, v)| v).collect();
    lines.sort();
    let file = Path::new(&out).join("seen.txt");
    std::fs::write(file.with_extension("tmp"), lines.join("\n")).unwrap();
    std::fs::rename(file.with_extension("tmp"), file).unwrap();
}

#[test]
#[ignore = "run by a_logged_receiver_loses_nothing_across_sigkills in a child process"]
fn logged_receiver_child() {
    logged::logged_receiver::app()
        .source_address("records", std::env::var(BROKERS).unwrap())
        .configure(|c| {
            c.checkpoint_dir = Some(std::env::var(CKPT).unwrap().into());
            c.write_ahead_log = true;
        })
        .stop_on_signals()
        .run()
        .unwrap();
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("streamc-kr-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn wal_bytes(checkpoints: &Path) -> u64 {
    let dir = checkpoints.join("wal").join("records");
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn published(out: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(out.join("seen.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_logged_receiver_loses_nothing_across_sigkills() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("events", 2, 1).unwrap();
    let (out, checkpoints) = (temp_dir("out"), temp_dir("ckpt"));
    let spawn = || {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "logged_receiver_child",
                "--exact",
                "--ignored",
                "--test-threads=1",
            ])
            .env(OUT, &out)
            .env(CKPT, &checkpoints)
            .env(BROKERS, &brokers)
            .env("STREAMC_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut sent = 0;
    for wave in 0..3 {
        let before = wal_bytes(&checkpoints);
        produce(&brokers, "events", sent, 200);
        sent += 200;
        let mut child = spawn();
        // Kill once the receiver has logged this wave, before its 5 s batch processes it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while wal_bytes(&checkpoints) <= before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            wal_bytes(&checkpoints) > before,
            "wave {wave}: nothing was received"
        );
        std::thread::sleep(Duration::from_millis(300));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let mut child = spawn();
    std::thread::sleep(Duration::from_millis(1500));
    let deadline = Instant::now() + Duration::from_secs(40);
    while published(&out).len() < sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    let expected: BTreeSet<String> = (0..sent).map(|i| format!("message {i}")).collect();
    assert_eq!(
        published(&out),
        expected,
        "every message received before the kills is there, once"
    );
}
