//! `queue_stream`: Spark's test source. Each tick takes the next queued batch (one at a time); once the
//! queue is drained every batch is empty. Fully deterministic.

use super::Source;
use crate::time::Time;
use std::collections::VecDeque;

/// A queue of prepared batches.
pub struct QueueSource<T> {
    name: String,
    queue: VecDeque<Vec<T>>,
}

impl<T: Send + 'static> QueueSource<T> {
    /// A source that yields `batches`, one per tick.
    pub fn new(name: &str, batches: impl IntoIterator<Item = Vec<T>>) -> Self {
        Self {
            name: name.to_string(),
            queue: batches.into_iter().collect(),
        }
    }

    /// Appends a batch to the queue.
    pub fn push(&mut self, batch: Vec<T>) {
        self.queue.push_back(batch);
    }
}

impl<T: Send + 'static> Source for QueueSource<T> {
    type Batch = Vec<Vec<T>>;

    fn name(&self) -> &str {
        &self.name
    }

    fn cut(&mut self, _time: Time, partitions: usize) -> Self::Batch {
        let records = self.queue.pop_front().unwrap_or_default();
        crate::exec::split_even(records, partitions)
    }

    fn records_in(batch: &Self::Batch) -> usize {
        batch.iter().map(Vec::len).sum()
    }

    fn is_finished(&self) -> bool {
        self.queue.is_empty()
    }
}
