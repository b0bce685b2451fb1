//! Rate control over a real loopback socket: `receiver_max_rate` holds within 10%, and backpressure
//! brings a deliberately slow pipeline to a sustainable rate where the scheduling delay stops growing.

use std::io::Write;
use std::net::TcpListener;
use std::time::Duration;
use streamc::prelude::*;

stream! {
    app limited { batch: 200ms, workers: 2 }
    let lines = socket_text_stream("127.0.0.1", 9);
    lines.count().foreach_batch(|_, _| ());
}

/// A sender that writes `lines` lines as fast as the receiver takes them, then keeps the socket open.
fn blast(lines: usize) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let sender = std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        let text: String = (0..lines).map(|i| format!("record {i}\n")).collect();
        let _ = conn.write_all(text.as_bytes());
        std::thread::sleep(Duration::from_secs(30));
    });
    (address, sender)
}

#[test]
fn receiver_max_rate_holds_within_ten_percent() {
    let (address, _sender) = blast(200_000);
    let app = limited::app()
        .source_address("lines", address.to_string())
        .configure(|c| c.receiver_max_rate = Some(4_000))
        .start()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let report = app.stop().unwrap();
    // Measured between the cuts of the first batch with data and of the one before the last, so that
    // neither the connection's start nor the stop counts: the records of the batches in between are
    // what arrived between those two instants.
    let batches = &report.recent_batches;
    let first = batches
        .iter()
        .position(|b| b.total_records() > 0)
        .expect("data arrived");
    let last = batches.len() - 2;
    assert!(last >= first + 10, "{batches:?}");
    let got: usize = batches
        .iter()
        .skip(first + 1)
        .take(last - first)
        .map(streamc::BatchInfo::total_records)
        .sum();
    let elapsed = batches[last]
        .submitted
        .duration_since(batches[first].submitted)
        .unwrap()
        .as_secs_f64();
    let rate = got as f64 / elapsed;
    assert!(
        (rate - 4_000.0).abs() <= 400.0,
        "received {got} records in {elapsed:.2} s: {rate:.0}/s at a limit of 4,000/s"
    );
    assert_eq!(report.rate_limits, vec![("lines".to_string(), 4_000)]);
}

/// `micros` of work per record.
fn work(records: usize, micros: u64) {
    std::thread::sleep(Duration::from_micros(micros * records as u64));
}

stream! {
    app slow { batch: 500ms, workers: 1 }
    let lines = socket_text_stream("127.0.0.1", 9);
    // 0.25 ms of work per record: the pipeline sustains about 4,000 records/s, and the 30,000
    // records sent take about 7.5 s of work.
    lines.foreach_batch(|batch, _| crate::work(batch.len(), 250));
}

fn run_slow(backpressure: bool) -> streamc::RunReport {
    let (address, _sender) = blast(30_000);
    let app = slow::app()
        .source_address("lines", address.to_string())
        .configure(|c| {
            c.backpressure = backpressure;
            c.backpressure_initial_rate = Some(1_000);
        })
        .start()
        .unwrap();
    std::thread::sleep(Duration::from_secs(8));
    // Stop promptly: the receiver stops, what it holds is processed.
    app.stop().unwrap()
}

#[test]
fn backpressure_converges_and_scheduling_delay_stops_growing() {
    let report = run_slow(true);
    let batches: Vec<&streamc::BatchInfo> = report.recent_batches.iter().collect();
    assert!(batches.len() >= 10, "{} batches", batches.len());
    let tail = &batches[batches.len() - 6..batches.len() - 1];
    let worst = tail.iter().map(|b| b.scheduling_delay).max().unwrap();
    assert!(
        worst < Duration::from_millis(1500),
        "scheduling delay kept growing under backpressure: {:?}",
        tail.iter().map(|b| b.scheduling_delay).collect::<Vec<_>>()
    );
    let rate = report.rate_limits[0].1;
    assert!(
        (1_500..=8_000).contains(&rate),
        "the rate should settle near the ~4,000/s the pipeline sustains, got {rate}"
    );
}

#[test]
fn without_backpressure_the_same_pipeline_falls_behind() {
    let report = run_slow(false);
    let worst = report
        .recent_batches
        .iter()
        .map(|b| b.scheduling_delay)
        .max()
        .unwrap_or_default();
    assert!(
        worst > Duration::from_secs(2),
        "expected batches to wait for the huge first one without backpressure, worst {worst:?}"
    );
    assert_eq!(report.rate_limits[0].1, 0, "no limit in force");
}

stream! {
    app overloaded { batch: 200ms, workers: 1 }
    let lines = socket_text_stream("127.0.0.1", 9);
    // 20 µs of work per record: about 10,000 records per 200 ms batch.
    lines.foreach_batch(|batch, _| crate::work(batch.len(), 20));
}

#[test]
fn an_overloaded_app_over_a_small_budget_gets_even_batches_not_full_and_empty_ones() {
    // 1 MiB holds about 80,000 of these lines, eight batches' worth of processing: without pacing,
    // each full budget would be one batch of 1.6 s followed by empty ones while it is held.
    let (address, _sender) = blast(800_000);
    let app = overloaded::app()
        .source_address("lines", address.to_string())
        .configure(|c| c.socket.buffer_bytes = 1 << 20)
        .start()
        .unwrap();
    std::thread::sleep(Duration::from_secs(10));
    let report = app.stop().unwrap();
    let sizes: Vec<usize> = report
        .recent_batches
        .iter()
        .map(streamc::BatchInfo::total_records)
        .collect();
    eprintln!("batch sizes: {sizes:?}");
    // The last 4 s, well after the first full budget is worked off (about 3 s, more on a loaded
    // machine), the last batch aside (the stop's).
    assert!(sizes.len() >= 40, "{sizes:?}");
    let steady = &sizes[sizes.len() - 21..sizes.len() - 1];
    let (fewest, most) = (*steady.iter().min().unwrap(), *steady.iter().max().unwrap());
    assert!(
        fewest > 0 && most <= 4 * fewest,
        "batches should be even under memory pressure: {sizes:?}"
    );
}
