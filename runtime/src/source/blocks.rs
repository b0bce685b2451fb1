//! Blocks a receiver has received and a batch has not yet taken, optionally backed by the write-ahead
//! log: shared by every receiver (socket, Kafka), so logging, replay after a crash, positions and log
//! cleanup are written once.

use super::{Checkpointed, ReceiverEnv, SourceError};
use crate::wal::{WalPosition, WriteAheadLog};
use std::sync::{Arc, Mutex};

/// A block that can be written to the log and read back.
pub trait Loggable: Sized + Send + 'static {
    /// The block's bytes in the log; an error is the reason it cannot be logged.
    fn encode(&self) -> Result<Vec<u8>, String>;
    fn decode(bytes: &[u8]) -> Result<Self, String>;
}

type Pending<B> = Arc<Mutex<Vec<(B, Option<WalPosition>)>>>;

/// The source's side: takes blocks into batches and knows the log position of what it took.
pub struct ReceivedBlocks<B> {
    name: String,
    pending: Pending<B>,
    wal: Option<Arc<Mutex<WriteAheadLog>>>,
    cut_position: WalPosition,
    resume_from: Option<WalPosition>,
    checkpointed: Option<Checkpointed>,
}

/// The receiver's side: hands blocks over, durably first when there is a log.
pub struct BlockSink<B> {
    pending: Pending<B>,
    wal: Option<Arc<Mutex<WriteAheadLog>>>,
}

impl<B> Clone for BlockSink<B> {
    fn clone(&self) -> Self {
        Self {
            pending: self.pending.clone(),
            wal: self.wal.clone(),
        }
    }
}

impl<B: Loggable> BlockSink<B> {
    /// Logs `block` (append and fsync, when there is a log), then makes it available to the next batch.
    /// An error means the block is not durable and was not handed over: it comes back with the reason,
    /// for the receiver to try again.
    pub fn push(&self, block: B) -> Result<(), (B, String)> {
        let position = match &self.wal {
            Some(wal) => {
                let mut wal = wal.lock().unwrap_or_else(|p| p.into_inner());
                let encoded = match block.encode() {
                    Ok(encoded) => encoded,
                    Err(e) => return Err((block, e)),
                };
                match wal.append_durably(&encoded) {
                    Ok(position) => Some(position),
                    Err(e) => {
                        return Err((block, format!("cannot write the write-ahead log: {e}")))
                    }
                }
            }
            None => None,
        };
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((block, position));
        Ok(())
    }
}

/// How a receiver rides out a store that fails (a full disk under the write-ahead log): it pauses with
/// the block in hand — reading nothing more, so the sender or Kafka keeps the rest — retries with
/// backoff, resumes when a write succeeds, and gives up past the failure timeout, which stops the app.
pub(crate) struct StoreRetry {
    timeout: std::time::Duration,
    failing_since: Option<std::time::Instant>,
    backoff: std::time::Duration,
}

/// What a receiver does after a failed store.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Wait this long, then try the same block again.
    RetryIn(std::time::Duration),
    /// Failing for longer than the timeout: stop the app with this message.
    GiveUp(String),
}

/// Why a block was not handed over.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unstored {
    /// Storing failed for longer than the failure timeout: the app must stop, for this reason.
    GaveUp(String),
    /// The run was aborted while the receiver waited to try again.
    Aborted,
}

const FIRST_STORE_RETRY: std::time::Duration = std::time::Duration::from_millis(50);
const LONGEST_STORE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

impl StoreRetry {
    pub(crate) fn new(timeout: std::time::Duration) -> Self {
        Self {
            timeout,
            failing_since: None,
            backoff: FIRST_STORE_RETRY,
        }
    }

    /// A store failed with `error`: counted once per pause, logged, and judged against the timeout.
    pub(crate) fn failed(
        &mut self,
        source: &str,
        error: &str,
        counters: &super::ReceiverCounters,
    ) -> AfterFailure {
        let since = match self.failing_since {
            Some(since) => since,
            None => {
                tracing::warn!(
                    source,
                    "receiving paused: {error}; retrying until it succeeds, for at most {:?} (--receiver-failure-timeout)",
                    self.timeout
                );
                super::ReceiverCounters::add(&counters.connection_errors, 1);
                counters.set_error(format!("receiving paused: {error}"));
                *self.failing_since.insert(std::time::Instant::now())
            }
        };
        if since.elapsed() >= self.timeout {
            return AfterFailure::GiveUp(format!(
                "source `{source}` could not store what it received for {:?}: {error}",
                self.timeout
            ));
        }
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(LONGEST_STORE_RETRY);
        AfterFailure::RetryIn(wait)
    }

    /// Hands `block` to `sink`, pausing and retrying while that fails (see [`StoreRetry`]). Blocks the
    /// calling thread: a receiver on the async runtime calls it inside `block_in_place`.
    pub(crate) fn push<B: Loggable>(
        &mut self,
        sink: &BlockSink<B>,
        block: B,
        source: &str,
        counters: &super::ReceiverCounters,
        stop: &crate::stop::StopSignal,
    ) -> Result<(), Unstored> {
        let mut block = block;
        loop {
            let (returned, error) = match sink.push(block) {
                Ok(()) => {
                    self.succeeded(source);
                    return Ok(());
                }
                Err(failed) => failed,
            };
            block = returned;
            match self.failed(source, &error, counters) {
                AfterFailure::RetryIn(wait) if stop.sleep(wait) => {}
                AfterFailure::RetryIn(_) => return Err(Unstored::Aborted),
                AfterFailure::GiveUp(message) => return Err(Unstored::GaveUp(message)),
            }
        }
    }

