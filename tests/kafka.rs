//! The direct Kafka source against librdkafka's mock cluster (the real Kafka protocol, in-process; set
//! STREAMC_KAFKA_BROKERS to also run the word count against a real broker): counts equal the reference,
//! the per-partition rate bounds even the first batch, SIGKILL at random points loses and repeats
//! nothing, and unknown topics and unreachable brokers are clear errors, not crashes.

mod support;

use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use streamc::stream;
use streamc::testkit::Rng;
use support::{child, counts, published, setting, temp_dir, terminate, CHECKPOINTS, PEER};

mod apps {
    use streamc::prelude::*;

    stream! {
        app kafka_counts { batch: 200ms, workers: 2 }
        let records = kafka_direct_stream("127.0.0.1:9", ["words"]);
        let counts = records
            .flat_map(|r: &KafkaRecord| r.value_str().unwrap_or("").split(' '))
            .map(|w| (w.to_string(), 1u64))
            .reduce_by_key(|a, b| a + b);
        counts.collect();
    }

    stream! {
        app real_broker_counts { batch: 200ms, workers: 2 }
        let records = kafka_direct_stream("127.0.0.1:9", [crate::topic()]);
        let counts = records
            .flat_map(|r: &KafkaRecord| r.value_str().unwrap_or("").split(' '))
            .map(|w| (w.to_string(), 1u64))
            .reduce_by_key(|a, b| a + b);
        counts.collect();
    }

    stream! {
        app kafka_totals { batch: 100ms, workers: 2, checkpoint: "target/streamc-test/kafka_totals", checkpoint_every: 300ms }
        let records = kafka_direct_stream("127.0.0.1:9", ["words"]);
        let totals = records
            .flat_map(|r: &KafkaRecord| r.value_str().unwrap_or("").split(' '))
            .map(|w| (w.to_string(), 1u64))
            .update_state_by_key(|new: &[u64], old: Option<u64>| Some(old.unwrap_or(0) + new.iter().sum::<u64>()));
        totals.foreach_batch(|batch, _| crate::support::publish("totals.txt", batch.collect().into_iter().map(|(w, n)| format!("{w} {n}"))));
    }
}

/// The topic of the real-broker word count: a fresh one per run.
static TOPIC: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn topic() -> String {
    TOPIC
        .get()
        .cloned()
        .unwrap_or_else(|| "streamc-words".to_string())
}

fn producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer")
}

/// Produces `lines` round-robin over `partitions` partitions (or as the broker's partitioner decides, for
/// 0) and waits until they are acknowledged.
fn produce(producer: &BaseProducer, topic: &str, partitions: i32, lines: &[String]) {
    for (i, line) in lines.iter().enumerate() {
        let key = format!("k{i}");
        let mut record = BaseRecord::to(topic).key(&key).payload(line);
        if partitions > 0 {
            record = record.partition(i as i32 % partitions);
        }
        producer.send(record).map_err(|(e, _)| e).expect("send");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
}

fn count(lines: &[String], into: &mut BTreeMap<String, u64>) {
    for line in lines {
        for w in line.split(' ') {
            *into.entry(w.to_string()).or_insert(0) += 1;
        }
    }
}

fn lines(seed: u64, n: usize) -> Vec<String> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            format!(
                "w{} w{} w{}",
                rng.next_u64() % 11,
                rng.next_u64() % 5,
                rng.next_u64() % 3
            )
        })
        .collect()
}

fn sum_collected(app: &streamc::RunningApp, into: &mut BTreeMap<String, u64>) {
    for (_, records) in app.take::<(String, u64)>("counts").unwrap() {
        for (w, n) in records {
            *into.entry(w).or_insert(0) += n;
        }
    }
}

fn run_word_count(
    brokers: &str,
    topic: &str,
    partitions: i32,
    start: impl FnOnce() -> streamc::RunningApp,
) {
    let producer = producer(brokers);
    let data = lines(1, 3000);
    produce(&producer, topic, partitions, &data);
    let mut expected = BTreeMap::new();
    count(&data, &mut expected);
    let app = start();
    let mut got = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.values().sum::<u64>() < 9000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        sum_collected(&app, &mut got);
    }
    let report = app.stop().unwrap();
    assert_eq!(got, expected);
    assert_eq!(report.records, 3000);
}

