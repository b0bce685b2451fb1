//! Direct Kafka ingest on librdkafka's mock cluster: records per second read through a `stream!` pipeline
//! (count per batch), with 1 and 4 partitions.
//!
//!     cargo bench --bench kafka

use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::time::{Duration, Instant};
use streamc::prelude::*;

/// Records per partition: the mock cluster keeps only about the last 80,000 messages of a partition.
const PER_PARTITION: usize = 60_000;

stream! {
    app ingest { batch: 1s, workers: 2 }
    let records = kafka_direct_stream("127.0.0.1:9", ["bench"]);
    records.count().collect("sizes");
}

fn main() {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("direct Kafka ingest on the mock cluster, {PER_PARTITION} records of 60 bytes per partition; load average {}", load.trim());
    for partitions in [1, 4] {
        let total = PER_PARTITION * partitions as usize;
        let cluster = MockCluster::new(1).expect("mock cluster");
        let brokers = cluster.bootstrap_servers();
        cluster.create_topic("bench", partitions, 1).expect("topic");
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "1000000")
            .create()
            .expect("producer");
        let payload = "x".repeat(60);
        let produced = Instant::now();
        for i in 0..total {
            let record = BaseRecord::<(), str>::to("bench")
                .payload(&payload)
                .partition(i as i32 % partitions);
            let mut record = record;
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        producer.poll(Duration::from_millis(5));
                        record = back;
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(60)).expect("flush");
        let produce_time = produced.elapsed();

        let mut driver = ingest::app()
            .source_address("records", brokers.clone())
            .configure(|c| c.kafka.start = streamc::source::StartAt::Earliest)
            .test_driver()
            .expect("driver");
        let started = Instant::now();
        let mut read = 0u64;
        while read < total as u64 && started.elapsed() < Duration::from_secs(120) {
            driver.run_batch();
            read += driver
                .take::<u64>("sizes")
                .expect("sizes")
                .iter()
                .map(|(_, c)| c[0])
                .sum::<u64>();
        }
        let took = started.elapsed();
        println!(
            "  {partitions} partition{}: {:.0} records/s read ({read} in {:.2} s); producing took {:.2} s",
            if partitions == 1 { " " } else { "s" },
            read as f64 / took.as_secs_f64(),
            took.as_secs_f64(),
            produce_time.as_secs_f64()
        );
    }
}
