//! Custom receivers on the public `Receiver` trait, run by the receiver runtime: `socket_stream`
//! with a converter for a binary protocol (length-prefixed frames) over real sockets, a receiver
//! that fails to start and is started again, one that asks for a restart, and the rate limit.

use std::io::{BufRead, Read, Write};
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use streamc::prelude::*;
use streamc::source::{Receiver, ReceiverContext};

/// One frame: a big-endian `u32` length, then that many bytes of UTF-8. `Ok(None)` at a clean end
/// of the stream; a frame longer than 1 KiB or cut short is an error.
fn read_frame(input: &mut dyn BufRead) -> std::io::Result<Option<String>> {
    let mut length = [0u8; 4];
    match input.read_exact(&mut length) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let length = u32::from_be_bytes(length) as usize;
    if length > 1024 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a frame of {length} bytes is over the 1 KiB limit"),
        ));
    }
    let mut payload = vec![0; length];
    input.read_exact(&mut payload)?;
    String::from_utf8(payload)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn frame(text: &str) -> Vec<u8> {
    let mut bytes = (text.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

stream! {
    app framed { batch: 100ms, workers: 2 }
    let frames = socket_stream::<String>("127.0.0.1", 9, crate::read_frame);
    frames.map(|f: &String| f.clone()).collect("frames");
}

fn take_all(app: &streamc::RunningApp, output: &str, got: &mut Vec<String>) {
    for (_, records) in app.take::<String>(output).unwrap() {
        got.extend(records);
    }
}

fn wait_for(app: &streamc::RunningApp, output: &str, got: &mut Vec<String>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        take_all(app, output, got);
    }
}

#[test]
fn socket_stream_reads_a_binary_protocol_and_reconnects_after_a_bad_frame_or_a_close() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let app = framed::app()
        .source_address("frames", address)
        .start()
        .unwrap();
    let server = std::thread::spawn(move || {
        // First connection: three frames, one cut across writes, then the peer closes.
        let (mut first, _) = listener.accept().unwrap();
        let mut bytes: Vec<u8> = ["one", "two", "thrée"]
            .iter()
            .flat_map(|t| frame(t))
            .collect();
        let tail = bytes.split_off(9);
        first.write_all(&bytes).unwrap();
        first.flush().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        first.write_all(&tail).unwrap();
        drop(first);
        // Second: a frame, then a length over the limit; what follows on that connection is lost.
        let (mut second, _) = listener.accept().unwrap();
        second.write_all(&frame("four")).unwrap();
        second.write_all(&u32::MAX.to_be_bytes()).unwrap();
        second.write_all(&frame("lost")).unwrap();
        // Third: the receiver is back and reads on.
        let (mut third, _) = listener.accept().unwrap();
        third.write_all(&frame("five")).unwrap();
        let mut rest = [0u8; 1];
        // Held open until the receiver stops and shuts its side.
        let _ = third.read(&mut rest);
    });
    let mut got = Vec::new();
    wait_for(&app, "frames", &mut got, 5);
    let report = app.stop().unwrap();
    server.join().unwrap();
    assert_eq!(got, ["one", "two", "thrée", "four", "five"]);
    let (_, stats) = &report.sources[0];
    assert_eq!(stats.records, 5, "{stats:?}");
    assert_eq!(stats.connections, 3, "{stats:?}");
    assert!(
        stats
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("over the 1 KiB limit")),
        "the bad frame is the last error: {stats:?}"
    );
}

/// Fails its first start; then stores `n` records, asks for one restart halfway, and stores the
/// rest after it.
pub struct Flaky {
    starts: usize,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver for Flaky {
    type Record = u64;

    fn on_start(&mut self, ctx: &ReceiverContext<u64>) -> Result<(), String> {
        self.starts += 1;
        if self.starts == 1 {
            return Err("the device is not ready".into());
        }
        let ctx = ctx.clone();
        let start = self.starts;
        self.thread = Some(std::thread::spawn(move || {
            let (from, to) = if start == 2 { (0, 50) } else { (50, 100) };
            for i in from..to {
                if ctx.store(i).is_err() {
                    return;
                }
            }
            if start == 2 {
                ctx.restart(
                    "the device asked for a reconnect",
                    Duration::from_millis(100),
                );
            }
        }));
        Ok(())
    }

    fn on_stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

stream! {
    app flaky { batch: 100ms, workers: 1 }
    let numbers = receiver_stream(Flaky { starts: 0, thread: None });
    numbers.map(|n: &u64| *n).collect("numbers");
}

#[test]
fn a_receiver_that_fails_to_start_or_asks_for_a_restart_is_started_again() {
    let app = flaky::app().start().unwrap();
    let mut got: Vec<u64> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 100 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        for (_, numbers) in app.take::<u64>("numbers").unwrap() {
            got.extend(numbers);
        }
    }
    let report = app.stop().unwrap();
    got.sort();
    assert_eq!(got, (0..100).collect::<Vec<u64>>());
    let (_, stats) = &report.sources[0];
    assert_eq!(stats.records, 100, "{stats:?}");
    assert_eq!(
        stats.connection_errors, 2,
        "a failed start and a restart: {stats:?}"
    );
    assert!(
        stats
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("asked for a reconnect")),
        "{stats:?}"
    );
}

