use streamc::prelude::*;

stream! {
    app sessions { batch: 1s }
    let lines = socket_text_stream("localhost", 9999);
    let seen = lines
        .map(|w| (w.to_string(), 1u64))
        .map_with_state(|_word: &String, one: Option<u64>, state: &mut StateCell<u64>| {
            let total = state.get().copied().unwrap_or(0) + one.unwrap_or(0);
            state.update(total);
            total
        });
    seen.print();
}

fn main() {}
