//! The seed's WindowHotWord: every 10 s, the 3 most searched words of the last 60 s. Each input line is a
//! search log, `user word`; lines without a word are skipped.
//!
//!     nc -lk 9999   # type lines such as "leo spark", then, in another terminal:
//!     cargo run --release --example window_hot_word
//!
//! The window keeps each batch's per-word counts and combines those partial counts at every slide, so a
//! slide costs the same whatever the window length holds in raw records.

use streamc::prelude::*;

stream! {
    app window_hot_word { batch: 1s, workers: 2 }

    let search_logs = socket_text_stream("localhost", 9999);
    let search_words = search_logs.flat_map(|log: &str| log.split_whitespace().nth(1).map(|word| (word.to_string(), 1u64)));
    let word_counts = search_words.reduce_by_key_and_window(|a, b| a + b, 60s, 10s);
    let hot_words = word_counts.transform(|batch| batch.top_k(3, |(word, count)| (*count, std::cmp::Reverse(word.clone()))));
    hot_words.print();
}

fn main() -> std::process::ExitCode {
    window_hot_word::app().main()
}