/// Stores as fast as it may until stopped.
pub struct Firehose(Option<std::thread::JoinHandle<()>>);

impl Receiver for Firehose {
    type Record = u32;

    fn on_start(&mut self, ctx: &ReceiverContext<u32>) -> Result<(), String> {
        let ctx = ctx.clone();
        self.0 = Some(std::thread::spawn(move || {
            let mut n = 0;
            while !ctx.is_stopped() && ctx.store(n).is_ok() {
                n = n.wrapping_add(1);
            }
        }));
        Ok(())
    }

    fn on_stop(&mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
    }
}

stream! {
    app firehose { batch: 200ms, workers: 1 }
    let numbers = receiver_stream(Firehose(None));
    numbers.count().foreach_batch(|batch, _| crate::FIREHOSE_BATCHES.lock().unwrap().extend(batch.collect()));
}

static FIREHOSE_BATCHES: Mutex<Vec<u64>> = Mutex::new(Vec::new());

#[test]
fn the_rate_limit_holds_a_custom_receiver_to_its_rate() {
    let app = firehose::app()
        .configure(|c| c.receiver_max_rate = Some(2000))
        .start()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let report = app.stop().unwrap();
    let batches = FIREHOSE_BATCHES.lock().unwrap().clone();
    // 2,000 records/s in 200 ms batches: 400 each (the first second may run a little ahead).
    let steady = &batches[5..batches.len() - 1];
    assert!(
        steady.iter().all(|n| (300..=500).contains(n)),
        "batches of about 400: {batches:?}"
    );
    let rate = report.records as f64 / 3.0;
    assert!(
        (1500.0..=2600.0).contains(&rate),
        "about 2,000 records/s: {rate:.0} ({batches:?})"
    );
}

/// Stores numbers as fast as it may until stopped, counting what `store` took.
pub struct Counting(Option<std::thread::JoinHandle<()>>);

static COUNTED_STORED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Receiver for Counting {
    type Record = u64;

    fn on_start(&mut self, ctx: &ReceiverContext<u64>) -> Result<(), String> {
        let ctx = ctx.clone();
        self.0 = Some(std::thread::spawn(move || {
            let mut n = 0;
            while !ctx.is_stopped() {
                if ctx.store(n).is_err() {
                    return;
                }
                COUNTED_STORED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                n += 1;
            }
        }));
        Ok(())
    }

    fn on_stop(&mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
    }
}

stream! {
    app counting { batch: 200ms, workers: 2 }
    let numbers = receiver_stream(Counting(None));
    numbers.count().foreach_batch(|batch, _| crate::seen(batch.collect()));
}

static COUNTING_SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn seen(counts: Vec<u64>) {
    COUNTING_SEEN.fetch_add(counts.iter().sum(), std::sync::atomic::Ordering::Relaxed);
}

/// A graceful stop hands over what was stored one record at a time and not yet cut into a block:
/// every record `store` took is processed; and the receiver shows in the receiver table.
#[test]
fn a_graceful_stop_processes_everything_a_custom_receiver_stored() {
    let app = counting::app()
        .configure(|c| {
            c.receiver_max_rate = Some(50_000);
            c.ui = Some("127.0.0.1:0".parse().unwrap());
        })
        .start()
        .unwrap();
    let address = app.ui_address().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let receivers = http_get(address, "/api/v1/receivers");
    assert!(
        receivers.contains("\"name\":\"numbers\"") && receivers.contains("\"active\":true"),
        "{receivers}"
    );
    let report = app.stop().unwrap();
    let stored = COUNTED_STORED.load(std::sync::atomic::Ordering::Relaxed);
    assert!(stored > 1000, "it ran: {stored}");
    assert_eq!(
        COUNTING_SEEN.load(std::sync::atomic::Ordering::Relaxed),
        stored,
        "every stored record was processed"
    );
    assert_eq!(report.records, stored);
}

/// One GET over a fresh connection; the body.
fn http_get(address: std::net::SocketAddr, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}
