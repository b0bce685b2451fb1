//! The seed's PersistWordCount: UpdateStateByKeyWordCount's running counts, written to the `wordcount`
//! table after every batch — upserted by word, with the batch time in `updated_time`, through
//! parameterized multi-row statements (the seed concatenates SQL; never do that).
//!
//! SQLite by default (the file `wordcount.db`, created with its table); MySQL/MariaDB or PostgreSQL by URL:
//!     nc -lk 9999   # then, in another terminal:
//!     cargo run --release --example persist_word_count
//!     cargo run --release --example persist_word_count -- --sink wordcount=mysql://root@127.0.0.1/test
//!     cargo run --release --example persist_word_count -- --sink wordcount=postgres://postgres@127.0.0.1/test
//!
//! Each batch partition is one transaction that also records the batch in `streamc_progress`, so a
//! batch replayed after a crash is never written twice.

use streamc::prelude::*;

stream! {
    app persist_word_count { batch: 1s, workers: 2, checkpoint: "checkpoints/persist_word_count" }

    let lines = socket_text_stream("localhost", 9999);
    let totals = lines
        .flat_map(|line: &str| line.split_whitespace())
        .map(|word| (word.to_string(), 1u64))
        .update_state_by_key(|new_values: &[u64], state: Option<u64>| {
            Some(state.unwrap_or(0) + new_values.iter().sum::<u64>())
        });
    totals.save_to_sql(
        "sqlite://wordcount.db",
        SqlTable::new("wordcount")
            .column("word", SqlType::Text(255))
            .column("count", SqlType::BigInt)
            .key(["word"])
            .updated_time("updated_time"),
    );
}

fn main() -> std::process::ExitCode {
    persist_word_count::app().main()
}
