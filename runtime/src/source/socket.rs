//! `socket_text_stream`: a receiver that reads UTF-8 lines from a TCP server (like `nc -lk 9999`).
//!
//! The receiver connects (and reconnects, with exponential backoff, when the peer is absent or goes away),
//! splits the byte stream into lines, and hands complete lines to the engine in blocks. Each block takes
//! its size from a [`MemoryBudget`]; when processing falls behind the budget runs out, the receiver stops
//! reading, and TCP flow control pushes back on the sender: memory stays bounded, nothing is dropped.
//! Before that, once more than half the budget is held (and until less than a quarter has been held
//! for a while, see [`Pressure`]), the receiver reads only as fast as processing keeps up (see
//! [`crate::rate`]), so an overloaded app gets even batches rather than a full one and then empty
//! ones.

use super::blocks::{BlockSink, Loggable, ReceivedBlocks, StoreRetry, Unstored};
use super::text::{MemoryBudget, Pressure, TextBlock, TextPartition};
use super::{ReceiverCounters, ReceiverEnv, Source, SourceError, SourceStats};
use crate::rate::{Pacer, RateControl};
use crate::settings::{setting, Setting};
use crate::time::Time;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Tuning of a socket receiver.
#[derive(Clone, Debug)]
pub struct SocketOptions {
    /// Received-but-unprocessed bytes the receiver may hold before it stops reading.
    pub buffer_bytes: usize,
    /// Longer lines are skipped and counted as oversized.
    pub max_line_bytes: usize,
    /// First reconnect delay; doubles up to `reconnect_max`.
    pub reconnect_min: Duration,
    /// The longest delay between reconnect attempts.
    pub reconnect_max: Duration,
    /// How often a custom receiver's records stored one at a time are cut into a block.
    pub block_interval: Duration,
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self {
            buffer_bytes: 256 << 20,
            max_line_bytes: 1 << 20,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            block_interval: Duration::from_millis(200),
        }
    }
}

impl SocketOptions {
    /// The socket receivers' settings, in `[receiver]`.
    #[rustfmt::skip]
    pub(crate) const SETTINGS: &'static [Setting<SocketOptions>] = &[
        setting!(SocketOptions { section: "receiver", key: "buffer_bytes",
            flag: "receiver-buffer-bytes", value: "BYTES",
            help: "Bytes a receiver may hold before it stops reading (backpressure)." }
            => buffer_bytes),
        setting!(SocketOptions { section: "receiver", key: "max_line_bytes",
            flag: "max-line-bytes", value: "BYTES",
            help: "Longer lines are skipped and counted." } => max_line_bytes),
        setting!(SocketOptions { section: "receiver", key: "block_interval",
            flag: "receiver-block-interval", value: "DURATION",
            help: "How often a custom receiver's records stored one at a time become a block (Spark's spark.streaming.blockInterval)." }
            => block_interval),
    ];
}

/// A TCP text-line source.
pub struct SocketTextSource {
    name: String,
    address: String,
    options: SocketOptions,
    blocks: ReceivedBlocks<TextBlock>,
    counters: Arc<ReceiverCounters>,
    stop: Option<watch::Sender<bool>>,
    task: Option<(tokio::runtime::Handle, JoinHandle<()>)>,
}

impl SocketTextSource {
    /// A source named `name` reading from `address` (`host:port`).
    pub fn new(name: &str, address: String, options: SocketOptions) -> Self {
        Self {
            name: name.to_string(),
            address,
            options,
            blocks: ReceivedBlocks::new(name),
            counters: Arc::default(),
            stop: None,
            task: None,
        }
    }

    /// The address the receiver connects to.
    pub fn address(&self) -> &str {
        &self.address
    }
}

