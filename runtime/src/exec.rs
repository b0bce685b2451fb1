//! Parallel execution of one batch: the functions generated code calls.
//!
//! Generated code hands each function a *stage body*: a closure that runs the fused chain of narrow
//! operators (map, filter, flat_map, ...) over one input partition and pushes the results into an output
//! (a `Vec`, or a [`Combiner`] for key-based shuffles). Partitions run in parallel on the worker pool; the
//! body is monomorphized, so a chain compiles into one loop with no boxing or dynamic dispatch per record.

use crate::batch::Batch;
use crate::context::BatchContext;
use crate::output::Show;
use rayon::prelude::*;
use std::hash::Hash;

pub(crate) use crate::shuffle::{
    bucketize, cogroup_buckets, join_buckets, merge_groups, merge_into, reduce_buckets, transpose,
};
pub use crate::shuffle::{
    cogroup_emit, full_outer_emit, inner_emit, left_outer_emit, partition_of, records,
    records_cloned, right_outer_emit, split_even, Combiner, Counter, DisplayKey, FastMap, Grouper,
    KeyText, KeyedTable, Partitioned, Partitions, Records, Reducer, TextKey, ValueCounter,
};

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

/// Groups `(key, value)` records by key: map-side groups, hash shuffle into `workers` partitions,
/// merged per reducer.
pub(crate) fn group_shuffle<D, K, V, B>(
    ctx: &BatchContext<'_>,
    data: D,
    body: B,
) -> Vec<FastMap<K, Vec<V>>>
where
    D: Partitioned,
    K: Hash + Eq + Send,
    V: Send,
    B: Fn(D::Part, &mut Grouper<K, V>) + Sync + Send,
{
    let n = ctx.workers;
    let per_map: Vec<Partitions<(K, Vec<V>)>> = data
        .into_parts()
        .into_par_iter()
        .map(|part| {
            let mut grouper = Grouper::new();
            body(part, &mut grouper);
            grouper.into_buckets(n)
        })
        .collect();
    merge_groups(transpose(per_map, n))
}

