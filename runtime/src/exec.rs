//! Parallel execution of one batch: the functions generated code calls.
//!
//! Generated code hands each function a *stage body*: a closure that runs the fused chain of narrow
//! operators (map, filter, flat_map, ...) over one input partition and pushes the results into an output
//! (a `Vec`, or a [`Combiner`] for key-based shuffles). Partitions run in parallel on the worker pool; the
//! body is monomorphized, so a chain compiles into one loop with no boxing or dynamic dispatch per record.

use crate::batch::Batch;
use crate::context::BatchContext;
use crate::output::Show;
use crate::source::TextPartition;
use rayon::prelude::*;
use std::hash::{BuildHasher, Hash};

/// The hash maps used for combining: fast, and seeded per process.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A batch's records, one `Vec` per partition.
pub type Partitions<T> = Vec<Vec<T>>;

/// Input of a stage: a set of partitions, each handed to the stage body whole.
pub trait Partitioned: Send {
    type Part: Send;
    fn into_parts(self) -> Vec<Self::Part>;
}

/// A borrowed dataset (a source's batch, or an intermediate result with several consumers).
impl<'a, P: Sync + Send> Partitioned for &'a Vec<P> {
    type Part = &'a P;
    fn into_parts(self) -> Vec<&'a P> {
        self.iter().collect()
    }
}

/// An owned intermediate result (the output of a shuffle, used once).
impl<T: Send> Partitioned for Vec<Vec<T>> {
    type Part = Vec<T>;
    fn into_parts(self) -> Vec<Vec<T>> {
        self
    }
}

/// How a stage body iterates its partition: sources are read by reference (text as `&str`), owned
/// intermediate results by value.
pub trait Records {
    type Item;
    type Iter: Iterator<Item = Self::Item>;
    fn records(self) -> Self::Iter;
}

impl<'a, T> Records for &'a Vec<T> {
    type Item = &'a T;
    type Iter = std::slice::Iter<'a, T>;
    fn records(self) -> Self::Iter {
        self.iter()
    }
}

impl<T> Records for Vec<T> {
    type Item = T;
    type Iter = std::vec::IntoIter<T>;
    fn records(self) -> Self::Iter {
        self.into_iter()
    }
}

impl<'a> Records for &'a TextPartition {
    type Item = &'a str;
    type Iter = crate::source::TextLines<'a>;
    fn records(self) -> Self::Iter {
        self.lines()
    }
}

/// The records of one partition.
#[inline(always)]
pub fn records<R: Records>(part: R) -> R::Iter {
    part.records()
}

/// The records of a partition that several consumers read: each gets its own copy.
#[inline(always)]
pub fn records_cloned<T: Clone>(part: &[T]) -> std::iter::Cloned<std::slice::Iter<'_, T>> {
    part.iter().cloned()
}

/// Splits `records` into `partitions` contiguous, nearly equal parts (always exactly `partitions`).
pub fn split_even<T>(records: Vec<T>, partitions: usize) -> Vec<Vec<T>> {
    let partitions = partitions.max(1);
    let per = records.len().div_ceil(partitions).max(1);
    let mut out: Vec<Vec<T>> = Vec::with_capacity(partitions);
    let mut iter = records.into_iter();
    for _ in 0..partitions {
        out.push(iter.by_ref().take(per).collect());
    }
    out
}

/// Map-side combiner of `reduce_by_key`: merges values per key inside one partition before the shuffle.
pub struct Combiner<'r, K, V, R> {
    map: FastMap<K, Option<V>>,
    reduce: &'r R,
}

impl<'r, K: Hash + Eq, V, R: Fn(V, V) -> V> Combiner<'r, K, V, R> {
    pub(crate) fn new(reduce: &'r R) -> Self {
        Self {
            map: FastMap::default(),
            reduce,
        }
    }

    /// Adds one `(key, value)` record.
    #[inline]
    pub fn push(&mut self, (key, value): (K, V)) {
        merge_into(&mut self.map, key, value, self.reduce);
    }

    /// The combined pairs, split into `n` shuffle buckets by key.
    pub(crate) fn into_buckets(self, n: usize) -> Partitions<(K, V)> {
        bucketize(drain_slots(self.map), n)
    }
}

