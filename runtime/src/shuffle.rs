//! The kernels every layer above shares: partition types, key hashing, map-side combining and the
//! bucket shuffles behind `reduce_by_key`, `group_by_key` and joins. A leaf: it names no other module.

use rayon::prelude::*;
use std::hash::{BuildHasher, Hash};

/// The hash maps used for combining: fast, and seeded per process.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A batch's records, one `Vec` per partition.
pub type Partitions<T> = Vec<Vec<T>>;

/// Input of a stage: a set of partitions, each handed to the stage body whole.
pub trait Partitioned: Send {
    /// What the stage body receives for one partition: a reference for borrowed data, the `Vec`
    /// itself for owned.
    type Part: Send;
    /// The partitions, in partition order: one stage-body call each.
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
    /// What the body gets for each record: a reference (`&str` for text) when the partition is
    /// borrowed, the record itself when owned.
    type Item;
    /// The iterator over one partition's records.
    type Iter: Iterator<Item = Self::Item>;
    /// Iterates the partition's records.
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
    pub(crate) map: FastMap<K, Option<V>>,
    pub(crate) reduce: &'r R,
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

/// Map-side grouper of `group_by_key` and `update_state_by_key`: gathers each key's values inside one
/// partition before the shuffle, so a key crosses it once per partition instead of once per record
/// and a repeated owned key is dropped at once rather than held until the reducer. Values keep their
/// arrival order within the partition.
///
/// Records are staged flat (the key's index, the value) and moved into their keys' groups a few
/// thousand at a time: the loop that hashes keys then only appends to one small buffer, which keeps
/// the hash table and its keys in cache, where appending to a vector per key as each record comes
/// would scatter writes over the heap and evict them (about 2x slower on a word count); and each
/// value is held once, in its group, rather than in a log of the whole batch as well.
pub struct Grouper<K, V> {
    pub(crate) index: FastMap<K, u32>,
    /// Each key's values so far, by key index.
    groups: Vec<Vec<V>>,
    /// Records not yet moved into their groups, in arrival order.
    staged: Vec<(u32, V)>,
}

/// Records staged before they are moved into their groups (64 KiB of `(u32, u64)`).
const STAGED: usize = 4096;

impl<K: Hash + Eq, V> Grouper<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            index: FastMap::default(),
            groups: Vec::new(),
            staged: Vec::new(),
        }
    }

    /// Adds one `(key, value)` record.
    #[inline(always)]
    pub fn push(&mut self, (key, value): (K, V)) {
        let next = self.index.len() as u32;
        let at = *self.index.entry(key).or_insert(next);
        self.stage(at, next, value);
    }

    #[inline(always)]
    fn stage(&mut self, at: u32, next: u32, value: V) {
        if at == next {
            self.groups.push(Vec::new());
        }
        if self.staged.len() == STAGED {
            self.flush();
        }
        self.staged.push((at, value));
    }

    fn flush(&mut self) {
        for (at, value) in self.staged.drain(..) {
            self.groups[at as usize].push(value);
        }
    }

    /// The groups, split into `n` shuffle buckets by key.
    pub(crate) fn into_buckets(mut self, n: usize) -> Partitions<(K, Vec<V>)> {
        self.flush();
        let mut groups = self.groups;
        bucketize(
            self.index
                .into_iter()
                .map(|(key, at)| (key, std::mem::take(&mut groups[at as usize]))),
            n,
        )
    }
}

/// A per-partition table of `(String, value)` records that can find a key by its text: the
/// generated code for `map(|w| (w.to_string(), v))` ending a keyed stage pushes through it, so a
/// key is owned only the first time the partition sees it (see [`KeyText`]).
pub trait KeyedTable<V> {
    /// Adds a record whose key is owned already.
    fn push_owned(&mut self, key: String, value: V);
    /// Adds a record whose key is `key.to_owned()`, owning it only if the table has no such key.
    fn push_text(&mut self, key: &str, value: V);
}

impl<V, R: Fn(V, V) -> V> KeyedTable<V> for Combiner<'_, String, V, R> {
    #[inline]
    fn push_owned(&mut self, key: String, value: V) {
        self.push((key, value));
    }

    #[inline]
    fn push_text(&mut self, key: &str, value: V) {
        match self.map.get_mut(key) {
            Some(slot) => {
                *slot = Some(match slot.take() {
                    Some(old) => (self.reduce)(old, value),
                    None => value,
                });
            }
            None => {
                self.map.insert(key.to_owned(), Some(value));
            }
        }
    }
}

impl<V> KeyedTable<V> for Grouper<String, V> {
    #[inline]
    fn push_owned(&mut self, key: String, value: V) {
        self.push((key, value));
    }

