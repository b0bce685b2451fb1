use streamc::prelude::*;

stream! {
    app narrow { batch: 1s }
    let lines = socket_text_stream("localhost", 9999);
    lines.map(|line: &str| line.len(), partitions = 4).print();
}

fn main() {}