/// In the write-ahead log a block is its lines joined by newlines.
impl Loggable for TextBlock {
    fn encode(&self) -> Result<Vec<u8>, String> {
        let mut payload = Vec::with_capacity(self.bytes() + self.len());
        for (i, line) in self.lines().enumerate() {
            if i > 0 {
                payload.push(b'\n');
            }
            payload.extend_from_slice(line.as_bytes());
        }
        Ok(payload)
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let text =
            std::str::from_utf8(bytes).map_err(|e| format!("a logged block is not UTF-8: {e}"))?;
        Ok(TextBlock::from_lines(text.split('\n')))
    }
}

impl Source for SocketTextSource {
    type Batch = Vec<TextPartition>;

    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self, env: &ReceiverEnv) -> Result<(), SourceError> {
        if self
            .address
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .is_none()
        {
            return Err(SourceError {
                source_name: self.name.clone(),
                message: format!("address `{}` is not HOST:PORT", self.address),
            });
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let control = Arc::new(RateControl::new(env.max_rate));
        if let Some(initial) = env.initial_rate {
            control.set(initial);
        }
        env.rates.register(&self.name, control.clone());
        let sink = self.blocks.start(env)?;
        let receiver = Receiver {
            sink,
            pacer: Pacer::new(control),
            name: self.name.clone(),
            address: self.address.clone(),
            options: self.options.clone(),
            budget: MemoryBudget::new(self.options.buffer_bytes),
            pressure: Pressure::default(),
            counters: self.counters.clone(),
            stop: stop_rx,
            app_stop: env.stop.clone(),
            store_retry: StoreRetry::new(env.failure_timeout),
        };
        let task = env.handle.spawn(receiver.run());
        self.stop = Some(stop_tx);
        self.task = Some((env.handle.clone(), task));
        Ok(())
    }

    fn cut(&mut self, _time: Time, partitions: usize) -> Self::Batch {
        let blocks = self.blocks.take(None).unwrap_or_default();
        TextPartition::spread(blocks, partitions)
    }

    fn position(&self) -> Option<Vec<u8>> {
        self.blocks.position()
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        self.blocks.seek(position)
    }

    fn recut(
        &mut self,
        _time: Time,
        partitions: usize,
        position: &[u8],
    ) -> Result<Self::Batch, SourceError> {
        Ok(TextPartition::spread(
            self.blocks.take(Some(position))?,
            partitions,
        ))
    }

    fn records_in(batch: &Self::Batch) -> usize {
        batch.iter().map(TextPartition::len).sum()
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some((handle, task)) = self.task.take() {
            // Called from an engine thread, never from inside the receiver runtime.
            let _ = handle.block_on(task);
        }
    }

    fn stats(&self) -> Option<SourceStats> {
        Some(self.counters.snapshot())
    }
}

impl Drop for SocketTextSource {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
    }
}

struct Receiver {
    sink: BlockSink<TextBlock>,
    pacer: Pacer,
    name: String,
    address: String,
    options: SocketOptions,
    budget: MemoryBudget,
    pressure: Pressure,
    counters: Arc<ReceiverCounters>,
    /// This receiver's stop (the source's `stop`).
    stop: watch::Receiver<bool>,
    /// The app's: to stop it when storing keeps failing, and to hear that the run was aborted.
    app_stop: crate::stop::StopHandle,
    store_retry: StoreRetry,
}

/// Resolves once the receiver is asked to stop (at once, if it already was).
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    // An error means the source is gone, which is a stop too.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

enum Ended {
    PeerClosed,
    Stopped,
    Failed(std::io::Error),
}

