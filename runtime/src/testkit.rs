//! Test helpers, behind the `testkit` feature (the suites, benchmarks and the templates' tests turn it
//! on; an app's own build does not carry it): the reference word count, a listener that counts
//! receiver errors, a bounded run of a child process, and the local feeds of [`crate::demo`].

pub use crate::demo::{Corpus, LineServer, Rng};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counts words exactly as the seed's WordCount does (split on single spaces): the reference.
pub fn reference_word_counts<'a>(
    lines: impl IntoIterator<Item = &'a str>,
) -> std::collections::HashMap<String, u64> {
    let mut counts = std::collections::HashMap::new();
    for line in lines {
        for word in line.split(' ') {
            *counts.entry(word.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// Adds up the receiver errors an app reports ([`crate::StreamingListener::on_receiver_error`]).
#[derive(Default)]
pub struct ReceiverErrors(AtomicU64);

impl ReceiverErrors {
    /// Receiver errors reported so far, summed over every source.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl crate::StreamingListener for ReceiverErrors {
    fn on_receiver_error(&self, _source: &str, _error: &str, count: u64) {
        self.0.fetch_add(count, Ordering::Relaxed);
    }
}

/// Runs `command` to completion with its output captured, killing it if it still runs after `limit`
/// (an error of kind `TimedOut` that carries what it wrote to standard error). Both pipes are drained
/// while it runs, so a child that writes a lot never blocks on a full pipe.
pub fn output_within(
    command: &mut std::process::Command,
    limit: Duration,
) -> std::io::Result<std::process::Output> {
    use std::process::Stdio;
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = stderr.join().unwrap_or_default();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "{command:?} still ran after {limit:?} and was killed; it wrote:\n{}",
                    String::from_utf8_lossy(&stderr)
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}
