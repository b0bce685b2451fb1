//! The seed's WordCount: words from a socket, counted per 1-second batch, printed.
//!
//! Self-contained demo (a built-in generator plays `nc`):
//!     cargo run --release --example word_count -- --demo
//! Like the seed, fed by netcat (run `nc -lk 9999` first, then type lines into it):
//!     cargo run --release --example word_count

use streamc::prelude::*;

stream! {
    app word_count { batch: 1s, workers: 2 }

    let lines = socket_text_stream("localhost", 9999);
    let counts = lines
        .flat_map(|line: &str| line.split(' '))
        .map(|word| (word.to_string(), 1u64))
        .reduce_by_key(|a, b| a + b);
    counts.print();
}

fn main() -> std::process::ExitCode {
    word_count::app().main()
}
