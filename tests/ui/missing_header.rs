use streamc::prelude::*;

stream! {
    let lines = socket_text_stream("localhost", 9999);
    lines.print();
}

fn main() {}
