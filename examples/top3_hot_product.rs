//! The seed's Top3HotProduct: every 10 s, per category, the 3 most clicked products of the last 60 s.
//! Each input line is a click log, `user product category`; malformed lines are skipped. Spark needs a
//! HiveContext and SQL's `row_number()` for this; here it is one `transform` with `top_k_by_key`.
//!
//!     nc -lk 9999   # type lines such as "leo iphone phone", then, in another terminal:
//!     cargo run --release --example top3_hot_product

use streamc::prelude::*;

stream! {
    app top3_hot_product { batch: 1s, workers: 2, checkpoint: "checkpoints/top3_hot_product" }

    let click_logs = socket_text_stream("localhost", 9999);
    let clicks = click_logs.flat_map(|log: &str| {
        let mut fields = log.split_whitespace();
        match (fields.next(), fields.next(), fields.next()) {
            (Some(_user), Some(product), Some(category)) => Some(((category.to_string(), product.to_string()), 1u64)),
            _ => None,
        }
    });
    // Counts kept with an inverse function: each batch adds its clicks and removes those that left the
    // window; products whose count fell to zero are dropped.
    let product_counts = clicks.reduce_by_key_and_window(|a, b| a + b, |a, b| a - b, 60s, 10s, |_, count: &u64| *count > 0);
    let top3 = product_counts.transform(|batch| {
        batch
            .map(|((category, product), count)| (category, (product, count)))
            .top_k_by_key(3, |(product, count)| (*count, std::cmp::Reverse(product.clone())))
            .sort_by(true, |(category, _)| category.clone())
    });
    top3.print();
}

fn main() -> std::process::ExitCode {
    top3_hot_product::app().main()
}
