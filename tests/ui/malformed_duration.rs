use streamc::prelude::*;

stream! {
    app slowly { batch: 1sec }
    let lines = socket_text_stream("localhost", 9999);
    lines.print();
}

fn main() {}
