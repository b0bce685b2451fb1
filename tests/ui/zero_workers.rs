use streamc::prelude::*;

stream! {
    app idle { batch: 1s, workers: 0 }
    let lines = socket_text_stream("localhost", 9999);
    lines.print();
}

fn main() {}
