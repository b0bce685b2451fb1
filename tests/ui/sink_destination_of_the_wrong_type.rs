use streamc::prelude::*;

stream! {
    app persist { batch: 1s }
    let lines = socket_text_stream("localhost", 9999);
    let counts = lines.map(|w| (w.to_string(), 1u64)).reduce_by_key(|a, b| a + b);
    counts.save_to_sql("sqlite://wordcount.db", "wordcount");
    counts.save_to_rolling_files("out");
}

fn main() {}