impl Receiver {
    async fn run(mut self) {
        let mut backoff = self.options.reconnect_min;
        let mut failures_in_a_row = 0u32;
        while !*self.stop.borrow() {
            let connected = tokio::select! {
                conn = TcpStream::connect(self.address.as_str()) => conn,
                _ = stop_requested(&mut self.stop) => break,
            };
            match connected {
                Ok(stream) => {
                    ReceiverCounters::add(&self.counters.connections, 1);
                    tracing::info!(source = %self.name, address = %self.address, "receiver connected");
                    backoff = self.options.reconnect_min;
                    failures_in_a_row = 0;
                    match self.read_lines(stream).await {
                        Ended::Stopped => break,
                        Ended::PeerClosed => {
                            tracing::info!(source = %self.name, "peer closed the connection; reconnecting")
                        }
                        Ended::Failed(e) => {
                            self.report(format!("read from {} failed: {e}", self.address))
                        }
                    }
                }
                Err(e) => {
                    failures_in_a_row += 1;
                    let message = format!("cannot connect to {}: {e}", self.address);
                    // Log the first failure and then every tenth, so a long outage does not flood the log.
                    if failures_in_a_row == 1 || failures_in_a_row.is_multiple_of(10) {
                        tracing::warn!(source = %self.name, attempts = failures_in_a_row, "{message}; retrying in {backoff:?}");
                    }
                    ReceiverCounters::add(&self.counters.connection_errors, 1);
                    self.counters.set_error(message);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop_requested(&mut self.stop) => break,
            }
            backoff = (backoff * 2).min(self.options.reconnect_max);
        }
    }

    fn report(&self, message: String) {
        tracing::warn!(source = %self.name, "{message}");
        ReceiverCounters::add(&self.counters.connection_errors, 1);
        self.counters.set_error(message);
    }

    async fn read_lines(&mut self, mut stream: TcpStream) -> Ended {
        let mut buf = vec![0u8; 256 * 1024];
        let mut splitter = LineSplitter::new(self.options.max_line_bytes);
        loop {
            let n = tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(n) => n,
                    Err(e) => return Ended::Failed(e),
                },
                _ = stop_requested(&mut self.stop) => return Ended::Stopped,
            };
            let mut block = TextBlock::new();
            let outcome = if n == 0 {
                splitter.finish(&mut block)
            } else {
                splitter.feed(&buf[..n], &mut block)
            };
            self.account(outcome);
            if !self.deliver_paced(block).await {
                return Ended::Stopped;
            }
            if n == 0 {
                return Ended::PeerClosed;
            }
        }
    }

    fn account(&self, outcome: SplitOutcome) {
        let c = &self.counters;
        if outcome.invalid_utf8 > 0 {
            ReceiverCounters::add(&c.invalid_utf8_lines, outcome.invalid_utf8);
            let total = c
                .invalid_utf8_lines
                .load(std::sync::atomic::Ordering::Relaxed);
            if total == outcome.invalid_utf8 || total % 1000 < outcome.invalid_utf8 {
                tracing::warn!(source = %self.name, total, "skipped lines that are not valid UTF-8");
            }
        }
        if outcome.oversized > 0 {
            ReceiverCounters::add(&c.oversized_lines, outcome.oversized);
            tracing::warn!(source = %self.name, max = self.options.max_line_bytes, "skipped lines longer than the limit");
        }
    }

    /// Delivers `block`, in slices that keep to the rate limit when there is one. False once stopped;
    /// a stop during the pacing hands the remaining slices over at once, since they were read already.
    async fn deliver_paced(&mut self, block: TextBlock) -> bool {
        if block.is_empty() {
            return !*self.stop.borrow();
        }
        let pressed = self.pressure.update(&self.budget);
        self.pacer.set_pressed(pressed);
        let slices = match self.pacer.block_limit() {
            Some(limit) if block.len() > limit => block.split_every(limit),
            _ => vec![block],
        };
        for slice in slices {
            let records = slice.len() as u64;
            if !self.deliver(slice).await {
                return false;
            }
            if *self.stop.borrow() {
                continue;
            }
            let wait = self.pacer.delay_after(records);
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop_requested(&mut self.stop) => {}
                }
            }
        }
        !*self.stop.borrow()
    }

    /// Waits for budget, then hands the block to the next batch. False if it could not be stored.
    async fn deliver(&mut self, mut block: TextBlock) -> bool {
        // The budget is freed only by the next cut, and a stop cuts only once its receivers have
        // stopped: so a stop does not wait for budget. The block, already read from the socket, goes
        // into the last batch over budget instead.
        let permit = tokio::select! {
            permit = self.budget.acquire(block.bytes()) => permit,
            _ = stop_requested(&mut self.stop) => None,
        };
        if let Some(permit) = permit {
            block.attach_budget(permit);
        }
        self.store(block).await
    }

    /// Hands `block` over — with a write-ahead log, only once it is durable there (one fsync per block
    /// read from the socket, not per line). While that fails the receiver pauses: it reads nothing
    /// more (TCP flow control holds the sender back) and tries the same block again, until it
    /// succeeds, the failure outlasts `--receiver-failure-timeout` (the app stops), or the run is
    /// aborted. False if the block could not be handed over.
    async fn store(&mut self, block: TextBlock) -> bool {
        let (records, bytes) = (block.len() as u64, block.bytes() as u64);
        let signal = self.app_stop.signal();
        let stored = tokio::task::block_in_place(|| {
            self.store_retry
                .push(&self.sink, block, &self.name, &self.counters, signal)
        });
        match stored {
            Ok(()) => {
                ReceiverCounters::add(&self.counters.records, records);
                ReceiverCounters::add(&self.counters.bytes, bytes);
                true
            }
            Err(Unstored::GaveUp(message)) => {
                self.app_stop.fail(format!(
                    "{message}; {records} lines read from {} but not stored are dropped (the sender \
                     keeps what was not read)",
                    self.address
                ));
                false
            }
            Err(Unstored::Aborted) => {
                tracing::warn!(source = %self.name, records, "the app stops without finishing: lines read but not stored are dropped");
                false
            }
        }
    }
}

