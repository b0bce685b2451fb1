use streamc::prelude::*;

stream! {
    app dangling { batch: 1s }
    let lines = socket_text_stream("localhost", 9999);
    lines.map(|l| l.len());
    lines.print();
}

fn main() {}
