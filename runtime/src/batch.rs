//! [`Batch`]: one batch of a stream as a partitioned dataset with an RDD-like API, for `transform` and
//! `foreach_batch`. Operations run in parallel on the worker pool.

use crate::context::BatchOrigin;
use crate::shuffle::{
    bucketize, inner_emit, join_buckets, left_outer_emit, merge_groups, reduce_buckets, split_even,
    transpose, Combiner, Grouper, Partitions, ShuffledGroups,
};
use crate::time::Time;
use rayon::prelude::*;
use std::hash::Hash;
use std::sync::Arc;

/// A batch of records, split into partitions.
#[derive(Clone, Debug)]
pub struct Batch<T> {
    parts: Vec<Vec<T>>,
    time: Time,
    workers: usize,
    origin: Arc<BatchOrigin>,
}

impl<T> Batch<T> {
    /// A batch made of existing partitions.
    pub fn new(parts: Vec<Vec<T>>, time: Time, workers: usize) -> Self {
        Self {
            parts,
            time,
            workers: workers.max(1),
            origin: Arc::default(),
        }
    }

    /// A batch of the running app, knowing where its sources stood.
    pub(crate) fn in_context(parts: Vec<Vec<T>>, ctx: &crate::context::BatchContext<'_>) -> Self {
        Self {
            parts,
            time: ctx.time,
            workers: ctx.workers.max(1),
            origin: ctx.origin.clone(),
        }
    }

    /// The Kafka offset ranges this batch read from the direct Kafka source named `source` (Spark's
    /// `HasOffsetRanges`): store them with the batch's results for exactly-once output.
    #[cfg(feature = "kafka")]
    pub fn offset_ranges(&self, source: &str) -> Vec<crate::source::OffsetRange> {
        let position = self.origin.positions.iter().find(|(n, _)| n == source);
        position
            .map(|(_, p)| crate::source::offset_ranges(p))
            .unwrap_or_default()
    }

    /// A static dataset (a blacklist, a lookup table) to combine with batches, split into `partitions`.
    pub fn from_vec(records: Vec<T>, partitions: usize) -> Self {
        Self::new(split_even(records, partitions), Time(0), partitions)
    }

    /// The batch's time.
    pub fn time(&self) -> Time {
        self.time
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(Vec::is_empty)
    }

    /// Number of records, as Spark's `count()`.
    pub fn count(&self) -> u64 {
        self.len() as u64
    }

    /// Number of partitions.
    pub fn num_partitions(&self) -> usize {
        self.parts.len()
    }

    /// The partitions.
    pub fn partitions(&self) -> &[Vec<T>] {
        &self.parts
    }

    /// The partitions, by value.
    pub fn into_partitions(self) -> Vec<Vec<T>> {
        self.parts
    }

    /// All records, partition by partition.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.parts.iter().flatten()
    }

    /// All records, by value.
    pub fn collect(self) -> Vec<T> {
        self.parts.into_iter().flatten().collect()
    }
}

impl<T: Clone> Batch<T> {
    /// The first `n` records, as Spark's `take`.
    pub fn take(&self, n: usize) -> Vec<T> {
        self.iter().take(n).cloned().collect()
    }

    /// The first record.
    pub fn first(&self) -> Option<T> {
        self.iter().next().cloned()
    }
}

impl<T: Send> Batch<T> {
    /// Applies `f` to every record.
    pub fn map<U: Send>(self, f: impl Fn(T) -> U + Sync + Send) -> Batch<U> {
        self.remap(|part| part.into_iter().map(&f).collect())
    }

    /// Keeps the records for which `f` is true.
    pub fn filter(self, f: impl Fn(&T) -> bool + Sync + Send) -> Batch<T> {
        self.remap(|part| part.into_iter().filter(|r| f(r)).collect())
    }

    /// Replaces every record with the records `f` returns.
    pub fn flat_map<I>(self, f: impl Fn(T) -> I + Sync + Send) -> Batch<I::Item>
    where
        I: IntoIterator,
        I::Item: Send,
    {
        self.remap(|part| part.into_iter().flat_map(&f).collect())
    }

    /// Transforms whole partitions; `f` gets the partition index and its records.
    pub fn map_partitions<U: Send>(
        self,
        f: impl Fn(usize, Vec<T>) -> Vec<U> + Sync + Send,
    ) -> Batch<U> {
        let time = self.time;
        let workers = self.workers;
        let origin = self.origin.clone();
        let parts = self
            .parts
            .into_par_iter()
            .enumerate()
            .map(|(i, part)| f(i, part))
            .collect();
        Batch {
            parts,
            time,
            workers,
            origin,
        }
    }

    /// Runs `f` once per partition with the partition index and its records: the place to take one
    /// connection from a pool for a whole partition instead of one per record.
    pub fn for_each_partition(self, f: impl Fn(usize, std::vec::IntoIter<T>) + Sync + Send) {
        self.parts
            .into_par_iter()
            .enumerate()
            .for_each(|(i, part)| f(i, part.into_iter()));
    }

