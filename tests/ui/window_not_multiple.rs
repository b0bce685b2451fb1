use streamc::prelude::*;

stream! {
    app uneven { batch: 2s }
    let lines = socket_text_stream("localhost", 9999);
    let recent = lines.map(|l| l.to_string()).window(5s);
    recent.print();
}

fn main() {}
