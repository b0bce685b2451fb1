//! `queue_stream`: Spark's test source. Each tick takes the next queued batch (one at a time); once the
//! queue is drained every batch is empty. Fully deterministic.

use super::{Source, SourceError};
use crate::time::Time;
use std::collections::VecDeque;

/// A queue of prepared batches.
pub struct QueueSource<T> {
    name: String,
    queue: VecDeque<Vec<T>>,
    /// Batches taken so far: the position a checkpoint records.
    taken: u64,
}

impl<T: Send + 'static> QueueSource<T> {
    /// A source that yields `batches`, one per tick.
    pub fn new(name: &str, batches: impl IntoIterator<Item = Vec<T>>) -> Self {
        Self {
            name: name.to_string(),
            queue: batches.into_iter().collect(),
            taken: 0,
        }
    }

    /// Appends a batch to the queue.
    pub fn push(&mut self, batch: Vec<T>) {
        self.queue.push_back(batch);
    }
}

impl<T> QueueSource<T> {
    /// A position: how many batches were taken. Never behind the current one.
    fn decode(&self, position: &[u8]) -> Result<u64, SourceError> {
        let error = |message: String| SourceError {
            source_name: self.name.clone(),
            message,
        };
        let bytes: [u8; 8] = position
            .try_into()
            .map_err(|_| error("malformed queue position".into()))?;
        let target = u64::from_le_bytes(bytes);
        if target < self.taken {
            return Err(error(format!(
                "cannot go back to batch {target}: {} already taken",
                self.taken
            )));
        }
        Ok(target)
    }
}

impl<T: Send + 'static> Source for QueueSource<T> {
    type Batch = Vec<Vec<T>>;

    fn name(&self) -> &str {
        &self.name
    }

    fn cut(&mut self, _time: Time, partitions: usize) -> Self::Batch {
        let records = self.queue.pop_front().unwrap_or_default();
        self.taken += 1;
        crate::shuffle::split_even(records, partitions)
    }

    fn records_in(batch: &Self::Batch) -> usize {
        batch.iter().map(Vec::len).sum()
    }

    fn is_finished(&self) -> bool {
        self.queue.is_empty()
    }

    fn position(&self) -> Option<Vec<u8>> {
        Some(self.taken.to_le_bytes().to_vec())
    }

    fn recut(
        &mut self,
        _time: Time,
        partitions: usize,
        position: &[u8],
    ) -> Result<Self::Batch, SourceError> {
        let target = self.decode(position)?;
        let mut records = Vec::new();
        while self.taken < target {
            records.extend(self.queue.pop_front().unwrap_or_default());
            self.taken += 1;
        }
        Ok(crate::shuffle::split_even(records, partitions))
    }

    fn seek(&mut self, position: &[u8]) -> Result<(), SourceError> {
        let error = |message: String| SourceError {
            source_name: self.name.clone(),
            message,
        };
        let bytes: [u8; 8] = position
            .try_into()
            .map_err(|_| error("malformed queue position".into()))?;
        let target = u64::from_le_bytes(bytes);
        if target < self.taken {
            return Err(error(format!(
                "cannot go back to batch {target}: {} already taken",
                self.taken
            )));
        }
        for _ in self.taken..target {
            // Past the end of the queue a batch is empty, exactly as it was when it was cut.
            self.queue.pop_front();
        }
        self.taken = target;
        Ok(())
    }
}