/// What one call of the splitter skipped.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SplitOutcome {
    pub invalid_utf8: u64,
    pub oversized: u64,
}

/// Splits a byte stream into lines (`\n`, with an optional `\r` before it), across read boundaries.
pub(crate) struct LineSplitter {
    partial: Vec<u8>,
    discarding: bool,
    max_line: usize,
}

impl LineSplitter {
    pub(crate) fn new(max_line: usize) -> Self {
        Self {
            partial: Vec::new(),
            discarding: false,
            max_line,
        }
    }

    pub(crate) fn feed(&mut self, chunk: &[u8], block: &mut TextBlock) -> SplitOutcome {
        let mut outcome = SplitOutcome::default();
        // A block grown line by line would hold up to twice its text (and copy it as it grows);
        // counting the lines first costs one more pass over bytes already in cache.
        let lines = memchr::memchr_iter(b'\n', chunk).count();
        block.reserve(chunk.len() + self.partial.len(), lines);
        let Some(last) = memchr::memrchr(b'\n', chunk) else {
            self.hold(chunk, &mut outcome);
            return outcome;
        };
        let mut start = 0;
        if self.discarding || !self.partial.is_empty() {
            // The line begun in an earlier chunk ends at this chunk's first newline.
            let first = memchr::memchr(b'\n', chunk).unwrap_or(last);
            if self.discarding {
                self.discarding = false;
            } else {
                self.partial.extend_from_slice(&chunk[..first]);
                let line = std::mem::take(&mut self.partial);
                Self::emit(&line, self.max_line, block, &mut outcome);
            }
            start = first + 1;
        }
        if start <= last {
            // Whole lines, which begin at a line start: valid UTF-8 as a run (nearly always) means
            // valid line by line, so they are checked at once instead of a short slice at a time.
            let complete = &chunk[start..last];
            match std::str::from_utf8(complete) {
                Ok(text) => {
                    // memchr's search beats `str::split`'s on lines this short.
                    let mut line_start = 0;
                    for end in memchr::memchr_iter(b'\n', complete) {
                        Self::emit_text(&text[line_start..end], self.max_line, block, &mut outcome);
                        line_start = end + 1;
                    }
                    Self::emit_text(&text[line_start..], self.max_line, block, &mut outcome);
                }
                Err(_) => {
                    for line in complete.split(|&b| b == b'\n') {
                        Self::emit(line, self.max_line, block, &mut outcome);
                    }
                }
            }
        }
        self.hold(&chunk[last + 1..], &mut outcome);
        outcome
    }

