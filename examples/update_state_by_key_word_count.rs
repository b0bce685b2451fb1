//! The seed's UpdateStateByKeyWordCount: running word counts over the whole stream, kept across batches
//! with `update_state_by_key` and saved in checkpoints (Spark: "必须开启checkpoint").
//!
//!     cargo run --release --example update_state_by_key_word_count -- --demo
//!     nc -lk 9999   # then, in another terminal:
//!     cargo run --release --example update_state_by_key_word_count
//!
//! Stop it (Ctrl-C) and start it again: the counts carry on from the last checkpoint.

use streamc::prelude::*;

stream! {
    app update_state_by_key_word_count { batch: 1s, workers: 2, checkpoint: "checkpoints/update_state_by_key_word_count" }

    let lines = socket_text_stream("localhost", 9999);
    let pairs = lines
        .flat_map(|line: &str| line.split(' '))
        .map(|word| (word.to_string(), 1u64));
    let totals = pairs.update_state_by_key(|new_values: &[u64], state: Option<u64>| {
        Some(state.unwrap_or(0) + new_values.iter().sum::<u64>())
    });
    totals.print();
}

fn main() -> std::process::ExitCode {
    update_state_by_key_word_count::app().main()
}