    /// Runs `f` for every record.
    pub fn for_each(self, f: impl Fn(T) + Sync + Send) {
        self.parts.into_par_iter().flatten().for_each(f);
    }

    /// The records of both batches.
    pub fn union(mut self, other: Batch<T>) -> Batch<T> {
        self.parts.extend(other.parts);
        self
    }

    /// All records, sorted by `key` (ascending or descending), in one partition.
    pub fn sort_by<K: Ord + Send>(
        self,
        ascending: bool,
        key: impl Fn(&T) -> K + Sync + Send,
    ) -> Batch<T> {
        let mut all: Vec<(K, T)> = self
            .parts
            .into_par_iter()
            .flatten()
            .map(|r| (key(&r), r))
            .collect();
        if ascending {
            all.par_sort_by(|a, b| a.0.cmp(&b.0));
        } else {
            all.par_sort_by(|a, b| b.0.cmp(&a.0));
        }
        Batch {
            parts: vec![all.into_iter().map(|(_, r)| r).collect()],
            time: self.time,
            workers: self.workers,
            origin: self.origin.clone(),
        }
    }

    /// The `k` records with the largest `score`, best first, in one partition (the seed's "top 3").
    pub fn top_k<O: Ord + Send>(self, k: usize, score: impl Fn(&T) -> O + Sync + Send) -> Batch<T> {
        self.with_parts(|parts| {
            // Each partition keeps its own best k; only those meet in the final sort.
            let mut best: Vec<(O, T)> = parts
                .into_par_iter()
                .flat_map_iter(|part| best_of(part.into_iter().map(|r| (score(&r), r)), k))
                .collect();
            best.sort_by(|a, b| b.0.cmp(&a.0));
            best.truncate(k);
            vec![best.into_iter().map(|(_, r)| r).collect()]
        })
    }

    /// The same batch (time, workers, origin) with its partitions replaced by `f`'s.
    fn with_parts<U>(self, f: impl FnOnce(Partitions<T>) -> Partitions<U>) -> Batch<U> {
        let Batch {
            parts,
            time,
            workers,
            origin,
        } = self;
        Batch {
            parts: f(parts),
            time,
            workers,
            origin,
        }
    }

    /// Rebuilds every partition in parallel.
    fn remap<U: Send>(self, f: impl Fn(Vec<T>) -> Vec<U> + Sync + Send) -> Batch<U> {
        self.with_parts(|parts| parts.into_par_iter().map(f).collect())
    }
}

impl<K: Hash + Eq + Send, V: Send> Batch<(K, V)> {
    /// Transforms every value, keeping its key.
    pub fn map_values<W: Send>(self, f: impl Fn(V) -> W + Sync + Send) -> Batch<(K, W)> {
        self.map(|(k, v)| (k, f(v)))
    }

    /// Merges the values of each key with `f` (combining inside partitions before the shuffle).
    pub fn reduce_by_key(self, f: impl Fn(V, V) -> V + Sync + Send) -> Batch<(K, V)> {
        let n = self.workers;
        let per_map: Vec<Vec<Vec<(K, V)>>> = self
            .parts
            .into_par_iter()
            .map(|part| {
                let mut combiner = Combiner::new(&f);
                for pair in part {
                    combiner.push(pair);
                }
                combiner.into_buckets(n)
            })
            .collect();
        let parts = reduce_buckets(transpose(per_map, n), &f);
        Batch {
            parts,
            time: self.time,
            workers: self.workers,
            origin: self.origin.clone(),
        }
    }

    /// All values of each key.
    pub fn group_by_key(self) -> Batch<(K, Vec<V>)> {
        let n = self.workers;
        let per_map: ShuffledGroups<K, V> = self
            .parts
            .into_par_iter()
            .map(|part| {
                let mut grouper = Grouper::new();
                for pair in part {
                    grouper.push(pair);
                }
                grouper.into_buckets(n)
            })
            .collect();
        let groups = merge_groups(transpose(per_map, n));
        Batch {
            parts: groups
                .into_par_iter()
                .map(|groups| groups.into_iter().collect())
                .collect(),
            time: self.time,
            workers: self.workers,
            origin: self.origin.clone(),
        }
    }

    /// Per key, the `k` values with the largest `score`, best first (Top3HotProduct: per category, the
    /// three most-clicked products).
    pub fn top_k_by_key<O: Ord + Send>(
        self,
        k: usize,
        score: impl Fn(&V) -> O + Sync + Send,
    ) -> Batch<(K, Vec<V>)> {
        self.group_by_key().map(|(key, values)| {
            let best = best_of(values.into_iter().map(|v| (score(&v), v)), k);
            (key, best.into_iter().map(|(_, v)| v).collect())
        })
    }