/// Map-side counter of `count_by_value`: counts each record inside one partition before the shuffle.
pub struct ValueCounter<T> {
    counts: FastMap<T, u64>,
}

impl<T: Hash + Eq> ValueCounter<T> {
    /// Counts one record.
    #[inline]
    pub fn push(&mut self, record: T) {
        *self.counts.entry(record).or_insert(0) += 1;
    }
}

/// Partition-local sink of `count`: only counts.
#[derive(Default)]
pub struct Counter {
    records: u64,
}

impl Counter {
    /// Counts one record.
    #[inline]
    pub fn push<T>(&mut self, _record: T) {
        self.records += 1;
    }
}

/// Partition-local sink of `reduce`: folds records as they come.
pub struct Reducer<'r, T, R> {
    acc: Option<T>,
    reduce: &'r R,
}

impl<T, R: Fn(T, T) -> T> Reducer<'_, T, R> {
    /// Folds one record into the partition's result.
    #[inline]
    pub fn push(&mut self, record: T) {
        self.acc = Some(match self.acc.take() {
            Some(acc) => (self.reduce)(acc, record),
            None => record,
        });
    }
}

/// Merges `value` into `key`'s slot. Slots are `Option` so the old value can be moved into a by-value
/// reduce without `V: Default` or unsafe code; a slot is `None` only while `reduce` runs.
#[inline]
pub(crate) fn merge_into<K: Hash + Eq, V, R: Fn(V, V) -> V>(
    map: &mut FastMap<K, Option<V>>,
    key: K,
    value: V,
    reduce: &R,
) {
    use std::collections::hash_map::Entry;
    match map.entry(key) {
        Entry::Occupied(mut slot) => {
            let slot = slot.get_mut();
            *slot = Some(match slot.take() {
                Some(old) => reduce(old, value),
                None => value,
            });
        }
        Entry::Vacant(slot) => {
            slot.insert(Some(value));
        }
    }
}

fn drain_slots<K, V>(map: FastMap<K, Option<V>>) -> impl Iterator<Item = (K, V)> {
    map.into_iter().filter_map(|(k, v)| v.map(|v| (k, v)))
}

/// The partitioner: which of `n` partitions a key belongs to. Fixed-seeded so runs are reproducible.
#[inline]
pub fn partition_of<K: Hash>(key: &K, n: usize) -> usize {
    let hash = foldhash::fast::FixedState::with_seed(0x5eed_5eed).hash_one(key);
    // Multiply-shift maps the hash onto 0..n without the bias of `%` on small hash ranges.
    ((hash as u128 * n as u128) >> 64) as usize
}

/// Splits `(key, value)` pairs into `n` buckets by key.
pub(crate) fn bucketize<K: Hash, V>(
    pairs: impl Iterator<Item = (K, V)>,
    n: usize,
) -> Vec<Vec<(K, V)>> {
    let mut buckets: Vec<Vec<(K, V)>> = (0..n).map(|_| Vec::new()).collect();
    for (k, v) in pairs {
        let b = partition_of(&k, n);
        buckets[b].push((k, v));
    }
    buckets
}

/// Regroups map-side buckets so reducer `j` gets bucket `j` of every map partition.
pub(crate) fn transpose<T>(per_map: Vec<Vec<Vec<T>>>, n: usize) -> Vec<Vec<Vec<T>>> {
    let mut per_reducer: Vec<Vec<Vec<T>>> =
        (0..n).map(|_| Vec::with_capacity(per_map.len())).collect();
    for buckets in per_map {
        for (j, bucket) in buckets.into_iter().enumerate() {
            per_reducer[j].push(bucket);
        }
    }
    per_reducer
}

/// Final merge of `reduce_by_key` after the shuffle, one reducer per output partition.
pub(crate) fn reduce_buckets<K, V, R>(
    per_reducer: Vec<Vec<Vec<(K, V)>>>,
    reduce: &R,
) -> Partitions<(K, V)>
where
    K: Hash + Eq + Send,
    V: Send,
    R: Fn(V, V) -> V + Sync,
{
    per_reducer
        .into_par_iter()
        .map(|buckets| {
            let mut buckets = buckets.into_iter();
            let Some(first) = buckets.next() else {
                return Vec::new();
            };
            let rest: Vec<_> = buckets.collect();
            if rest.iter().all(Vec::is_empty) {
                // Keys are already unique within one map partition's bucket.
                return first;
            }
            let capacity = first
                .len()
                .max(rest.iter().map(Vec::len).max().unwrap_or(0));
            let mut map: FastMap<K, Option<V>> =
                FastMap::with_capacity_and_hasher(capacity, Default::default());
            for (k, v) in first.into_iter().chain(rest.into_iter().flatten()) {
                merge_into(&mut map, k, v, reduce);
            }
            drain_slots(map).collect()
        })
        .collect()
}