    #[inline(always)]
    fn push_text(&mut self, key: &str, value: V) {
        let next = self.index.len() as u32;
        let at = match self.index.get(key) {
            Some(&at) => at,
            None => {
                self.index.insert(key.to_owned(), next);
                next
            }
        };
        self.stage(at, next, value);
    }
}

/// A key the user's code turns into a `String` with `to_string()`. Generated code calls
/// `(&KeyText(key)).push_keyed(table, value)` with both [`TextKey`] and [`DisplayKey`] in scope:
/// method resolution picks `TextKey` when the key is text (looked up borrowed) and falls back to
/// `DisplayKey` (`to_string()`, as written) for any other type.
pub struct KeyText<T>(pub T);

/// Pushing a text key without owning it first (see [`KeyText`]).
pub trait TextKey {
    /// Adds `(key, value)` to `table`, the key looked up by its text.
    fn push_keyed<V, O: KeyedTable<V>>(&self, table: &mut O, value: V);
}

impl TextKey for KeyText<&str> {
    #[inline(always)]
    fn push_keyed<V, O: KeyedTable<V>>(&self, table: &mut O, value: V) {
        table.push_text(self.0, value);
    }
}

impl TextKey for KeyText<&&str> {
    #[inline(always)]
    fn push_keyed<V, O: KeyedTable<V>>(&self, table: &mut O, value: V) {
        table.push_text(self.0, value);
    }
}

impl TextKey for KeyText<&String> {
    #[inline(always)]
    fn push_keyed<V, O: KeyedTable<V>>(&self, table: &mut O, value: V) {
        table.push_text(self.0, value);
    }
}

impl TextKey for KeyText<String> {
    #[inline(always)]
    fn push_keyed<V, O: KeyedTable<V>>(&self, table: &mut O, value: V) {
        table.push_text(&self.0, value);
    }
}

/// Pushing any other key as written: owned by `to_string()` (see [`KeyText`]).
pub trait DisplayKey {
    /// Adds `(key.to_string(), value)` to `table`.
    fn push_keyed<V, O: KeyedTable<V>>(&self, table: &mut O, value: V);
}

impl<T: ToString> DisplayKey for &KeyText<T> {
    #[inline(always)]
    fn push_keyed<V, O: KeyedTable<V>>(&self, table: &mut O, value: V) {
        table.push_owned(self.0.to_string(), value);
    }
}

