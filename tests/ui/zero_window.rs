use streamc::prelude::*;

stream! {
    app empty_window { batch: 1s }
    let lines = socket_text_stream("localhost", 9999);
    let recent = lines.map(|l| l.to_string()).window(0s);
    recent.print();
}

fn main() {}