#[test]
fn direct_word_count_equals_the_reference() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("words", 3, 1).unwrap();
    run_word_count(&brokers, "words", 3, || {
        apps::kafka_counts::app()
            .source_address("records", brokers.clone())
            .configure(|c| c.kafka.start = streamc::source::StartAt::Earliest)
            .start()
            .unwrap()
    });
}

#[test]
fn direct_word_count_on_a_real_broker_when_one_is_given() {
    let Ok(brokers) = std::env::var("STREAMC_KAFKA_BROKERS") else {
        eprintln!("STREAMC_KAFKA_BROKERS is not set: the real-broker run is skipped (the mock cluster covers the protocol)");
        return;
    };
    // A fresh topic per run; the broker creates it on first produce.
    let fresh = format!(
        "streamc-words-{}-{}",
        std::process::id(),
        streamc::Time::now().millis()
    );
    TOPIC
        .set(fresh.clone())
        .expect("only this test names a topic");
    run_word_count(&brokers, &fresh, 0, || {
        apps::real_broker_counts::app()
            .source_address("records", brokers.clone())
            .configure(|c| c.kafka.start = streamc::source::StartAt::Earliest)
            .start()
            .unwrap()
    });
}

stream! {
    app rate_bounded { batch: 1s, workers: 2 }
    let records = kafka_direct_stream("127.0.0.1:9", ["bounded"]);
    records.count().collect("sizes");
}

#[test]
fn max_rate_per_partition_bounds_every_batch_including_the_first() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("bounded", 2, 1).unwrap();
    produce(&producer(&brokers), "bounded", 2, &lines(2, 1000));
    let mut driver = rate_bounded::app()
        .source_address("records", brokers.clone())
        .configure(|c| {
            c.kafka.start = streamc::source::StartAt::Earliest;
            c.kafka.max_rate_per_partition = Some(150);
        })
        .test_driver()
        .unwrap();
    let infos = driver.run_batches(5);
    let sizes: Vec<u64> = driver
        .take::<u64>("sizes")
        .unwrap()
        .into_iter()
        .map(|(_, c)| c[0])
        .collect();
    // 150 messages/s per partition, 1 s batches, 2 partitions: 300 per batch, from the first one on.
    assert_eq!(sizes, vec![300, 300, 300, 100, 0], "{infos:?}");
}

#[test]
fn an_unknown_topic_is_refused_at_start_and_an_unreachable_broker_is_retried() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let err = match apps::kafka_counts::app()
        .source_address("records", brokers)
        .test_driver()
    {
        Ok(_) => panic!("an unknown topic must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("words") && err.contains("does not exist"),
        "{err}"
    );

    // Each cut waits out the Kafka request timeout; the stop may take as long as that.
    let app = apps::kafka_counts::app()
        .source_address("records", "127.0.0.1:1")
        .configure(|c| c.graceful_stop_timeout = Some(Duration::from_secs(15)))
        .start()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let report = app.stop().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stopping must not hang on an absent broker"
    );
    assert_eq!(report.records, 0);
    assert_eq!(report.batches_failed, 0);
}

#[test]
#[ignore = "run by every_message_counts_once_across_sigkills in a child process"]
fn kafka_child() {
    apps::kafka_totals::app()
        .source_address("records", setting(PEER))
        .configure(|c| {
            c.checkpoint_dir =
                Some(streamc::store::Location::parse(&setting(CHECKPOINTS)).unwrap());
            c.kafka.start = streamc::source::StartAt::Earliest;
        })
        .stop_on_signals()
        .run()
        .unwrap();
}

