//! [`Batch`]: one batch of a stream as a partitioned dataset with an RDD-like API, for `transform` and
//! `foreach_batch`. Operations run in parallel on the worker pool.

use crate::context::BatchOrigin;
use crate::shuffle::{
    bucketize, cogroup_buckets, cogroup_emit, full_outer_emit, inner_emit, join_buckets,
    left_outer_emit, merge_groups, reduce_buckets, right_outer_emit, split_even, transpose,
    CoGrouped, Combiner, EitherOrBoth, FastMap, Grouper, Partitions, ShuffledGroups,
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

    /// Each partition as one record (Spark's `glom`).
    pub fn glom(self) -> Batch<Vec<T>> {
        self.with_parts(|parts| parts.into_iter().map(|part| vec![part]).collect())
    }

    /// All records folded into one value: each partition from `zero`, then the partitions' results
    /// from `zero` again (Spark's `fold`, so `zero` must be neutral for `f`).
    pub fn fold(self, zero: T, f: impl Fn(T, T) -> T + Sync + Send) -> T
    where
        T: Clone + Send + Sync,
    {
        let partials: Vec<T> = self
            .parts
            .into_par_iter()
            .map(|part| part.into_iter().fold(zero.clone(), &f))
            .collect();
        partials.into_iter().fold(zero, &f)
    }

    /// All records aggregated into a value of another type: `seq` adds a record to a partition's
    /// value (starting from `zero`), `combine` merges partitions' values (Spark's `aggregate`).
    pub fn aggregate<U: Clone + Send + Sync>(
        self,
        zero: U,
        seq: impl Fn(U, T) -> U + Sync + Send,
        combine: impl Fn(U, U) -> U + Sync + Send,
    ) -> U {
        let partials: Vec<U> = self
            .parts
            .into_par_iter()
            .map(|part| part.into_iter().fold(zero.clone(), &seq))
            .collect();
        partials.into_iter().fold(zero, combine)
    }

    /// A random sample, the same for the same `seed` and partitioning: without replacement each
    /// record is kept with probability `fraction` (0 to 1); with replacement each comes `k` times,
    /// `k` drawn from a Poisson distribution of mean `fraction` (Spark's `sample`).
    pub fn sample(self, with_replacement: bool, fraction: f64, seed: u64) -> Batch<T>
    where
        T: Clone,
    {
        let fraction = if fraction.is_finite() {
            fraction.max(0.0)
        } else {
            0.0
        };
        self.with_parts(|parts| {
            parts
                .into_par_iter()
                .enumerate()
                .map(|(i, part)| {
                    let mut rng =
                        SplitMix::new(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    let mut kept = Vec::new();
                    for record in part {
                        let copies = if with_replacement {
                            rng.poisson(fraction)
                        } else {
                            u64::from(rng.unit() < fraction)
                        };
                        for _ in 1..copies {
                            kept.push(record.clone());
                        }
                        if copies > 0 {
                            kept.push(record);
                        }
                    }
                    kept
                })
                .collect()
        })
    }

    /// The distinct records (Spark's `distinct`), spread over the batch's partitions by hash.
    pub fn distinct(self) -> Batch<T>
    where
        T: Hash + Eq + Send,
    {
        self.map(|t| (t, ()))
            .reduce_by_key(|a, _| a)
            .map(|(t, ())| t)
    }

    /// Each distinct record with how many times it occurs (Spark's `countByValue`).
    pub fn count_by_value(self) -> Batch<(T, u64)>
    where
        T: Hash + Eq + Send,
    {
        self.map(|t| (t, 1u64)).reduce_by_key(|a, b| a + b)
    }

    /// The records that do not occur in `other`, as many times as they occur here (Spark's
    /// `subtract`).
    pub fn subtract(self, other: &Batch<T>) -> Batch<T>
    where
        T: Hash + Eq + Clone + Send + Sync,
    {
        let other = Batch::new(
            other
                .parts
                .par_iter()
                .map(|part| part.iter().map(|t| (t.clone(), ())).collect())
                .collect(),
            other.time,
            other.workers,
        );
        self.map(|t| (t, ()))
            .joined(&other, |t, (), matches: &[()], out: &mut Vec<T>| {
                if matches.is_empty() {
                    out.push(t)
                }
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

    /// Every record of `other`, with each matching value of `self` or `None`.
    pub fn right_outer_join<W>(self, other: &Batch<(K, W)>) -> Batch<(K, (Option<V>, W))>
    where
        K: Clone + Sync,
        V: Clone,
        W: Clone + Send + Sync,
    {
        self.cogrouped(other, right_outer_emit)
    }

    /// Every pair of values with equal keys, and the values of keys only one side has, with `None`
    /// for the other.
    pub fn full_outer_join<W>(self, other: &Batch<(K, W)>) -> Batch<(K, EitherOrBoth<V, W>)>
    where
        K: Clone + Sync,
        V: Clone,
        W: Clone + Send + Sync,
    {
        self.cogrouped(other, full_outer_emit)
    }

    /// One record per key of either batch: its values here and in `other` (Spark's `cogroup`).
    pub fn cogroup<W>(self, other: &Batch<(K, W)>) -> Batch<(K, CoGrouped<V, W>)>
    where
        K: Clone + Sync,
        W: Clone + Send + Sync,
    {
        self.cogrouped(other, cogroup_emit)
    }

    /// The records sorted by key, in one partition (Spark's `sortByKey`).
    pub fn sort_by_key(self, ascending: bool) -> Batch<(K, V)>
    where
        K: Ord + Clone,
    {
        self.sort_by(ascending, |(k, _)| k.clone())
    }

    /// Per key, its values combined: `create` makes a combiner of a key's first value in a
    /// partition, `merge_value` adds the partition's next ones, `merge_combiners` merges the
    /// partitions' combiners after the shuffle (Spark's `combineByKey`).
    pub fn combine_by_key<C: Send>(
        self,
        create: impl Fn(V) -> C + Sync + Send,
        merge_value: impl Fn(C, V) -> C + Sync + Send,
        merge_combiners: impl Fn(C, C) -> C + Sync + Send,
    ) -> Batch<(K, C)> {
        let n = self.workers;
        let (time, workers, origin) = (self.time, self.workers, self.origin.clone());
        Batch {
            parts: combine_parts(
                self.parts.into_par_iter(),
                n,
                &create,
                &merge_value,
                &merge_combiners,
            ),
            time,
            workers,
            origin,
        }
    }

    /// Both batches partitioned by key, each key's values on both sides handed to `emit`.
    fn cogrouped<W, O, E>(self, other: &Batch<(K, W)>, emit: E) -> Batch<O>
    where
        K: Clone + Sync,
        W: Clone + Send + Sync,
        O: Send,
        E: Fn(K, Vec<V>, Vec<W>, &mut Vec<O>) + Sync,
    {
        let (time, workers, origin) = (self.time, self.workers, self.origin.clone());
        let (left, right) = self.co_partition(other);
        Batch {
            parts: cogroup_buckets(left, right, emit),
            time,
            workers,
            origin,
        }
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

/// `combine_by_key` over `parts`: per partition a combiner per key, shuffled into `n` partitions,
/// merged (see [`Batch::combine_by_key`]).
pub(crate) fn combine_parts<K, V, C>(
    parts: impl ParallelIterator<Item = Vec<(K, V)>>,
    n: usize,
    create: &(impl Fn(V) -> C + Sync),
    merge_value: &(impl Fn(C, V) -> C + Sync),
    merge_combiners: &(impl Fn(C, C) -> C + Sync),
) -> Partitions<(K, C)>
where
    K: Hash + Eq + Send,
    V: Send,
    C: Send,
{
    let per_map: Vec<Partitions<(K, C)>> = parts
        .map(|part| bucketize(combine_partition(part, create, merge_value), n))
        .collect();
    reduce_buckets(transpose(per_map, n), merge_combiners)
}

/// One partition's combiners, one per key (see [`Batch::combine_by_key`]).
pub(crate) fn combine_partition<K: Hash + Eq, V, C>(
    part: impl IntoIterator<Item = (K, V)>,
    create: &impl Fn(V) -> C,
    merge_value: &impl Fn(C, V) -> C,
) -> impl Iterator<Item = (K, C)> {
    let mut combined: FastMap<K, Option<C>> = FastMap::default();
    for (k, v) in part {
        let slot = combined.entry(k).or_insert(None);
        *slot = Some(match slot.take() {
            Some(c) => merge_value(c, v),
            None => create(v),
        });
    }
    combined.into_iter().filter_map(|(k, c)| c.map(|c| (k, c)))
}

/// A small, fast, seeded random number generator (SplitMix64) for [`Batch::sample`].
struct SplitMix(u64);

impl SplitMix {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A Poisson draw of mean `mean` (Knuth's method: fine for the small means sampling uses).
    fn poisson(&mut self, mean: f64) -> u64 {
        let limit = (-mean).exp();
        let (mut k, mut p) = (0u64, 1.0);
        loop {
            p *= self.unit();
            if p <= limit {
                return k;
            }
            k += 1;
        }
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

    /// Random `(key, value)` batches: keys from a small range so that they repeat, partitions from
    /// one to four.
    fn random_pairs(rng: &mut SplitMix, max_len: u64) -> (Vec<(u8, u32)>, usize) {
        let len = rng.next() % max_len;
        let pairs = (0..len)
            .map(|_| ((rng.next() % 6) as u8, (rng.next() % 5) as u32))
            .collect();
        (pairs, 1 + (rng.next() % 4) as usize)
    }

    fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
        v.sort();
        v
    }

    #[test]
    fn the_batch_operations_match_a_naive_recomputation_on_random_input() {
        use std::collections::{BTreeMap, BTreeSet};
        let pool = pool();
        let mut rng = SplitMix::new(42);
        for _ in 0..50 {
            let (left, parts) = random_pairs(&mut rng, 40);
            let (right, right_parts) = random_pairs(&mut rng, 40);
            let batch = || Batch::from_vec(left.clone(), parts);
            let other = Batch::from_vec(right.clone(), right_parts);
            pool.install(|| {
                let distinct: BTreeSet<_> = left.iter().copied().collect();
                assert_eq!(
                    sorted(batch().distinct().collect()),
                    distinct.into_iter().collect::<Vec<_>>()
                );
                let mut counts: BTreeMap<(u8, u32), u64> = BTreeMap::new();
                for p in &left {
                    *counts.entry(*p).or_default() += 1;
                }
                assert_eq!(
                    sorted(batch().count_by_value().collect()),
                    counts.into_iter().collect::<Vec<_>>()
                );
                let subtracted: Vec<_> = left
                    .iter()
                    .filter(|p| !right.contains(p))
                    .copied()
                    .collect();
                assert_eq!(
                    sorted(batch().subtract(&other).collect()),
                    sorted(subtracted)
                );
                let by_key = batch().sort_by_key(true).collect();
                assert!(by_key.windows(2).all(|w| w[0].0 <= w[1].0) && by_key.len() == left.len());
                let descending = batch().sort_by_key(false).collect();
                assert!(descending.windows(2).all(|w| w[0].0 >= w[1].0));
                let values = || batch().map(|(_, v)| u64::from(v));
                let sum: u64 = left.iter().map(|(_, v)| u64::from(*v)).sum();
                assert_eq!(values().fold(0, |a, b| a + b), sum);
                assert_eq!(
                    batch().aggregate(
                        (0u64, 0usize),
                        |(s, n), (_, v)| (s + u64::from(v), n + 1),
                        |a, b| (a.0 + b.0, a.1 + b.1)
                    ),
                    (sum, left.len())
                );
                let glommed = batch().glom().collect();
                assert_eq!(glommed.len(), parts);
                assert_eq!(
                    sorted(glommed.into_iter().flatten().collect()),
                    sorted(left.clone())
                );
                // Joins, against nested loops.
                let keys: BTreeSet<u8> = left.iter().chain(&right).map(|(k, _)| *k).collect();
                let (mut right_outer, mut full_outer, mut cogrouped) =
                    (Vec::new(), Vec::new(), Vec::new());
                for k in keys {
                    let vs: Vec<u32> = left
                        .iter()
                        .filter(|(l, _)| *l == k)
                        .map(|(_, v)| *v)
                        .collect();
                    let ws: Vec<u32> = right
                        .iter()
                        .filter(|(r, _)| *r == k)
                        .map(|(_, w)| *w)
                        .collect();
                    for &w in &ws {
                        if vs.is_empty() {
                            right_outer.push((k, (None, w)));
                        }
                        right_outer.extend(vs.iter().map(|&v| (k, (Some(v), w))));
                    }
                    match (vs.is_empty(), ws.is_empty()) {
                        (true, _) => full_outer.extend(ws.iter().map(|&w| (k, (None, Some(w))))),
                        (_, true) => full_outer.extend(vs.iter().map(|&v| (k, (Some(v), None)))),
                        _ => {
                            for &v in &vs {
                                full_outer.extend(ws.iter().map(|&w| (k, (Some(v), Some(w)))));
                            }
                        }
                    }
                    cogrouped.push((k, (sorted(vs), sorted(ws))));
                }
                assert_eq!(
                    sorted(batch().right_outer_join(&other).collect()),
                    sorted(right_outer)
                );
                assert_eq!(
                    sorted(batch().full_outer_join(&other).collect()),
                    sorted(full_outer)
                );
                let got: Vec<_> = batch()
                    .cogroup(&other)
                    .collect()
                    .into_iter()
                    .map(|(k, (vs, ws))| (k, (sorted(vs), sorted(ws))))
                    .collect();
                assert_eq!(sorted(got), cogrouped);
                // combine_by_key as an average's (sum, count).
                let mut sums: BTreeMap<u8, (u64, u64)> = BTreeMap::new();
                for (k, v) in &left {
                    let e = sums.entry(*k).or_default();
                    e.0 += u64::from(*v);
                    e.1 += 1;
                }
                let combined = batch().combine_by_key(
                    |v| (u64::from(v), 1u64),
                    |(s, n), v| (s + u64::from(v), n + 1),
                    |a, b| (a.0 + b.0, a.1 + b.1),
                );
                assert_eq!(
                    sorted(combined.collect()),
                    sums.into_iter().collect::<Vec<_>>()
                );
            });
        }
    }

    #[test]
    fn a_sample_is_the_same_for_the_same_seed_and_near_its_fraction() {
        let records: Vec<u32> = (0..20_000).collect();
        let batch = || Batch::from_vec(records.clone(), 4);
        let pool = pool();
        pool.install(|| {
            let once = batch().sample(false, 0.3, 7).collect();
            assert_eq!(
                once,
                batch().sample(false, 0.3, 7).collect(),
                "same seed, same sample"
            );
            assert_ne!(
                once,
                batch().sample(false, 0.3, 8).collect(),
                "another seed, another sample"
            );
            let kept = once.len() as f64 / records.len() as f64;
            assert!((0.28..0.32).contains(&kept), "about 30%: {kept}");
            assert!(
                once.windows(2).all(|w| w[0] < w[1]),
                "without replacement: each at most once"
            );
            assert!(batch().sample(false, 0.0, 1).is_empty());
            assert_eq!(batch().sample(false, 1.0, 1).len(), records.len());
            let doubled = batch().sample(true, 2.0, 3).len() as f64 / records.len() as f64;
            assert!(
                (1.9..2.1).contains(&doubled),
                "with replacement, about 2 copies each: {doubled}"
            );
        });
    }
}
