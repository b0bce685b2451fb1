#![deny(deprecated)]
use streamc::prelude::*;

stream! {
    app leftovers { batch: 1s }
    let lines = socket_text_stream("localhost", 9999);
    let lengths = lines.map(|l| l.len());
    lines.print();
}

fn main() {}