#[test]
fn every_message_counts_once_across_sigkills() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("words", 3, 1).unwrap();
    let producer = producer(&brokers);
    let (out, checkpoints) = (temp_dir("kafka-out"), temp_dir("kafka-ckpt"));
    let mut rng = Rng::new(9);
    let mut expected = BTreeMap::new();
    let mut app = child("kafka_child", &out, &checkpoints, &brokers);
    for wave in 0..5u64 {
        let data = lines(100 + wave, 500);
        count(&data, &mut expected);
        produce(&producer, "words", 3, &data);
        std::thread::sleep(Duration::from_millis(200 + rng.next_u64() % 600));
        app.kill().unwrap();
        app.wait().unwrap();
        app = child("kafka_child", &out, &checkpoints, &brokers);
    }
    let total: u64 = expected.values().sum();
    // An earlier incarnation may already have published everything: give the last one time to start
    // (and install its signal handlers) before it is asked to stop.
    std::thread::sleep(Duration::from_millis(1500));
    let deadline = Instant::now() + Duration::from_secs(30);
    while counts(&published(&out, "totals.txt")).values().sum::<u64>() < total
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    terminate(app);
    assert_eq!(
        counts(&published(&out, "totals.txt")),
        expected,
        "after 5 SIGKILLs every message must be counted exactly once"
    );
}

static RANGES: std::sync::Mutex<Vec<(Vec<streamc::source::OffsetRange>, usize)>> =
    std::sync::Mutex::new(Vec::new());

fn note_ranges(ranges: Vec<streamc::source::OffsetRange>, records: usize) {
    RANGES.lock().unwrap().push((ranges, records));
}

stream! {
    app ranged { batch: 1s, workers: 2 }
    let records = kafka_direct_stream("127.0.0.1:9", ["ranged"]);
    records.foreach_batch(|batch, _| crate::note_ranges(batch.offset_ranges("records"), batch.len()));
}

#[test]
fn batches_see_their_offset_ranges_and_offsets_are_committed_after_completion() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("ranged", 2, 1).unwrap();
    produce(&producer(&brokers), "ranged", 2, &lines(3, 300));
    let mut driver = ranged::app()
        .source_address("records", brokers.clone())
        .configure(|c| {
            c.kafka.start = streamc::source::StartAt::Earliest;
            c.kafka.max_rate_per_partition = Some(100);
            c.kafka.group = Some("ranged-group".into());
            c.kafka.commit = true;
        })
        .test_driver()
        .unwrap();
    driver.run_batches(2);
    driver.stop();
    let seen = RANGES.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for (b, (ranges, records)) in seen.iter().enumerate() {
        let mut ranges = ranges.clone();
        ranges.sort_by_key(|r| r.partition);
        // 150 messages per partition, at most 100 per batch: [0, 100), then [100, 150).
        let expected: Vec<(i32, i64, i64)> = (0..2)
            .map(|p| (p, b as i64 * 100, ((b as i64 + 1) * 100).min(150)))
            .collect();
        assert_eq!(
            ranges
                .iter()
                .map(|r| (r.partition, r.from, r.until))
                .collect::<Vec<_>>(),
            expected,
            "batch {b}"
        );
        assert_eq!(
            *records as i64,
            ranges.iter().map(|r| r.until - r.from).sum::<i64>()
        );
    }
    // The group's committed offsets are where the last completed batch ended.
    let reader: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "ranged-group")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition("ranged", 0);
    tpl.add_partition("ranged", 1);
    let committed =
        rdkafka::consumer::Consumer::committed_offsets(&reader, tpl, Duration::from_secs(10))
            .unwrap();
    let offsets: Vec<rdkafka::Offset> = committed.elements().iter().map(|e| e.offset()).collect();
    drop(committed);
    assert_eq!(
        offsets,
        vec![rdkafka::Offset::Offset(150), rdkafka::Offset::Offset(150)]
    );
}

stream! {
    app patterned { batch: 1s, workers: 2 }
    let records = kafka_direct_stream("127.0.0.1:9", ["^logs-.*"]);
    records.map(|r| r.topic.clone()).count_by_value().collect("per_topic");
}