/// Runs `body` over every partition, collecting what it pushes: the materialization of a stream.
pub fn collect<D, T, B>(_ctx: &BatchContext<'_>, data: D, body: B) -> Partitions<T>
where
    D: Partitioned,
    T: Send,
    B: Fn(D::Part, &mut Vec<T>) + Sync + Send,
{
    data.into_parts()
        .into_par_iter()
        .map(|part| {
            let mut out = Vec::new();
            body(part, &mut out);
            out
        })
        .collect()
}

/// `reduce_by_key`: map-side combine, hash shuffle into `workers` partitions, final merge.
pub fn reduce_by_key<D, K, V, B, R>(
    ctx: &BatchContext<'_>,
    data: D,
    body: B,
    reduce: R,
) -> Partitions<(K, V)>
where
    D: Partitioned,
    K: Hash + Eq + Send,
    V: Send,
    B: for<'c> Fn(D::Part, &mut Combiner<'c, K, V, R>) + Sync + Send,
    R: Fn(V, V) -> V + Sync + Send,
{
    combine_shuffle(ctx, data, body, &reduce)
}

/// The body of `reduce_by_key`, for operators that go on using `reduce` afterwards (windows).
pub(crate) fn combine_shuffle<D, K, V, B, R>(
    ctx: &BatchContext<'_>,
    data: D,
    body: B,
    reduce: &R,
) -> Partitions<(K, V)>
where
    D: Partitioned,
    K: Hash + Eq + Send,
    V: Send,
    B: for<'c> Fn(D::Part, &mut Combiner<'c, K, V, R>) + Sync + Send,
    R: Fn(V, V) -> V + Sync + Send,
{
    let n = ctx.workers;
    let per_map: Vec<Partitions<(K, V)>> = data
        .into_parts()
        .into_par_iter()
        .map(|part| {
            let mut combiner = Combiner::new(reduce);
            body(part, &mut combiner);
            combiner.into_buckets(n)
        })
        .collect();
    reduce_buckets(transpose(per_map, n), reduce)
}

