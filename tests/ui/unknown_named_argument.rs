use streamc::prelude::*;

stream! {
    app running { batch: 1s, checkpoint: "checkpoints/running" }
    let lines = socket_text_stream("localhost", 9999);
    let totals = lines
        .map(|w| (w.to_string(), 1u64))
        .update_state_by_key(|new: &[u64], old: Option<u64>| Some(old.unwrap_or(0) + new.len() as u64), inital = vec![("a".to_string(), 1u64)]);
    totals.print();
}

fn main() {}
