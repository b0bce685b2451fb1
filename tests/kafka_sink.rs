//! The Kafka sink against librdkafka's mock cluster (a real Kafka protocol peer): records arrive with
//! their batch headers, at least once by default and through transactions when asked; a replayed batch
//! that was committed is not written again; across SIGKILLs every batch's records are complete. The
//! transactional path also runs against a real broker when `STREAMC_KAFKA_BROKERS` is set (skipped
//! otherwise). The mock does not hide aborted transactions from `read_committed` readers, so nothing
//! here proves that isolation: the crash tests check the batch headers instead.

mod support;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::mocking::MockCluster;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};
use streamc::testkit::Rng;
use support::{child_with, drop_lines, setting, temp_dir, terminate, CHECKPOINTS, PEER};

/// One message as read back: (batch, partition, seq) from the headers, then key and payload.
type Read = ((u64, u64, u64), String, String);

/// Every message of `topic` (partition 0 .. `partitions`), read `read_committed` to the high watermark.
fn read_all(brokers: &str, topic: &str) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "streamc-test-reader")
        .set("enable.partition.eof", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut tpl = TopicPartitionList::new();
    let mut remaining = 0i64;
    for p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, *p, Duration::from_secs(10))
            .unwrap();
        remaining += high - low;
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let positions = consumer.position().unwrap();
        let read: i64 = partitions
            .iter()
            .map(|p| {
                positions
                    .find_partition(topic, *p)
                    .and_then(|tp| tp.offset().to_raw())
                    .unwrap_or(0)
            })
            .sum();
        if read >= remaining {
            break;
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let header = |name: &str| -> u64 {
                let headers = m.headers().expect("streamc headers");
                let h = headers.iter().find(|h| h.key == name).expect(name);
                std::str::from_utf8(h.value.unwrap())
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            let text =
                |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
            out.push((
                (
                    header("streamc-batch"),
                    header("streamc-partition"),
                    header("streamc-seq"),
                ),
                text(m.key()),
                text(m.payload()),
            ));
        }
    }
    out
}

/// The messages with duplicates (same batch, partition and sequence) removed, after checking that
/// duplicates are identical, summed per key.
fn deduplicated_totals(messages: &[Read]) -> BTreeMap<String, u64> {
    let mut seen: BTreeMap<(u64, u64, u64), (String, String)> = BTreeMap::new();
    for (id, key, payload) in messages {
        if let Some(previous) = seen.insert(*id, (key.clone(), payload.clone())) {
            assert_eq!(
                previous,
                (key.clone(), payload.clone()),
                "a replay writes the same record under the same id"
            );
        }
    }
    let mut totals = BTreeMap::new();
    for (key, payload) in seen.values() {
        *totals.entry(key.clone()).or_insert(0) += payload.parse::<u64>().unwrap();
    }
    totals
}

fn word_batches() -> Vec<Vec<String>> {
    let mut rng = Rng::new(3);
    (0..8)
        .map(|_| {
            (0..30)
                .map(|_| format!("w{}", rng.next_u64() % 7))
                .collect()
        })
        .collect()
}

mod apps {
    use std::time::Duration;
    use streamc::prelude::*;

    stream! {
        app kafka_outage { batch: 100ms, workers: 2, checkpoint: "target/streamc-test/kafka_outage" }
        let words = queue_stream::<String>(crate::word_batches());
        let counts = words.map(|w| (w.clone(), 1u64)).reduce_by_key(|a, b| a + b);
        counts.save_to_kafka("127.0.0.1:9", KafkaTopic::new("outage").timeout(Duration::from_millis(1500)));
    }

    stream! {
        app kafka_out { batch: 100ms, workers: 2 }
        let words = queue_stream::<String>(crate::word_batches());
        let counts = words.map(|w| (w.clone(), 1u64)).reduce_by_key(|a, b| a + b);
        counts.save_to_kafka("127.0.0.1:9", KafkaTopic::new("counts_plain"));
        counts.save_to_kafka("127.0.0.1:9", KafkaTopic::new("counts_tx").transactional());
    }
}

fn per_batch_reference() -> Vec<BTreeMap<String, u64>> {
    word_batches()
        .iter()
        .map(|batch| {
            let mut counts = BTreeMap::new();
            for w in batch {
                *counts.entry(w.clone()).or_insert(0) += 1;
            }
            counts
        })
        .collect()
}

fn check_per_batch(messages: &[Read], label: &str) {
    let mut by_batch: BTreeMap<u64, BTreeMap<String, u64>> = BTreeMap::new();
    let ids: BTreeSet<(u64, u64, u64)> = messages.iter().map(|m| m.0).collect();
    assert_eq!(ids.len(), messages.len(), "{label}: no message twice");
    for ((batch, _, _), key, payload) in messages {
        by_batch
            .entry(*batch)
            .or_default()
            .insert(key.clone(), payload.parse().unwrap());
    }
    assert_eq!(
        by_batch.into_values().collect::<Vec<_>>(),
        per_batch_reference(),
        "{label}: each batch's counts, under its batch header"
    );
}

