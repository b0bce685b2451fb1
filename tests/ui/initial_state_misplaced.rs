use streamc::prelude::*;

stream! {
    app running { batch: 1s, checkpoint: "checkpoints/running" }
    let lines = socket_text_stream("localhost", 9999);
    let pairs = lines.map(|w| (w.to_string(), 1u64));
    let recent = pairs.reduce_by_key_and_window(|a, b| a + b, 10s, 2s, initial = Vec::new());
    recent.print();
}

fn main() {}
