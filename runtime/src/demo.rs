//! Local feeds: a deterministic word corpus and a line server on loopback that plays the part of
//! `nc -lk 9999`. `--demo` feeds socket sources from it; the benchmarks, the tests and the
//! templates' tests use it as their sender.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A small, fast, seedable random generator (xorshift64*), so corpora are identical on every machine.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`: the same seed gives the same sequence on every machine, and
    /// any seed, 0 included, is valid.
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next pseudo-random 64-bit value (not suitable for cryptography).
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..1`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A vocabulary with Zipf-like word frequencies (the k-th word is about 1/k as frequent as the first).
#[derive(Clone, Debug)]
pub struct Corpus {
    words: Vec<String>,
    cumulative: Vec<f64>,
    rng: Rng,
}

impl Corpus {
    /// `vocabulary` distinct words, drawn with Zipf exponent 1.
    pub fn zipf(vocabulary: usize, seed: u64) -> Self {
        let vocabulary = vocabulary.max(1);
        let words = (0..vocabulary).map(word_name).collect();
        let mut total = 0.0;
        let mut cumulative = Vec::with_capacity(vocabulary);
        for k in 1..=vocabulary {
            total += 1.0 / k as f64;
            cumulative.push(total);
        }
        for c in &mut cumulative {
            *c /= total;
        }
        Self {
            words,
            cumulative,
            rng: Rng::new(seed),
        }
    }

    /// The next word.
    pub fn word(&mut self) -> &str {
        let i = self.next_index();
        &self.words[i]
    }

    fn next_index(&mut self) -> usize {
        let x = self.rng.next_f64();
        self.cumulative
            .partition_point(|&c| c < x)
            .min(self.words.len() - 1)
    }

    /// A line of `words` words separated by single spaces.
    pub fn line(&mut self, words: usize) -> String {
        let mut line = String::new();
        for i in 0..words {
            if i > 0 {
                line.push(' ');
            }
            let w = self.next_index();
            line.push_str(&self.words[w]);
        }
        line
    }

    /// `count` lines of `words` words.
    pub fn lines(&mut self, count: usize, words: usize) -> Vec<String> {
        (0..count).map(|_| self.line(words)).collect()
    }
}

/// Pronounceable, distinct words: w0 = "ba", w1 = "be", ...
fn word_name(mut index: usize) -> String {
    const CONSONANTS: &[u8] = b"bcdfghjklmnprstvz";
    const VOWELS: &[u8] = b"aeiou";
    let mut word = String::new();
    loop {
        word.push(CONSONANTS[index % CONSONANTS.len()] as char);
        index /= CONSONANTS.len();
        word.push(VOWELS[index % VOWELS.len()] as char);
        index /= VOWELS.len();
        if index == 0 {
            break word;
        }
        index -= 1;
    }
}

/// A TCP server on 127.0.0.1 that writes lines to whoever connects. Stops when dropped.
pub struct LineServer {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl LineServer {
    /// Writes `data` (already newline-terminated text or any bytes) to the first connection, then closes
    /// it; later connections are accepted and left idle.
    pub fn once(data: Vec<u8>) -> std::io::Result<Self> {
        Self::spawn(move |mut stream, index, stop| {
            if index == 0 {
                let _ = stream.write_all(&data);
            } else {
                // Later connections stay open and silent, like an idle `nc -lk`, until the server stops.
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        })
    }

    /// Writes generated words (10 per line) at `lines_per_second` to every connection.
    pub fn generated(lines_per_second: u64, seed: u64) -> std::io::Result<Self> {
        Self::spawn(move |mut stream, index, stop| {
            let mut corpus = Corpus::zipf(200, seed + index);
            let per_line = Duration::from_secs_f64(1.0 / lines_per_second.max(1) as f64);
            let started = Instant::now();
            let mut sent = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let mut line = corpus.line(10);
                line.push('\n');
                if stream.write_all(line.as_bytes()).is_err() {
                    return;
                }
                sent += 1;
                let due = started + per_line * sent;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        })
    }

    fn spawn(
        serve: impl Fn(TcpStream, u64, &AtomicBool) + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let accepted = Arc::new(AtomicU64::new(0));
        let thread_accepted = accepted.clone();
        let serve = Arc::new(serve);
        let thread = std::thread::Builder::new()
            .name("streamc-line-server".into())
            .spawn(move || {
                let mut index = 0u64;
                while !thread_stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = stream.set_nonblocking(false);
                            let serve = serve.clone();
                            let stop = thread_stop.clone();
                            let i = index;
                            std::thread::spawn(move || serve(stream, i, &stop));
                            index += 1;
                            thread_accepted.store(index, Ordering::Relaxed);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })?;
        Ok(Self {
            address,
            stop,
            accepted,
            thread: Some(thread),
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Waits up to `limit` until `count` connections were accepted; whether they were. With
    /// [`LineServer::once`], a second connection means the receiver read the data to its end and handed
    /// it over before it reconnected: a test can then stop the app knowing nothing is still unread.
    pub fn wait_for_connections(&self, count: u64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.accepted.load(Ordering::Relaxed) < count {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

impl Drop for LineServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_is_deterministic_and_skewed() {
        let a = Corpus::zipf(10_000, 7).lines(100, 10);
        let b = Corpus::zipf(10_000, 7).lines(100, 10);
        assert_eq!(a, b);
        let mut counts = std::collections::HashMap::new();
        for word in a.iter().flat_map(|l| l.split(' ')) {
            *counts.entry(word).or_insert(0u64) += 1;
        }
        assert_eq!(counts.values().sum::<u64>(), 1000);
        let top = counts.values().max().copied().unwrap_or(0);
        assert!(top > 50, "the most frequent word should dominate: {top}");
    }

    #[test]
    fn word_names_are_distinct() {
        let names: std::collections::HashSet<String> = (0..10_000).map(word_name).collect();
        assert_eq!(names.len(), 10_000);
    }
}
