//! Rows per second into SQLite, MariaDB and PostgreSQL through the upsert sink: every batch upserts
//! 10 000 distinct keys (word → count, with `updated_time`) in multi-row parameterized statements, one
//! transaction per batch partition, progress claimed in the same transaction. Reports rows/s, batch
//! latency (p50/p99) and the process's peak memory.
//!
//!     cargo bench --bench sql                      # SQLite only
//!     STREAMC_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test \
//!     STREAMC_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench sql

use std::time::{Duration, Instant};
use streamc::prelude::*;

const KEYS: usize = 10_000;

/// `count` batches, each the same 10 000 keys with the batch number as value (so every batch updates
/// every row).
fn batches(count: usize) -> Vec<Vec<(String, u64)>> {
    (0..count)
        .map(|b| {
            (0..KEYS)
                .map(|k| (format!("word{k:05}"), b as u64))
                .collect()
        })
        .collect()
}

thread_local! {
    static BATCHES: std::cell::RefCell<Vec<Vec<(String, u64)>>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn loaded() -> Vec<Vec<(String, u64)>> {
    BATCHES.with(|b| std::mem::take(&mut *b.borrow_mut()))
}

fn table() -> SqlTable {
    SqlTable::new("bench_wordcount")
        .column("word", SqlType::Text(64))
        .column("count", SqlType::BigInt)
        .key(["word"])
        .updated_time("updated_time")
}

stream! {
    app sql_bench { batch: 1s, workers: 2 }
    let counts = queue_stream::<(String, u64)>(crate::loaded());
    counts.map(|c| c.clone()).save_to_sql("sqlite://unused.db", crate::table());
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn run(label: &str, url: &str, count: usize) {
    BATCHES.with(|b| *b.borrow_mut() = batches(count));
    let mut driver = sql_bench::app()
        .configure(|c| {
            c.sinks
                .urls
                .insert("bench_wordcount".into(), url.to_string());
        })
        .test_driver()
        .unwrap();
    // The first batch creates the table and inserts; the rest update every row.
    let first = driver.run_batch();
    assert!(first.failure.is_none(), "{:?}", first.failure);
    let started = Instant::now();
    let infos = driver.run_batches(count - 1);
    let elapsed = started.elapsed();
    assert!(
        infos.iter().all(|i| i.failure.is_none()),
        "{:?}",
        infos.iter().find_map(|i| i.failure.clone())
    );
    let mut latencies: Vec<Duration> = infos.iter().map(|i| i.processing_time).collect();
    latencies.sort();
    let rows = (count - 1) * KEYS;
    println!(
        "  {label:<10} {:>9.0} rows/s   batch of {KEYS} upserts: p50 {:.1} ms, p99 {:.1} ms   ({rows} rows in {:.2} s)",
        rows as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        elapsed.as_secs_f64(),
    );
    driver.stop();
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let count = if quick { 6 } else { 31 };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("SQL upsert sink benchmark; load average {}", load.trim());
    let dir = std::env::temp_dir().join(format!("streamc-bench-sql-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    run(
        "sqlite",
        &format!("sqlite://{}", dir.join("bench.sqlite").display()),
        count,
    );
    for (var, label) in [
        ("STREAMC_TEST_MYSQL_URL", "mariadb"),
        ("STREAMC_TEST_POSTGRES_URL", "postgres"),
    ] {
        match std::env::var(var) {
            Ok(url) => {
                drop_table(&url);
                run(label, &url, count);
            }
            Err(_) => println!("  {label:<10} skipped: {var} is unset"),
        }
    }
    println!("  peak memory (VmHWM): {:.0} MiB", peak_rss_mib());
    let _ = std::fs::remove_dir_all(dir);
}

/// Starts each server run from an empty table and no progress: batch times repeat from run to run,
/// so the sink would otherwise skip every batch of a second run as already written.
fn drop_table(url: &str) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(url).await.unwrap();
            sqlx::query("DROP TABLE IF EXISTS bench_wordcount")
                .execute(&pool)
                .await
                .unwrap();
            // The progress table may not exist yet.
            let _ = sqlx::query("DELETE FROM streamc_progress WHERE pipeline = 'sql_bench'")
                .execute(&pool)
                .await;
            pool.close().await;
        });
}
