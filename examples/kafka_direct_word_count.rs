//! The seed's KafkaDirectWordCount: words from the Kafka topic `wordCount`, read with the direct
//! approach (one offset range per partition per batch, offsets kept in the checkpoint: every message is
//! counted exactly once, even across crashes).
//!
//!     cargo run --release --example kafka_direct_word_count -- --source lines=localhost:9092
//!
//! `--kafka-start earliest|latest|committed`, `--kafka-commit` (commit offsets to the consumer group
//! after each batch), `--kafka-max-rate-per-partition N`.

use streamc::prelude::*;

stream! {
    app kafka_direct_word_count { batch: 1s, workers: 2, checkpoint: "checkpoints/kafka_direct_word_count" }

    let lines = kafka_direct_stream("localhost:9092", ["wordCount"]);
    let counts = lines
        .flat_map(|record: &KafkaRecord| record.value_str().unwrap_or("").split(' '))
        .map(|word| (word.to_string(), 1u64))
        .reduce_by_key(|a, b| a + b);
    counts.print();
}

fn main() -> std::process::ExitCode {
    kafka_direct_word_count::app().main()
}
