use streamc::prelude::*;

stream! {
    app arity { batch: 1s }
    let lines = socket_text_stream("localhost", 9999);
    let counts = lines.map(|w| (w.to_string(), 1u64)).reduce_by_key();
    counts.print();
}

fn main() {}