#[test]
fn topic_patterns_and_explicit_starting_offsets() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let producer = producer(&brokers);
    for topic in ["logs-a", "logs-b", "other"] {
        cluster.create_topic(topic, 1, 1).unwrap();
        produce(&producer, topic, 1, &lines(4, 20));
    }
    let mut driver = patterned::app()
        .source_address("records", brokers)
        .configure(|c| {
            c.kafka.start = streamc::source::StartAt::Earliest;
            c.kafka.start_offsets.insert(("logs-a".into(), 0), 5);
        })
        .test_driver()
        .unwrap();
    driver.run_batches(2);
    let mut per_topic: BTreeMap<String, u64> = BTreeMap::new();
    for (_, records) in driver.take::<(String, u64)>("per_topic").unwrap() {
        for (topic, n) in records {
            *per_topic.entry(topic).or_insert(0) += n;
        }
    }
    let expected: BTreeMap<String, u64> = [("logs-a".to_string(), 15), ("logs-b".to_string(), 20)]
        .into_iter()
        .collect();
    assert_eq!(
        per_topic, expected,
        "only the topics matching ^logs-.*, logs-a from offset 5"
    );
}

#[test]
fn a_broker_down_mid_run_delays_batches_and_loses_nothing() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("words", 2, 1).unwrap();
    let producer = producer(&brokers);
    let first = lines(5, 400);
    let second = lines(6, 400);
    let mut expected = BTreeMap::new();
    count(&first, &mut expected);
    count(&second, &mut expected);
    produce(&producer, "words", 2, &first);
    let app = apps::kafka_counts::app()
        .source_address("records", brokers.clone())
        .configure(|c| c.kafka.start = streamc::source::StartAt::Earliest)
        .start()
        .unwrap();
    let mut got = BTreeMap::new();
    let wait_for = |got: &mut BTreeMap<String, u64>, total: u64| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while got.values().sum::<u64>() < total && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            sum_collected(&app, got);
        }
    };
    wait_for(&mut got, 1200);
    cluster.broker_down(1).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    cluster.broker_up(1).unwrap();
    produce(&producer, "words", 2, &second);
    wait_for(&mut got, 2400);
    std::thread::sleep(Duration::from_millis(500));
    sum_collected(&app, &mut got);
    let report = app.stop().unwrap();
    assert_eq!(
        got, expected,
        "every message exactly once despite the outage"
    );
    assert_eq!(report.batches_failed, 0);
}

#[test]
fn the_backpressure_initial_rate_bounds_the_first_batch_of_a_backlog() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("bounded", 2, 1).unwrap();
    produce(&producer(&brokers), "bounded", 2, &lines(7, 1000));
    let mut driver = rate_bounded::app()
        .source_address("records", brokers)
        .configure(|c| {
            c.kafka.start = streamc::source::StartAt::Earliest;
            c.backpressure = true;
            c.backpressure_initial_rate = Some(200);
        })
        .test_driver()
        .unwrap();
    driver.run_batch();
    let sizes: Vec<u64> = driver
        .take::<u64>("sizes")
        .unwrap()
        .into_iter()
        .map(|(_, c)| c[0])
        .collect();
    assert_eq!(
        sizes,
        vec![200],
        "1,000 messages waiting, 200 records/s for the first 1 s batch"
    );
}

/// `--kafka-min-rate-per-partition`: backpressure never holds a partition below it (Spark's
/// `minRatePerPartition`).
#[test]
fn backpressure_keeps_the_minimum_rate_per_partition() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("bounded", 2, 1).unwrap();
    produce(&producer(&brokers), "bounded", 2, &lines(7, 1000));
    let mut driver = rate_bounded::app()
        .source_address("records", brokers)
        .configure(|c| {
            c.kafka.start = streamc::source::StartAt::Earliest;
            c.backpressure = true;
            // 50 records/s over two partitions is 25 each, under the minimum of 150.
            c.backpressure_initial_rate = Some(50);
            c.kafka.min_rate_per_partition = 150;
        })
        .test_driver()
        .unwrap();
    driver.run_batch();
    let sizes: Vec<u64> = driver
        .take::<u64>("sizes")
        .unwrap()
        .into_iter()
        .map(|(_, c)| c[0])
        .collect();
    assert_eq!(sizes, vec![300], "150 per partition, two partitions, 1 s");
}