    /// A store succeeded: a pause, if there was one, is over.
    pub(crate) fn succeeded(&mut self, source: &str) {
        if let Some(since) = self.failing_since.take() {
            tracing::info!(
                source,
                paused_ms = since.elapsed().as_millis() as u64,
                "receiving resumes: the write-ahead log takes writes again"
            );
            self.backoff = FIRST_STORE_RETRY;
        }
    }
}

fn decode_position(bytes: &[u8]) -> Result<WalPosition, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("malformed write-ahead log position: {e}"))
}

impl<B: Loggable> ReceivedBlocks<B> {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            pending: Arc::default(),
            wal: None,
            cut_position: WalPosition::default(),
            resume_from: None,
            checkpointed: None,
        }
    }

    fn error(&self, message: String) -> SourceError {
        SourceError {
            source_name: self.name.clone(),
            message,
        }
    }

    /// Opens the log when the run has one (`--wal`), puts back what it holds after the checkpointed
    /// position — received before a crash, never covered by a checkpoint — and returns the receiver's
    /// side.
    pub fn start(&mut self, env: &ReceiverEnv) -> Result<BlockSink<B>, SourceError> {
        self.checkpointed = Some(env.checkpointed.clone());
        match &env.wal_location {
            Some(dir) => {
                let location = dir.join(&self.name);
                let wal = WriteAheadLog::open_at(
                    &location,
                    &env.storage,
                    64 << 20,
                    env.wal_roll_interval,
                )
                .map_err(|e| {
                    self.error(format!(
                        "cannot open the write-ahead log in {location}: {e}"
                    ))
                })?;
                let from = self.resume_from.unwrap_or_default();
                let records = wal
                    .read_after(from)
                    .map_err(|e| self.error(format!("cannot read the write-ahead log: {e}")))?;
                if !records.is_empty() {
                    tracing::info!(source = %self.name, blocks = records.len(), "replaying received data from the write-ahead log");
                }
                let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                for (position, payload) in records {
                    match B::decode(&payload) {
                        Ok(block) => pending.push((block, Some(position))),
                        Err(e) => {
                            tracing::warn!(source = %self.name, "skipping an unreadable write-ahead log record: {e}")
                        }
                    }
                }
                drop(pending);
                self.cut_position = from;
                self.wal = Some(Arc::new(Mutex::new(wal)));
            }
            None if self.resume_from.is_some() => tracing::warn!(
                source = %self.name,
                "the checkpoint has a write-ahead log position, but the log is off: data received before the restart is not replayed"
            ),
            None => {}
        }
        Ok(BlockSink {
            pending: self.pending.clone(),
            wal: self.wal.clone(),
        })
    }

    /// Takes the pending blocks — all of them, or those logged up to `up_to` (re-cutting a journaled
    /// batch) — and drops log segments the last checkpoint made unnecessary.
    pub fn take(&mut self, up_to: Option<&[u8]>) -> Result<Vec<B>, SourceError> {
        let limit = up_to
            .map(decode_position)
            .transpose()
            .map_err(|e| self.error(e))?;
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let keep = match limit {
            None => pending.len(),
            Some(limit) => pending
                .iter()
                .position(|(_, p)| p.is_some_and(|p| p > limit))
                .unwrap_or(pending.len()),
        };
        let taken: Vec<(B, Option<WalPosition>)> = pending.drain(..keep).collect();
        drop(pending);
        if let Some(last) = taken.iter().filter_map(|(_, p)| *p).max() {
            self.cut_position = last;
        }
        self.forget_checkpointed_log();
        Ok(taken.into_iter().map(|(block, _)| block).collect())
    }

    fn forget_checkpointed_log(&self) {
        let (Some(wal), Some(checkpointed)) = (&self.wal, &self.checkpointed) else {
            return;
        };
        let Some(position) = checkpointed
            .position_of(&self.name)
            .and_then(|p| decode_position(&p).ok())
        else {
            return;
        };
        if let Err(e) = wal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .delete_before(position)
        {
            tracing::warn!(source = %self.name, "cannot delete old write-ahead log segments: {e}");
        }
    }

    /// The log position of the last block taken; `None` without a log (the source cannot replay).
    pub fn position(&self) -> Option<Vec<u8>> {
        self.wal.as_ref()?;
        postcard::to_stdvec(&self.cut_position).ok()
    }

    /// Where a restart resumes in the log (applied when the log is opened at start).
    pub fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        self.resume_from = Some(decode_position(position).map_err(|e| self.error(e))?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_failing_store_pauses_with_growing_waits_then_gives_up_past_the_timeout() {
        let counters = super::super::ReceiverCounters::default();
        let mut retry = StoreRetry::new(Duration::from_millis(300));
        let waits: Vec<AfterFailure> = (0..6)
            .map(|_| retry.failed("lines", "disk full", &counters))
            .collect();
        assert_eq!(
            waits,
            [50, 100, 200, 400, 800, 1000]
                .map(|ms| AfterFailure::RetryIn(Duration::from_millis(ms)))
        );
        assert_eq!(
            counters.snapshot().connection_errors,
            1,
            "one pause is one receiver error"
        );
        retry.succeeded("lines");
        assert_eq!(
            retry.failed("lines", "disk full", &counters),
            AfterFailure::RetryIn(FIRST_STORE_RETRY),
            "a success ends the pause and its backoff"
        );
        assert_eq!(counters.snapshot().connection_errors, 2);
        std::thread::sleep(Duration::from_millis(350));
        match retry.failed("lines", "disk full", &counters) {
            AfterFailure::GiveUp(message) => {
                assert!(
                    message.contains("source `lines`") && message.contains("disk full"),
                    "{message}"
                )
            }
            other => panic!("expected to give up, got {other:?}"),
        }
    }
}
