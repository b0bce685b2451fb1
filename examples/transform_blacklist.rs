//! The seed's TransformBlacklist: ad clicks (`date user` per line) from users on a blacklist are
//! dropped before billing. Each batch is left-outer-joined with the blacklist inside `transform`; the
//! valid clicks are printed and appended to rolling files under `out/valid_clicks/` (rolled every
//! 64 MiB or 10 minutes; the file being written stays hidden until it is rolled or the app stops).
//!
//!     nc -lk 9999   # type lines such as "20261127 leo" and "20261127 tom", then, elsewhere:
//!     cargo run --release --example transform_blacklist

use std::time::Duration;
use streamc::prelude::*;

/// Users whose clicks are not billed: `(user, blocked)`, as the seed's blacklist RDD.
fn blacklist() -> Vec<(String, bool)> {
    vec![("tom".to_string(), true)]
}

stream! {
    app transform_blacklist { batch: 5s, workers: 2 }

    let blacklist: Batch<(String, bool)> = broadcast(Batch::from_vec(crate::blacklist(), 1));
    let ads_click_logs = socket_text_stream("localhost", 9999);
    // (user, "date user"): malformed lines (no user) are skipped.
    let user_clicks = ads_click_logs.flat_map(|log: &str| {
        log.split_whitespace().nth(1).map(|user| (user.to_string(), log.to_string()))
    });
    let valid_clicks = user_clicks.transform(|batch| {
        batch
            .left_outer_join(blacklist)
            .filter(|(_, (_, blocked))| !blocked.unwrap_or(false))
            .map(|(_, (log, _))| log)
    });
    valid_clicks.print();
    valid_clicks.save_to_rolling_files(
        RollingFiles::new("out/valid_clicks")
            .max_bytes(64 << 20)
            .max_age(Duration::from_secs(600)),
    );
}

fn main() -> std::process::ExitCode {
    transform_blacklist::app().main()
}