    /// Keeps the start of a line whose end has not arrived, or starts skipping it once it is
    /// longer than the limit.
    fn hold(&mut self, rest: &[u8], outcome: &mut SplitOutcome) {
        if self.discarding {
            return;
        }
        if self.partial.len() + rest.len() > self.max_line {
            // The line is already too long: drop what we hold and skip to its end.
            self.partial.clear();
            self.discarding = true;
            outcome.oversized += 1;
        } else {
            self.partial.extend_from_slice(rest);
        }
    }

    /// The stream ended: a last line without a terminator still counts.
    pub(crate) fn finish(&mut self, block: &mut TextBlock) -> SplitOutcome {
        let mut outcome = SplitOutcome::default();
        if !self.partial.is_empty() && !self.discarding {
            let line = std::mem::take(&mut self.partial);
            Self::emit(&line, self.max_line, block, &mut outcome);
        }
        self.partial.clear();
        self.discarding = false;
        outcome
    }

    fn emit(line: &[u8], max_line: usize, block: &mut TextBlock, outcome: &mut SplitOutcome) {
        match std::str::from_utf8(line) {
            Ok(text) => Self::emit_text(text, max_line, block, outcome),
            Err(_) => {
                // A line that is both too long and invalid counts as too long, as it always has.
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.len() > max_line {
                    outcome.oversized += 1;
                } else {
                    outcome.invalid_utf8 += 1;
                }
            }
        }
    }

    #[inline]
    fn emit_text(line: &str, max_line: usize, block: &mut TextBlock, outcome: &mut SplitOutcome) {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.len() > max_line || block.would_overflow(line.len()) {
            outcome.oversized += 1;
        } else {
            block.push_line(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> (Vec<String>, SplitOutcome) {
        let mut splitter = LineSplitter::new(max);
        let mut block = TextBlock::new();
        let mut total = SplitOutcome::default();
        for chunk in chunks {
            let o = splitter.feed(chunk, &mut block);
            total.invalid_utf8 += o.invalid_utf8;
            total.oversized += o.oversized;
        }
        let o = splitter.finish(&mut block);
        total.invalid_utf8 += o.invalid_utf8;
        total.oversized += o.oversized;
        (block.lines().map(str::to_string).collect(), total)
    }

    #[test]
    fn lines_cross_chunk_boundaries() {
        let (lines, outcome) = split(&[b"hel", b"lo wor", b"ld\r\nsecond\n", b"", b"last"], 100);
        assert_eq!(lines, vec!["hello world", "second", "last"]);
        assert_eq!(outcome, SplitOutcome::default());
    }

    #[test]
    fn invalid_utf8_is_counted_and_skipped() {
        let (lines, outcome) = split(&[b"ok\n\xff\xfe bad\nfine\n"], 100);
        assert_eq!(lines, vec!["ok", "fine"]);
        assert_eq!(outcome.invalid_utf8, 1);
    }

    #[test]
    fn a_character_split_between_reads_and_a_bad_line_among_good_ones() {
        let text = "première\nligne été\n".as_bytes();
        let (lines, outcome) = split(&[&text[..4], &text[4..15], &text[15..]], 100);
        assert_eq!(lines, vec!["première", "ligne été"]);
        assert_eq!(outcome, SplitOutcome::default());
        let (lines, outcome) = split(&[b"a\nb\xc3\nc\r\n\nd\n"], 100);
        assert_eq!(lines, vec!["a", "c", "", "d"]);
        assert_eq!(outcome.invalid_utf8, 1);
    }

    #[test]
    fn oversized_lines_are_skipped_even_across_chunks() {
        let (lines, outcome) = split(
            &[b"short\n0123456789", b"0123456789", b"01234\nafter\n"],
            12,
        );
        assert_eq!(lines, vec!["short", "after"]);
        assert_eq!(outcome.oversized, 1);
        let (lines, outcome) = split(&[b"0123456789abcdef\nx\n"], 12);
        assert_eq!(lines, vec!["x"]);
        assert_eq!(outcome.oversized, 1);
    }
}
