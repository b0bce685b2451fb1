//! The seed's KafkaReceiverWordCount: a consumer-group receiver on the topic `wordCount`. Add `--wal`
//! (with the checkpoint directory below) for Spark's reliable mode: received messages are written to a
//! write-ahead log before use and offsets committed only after, so a crash loses nothing.
//!
//!     cargo run --release --example kafka_receiver_word_count -- --source lines=localhost:9092 --wal

use streamc::prelude::*;

stream! {
    app kafka_receiver_word_count { batch: 1s, workers: 2, checkpoint: "checkpoints/kafka_receiver_word_count" }

    let lines = kafka_receiver_stream("localhost:9092", ["wordCount"]);
    let counts = lines
        .flat_map(|record: &KafkaRecord| record.value_str().unwrap_or("").split(' '))
        .map(|word| (word.to_string(), 1u64))
        .reduce_by_key(|a, b| a + b);
    counts.print();
}

fn main() -> std::process::ExitCode {
    kafka_receiver_word_count::app().main()
}
