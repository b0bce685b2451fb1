use streamc::prelude::*;

stream! {
    app backwards { batch: 1s }
    let lines = socket_text_stream("localhost", 9999);
    let counts = lines.map(|w| (w.to_string(), 1u64)).reduce_by_key_and_window(|a, b| a + b, 10s, 60s);
    counts.print();
}

fn main() {}
