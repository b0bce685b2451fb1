use streamc::prelude::*;

stream! {
    app typo { batch: 1s }
    let lines = socket_text_stream("localhost", 9999);
    let counts = lines.map(|w| (w.to_string(), 1u64)).reduce_by_kye(|a, b| a + b);
    counts.print();
}

fn main() {}
