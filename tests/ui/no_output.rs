use streamc::prelude::*;

stream! {
    app silent { batch: 1s }
    let lines = socket_text_stream("localhost", 9999);
    let words = lines.flat_map(|l: &str| l.split(' '));
}

fn main() {}
