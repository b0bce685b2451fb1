use streamc::prelude::*;

stream! {
    app twice { batch: 1s }
    let lines = socket_text_stream("localhost", 9999);
    let lines = socket_text_stream("localhost", 9998);
    lines.print();
}

fn main() {}
