use streamc::prelude::*;

stream! {
    app no_interval { workers: 2 }
    let lines = socket_text_stream("localhost", 9999);
    lines.print();
}

fn main() {}