/// `group_by_key`: all values of each key, in arrival order within a partition.
pub fn group_by_key<D, K, V, B>(ctx: &BatchContext<'_>, data: D, body: B) -> Partitions<(K, Vec<V>)>
where
    D: Partitioned,
    K: Hash + Eq + Send,
    V: Send,
    B: Fn(D::Part, &mut Grouper<K, V>) + Sync + Send,
{
    group_shuffle(ctx, data, body)
        .into_par_iter()
        .map(|groups| groups.into_iter().collect())
        .collect()
}

/// `join` (with [`inner_emit`]) and `left_outer_join` (with [`left_outer_emit`]) of two keyed
/// streams: both shuffled by key, then each left record emitted with the right values of its key.
pub fn join_with<DL, BL, DR, BR, K, V, W, O, E>(
    ctx: &BatchContext<'_>,
    left: DL,
    left_body: BL,
    right: DR,
    right_body: BR,
    emit: E,
) -> Partitions<O>
where
    DL: Partitioned,
    DR: Partitioned,
    K: Hash + Eq + Clone + Send + Sync,
    V: Clone + Send,
    W: Clone + Send + Sync,
    O: Send,
    BL: Fn(DL::Part, &mut Vec<(K, V)>) + Sync + Send,
    BR: Fn(DR::Part, &mut Vec<(K, W)>) + Sync + Send,
    E: Fn(K, V, &[W], &mut Vec<O>) + Sync,
{
    let (l, r) = rayon::join(
        || shuffle_by_key(ctx, left, left_body),
        || shuffle_by_key(ctx, right, right_body),
    );
    join_buckets(l, r, emit)
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

/// `right_outer_join`, `full_outer_join` and `cogroup`: both streams partitioned by key, each key's
/// values on both sides handed to `emit`.
pub fn cogroup_with<DL, BL, DR, BR, K, V, W, O, E>(
    ctx: &BatchContext<'_>,
    left: DL,
    left_body: BL,
    right: DR,
    right_body: BR,
    emit: E,
) -> Partitions<O>
where
    DL: Partitioned,
    DR: Partitioned,
    K: Hash + Eq + Clone + Send,
    V: Send,
    W: Send,
    O: Send,
    BL: Fn(DL::Part, &mut Vec<(K, V)>) + Sync + Send,
    BR: Fn(DR::Part, &mut Vec<(K, W)>) + Sync + Send,
    E: Fn(K, Vec<V>, Vec<W>, &mut Vec<O>) + Sync,
{
    let (l, r) = rayon::join(
        || shuffle_by_key(ctx, left, left_body),
        || shuffle_by_key(ctx, right, right_body),
    );
    cogroup_buckets(l, r, emit)
}

/// `combine_by_key`: per partition a combiner per key (`create` for its first value, `merge_value`
/// for the next), shuffled by key, merged with `merge_combiners`.
pub fn combine_by_key<D, K, V, C, B, F, M, N>(
    ctx: &BatchContext<'_>,
    data: D,
    body: B,
    create: F,
    merge_value: M,
    merge_combiners: N,
) -> Partitions<(K, C)>
where
    D: Partitioned,
    K: Hash + Eq + Send,
    V: Send,
    C: Send,
    B: Fn(D::Part, &mut Vec<(K, V)>) + Sync + Send,
    F: Fn(V) -> C + Sync + Send,
    M: Fn(C, V) -> C + Sync + Send,
    N: Fn(C, C) -> C + Sync + Send,
{
    let pairs = data.into_parts().into_par_iter().map(|part| {
        let mut pairs = Vec::new();
        body(part, &mut pairs);
        pairs
    });
    crate::batch::combine_parts(pairs, ctx.workers, &create, &merge_value, &merge_combiners)
}

/// `transform_with`: hands this batch of both streams to `f` (Spark's `transformWith`).
pub fn transform_with<DA, BA, DB, BB, T, U, O, F>(
    ctx: &BatchContext<'_>,
    a: DA,
    a_body: BA,
    b: DB,
    b_body: BB,
    f: F,
) -> Partitions<O>
where
    DA: Partitioned,
    DB: Partitioned,
    T: Send,
    U: Send,
    O: Send,
    BA: Fn(DA::Part, &mut Vec<T>) + Sync + Send,
    BB: Fn(DB::Part, &mut Vec<U>) + Sync + Send,
    F: FnOnce(Batch<T>, Batch<U>) -> Batch<O>,
{
    if ctx.dry_run {
        return Vec::new();
    }
    let (left, right) = rayon::join(|| collect(ctx, a, a_body), || collect(ctx, b, b_body));
    f(Batch::in_context(left, ctx), Batch::in_context(right, ctx)).into_partitions()
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

pub use crate::sink::OutputResult;

/// An output's records, or `None` in the dry run that checks restored state: outputs write nothing
/// then.
fn output_parts<D, T, B>(ctx: &BatchContext<'_>, data: D, body: B) -> Option<Partitions<T>>
where
    D: Partitioned,
    T: Send,
    B: Fn(D::Part, &mut Vec<T>) + Sync + Send,
{
    (!ctx.dry_run).then(|| collect(ctx, data, body))
}

/// `print(n)`: the first `n` records, in Spark's format.
pub fn print<D, T, B>(ctx: &BatchContext<'_>, data: D, body: B, n: usize) -> OutputResult
where
    D: Partitioned,
    T: Send + Show,
    B: Fn(D::Part, &mut Vec<T>) + Sync + Send,
{
    let Some(parts) = output_parts(ctx, data, body) else {
        return Ok(());
    };
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
    let Some(parts) = output_parts(ctx, data, body) else {
        return Ok(());
    };
    let batch = Batch::in_context(parts, ctx);
    f(batch, ctx.time);
    Ok(())
}

/// `save_as_text_files(prefix, suffix)`: Spark's layout — each batch becomes the directory
/// `prefix-<batch time in ms>[.suffix]` with one `part-NNNNN` file per partition, one record per line
/// as `print` shows it. The directory is written under a temporary name and renamed, so readers never
/// see a partial batch; a batch run again after a crash replaces its directory with the same content.
/// On an object store (`s3://bucket/out/counts`) each part is one object, and `_SUCCESS` marks the
/// batch complete, as Hadoop's committers do.
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
    let Some(parts) = output_parts(ctx, data, body) else {
        return Ok(());
    };
    let (prefix, suffix) = (prefix.as_ref(), suffix.as_ref());
    let name = if suffix.is_empty() {
        format!("{prefix}-{}", ctx.time.millis())
    } else {
        format!("{prefix}-{}.{suffix}", ctx.time.millis())
    };
    // A batch whose output cannot be written (after retries) stops the app, and says why.
    let env = ctx.sink_env();
    crate::sink::write_whole_batch(&env, prefix, |_, stats| {
        crate::output::write_batch_at(&name, &parts, &env.settings.storage).map_err(
            |e| match e {
                crate::output::BatchWriteError::BadLocation(e) => crate::sink::SinkError::Fatal(e),
                crate::output::BatchWriteError::Unavailable(e) => {
                    crate::sink::SinkError::Unavailable(e)
                }
            },
        )?;
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
    let Some(parts) = output_parts(ctx, data, body) else {
        return Ok(());
    };
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
        &ctx.sink_env(),
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

/// `save_to_rolling_files`, `save_to_sql`, `save_to_kafka`, and any other sink: each batch written
/// to `destination` by its connector (see [`crate::sink::BatchDestination`]).
pub fn save_to<D, T, B, S>(ctx: &BatchContext<'_>, data: D, body: B, destination: S) -> OutputResult
where
    D: Partitioned,
    T: Send,
    B: Fn(D::Part, &mut Vec<T>) + Sync + Send,
    S: crate::sink::BatchDestination<T>,
{
    let Some(parts) = output_parts(ctx, data, body) else {
        return Ok(());
    };
    destination.write_batch(&ctx.sink_env(), parts)
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
    let Some(parts) = output_parts(ctx, data, body) else {
        return Ok(());
    };
    let records: Vec<T> = parts.into_iter().flatten().collect();
    ctx.collect(output, records);
    Ok(())
}

/// Helpers that give each user closure its argument type (closure arguments are type-checked after the
/// others, so `|w| w.len()` infers `w` from the record), kept out of the per-record loop's way by inlining.
pub mod op {
    /// `map(f)` on one record. Taking the record as an argument types `f`'s parameter, so the
    /// closure needs no annotation.
    #[inline(always)]
    pub fn map<A, B>(record: A, f: impl FnOnce(A) -> B) -> B {
        f(record)
    }

    /// `flat_map(f)` on one record: the items `f` returns, as an iterator for the fused loop.
    #[inline(always)]
    pub fn flat_map<A, I: IntoIterator>(record: A, f: impl FnOnce(A) -> I) -> I::IntoIter {
        f(record).into_iter()
    }

    /// `filter(f)` on one record: whether it is kept. `f` sees the record by reference.
    #[inline(always)]
    pub fn filter<A>(record: &A, f: impl FnOnce(&A) -> bool) -> bool {
        f(record)
    }

    /// `map_values(f)` on one `(key, value)` record: the key is kept and `f` maps the value.
    #[inline(always)]
    pub fn map_values<K, V, W>((key, value): (K, V), f: impl FnOnce(V) -> W) -> (K, W) {
        (key, f(value))
    }

    /// `flat_map_values(f)` on the value of one `(key, value)` record: the new values, which the
    /// generated code pairs each with a clone of the key.
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
