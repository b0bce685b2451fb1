//! How fast text gets in: the bare limit of loopback TCP plus a line split (a minimal reader: one
//! 256 KiB buffer, newlines counted with memchr), against the socket receiver feeding a pipeline that
//! only counts lines, both with the sender writing the payload [`REPEAT`] times as fast as it can
//! (long enough that the 100 ms batch ticks weigh little in the figure).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use streamc::prelude::*;

static LINES: AtomicU64 = AtomicU64::new(0);

/// Times the payload is sent per run.
const REPEAT: u64 = 10;

fn send(conn: &mut std::net::TcpStream, payload: &[u8]) {
    for _ in 0..REPEAT {
        conn.write_all(payload).expect("send");
    }
}

// Only counts: the receiver path, with as little processing behind it as a pipeline can have.
stream! {
    app count_lines { batch: 100ms, workers: 2 }
    let lines = socket_text_stream("127.0.0.1", 9);
    let counted = lines.count();
    counted.foreach_batch(|batch, _| {
        crate::intake::LINES.fetch_add(batch.iter().sum::<u64>(), std::sync::atomic::Ordering::SeqCst);
    });
}

/// Lines per second a minimal reader takes from loopback TCP.
fn bare(payload: &[u8], lines: u64) -> f64 {
    let lines = lines * REPEAT;
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let address = listener.local_addr().expect("its address");
    let reader = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("the sender connects");
        let mut buf = vec![0u8; 256 * 1024];
        let mut seen = 0u64;
        let start = Instant::now();
        loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64,
            }
        }
        (seen, start.elapsed())
    });
    let mut conn = std::net::TcpStream::connect(address).expect("connect");
    send(&mut conn, payload);
    drop(conn);
    let (seen, elapsed) = reader.join().expect("the reader");
    assert_eq!(seen, lines, "every line read");
    seen as f64 / elapsed.as_secs_f64()
}

/// Lines per second through the socket receiver into `count_lines`, first byte to last count.
fn receiver(payload: &[u8], lines: u64, workers: usize) -> f64 {
    let lines = lines * REPEAT;
    LINES.store(0, Ordering::SeqCst);
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let app = count_lines::app()
        .workers(workers)
        .source_address(
            "lines",
            listener.local_addr().expect("its address").to_string(),
        )
        .start()
        .expect("the app starts");
    let (mut conn, _) = listener.accept().expect("the app connects");
    let start = Instant::now();
    send(&mut conn, payload);
    while LINES.load(Ordering::SeqCst) < lines && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed();
    drop(conn);
    let _ = app.stop();
    assert_eq!(LINES.load(Ordering::SeqCst), lines, "every line counted");
    lines as f64 / elapsed.as_secs_f64()
}

/// Alternating runs of both, best of `runs` each.
pub fn report(payload: &[u8], lines: u64, runs: usize) {
    let (mut bares, mut ones, mut twos) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        bares.push(bare(payload, lines));
        ones.push(receiver(payload, lines, 1));
        twos.push(receiver(payload, lines, 2));
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let limit = best(&bares);
    println!(
        "intake, sender unthrottled ({:.0} MB, best of {runs} alternating): bare reader {:.2} M lines/s; socket receiver + count, 1 worker {:.2} M ({:.0}% of bare), 2 workers {:.2} M ({:.0}%)",
        (payload.len() as u64 * REPEAT) as f64 / 1e6,
        limit / 1e6,
        best(&ones) / 1e6,
        100.0 * best(&ones) / limit,
        best(&twos) / 1e6,
        100.0 * best(&twos) / limit,
    );
}