    /// Pairs of values with equal keys.
    pub fn join<W>(self, other: &Batch<(K, W)>) -> Batch<(K, (V, W))>
    where
        K: Clone + Sync,
        V: Clone,
        W: Clone + Send + Sync,
    {
        self.joined(other, inner_emit)
    }

    /// Every record of `self`, with each matching value of `other` or `None` (the seed's blacklist filter).
    pub fn left_outer_join<W>(self, other: &Batch<(K, W)>) -> Batch<(K, (V, Option<W>))>
    where
        K: Clone + Sync,
        V: Clone,
        W: Clone + Send + Sync,
    {
        self.joined(other, left_outer_emit)
    }

    /// Both batches partitioned by key, then each record of `self` emitted with the values of its
    /// key in `other`.
    fn joined<W, O, E>(self, other: &Batch<(K, W)>, emit: E) -> Batch<O>
    where
        K: Clone + Sync,
        W: Clone + Send + Sync,
        O: Send,
        E: Fn(K, V, &[W], &mut Vec<O>) + Sync,
    {
        let (time, workers, origin) = (self.time, self.workers, self.origin.clone());
        let (left, right) = self.co_partition(other);
        Batch {
            parts: join_buckets(left, right, emit),
            time,
            workers,
            origin,
        }
    }

    #[allow(clippy::type_complexity)]
    fn co_partition<W>(
        self,
        other: &Batch<(K, W)>,
    ) -> (Vec<Vec<Vec<(K, V)>>>, Vec<Vec<Vec<(K, W)>>>)
    where
        K: Clone + Sync,
        W: Clone + Send + Sync,
    {
        let n = self.workers;
        let left: Vec<_> = self
            .parts
            .into_par_iter()
            .map(|part| bucketize(part.into_iter(), n))
            .collect();
        let right: Vec<_> = other
            .parts
            .par_iter()
            .map(|part| bucketize(part.iter().cloned(), n))
            .collect();
        (transpose(left, n), transpose(right, n))
    }
}

/// The `k` entries with the largest score, best first (equal scores in no particular order).
fn best_of<O: Ord, T>(entries: impl Iterator<Item = (O, T)>, k: usize) -> Vec<(O, T)> {
    let mut all: Vec<(O, T)> = entries.collect();
    if all.len() > k {
        all.select_nth_unstable_by(k, |a, b| b.0.cmp(&a.0));
        all.truncate(k);
    }
    all.sort_by(|a, b| b.0.cmp(&a.0));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap()
    }

    #[test]
    fn reduce_by_key_combines_across_partitions() {
        let pairs: Vec<(u32, u64)> = (0..1000).map(|i| (i % 7, 1)).collect();
        let mut got = pool().install(|| {
            Batch::from_vec(pairs, 3)
                .reduce_by_key(|a, b| a + b)
                .collect()
        });
        got.sort();
        let expected: Vec<(u32, u64)> = (0..7)
            .map(|k| (k, (0..1000).filter(|i| i % 7 == k).count() as u64))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn top_k_and_top_k_by_key() {
        let clicks = vec![
            ("phone", ("a", 5)),
            ("phone", ("b", 9)),
            ("phone", ("c", 7)),
            ("phone", ("d", 1)),
            ("tv", ("x", 2)),
        ];
        let mut top = pool().install(|| {
            Batch::from_vec(clicks.clone(), 3)
                .top_k_by_key(3, |(_, n)| *n)
                .collect()
        });
        top.sort();
        assert_eq!(
            top,
            vec![
                ("phone", vec![("b", 9), ("c", 7), ("a", 5)]),
                ("tv", vec![("x", 2)])
            ]
        );
        let best = pool().install(|| {
            Batch::from_vec(clicks, 2)
                .top_k(2, |(_, (_, n))| *n)
                .collect()
        });
        assert_eq!(best, vec![("phone", ("b", 9)), ("phone", ("c", 7))]);
    }

    #[test]
    fn group_and_join_match_the_reference() {
        let left = Batch::from_vec(vec![("a", 1), ("b", 2), ("a", 3)], 2);
        let right = Batch::from_vec(vec![("a", 'x'), ("c", 'y')], 2);
        let mut groups = pool().install(|| {
            left.clone()
                .group_by_key()
                .map(|(k, mut v)| {
                    v.sort();
                    (k, v)
                })
                .collect()
        });
        groups.sort();
        assert_eq!(groups, vec![("a", vec![1, 3]), ("b", vec![2])]);
        let mut joined = pool().install(|| left.clone().join(&right).collect());
        joined.sort();
        assert_eq!(joined, vec![("a", (1, 'x')), ("a", (3, 'x'))]);
        let mut outer = pool().install(|| left.left_outer_join(&right).collect());
        outer.sort();
        assert_eq!(
            outer,
            vec![
                ("a", (1, Some('x'))),
                ("a", (3, Some('x'))),
                ("b", (2, None))
            ]
        );
    }
}