/// `count_by_value`: how often each record occurs in the batch.
pub fn count_by_value<D, T, B>(ctx: &BatchContext<'_>, data: D, body: B) -> Partitions<(T, u64)>
where
    D: Partitioned,
    T: Hash + Eq + Send,
    B: Fn(D::Part, &mut ValueCounter<T>) + Sync + Send,
{
    let n = ctx.workers;
    let per_map: Vec<Partitions<(T, u64)>> = data
        .into_parts()
        .into_par_iter()
        .map(|part| {
            let mut counter = ValueCounter {
                counts: FastMap::default(),
            };
            body(part, &mut counter);
            bucketize(counter.counts.into_iter(), n)
        })
        .collect();
    reduce_buckets(transpose(per_map, n), &|a: u64, b: u64| a + b)
}

/// Partitions `(key, value)` records by key into `workers` partitions (the shuffle of group and join).
pub(crate) fn shuffle_by_key<D, K, V, B>(
    ctx: &BatchContext<'_>,
    data: D,
    body: B,
) -> Partitions<Vec<(K, V)>>
where
    D: Partitioned,
    K: Hash + Send,
    V: Send,
    B: Fn(D::Part, &mut Vec<(K, V)>) + Sync + Send,
{
    let n = ctx.workers;
    let per_map: Vec<Vec<Vec<(K, V)>>> = data
        .into_parts()
        .into_par_iter()
        .map(|part| {
            let mut out = Vec::new();
            body(part, &mut out);
            bucketize(out.into_iter(), n)
        })
        .collect();
    transpose(per_map, n)
}

/// `group_by_key`: all values of each key, in arrival order within a partition.
pub fn group_by_key<D, K, V, B>(ctx: &BatchContext<'_>, data: D, body: B) -> Partitions<(K, Vec<V>)>
where
    D: Partitioned,
    K: Hash + Eq + Send,
    V: Send,
    B: Fn(D::Part, &mut Vec<(K, V)>) + Sync + Send,
{
    group_buckets(shuffle_by_key(ctx, data, body))
}

pub(crate) fn group_buckets<K: Hash + Eq + Send, V: Send>(
    per_reducer: Vec<Vec<Vec<(K, V)>>>,
) -> Vec<Vec<(K, Vec<V>)>> {
    per_reducer
        .into_par_iter()
        .map(|buckets| {
            let mut groups: FastMap<K, Vec<V>> = FastMap::default();
            for (k, v) in buckets.into_iter().flatten() {
                groups.entry(k).or_default().push(v);
            }
            groups.into_iter().collect()
        })
        .collect()
}

/// `join` of two keyed streams: every pair of values with equal keys.
pub fn join<DL, BL, DR, BR, K, V, W>(
    ctx: &BatchContext<'_>,
    left: DL,
    left_body: BL,
    right: DR,
    right_body: BR,
) -> Partitions<(K, (V, W))>
where
    DL: Partitioned,
    DR: Partitioned,
    K: Hash + Eq + Clone + Send + Sync,
    V: Clone + Send,
    W: Clone + Send + Sync,
    BL: Fn(DL::Part, &mut Vec<(K, V)>) + Sync + Send,
    BR: Fn(DR::Part, &mut Vec<(K, W)>) + Sync + Send,
{
    let (l, r) = rayon::join(
        || shuffle_by_key(ctx, left, left_body),
        || shuffle_by_key(ctx, right, right_body),
    );
    join_buckets(l, r, |k, v, ws, out| {
        for w in ws {
            out.push((k.clone(), (v.clone(), w.clone())));
        }
    })
}

/// `left_outer_join`: every left record, with each matching right value or `None`.
pub fn left_outer_join<DL, BL, DR, BR, K, V, W>(
    ctx: &BatchContext<'_>,
    left: DL,
    left_body: BL,
    right: DR,
    right_body: BR,
) -> Partitions<(K, (V, Option<W>))>
where
    DL: Partitioned,
    DR: Partitioned,
    K: Hash + Eq + Clone + Send + Sync,
    V: Clone + Send,
    W: Clone + Send + Sync,
    BL: Fn(DL::Part, &mut Vec<(K, V)>) + Sync + Send,
    BR: Fn(DR::Part, &mut Vec<(K, W)>) + Sync + Send,
{
    let (l, r) = rayon::join(
        || shuffle_by_key(ctx, left, left_body),
        || shuffle_by_key(ctx, right, right_body),
    );
    join_buckets(l, r, left_outer_emit)
}

pub(crate) fn left_outer_emit<K: Clone, V: Clone, W: Clone>(
    k: K,
    v: V,
    ws: &[W],
    out: &mut Vec<(K, (V, Option<W>))>,
) {
    match ws {
        [] => out.push((k, (v, None))),
        [w] => out.push((k, (v, Some(w.clone())))),
        many => {
            for w in many {
                out.push((k.clone(), (v.clone(), Some(w.clone()))));
            }
        }
    }
}

/// Joins reducer `j` of the left side with reducer `j` of the right side.
pub(crate) fn join_buckets<K, V, W, O, E>(
    left: Vec<Vec<Vec<(K, V)>>>,
    right: Vec<Vec<Vec<(K, W)>>>,
    emit: E,
) -> Partitions<O>
where
    K: Hash + Eq + Send,
    V: Send,
    W: Send,
    O: Send,
    E: Fn(K, V, &[W], &mut Vec<O>) + Sync,
{
    left.into_par_iter()
        .zip(right.into_par_iter())
        .map(|(left_buckets, right_buckets)| {
            let mut table: FastMap<K, Vec<W>> = FastMap::default();
            for (k, w) in right_buckets.into_iter().flatten() {
                table.entry(k).or_default().push(w);
            }
            let mut out = Vec::new();
            for (k, v) in left_buckets.into_iter().flatten() {
                let ws = table.get(&k).map(Vec::as_slice).unwrap_or(&[]);
                emit(k, v, ws, &mut out);
            }
            out
        })
        .collect()
}

/// `count`: a stream with one record, the number of records in the batch.
pub fn count<D, B>(_ctx: &BatchContext<'_>, data: D, body: B) -> Partitions<u64>
where
    D: Partitioned,
    B: Fn(D::Part, &mut Counter) + Sync + Send,
{
    let total: u64 = data
        .into_parts()
        .into_par_iter()
        .map(|part| {
            let mut counter = Counter::default();
            body(part, &mut counter);
            counter.records
        })
        .sum();
    vec![vec![total]]
}

/// `reduce`: a stream with one record (none for an empty batch), all records combined with `f`.
pub fn reduce<D, T, B, R>(_ctx: &BatchContext<'_>, data: D, body: B, f: R) -> Partitions<T>
where
    D: Partitioned,
    T: Send,
    B: for<'r> Fn(D::Part, &mut Reducer<'r, T, R>) + Sync + Send,
    R: Fn(T, T) -> T + Sync + Send,
{
    let partial: Vec<T> = data
        .into_parts()
        .into_par_iter()
        .filter_map(|part| {
            let mut reducer = Reducer {
                acc: None,
                reduce: &f,
            };
            body(part, &mut reducer);
            reducer.acc
        })
        .collect();
    vec![partial.into_iter().reduce(&f).into_iter().collect()]
}

/// `repartition(n)`: spreads records round-robin over `n` partitions.
pub fn repartition<D, T, B>(ctx: &BatchContext<'_>, data: D, body: B, n: usize) -> Partitions<T>
where
    D: Partitioned,
    T: Send,
    B: Fn(D::Part, &mut Vec<T>) + Sync + Send,
{
    let n = n.max(1);
    let mut out: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
    let mut next = 0usize;
    for part in collect(ctx, data, body) {
        for record in part {
            out[next].push(record);
            next = (next + 1) % n;
        }
    }
    out
}

/// `union`: the records of both streams, partitions side by side.
pub fn union<DA, BA, DB, BB, T>(
    ctx: &BatchContext<'_>,
    a: DA,
    a_body: BA,
    b: DB,
    b_body: BB,
) -> Partitions<T>
where
    DA: Partitioned,
    DB: Partitioned,
    T: Send,
    BA: Fn(DA::Part, &mut Vec<T>) + Sync + Send,
    BB: Fn(DB::Part, &mut Vec<T>) + Sync + Send,
{
    let (mut left, right) = rayon::join(|| collect(ctx, a, a_body), || collect(ctx, b, b_body));
    left.extend(right);
    left
}

/// `transform`: hands the whole batch to `f`, which returns the new batch.
pub fn transform<D, T, U, B, F>(ctx: &BatchContext<'_>, data: D, body: B, f: F) -> Partitions<U>
where
    D: Partitioned,
    T: Send,
    B: Fn(D::Part, &mut Vec<T>) + Sync + Send,
    F: FnOnce(Batch<T>) -> Batch<U>,
{
    if ctx.dry_run {
        return Vec::new();
    }
    let batch = Batch::in_context(collect(ctx, data, body), ctx);
    f(batch).into_partitions()
}

/// What an output operation comes to: done, or the batch could not be written (which stops the app).
pub type OutputResult = Result<(), crate::sink::OutputFailed>;

/// `print(n)`: the first `n` records, in Spark's format.
pub fn print<D, T, B>(ctx: &BatchContext<'_>, data: D, body: B, n: usize) -> OutputResult
where
    D: Partitioned,
    T: Send + Show,
    B: Fn(D::Part, &mut Vec<T>) + Sync + Send,
{
    if ctx.dry_run {
        return Ok(());
    }
    let parts = collect(ctx, data, body);
    ctx.print(parts.iter().flatten(), n);
    Ok(())
}

/// `foreach_batch`: hands the batch and its time to user code.
pub fn foreach_batch<D, T, B, F>(ctx: &BatchContext<'_>, data: D, body: B, f: F) -> OutputResult
where
    D: Partitioned,
    T: Send,
    B: Fn(D::Part, &mut Vec<T>) + Sync + Send,
    F: FnOnce(Batch<T>, crate::Time),
{
    if ctx.dry_run {
        return Ok(());
    }
    let batch = Batch::in_context(collect(ctx, data, body), ctx);
    f(batch, ctx.time);
    Ok(())
}

/// `save_as_text_files(prefix, suffix)`: Spark's layout — each batch becomes the directory
/// `prefix-<batch time in ms>[.suffix]` with one `part-NNNNN` file per partition, one record per line
/// as `print` shows it. The directory is written under a temporary name and renamed, so readers never
/// see a partial batch; a batch run again after a crash replaces its directory with the same content.
pub fn save_as_text_files<D, T, B>(
    ctx: &BatchContext<'_>,
    data: D,
    body: B,
    prefix: impl AsRef<str>,
    suffix: impl AsRef<str>,
) -> OutputResult
where
    D: Partitioned,
    T: Send + Show,
    B: Fn(D::Part, &mut Vec<T>) + Sync + Send,
{
    if ctx.dry_run {
        return Ok(());
    }
    let parts = collect(ctx, data, body);
    let (prefix, suffix) = (prefix.as_ref(), suffix.as_ref());
    let name = if suffix.is_empty() {
        format!("{prefix}-{}", ctx.time.millis())
    } else {
        format!("{prefix}-{}.{suffix}", ctx.time.millis())
    };
    // A batch whose output cannot be written (after retries) stops the app, and says why.
    crate::sink::write_whole_batch(ctx, prefix, |_, stats| {
        crate::output::write_batch_dir(std::path::Path::new(&name), &parts).map_err(|e| {
            crate::sink::SinkError::Unavailable(format!("cannot write {name}: {e}"))
        })?;
        let records = parts.iter().map(Vec::len).sum::<usize>() as u64;
        stats
            .records
            .fetch_add(records, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    })
}

/// `foreach_partition(connect, |resource, partition| ...)`: hands each partition, with its batch time
/// and index, to user code along with a resource (a connection) from a pool that `connect` fills on
/// the workers when first needed and that later partitions and batches reuse. An `Err` is retried
/// under the app's policy with a fresh resource; when the policy gives up, the app stops.
pub fn foreach_partition<D, T, B, R, C, CE, F, E>(
    ctx: &BatchContext<'_>,
    data: D,
    body: B,
    output: &'static str,
    connect: C,
    f: F,
) -> OutputResult
where
    D: Partitioned,
    T: Send + Sync,
    B: Fn(D::Part, &mut Vec<T>) + Sync + Send,
    R: Send + 'static,
    C: Fn() -> Result<R, CE> + Send + Sync + 'static,
    CE: std::fmt::Display,
    F: Fn(&mut R, &crate::sink::BatchPartition<T>) -> Result<(), E> + Sync + Send,
    E: std::fmt::Display,
{
    use crate::sink::{BatchPartition, OutputFailed, ResourcePool, SinkError};
    if ctx.dry_run {
        return Ok(());
    }
    let parts = collect(ctx, data, body);
    let settings = ctx.sink_settings();
    let idle = settings.idle_timeout;
    let pool = ctx
        .sinks()
        .get_or_open(output, || {
            Ok(ResourcePool::new(idle, move || {
                connect().map_err(|e| e.to_string())
            }))
        })
        .map_err(|e| OutputFailed::new(output, e))?;
    pool.close_idle();
    crate::sink::write_partitions(
        ctx,
        output,
        parts,
        |id, records| Ok(BatchPartition { id, records }),
        |_, part, stats| {
            pool.with(|resource| f(resource, part))
                .map_err(|e| SinkError::Unavailable(e.to_string()))?;
            stats
                .records
                .fetch_add(part.len() as u64, std::sync::atomic::Ordering::Relaxed);
            Ok(true)
        },
    )
}

/// `save_to_rolling_files(RollingFiles::new(dir)...)`: appends each batch, once, to a file rolled by
/// size or age (see [`crate::sink::rolling`]).
pub fn save_to_rolling_files<D, T, B>(
    ctx: &BatchContext<'_>,
    data: D,
    body: B,
    spec: crate::sink::RollingFiles,
) -> OutputResult
where
    D: Partitioned,
    T: Send + Show,
    B: Fn(D::Part, &mut Vec<T>) + Sync + Send,
{
    use crate::sink::{rolling::RollingSink, OutputFailed};
    if ctx.dry_run {
        return Ok(());
    }
    let parts = collect(ctx, data, body);
    let name = spec.name();
    let dir = ctx
        .sink_settings()
        .url(&name, &spec.dir().display().to_string());
    let spec = spec.with_dir(dir);
    let sink = ctx
        .sinks()
        .get_or_open(&name, || RollingSink::open(spec))
        .map_err(|e| OutputFailed::new(&name, e))?;
    crate::sink::write_whole_batch(ctx, &name, |at, stats| sink.write(at, &parts, stats))
}

/// `save_to_sql(url, table)`: each batch partition in one transaction, exactly once (see
/// [`crate::sink::sql`]).
#[cfg(feature = "sql")]
pub fn save_to_sql<D, T, B>(
    ctx: &BatchContext<'_>,
    data: D,
    body: B,
    url: impl AsRef<str>,
    table: crate::sink::sql::SqlTable,
) -> OutputResult
where
    D: Partitioned,
    T: Send + crate::sink::sql::IntoRow,
    B: Fn(D::Part, &mut Vec<T>) + Sync + Send,
{
    if ctx.dry_run {
        return Ok(());
    }
    let parts = collect(ctx, data, body);
    crate::sink::sql::write_batch(ctx, url.as_ref(), table, parts)
}

/// `save_to_kafka(brokers, topic)`: each record a message with batch headers, at least once or, with
/// `KafkaTopic::transactional()`, exactly once for `read_committed` readers (see
/// [`crate::sink::kafka`]).
#[cfg(feature = "kafka")]
pub fn save_to_kafka<D, T, B>(
    ctx: &BatchContext<'_>,
    data: D,
    body: B,
    brokers: impl AsRef<str>,
    topic: crate::sink::kafka::KafkaTopic,
) -> OutputResult
where
    D: Partitioned,
    T: Send + Sync + crate::sink::kafka::KafkaMessage,
    B: Fn(D::Part, &mut Vec<T>) + Sync + Send,
{
    if ctx.dry_run {
        return Ok(());
    }
    let parts = collect(ctx, data, body);
    crate::sink::kafka::write_batch(ctx, brokers.as_ref(), topic, parts)
}

/// `collect()`: keeps each batch's records for the test driver or the embedding program.
pub fn collect_output<D, T, B>(
    ctx: &BatchContext<'_>,
    data: D,
    body: B,
    output: &'static str,
) -> OutputResult
where
    D: Partitioned,
    T: Send + 'static,
    B: Fn(D::Part, &mut Vec<T>) + Sync + Send,
{
    if ctx.dry_run {
        return Ok(());
    }
    let records: Vec<T> = collect(ctx, data, body).into_iter().flatten().collect();
    ctx.collect(output, records);
    Ok(())
}

/// Helpers that give each user closure its argument type (closure arguments are type-checked after the
/// others, so `|w| w.len()` infers `w` from the record), kept out of the per-record loop's way by inlining.
pub mod op {
    #[inline(always)]
    pub fn map<A, B>(record: A, f: impl FnOnce(A) -> B) -> B {
        f(record)
    }

    #[inline(always)]
    pub fn flat_map<A, I: IntoIterator>(record: A, f: impl FnOnce(A) -> I) -> I::IntoIter {
        f(record).into_iter()
    }

    #[inline(always)]
    pub fn filter<A>(record: &A, f: impl FnOnce(&A) -> bool) -> bool {
        f(record)
    }

    #[inline(always)]
    pub fn map_values<K, V, W>((key, value): (K, V), f: impl FnOnce(V) -> W) -> (K, W) {
        (key, f(value))
    }

    #[inline(always)]
    pub fn flat_map_values<V, I: IntoIterator>(value: V, f: impl FnOnce(V) -> I) -> I::IntoIter {
        f(value).into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_even_returns_exactly_n_parts() {
        let parts = split_even((0..10).collect::<Vec<_>>(), 3);
        assert_eq!(
            parts.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        assert_eq!(split_even(Vec::<u8>::new(), 2).len(), 2);
    }

    #[test]
    fn partitioner_stays_in_range_and_spreads() {
        let mut seen = [0usize; 4];
        for i in 0..10_000u32 {
            seen[partition_of(&i, 4)] += 1;
        }
        assert!(seen.iter().all(|&c| c > 2_000), "{seen:?}");
    }
}
