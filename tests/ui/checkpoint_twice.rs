use streamc::prelude::*;

stream! {
    app hot { batch: 1s, checkpoint: "checkpoints/hot" }
    let searches = socket_text_stream("localhost", 9999);
    let counts = searches
        .map(|w: &str| (w.to_string(), 1u64))
        .reduce_by_key_and_window(|a, b| a + b, |a, b| a - b, 60s, 10s)
        .checkpoint(50s)
        .checkpoint(100s);
    counts.print();
}

fn main() {}
