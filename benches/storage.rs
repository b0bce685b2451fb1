//! What an object store costs against the local disk, same run, alternating: checkpoint write and
//! restore for 1M keys, the write-ahead log under the socket word count, and the directory stream
//! over 1,000 small objects and over one large object. The store is a local S3 server
//! (moto_server, started here), so the figures are the client's and the protocol's cost, not a
//! network's.
//!
//!     cargo bench --bench storage            # the large object is 1 GiB
//!     cargo bench --bench storage -- --quick # 64 MiB, 200k keys
//!     cargo bench --bench storage -- --only checkpoint|wal|files

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use streamc::prelude::*;
use streamc::store::{Location, Put, StorageOptions};

thread_local! {
    static KEYS: std::cell::RefCell<Vec<Vec<(u64, u64)>>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn keyed_batches() -> Vec<Vec<(u64, u64)>> {
    KEYS.with(|b| std::mem::take(&mut *b.borrow_mut()))
}

stream! {
    app totals { batch: 1s, workers: 2, checkpoint: "target/streamc-bench/storage-totals", checkpoint_every: 1s }
    let pairs = queue_stream::<(u64, u64)>(crate::keyed_batches());
    let totals = pairs.map(|p| *p).update_state_by_key(|new: &[u64], old: Option<u64>| Some(old.unwrap_or(0) + new.iter().sum::<u64>()));
    totals.foreach_batch(|batch, _| { std::hint::black_box(batch.len()); });
}

static COUNTED: AtomicU64 = AtomicU64::new(0);

stream! {
    app logged_count { batch: 200ms, workers: 2, checkpoint: "target/streamc-bench/storage-wal" }
    let lines = socket_text_stream("127.0.0.1", 9);
    let counts = lines.flat_map(|l: &str| l.split(' ')).map(|w| (w.to_string(), 1u64)).reduce_by_key(|a, b| a + b);
    counts.foreach_batch(|batch, _| {
        let words: u64 = batch.collect().iter().map(|(_, n)| n).sum();
        crate::COUNTED.fetch_add(words, std::sync::atomic::Ordering::SeqCst);
    });
}

stream! {
    app dir_count { batch: 1s, workers: 2 }
    let lines = text_file_stream("target/streamc-bench/storage-dir");
    let counts = lines.flat_map(|l: &str| l.split(' ')).map(|w| (w.to_string(), 1u64)).reduce_by_key(|a, b| a + b);
    counts.foreach_batch(|batch, _| {
        let words: u64 = batch.collect().iter().map(|(_, n)| n).sum();
        crate::COUNTED.fetch_add(words, std::sync::atomic::Ordering::SeqCst);
    });
}

/// Where one side of a comparison keeps its data.
struct Side {
    name: &'static str,
    root: String,
    options: Vec<(String, String)>,
}

impl Side {
    fn location(&self, name: &str) -> Location {
        Location::parse(&format!("{}/{name}", self.root)).expect("a location")
    }

    fn storage(&self) -> StorageOptions {
        StorageOptions {
            options: self.options.clone(),
            ..StorageOptions::default()
        }
    }

    fn configure(&self, c: &mut streamc::AppConfig, name: &str) {
        c.checkpoint_dir = Some(self.location(name));
        c.storage = self.storage();
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let wanted = |section: &str| only.as_deref().is_none_or(|o| o == section);
    let Some(s3) = support::S3Server::start("the storage benchmark") else {
        return;
    };
    s3.bucket("bench");
    let local_root =
        std::env::temp_dir().join(format!("streamc-bench-storage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&local_root);
    let sides = [
        Side {
            name: "local disk",
            root: local_root.to_string_lossy().into_owned(),
            options: Vec::new(),
        },
        Side {
            name: "S3 (moto, loopback)",
            root: "s3://bench".into(),
            options: s3.options(),
        },
    ];
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("storage benchmark; load average {}", load.trim());
    const ROUNDS: usize = 3;

    if wanted("checkpoint") {
        let keys: u64 = if quick { 200_000 } else { 1_000_000 };
        println!(
            "checkpoint of update_state_by_key with {keys} keys (median of {ROUNDS}, alternating):"
        );
        let mut figures: Vec<(Vec<f64>, Vec<f64>, u64)> = vec![(Vec::new(), Vec::new(), 0); 2];
        for round in 0..ROUNDS {
            for (side, figure) in sides.iter().zip(figures.iter_mut()) {
                let name = format!("ckpt-{round}");
                KEYS.with(|b| {
                    *b.borrow_mut() = vec![(0..keys).map(|k| (k, 1)).collect(), Vec::new()]
                });
                let mut driver = totals::app()
                    .configure(|c| side.configure(c, &name))
                    .test_driver()
                    .unwrap();
                driver.run_batch();
                figure.0.push(
                    driver
                        .last_checkpoint_duration()
                        .unwrap_or_default()
                        .as_secs_f64(),
                );
                drop(driver);
                let started = Instant::now();
                let mut restored = totals::app()
                    .configure(|c| side.configure(c, &name))
                    .test_driver()
                    .unwrap();
                figure.1.push(started.elapsed().as_secs_f64());
                restored.run_batch();
                let restored_keys: usize = restored.state_keys().iter().map(|(_, n)| n).sum();
                assert_eq!(restored_keys as u64, keys);
                drop(restored);
                let store = streamc::store::open(&side.location(&name), &side.storage()).unwrap();
                figure.2 = store
                    .list("")
                    .unwrap()
                    .iter()
                    .filter(|e| e.name.ends_with(".ckpt"))
                    .map(|e| e.len)
                    .max()
                    .unwrap_or(0);
            }
        }
        for (side, (write, restore, size)) in sides.iter().zip(figures) {
            println!(
                "  {:<20} write {:>7}, restore (read, verify, decode, dry run) {:>7}, {:.1} MiB",
                side.name,
                ms(Duration::from_secs_f64(median(write))),
                ms(Duration::from_secs_f64(median(restore))),
                size as f64 / 1048576.0
            );
        }
    }

    if wanted("wal") {
        let lines: u64 = if quick { 100_000 } else { 500_000 };
        let corpus = streamc::demo::Corpus::zipf(10_000, 1).lines(lines as usize, 10);
        let words = lines * 10;
        let mut payload = corpus.join("\n").into_bytes();
        payload.push(b'\n');
        println!(
            "socket word count under --wal, {words} words ({:.0} MiB) sent at once, 200 ms batches (median of {ROUNDS}, alternating):",
            payload.len() as f64 / 1048576.0
        );
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); 2];
        for round in 0..ROUNDS {
            for (side, rate) in sides.iter().zip(rates.iter_mut()) {
                COUNTED.store(0, Ordering::SeqCst);
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let address = listener.local_addr().unwrap();
                let name = format!("wal-{round}");
                let app = logged_count::app()
                    .source_address("lines", address.to_string())
                    .configure(|c| {
                        side.configure(c, &name);
                        c.write_ahead_log = true;
                    })
                    .start()
                    .unwrap();
                let (mut conn, _) = listener.accept().unwrap();
                let started = Instant::now();
                conn.write_all(&payload).unwrap();
                while COUNTED.load(Ordering::SeqCst) < words
                    && started.elapsed() < Duration::from_secs(300)
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let elapsed = started.elapsed();
                drop(conn);
                app.stop().unwrap();
                assert_eq!(
                    COUNTED.load(Ordering::SeqCst),
                    words,
                    "{}: every word counted",
                    side.name
                );
                rate.push(words as f64 / elapsed.as_secs_f64());
            }
        }
        for (side, rate) in sides.iter().zip(rates) {
            println!(
                "  {:<20} {:.1} M words/s end to end",
                side.name,
                median(rate) / 1e6
            );
        }
    }

    if wanted("files") {
        let large: usize = if quick { 64 << 20 } else { 1 << 30 };
        let line = "the quick brown fox jumps over the lazy dog again\n";
        let small_file: String = line.repeat(20);
        let words_per_line = 10u64;
        let cases: [(&str, usize, usize); 2] = [
            ("1,000 objects of 1 KiB", 1000, small_file.len()),
            ("one large object", 1, large / line.len() * line.len()),
        ];
        // A store farther away than loopback: every answer held back 10 ms. Reading 1,000 objects
        // one at a time would take 10 s or more; the source keeps reads in flight.
        let proxy = support::CuttableProxy::start(s3.port);
        proxy.set_delay(Duration::from_millis(10));
        let far = Side {
            name: "S3 + 10 ms per answer",
            root: "s3://bench".into(),
            options: s3
                .options()
                .into_iter()
                .map(|(k, v)| {
                    if k == "aws_endpoint" {
                        (k, format!("http://127.0.0.1:{}", proxy.port))
                    } else {
                        (k, v)
                    }
                })
                .collect(),
        };
        for (label, count, size) in cases {
            let measured: Vec<&Side> = if count > 1 {
                sides.iter().chain([&far]).collect()
            } else {
                sides.iter().collect()
            };
            println!(
                "directory stream, {label} ({:.0} MiB in all), one batch (median of {ROUNDS}, alternating):",
                (count * size) as f64 / 1048576.0
            );
            let body: Vec<u8> = if count == 1 {
                line.repeat(size / line.len()).into_bytes()
            } else {
                small_file.clone().into_bytes()
            };
            let words = (count * size / line.len()) as u64 * words_per_line;
            let mut rates: Vec<Vec<f64>> = vec![Vec::new(); measured.len()];
            for round in 0..ROUNDS {
                for (side, rate) in measured.iter().zip(rates.iter_mut()) {
                    let dir =
                        side.location(&format!("in-{label}-{round}").replace([' ', ','], "-"));
                    let store = streamc::store::open(&dir, &side.storage()).unwrap();
                    for i in 0..count {
                        store
                            .put(&format!("part-{i:05}.txt"), body.clone(), Put::Overwrite)
                            .unwrap();
                    }
                    COUNTED.store(0, Ordering::SeqCst);
                    let mut driver = dir_count::app()
                        .source_address("lines", dir.to_string())
                        .configure(|c| c.storage = side.storage())
                        .test_driver()
                        .unwrap();
                    let started = Instant::now();
                    driver.run_batch();
                    let elapsed = started.elapsed();
                    assert_eq!(
                        COUNTED.load(Ordering::SeqCst),
                        words,
                        "{}: every word counted",
                        side.name
                    );
                    rate.push(elapsed.as_secs_f64());
                    drop(driver);
                    for i in 0..count {
                        let _ = store.delete(&format!("part-{i:05}.txt"));
                    }
                }
            }
            for (side, took) in measured.iter().zip(rates) {
                let took = median(took);
                println!(
                    "  {:<22} {:>8} ({:.0} MiB/s)",
                    side.name,
                    ms(Duration::from_secs_f64(took)),
                    (count * size) as f64 / took / 1048576.0
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&local_root);
}
