use streamc::prelude::*;

stream! {
    app source_typo { batch: 1s }
    let lines = socket_text_steam("localhost", 9999);
    lines.print();
}

fn main() {}
