//! Blocks a receiver has received and a batch has not yet taken, optionally backed by the write-ahead
//! log: shared by every receiver (socket, Kafka), so logging, replay after a crash, positions and log
//! cleanup are written once.

use super::{Checkpointed, ReceiverEnv, SourceError};
use crate::wal::{WalPosition, WriteAheadLog};
use std::sync::{Arc, Mutex};

/// A block that can be written to the log and read back.
pub trait Loggable: Sized + Send + 'static {
    fn encode(&self) -> Vec<u8>;
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
    /// An error means the block is not durable and was not handed over.
    pub fn push(&self, block: B) -> Result<(), String> {
        let position = match &self.wal {
            Some(wal) => {
                let mut wal = wal.lock().unwrap_or_else(|p| p.into_inner());
                let position = wal
                    .append(&block.encode())
                    .map_err(|e| format!("cannot write the write-ahead log: {e}"))?;
                wal.sync()
                    .map_err(|e| format!("cannot sync the write-ahead log: {e}"))?;
                Some(position)
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
        match &env.wal_dir {
            Some(dir) => {
                let wal = WriteAheadLog::open(&dir.join(&self.name), 64 << 20).map_err(|e| {
                    self.error(format!(
                        "cannot open the write-ahead log in {}: {e}",
                        dir.display()
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