fn run_kafka_out(brokers: &str) -> streamc::RunReport {
    apps::kafka_out::app()
        .configure(|c| {
            c.stop_when_drained = true;
            c.sinks
                .urls
                .insert("counts_plain".into(), brokers.to_string());
            c.sinks.urls.insert("counts_tx".into(), brokers.to_string());
        })
        .run()
        .unwrap()
}

#[test]
fn batches_land_with_their_headers_at_least_once_and_transactionally() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    for topic in ["counts_plain", "counts_tx"] {
        cluster.create_topic(topic, 2, 1).unwrap();
    }
    let report = run_kafka_out(&brokers);
    assert_eq!(report.batches_failed, 0);
    check_per_batch(&read_all(&brokers, "counts_plain"), "at least once");
    check_per_batch(&read_all(&brokers, "counts_tx"), "transactional");
}

/// Without crashes there is no aborted transaction to hide, so this checks that the transactional
/// path works on a real broker, not that `read_committed` readers are isolated from aborted writes.
#[test]
fn the_transactional_path_on_a_real_broker_when_one_is_given() {
    // Skipped, not failed, even under STREAMC_REQUIRE_SERVICES: CI has no Kafka broker (none is
    // packaged for it), and the mock cluster above covers the protocol.
    let brokers = match std::env::var("STREAMC_KAFKA_BROKERS") {
        Ok(brokers) if !brokers.trim().is_empty() => brokers,
        _ => {
            eprintln!(
                "skipped: STREAMC_KAFKA_BROKERS is not set (no real broker to run the \
                 transactional Kafka sink against)"
            );
            return;
        }
    };
    run_kafka_out(&brokers);
    let messages = read_all(&brokers, "counts_tx");
    // Earlier runs against the same broker left their own batches: keep this run's (the newest 8).
    let batches: BTreeSet<u64> = messages.iter().map(|m| m.0 .0).collect();
    let newest: BTreeSet<u64> = batches.iter().rev().take(8).copied().collect();
    let ours: Vec<Read> = messages
        .into_iter()
        .filter(|m| newest.contains(&m.0 .0))
        .collect();
    check_per_batch(&ours, "transactional, real broker");
}

mod crash {
    use streamc::prelude::*;

    stream! {
        app kafka_totals_out { batch: 100ms, workers: 1, checkpoint: "target/streamc-test/kafka_totals_out", checkpoint_every: 300ms }
        let lines = text_file_stream("target/streamc-test/kafka_totals_out_in");
        let counts = lines
            .flat_map(|line: &str| line.split_whitespace())
            .map(|w| (w.to_string(), 1u64))
            .reduce_by_key(|a, b| a + b);
        counts.save_to_kafka("127.0.0.1:9", KafkaTopic::new("totals_tx").transactional());
    }
}

#[test]
#[ignore = "run by the Kafka sink crash tests in a child process"]
fn kafka_sink_child() {
    crash::kafka_totals_out::app()
        .source_address("lines", setting(PEER))
        .configure(|c| {
            c.checkpoint_dir =
                Some(streamc::store::Location::parse(&setting(CHECKPOINTS)).unwrap());
            // Files arrive from the first moment (see tests/files.rs).
            c.files_include_existing = true;
            c.sinks
                .urls
                .insert("totals_tx".into(), setting("STREAMC_TEST_BROKERS"));
            c.sinks.retry.initial_backoff = Duration::from_millis(20);
        })
        .stop_on_signals()
        .run()
        .unwrap();
}

/// Feeds files to a child app writing transactionally to Kafka and kills it `kills` times (SIGKILL at
/// random moments when `sigkill`, else only at the failpoint); returns the reference totals.
fn crash_run(
    brokers: &str,
    dir: &Path,
    sigkill: bool,
    failpoints: &[&str],
) -> BTreeMap<String, u64> {
    let (input, checkpoints) = (dir.join("in"), dir.join("ckpt"));
    std::fs::create_dir_all(&input).unwrap();
    let mut rng = Rng::new(if sigkill { 21 } else { 22 });
    let mut expected = BTreeMap::new();
    let spawn = |failpoint: Option<String>| {
        let mut env = vec![("STREAMC_TEST_BROKERS", brokers.to_string())];
        env.extend(failpoint.map(|f| ("STREAMC_FAILPOINT", f)));
        child_with(
            "kafka_sink_child",
            dir,
            &checkpoints,
            &input.to_string_lossy(),
            &env,
        )
    };
    let pick = |rng: &mut Rng| {
        let point = failpoints[(rng.next_u64() % failpoints.len() as u64) as usize];
        Some(format!("{point}:{}", 1 + rng.next_u64() % 3))
    };
    let mut app = spawn(pick(&mut rng));
    for i in 0..30 {
        let lines: Vec<String> = (0..1 + rng.next_u64() % 6)
            .map(|_| format!("k{} k{} f{i:03}", rng.next_u64() % 6, rng.next_u64() % 3))
            .collect();
        for line in &lines {
            for w in line.split_whitespace() {
                *expected.entry(w.to_string()).or_insert(0) += 1;
            }
        }
        drop_lines(&input, &format!("f{i:03}.txt"), &lines);
        std::thread::sleep(Duration::from_millis(80 + rng.next_u64() % 120));
        let exited = matches!(app.try_wait(), Ok(Some(_)));
        if exited || (sigkill && i % 5 == 4) {
            if !exited {
                app.kill().unwrap();
            }
            app.wait().unwrap();
            app = spawn(pick(&mut rng));
        }
    }
    // The last incarnation runs without a failpoint, so that it catches up and stops cleanly. The one
    // before is stopped gracefully (a SIGKILL mid-transaction would leave an aborted transaction that
    // the mock shows); it may still abort at its failpoint while finishing.
    if !matches!(app.try_wait(), Ok(Some(_))) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &app.id().to_string()])
            .status();
    }
    app.wait().unwrap();
    let app = spawn(None);
    std::thread::sleep(Duration::from_millis(2500));
    terminate(app);
    expected
}

