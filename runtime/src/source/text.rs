//! Compact storage for received text: one buffer per block and the end offset of every line, so a million
//! lines cost two allocations instead of a million. Pipelines see each line as `&str` borrowed from it.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Lines received together. Holding a block holds its share of the receiver's memory budget; dropping it
/// (when its batch is done) gives the budget back, which is how backpressure reaches the socket.
#[derive(Debug, Default)]
pub struct TextBlock {
    data: String,
    ends: Vec<u32>,
    _budget: Option<OwnedSemaphorePermit>,
}

impl TextBlock {
    /// An empty block.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one line (without its terminator).
    ///
    /// A block never grows past `u32::MAX` bytes; [`TextBlock::would_overflow`] tells the receiver when to
    /// start a new one.
    pub fn push_line(&mut self, line: &str) {
        self.data.push_str(line);
        self.ends.push(self.data.len() as u32);
    }

    /// Makes room for `lines` more lines of `bytes` bytes in all, so that filling the block from one
    /// read allocates once and holds no slack.
    pub fn reserve(&mut self, bytes: usize, lines: usize) {
        self.data.reserve_exact(bytes);
        self.ends.reserve_exact(lines);
    }

    /// Whether appending `extra` bytes would exceed the offset range of one block.
    pub fn would_overflow(&self, extra: usize) -> bool {
        self.data.len() + extra > u32::MAX as usize
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the block holds no line.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes of text held.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Attaches the memory budget this block accounts for.
    pub(crate) fn attach_budget(&mut self, permit: OwnedSemaphorePermit) {
        match &mut self._budget {
            Some(held) => held.merge(permit),
            None => self._budget = Some(permit),
        }
    }

    /// The lines, in order.
    pub fn lines(&self) -> impl Iterator<Item = &str> + '_ {
        let mut start = 0usize;
        self.ends.iter().map(move |&end| {
            let end = end as usize;
            let line = &self.data[start..end];
            start = end;
            line
        })
    }

    /// Splits the block into blocks of at most `lines` lines (rate-limited delivery).
    pub fn split_every(self, lines: usize) -> Vec<TextBlock> {
        let lines = lines.max(1);
        let mut out = Vec::with_capacity(self.len().div_ceil(lines));
        let mut current = TextBlock::new();
        for line in self.lines() {
            if current.len() == lines {
                out.push(std::mem::take(&mut current));
            }
            current.push_line(line);
        }
        if !current.is_empty() {
            out.push(current);
        }
        out
    }

    /// Builds a block from lines; used by tests and by sources that read whole files.
    pub fn from_lines<S: AsRef<str>>(lines: impl IntoIterator<Item = S>) -> Self {
        let mut block = TextBlock::new();
        for line in lines {
            block.push_line(line.as_ref());
        }
        block
    }
}

/// The text of one batch partition: whole blocks, so cutting a batch never copies text.
#[derive(Debug, Default)]
pub struct TextPartition {
    blocks: Vec<TextBlock>,
}

/// A stage reads a text partition's lines, borrowed from its blocks.
impl<'a> crate::shuffle::Records for &'a TextPartition {
    type Item = &'a str;
    type Iter = TextLines<'a>;
    fn records(self) -> Self::Iter {
        self.lines()
    }
}

impl TextPartition {
    /// Lines of all blocks, in arrival order.
    pub fn lines(&self) -> TextLines<'_> {
        TextLines {
            blocks: &self.blocks,
            block: 0,
            line: 0,
            start: 0,
        }
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.blocks.iter().map(TextBlock::len).sum()
    }

    /// Whether the partition holds no line.
    pub fn is_empty(&self) -> bool {
        self.blocks.iter().all(TextBlock::is_empty)
    }

    /// Bytes of text held.
    pub fn bytes(&self) -> usize {
        self.blocks.iter().map(TextBlock::bytes).sum()
    }

    /// Spreads blocks over `partitions` partitions, balancing bytes (largest block first onto the lightest
    /// partition). Always returns exactly `partitions` partitions, some possibly empty.
    pub fn spread(mut blocks: Vec<TextBlock>, partitions: usize) -> Vec<TextPartition> {
        let partitions = partitions.max(1);
        let mut out: Vec<TextPartition> =
            (0..partitions).map(|_| TextPartition::default()).collect();
        let mut load = vec![0usize; partitions];
        blocks.sort_by_key(|b| std::cmp::Reverse(b.bytes()));
        for block in blocks {
            let lightest = (0..partitions).min_by_key(|&i| load[i]).unwrap_or(0);
            load[lightest] += block.bytes().max(1);
            out[lightest].blocks.push(block);
        }
        out
    }
}

/// Iterator over the lines of a [`TextPartition`] (a named type, so stage bodies stay monomorphic).
pub struct TextLines<'a> {
    blocks: &'a [TextBlock],
    block: usize,
    line: usize,
    start: usize,
}