/// Map-side counter of `count_by_value`: counts each record inside one partition before the shuffle.
pub struct ValueCounter<T> {
    pub(crate) counts: FastMap<T, u64>,
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
    pub(crate) records: u64,
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
    pub(crate) acc: Option<T>,
    pub(crate) reduce: &'r R,
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

/// Map-side groups after the shuffle: for each reducer, one bucket of `(key, values)` per map partition.
pub(crate) type ShuffledGroups<K, V> = Vec<Vec<Vec<(K, Vec<V>)>>>;

/// Final merge of map-side groups, one reducer per output partition: a key's values in map
/// partition order, each partition's in arrival order.
pub(crate) fn merge_groups<K: Hash + Eq + Send, V: Send>(
    per_reducer: ShuffledGroups<K, V>,
) -> Vec<FastMap<K, Vec<V>>> {
    per_reducer
        .into_par_iter()
        .map(|buckets| {
            let capacity = buckets.iter().map(Vec::len).max().unwrap_or(0);
            let mut groups: FastMap<K, Vec<V>> =
                FastMap::with_capacity_and_hasher(capacity, Default::default());
            for (k, values) in buckets.into_iter().flatten() {
                use std::collections::hash_map::Entry;
                match groups.entry(k) {
                    Entry::Occupied(mut held) => held.get_mut().extend(values),
                    Entry::Vacant(slot) => {
                        slot.insert(values);
                    }
                }
            }
            groups
        })
        .collect()
}

/// What `join` makes of a left record and the right values of its key: a pair per value.
pub fn inner_emit<K: Clone, V: Clone, W: Clone>(k: K, v: V, ws: &[W], out: &mut Vec<(K, (V, W))>) {
    for w in ws {
        out.push((k.clone(), (v.clone(), w.clone())));
    }
}

/// What `left_outer_join` makes of them: a pair per value, or the record with `None`.
pub fn left_outer_emit<K: Clone, V: Clone, W: Clone>(
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

/// What `right_outer_join` makes of a key's values on both sides: every right value, with each
/// left value or `None`.
pub fn right_outer_emit<K: Clone, V: Clone, W: Clone>(
    k: K,
    vs: Vec<V>,
    ws: Vec<W>,
    out: &mut Vec<(K, (Option<V>, W))>,
) {
    for w in ws {
        if vs.is_empty() {
            out.push((k.clone(), (None, w)));
            continue;
        }
        for v in &vs {
            out.push((k.clone(), (Some(v.clone()), w.clone())));
        }
    }
}

/// Both sides of a full outer join's pair: either may be missing.
pub type EitherOrBoth<V, W> = (Option<V>, Option<W>);

/// A key's values on both sides of a `cogroup`.
pub type CoGrouped<V, W> = (Vec<V>, Vec<W>);

/// What `full_outer_join` makes of them: every pair, and each side's values alone where the other
/// side has none.
pub fn full_outer_emit<K: Clone, V: Clone, W: Clone>(
    k: K,
    vs: Vec<V>,
    ws: Vec<W>,
    out: &mut Vec<(K, EitherOrBoth<V, W>)>,
) {
    match (vs.is_empty(), ws.is_empty()) {
        (true, _) => out.extend(ws.into_iter().map(|w| (k.clone(), (None, Some(w))))),
        (_, true) => out.extend(vs.into_iter().map(|v| (k.clone(), (Some(v), None)))),
        _ => {
            for v in &vs {
                for w in &ws {
                    out.push((k.clone(), (Some(v.clone()), Some(w.clone()))));
                }
            }
        }
    }
}

/// What `cogroup` makes of them: one record per key, its values on each side.
pub fn cogroup_emit<K, V, W>(k: K, vs: Vec<V>, ws: Vec<W>, out: &mut Vec<(K, CoGrouped<V, W>)>) {
    out.push((k, (vs, ws)));
}

/// Groups reducer `j` of both sides by key and hands each key's values on both sides to `emit`.
pub(crate) fn cogroup_buckets<K, V, W, O, E>(
    left: Vec<Vec<Vec<(K, V)>>>,
    right: Vec<Vec<Vec<(K, W)>>>,
    emit: E,
) -> Partitions<O>
where
    K: Hash + Eq + Send,
    V: Send,
    W: Send,
    O: Send,
    E: Fn(K, Vec<V>, Vec<W>, &mut Vec<O>) + Sync,
{
    left.into_par_iter()
        .zip(right.into_par_iter())
        .map(|(left_buckets, right_buckets)| {
            let mut groups: FastMap<K, CoGrouped<V, W>> = FastMap::default();
            for (k, v) in left_buckets.into_iter().flatten() {
                groups.entry(k).or_default().0.push(v);
            }
            for (k, w) in right_buckets.into_iter().flatten() {
                groups.entry(k).or_default().1.push(w);
            }
            let mut out = Vec::new();
            for (k, (vs, ws)) in groups {
                emit(k, vs, ws, &mut out);
            }
            out
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn grouped(records: &[(&'static str, u32)], n: usize) -> Partitions<(&'static str, Vec<u32>)> {
        let mut grouper = Grouper::new();
        for &record in records {
            grouper.push(record);
        }
        grouper.into_buckets(n)
    }

    #[test]
    fn a_grouper_keeps_each_keys_values_in_arrival_order_and_buckets_by_the_partitioner() {
        let records = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5), ("a", 6)];
        let buckets = grouped(&records, 3);
        assert_eq!(buckets.len(), 3);
        let mut all: Vec<_> = buckets.iter().flatten().cloned().collect();
        all.sort();
        assert_eq!(
            all,
            vec![("a", vec![1, 3, 6]), ("b", vec![2, 5]), ("c", vec![4])]
        );
        for (j, bucket) in buckets.iter().enumerate() {
            assert!(bucket.iter().all(|(k, _)| partition_of(k, 3) == j));
        }
    }

    #[test]
    fn groups_staged_several_times_keep_arrival_order() {
        let mut grouper = Grouper::new();
        let total = 3 * STAGED as u32 + 7;
        for i in 0..total {
            grouper.push((i % 3, i));
        }
        let groups: Vec<_> = grouper.into_buckets(2).into_iter().flatten().collect();
        assert_eq!(groups.len(), 3);
        for (key, values) in groups {
            let expected: Vec<u32> = (0..total).filter(|i| i % 3 == key).collect();
            assert_eq!(values, expected, "key {key}");
        }
    }

    #[test]
    fn merged_groups_follow_map_partition_order() {
        let first = grouped(&[("a", 1), ("b", 2), ("a", 3)], 1);
        let second = grouped(&[("b", 4), ("a", 5), ("c", 6)], 1);
        let merged = merge_groups(transpose(vec![first, second], 1));
        let mut groups: Vec<_> = merged.into_iter().flatten().collect();
        groups.sort();
        assert_eq!(
            groups,
            vec![("a", vec![1, 3, 5]), ("b", vec![2, 4]), ("c", vec![6])]
        );
    }
}