#[test]
fn a_committed_batch_replayed_after_a_crash_is_not_written_again() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("totals_tx", 1, 1).unwrap();
    let dir = temp_dir("kafka-sink-replay");
    // Crashes only right after a commit, before the checkpoint: every replayed batch was committed.
    let expected = crash_run(&brokers, &dir, false, &["kafka.after_commit"]);
    let messages = read_all(&brokers, "totals_tx");
    let ids: BTreeSet<(u64, u64, u64)> = messages.iter().map(|m| m.0).collect();
    assert_eq!(ids.len(), messages.len(), "no batch is committed twice");
    assert_eq!(deduplicated_totals(&messages), expected);
}

#[test]
fn every_batch_is_complete_across_sigkills() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("totals_tx", 1, 1).unwrap();
    let dir = temp_dir("kafka-sink-crash");
    let expected = crash_run(
        &brokers,
        &dir,
        true,
        &["kafka.before_commit", "kafka.after_commit"],
    );
    // The mock cluster shows aborted transactions to read_committed readers too (see the notes on the
    // mock), so a batch cut short by a crash may appear twice; the headers tell the copies apart.
    let messages = read_all(&brokers, "totals_tx");
    assert_eq!(
        deduplicated_totals(&messages),
        expected,
        "after deduplication by header, every batch's records are there, once"
    );
}

fn outage_app(
    brokers: &str,
    checkpoints: &Path,
    attempts: u32,
) -> streamc::App<apps::kafka_outage::Pipeline> {
    let (brokers, checkpoints) = (brokers.to_string(), checkpoints.to_path_buf());
    apps::kafka_outage::app().configure(move |c| {
        c.stop_when_drained = true;
        c.checkpoint_dir = Some(checkpoints.into());
        c.sinks.urls.insert("outage".into(), brokers);
        c.sinks.retry.attempts = attempts;
        c.sinks.retry.initial_backoff = Duration::from_millis(100);
        c.sinks.retry.max_backoff = Duration::from_millis(500);
    })
}

fn reference_totals() -> BTreeMap<String, u64> {
    let mut totals = BTreeMap::new();
    for batch in per_batch_reference() {
        for (k, n) in batch {
            *totals.entry(k).or_insert(0) += n;
        }
    }
    totals
}

#[test]
fn a_broker_that_goes_away_is_retried_then_stops_the_app_resumably() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("outage", 2, 1).unwrap();
    let dir = temp_dir("kafka-sink-outage");

    // Down for longer than one delivery timeout, up before the retries run out: batches wait, nothing
    // is lost. Down once the app runs: taking the mock broker down closes and re-binds its port, and
    // once, done at the very start while the other tests were opening their sockets, that bind failed
    // and librdkafka aborted the test binary.
    let running = outage_app(&brokers, &dir.join("short"), 20)
        .start()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    cluster.broker_down(1).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    cluster.broker_up(1).unwrap();
    let report = running.wait().expect("the app rides out the outage");
    assert!(
        report.outputs[0].1.retries > 0,
        "deliveries timed out and were retried"
    );
    assert_eq!(
        deduplicated_totals(&read_all(&brokers, "outage")),
        reference_totals()
    );

    // Down for good: the policy gives up and the app stops; a restart once the broker is back finishes
    // the job.
    let app = outage_app(&brokers, &dir.join("long"), 2);
    cluster.broker_down(1).unwrap();
    let err = app
        .run()
        .expect_err("the app stops when the policy gives up");
    assert!(
        err.to_string().contains("gave up after 2 attempts"),
        "{err}"
    );
    cluster.broker_up(1).unwrap();
    outage_app(&brokers, &dir.join("long"), 2)
        .run()
        .expect("the restart resumes");
    // Both runs wrote to the topic (under different batch times): the reference twice, nothing lost.
    let twice: BTreeMap<String, u64> = reference_totals()
        .into_iter()
        .map(|(k, n)| (k, 2 * n))
        .collect();
    assert_eq!(deduplicated_totals(&read_all(&brokers, "outage")), twice);
}