impl<'a> Iterator for TextLines<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        loop {
            let block = self.blocks.get(self.block)?;
            if let Some(&end) = block.ends.get(self.line) {
                let end = end as usize;
                let line = &block.data[self.start..end];
                self.line += 1;
                self.start = end;
                return Some(line);
            }
            self.block += 1;
            self.line = 0;
            self.start = 0;
        }
    }
}

/// The memory a receiver may hold in received-but-unprocessed data.
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    semaphore: Arc<Semaphore>,
    limit: usize,
}

impl MemoryBudget {
    /// A budget of `limit_bytes` (at least 1 MiB, so one large read always fits).
    pub fn new(limit_bytes: usize) -> Self {
        let limit = limit_bytes.clamp(1 << 20, Semaphore::MAX_PERMITS);
        Self {
            semaphore: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// Waits until `bytes` fit in the budget. `None` if the budget was closed.
    pub async fn acquire(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let bytes = bytes.clamp(1, self.limit) as u32;
        self.semaphore.clone().acquire_many_owned(bytes).await.ok()
    }

    /// Takes `bytes` of the budget if they fit now.
    pub(crate) fn try_acquire(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let bytes = bytes.clamp(1, self.limit) as u32;
        self.semaphore.clone().try_acquire_many_owned(bytes).ok()
    }

    /// Bytes currently free.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// The budget, in bytes.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes currently held.
    fn held(&self) -> usize {
        self.limit - self.available().min(self.limit)
    }
}

/// Whether a receiver should pace itself at the processing rate, so that batches stay even instead
/// of full and then empty: from when more than half its budget is held until less than a quarter
/// has been held for [`Pressure::CALM`] without a break. An overloaded receiver paced at the
/// processing rate holds about a batch or two, which on a small budget hovers around a quarter: a
/// dip under it must not let a burst in, only a lasting calm (the input fell below what processing
/// takes) does. Pacing at the processing rate costs nothing while the input is slower anyway.
#[derive(Debug, Default)]
pub struct Pressure {
    pressed: bool,
    calm_since: Option<std::time::Instant>,
}

impl Pressure {
    /// How long the budget must stay under a quarter held before pacing ends.
    pub const CALM: std::time::Duration = std::time::Duration::from_secs(2);

    /// Looks at `budget` now: whether the receiver is under pressure.
    pub fn update(&mut self, budget: &MemoryBudget) -> bool {
        self.update_at(budget.held(), budget.limit, std::time::Instant::now())
    }

    fn update_at(&mut self, held: usize, limit: usize, now: std::time::Instant) -> bool {
        if held > limit / 2 {
            self.pressed = true;
            self.calm_since = None;
        } else if held > limit / 4 {
            self.calm_since = None;
        } else if self.pressed {
            let since = *self.calm_since.get_or_insert(now);
            if now.duration_since(since) >= Self::CALM {
                self.pressed = false;
                self.calm_since = None;
            }
        }
        self.pressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_starts_over_half_and_ends_only_after_a_lasting_calm_under_a_quarter() {
        let (mut p, start) = (Pressure::default(), std::time::Instant::now());
        let at = |ms: u64| start + std::time::Duration::from_millis(ms);
        assert!(!p.update_at(400, 1000, at(0)), "under half: not yet");
        assert!(p.update_at(600, 1000, at(10)), "over half: paced");
        assert!(p.update_at(300, 1000, at(20)), "between: still paced");
        assert!(
            p.update_at(200, 1000, at(30)),
            "a dip under a quarter: still paced"
        );
        assert!(p.update_at(300, 1000, at(1000)), "the dip ended");
        assert!(p.update_at(100, 1000, at(1100)));
        assert!(p.update_at(100, 1000, at(2500)), "calm for 1.4 s only");
        assert!(!p.update_at(100, 1000, at(3200)), "calm for 2.1 s: free");
        assert!(
            !p.update_at(400, 1000, at(3300)),
            "and not again before half"
        );
    }

    #[test]
    fn lines_round_trip_including_empty_ones() {
        let block = TextBlock::from_lines(["hello world", "", "ünïcode"]);
        assert_eq!(
            block.lines().collect::<Vec<_>>(),
            vec!["hello world", "", "ünïcode"]
        );
        assert_eq!(block.len(), 3);
    }

    #[test]
    fn spread_keeps_every_line_and_balances() {
        let blocks: Vec<TextBlock> = (0..10)
            .map(|i| TextBlock::from_lines((0..=i).map(|j| format!("{i}-{j}"))))
            .collect();
        let parts = TextPartition::spread(blocks, 3);
        assert_eq!(parts.len(), 3);
        let total: usize = parts.iter().map(TextPartition::len).sum();
        assert_eq!(total, (1..=10).sum::<usize>());
        let max = parts.iter().map(TextPartition::bytes).max().unwrap_or(0);
        let min = parts.iter().map(TextPartition::bytes).min().unwrap_or(0);
        assert!(max - min <= 40, "unbalanced: {max} vs {min}");
    }
}
