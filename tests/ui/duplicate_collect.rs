use streamc::prelude::*;

stream! {
    app tapped { batch: 1s }
    let lines = socket_text_stream("localhost", 9999);
    lines.collect();
    lines.map(|l| l.len()).collect();
}

fn main() {}
