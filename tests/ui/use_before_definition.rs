use streamc::prelude::*;

stream! {
    app early { batch: 1s }
    let counts = words.count_by_value();
    let words = socket_text_stream("localhost", 9999);
    counts.print();
}

fn main() {}
