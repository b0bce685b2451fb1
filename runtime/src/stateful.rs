//! Stateful operators: `update_state_by_key`, `map_with_state`, and the window operators. Each keeps its
//! state in one slot of the pipeline's [`StateRegistry`], partitioned like the shuffle, so partition `j`
//! of the batch meets partition `j` of the state on one worker.

use crate::context::BatchContext;
use crate::exec::{
    collect, combine_shuffle, group_shuffle, merge_into, shuffle_by_key, split_even, Combiner,
    FastMap, Grouper, Partitioned, Partitions,
};
use crate::state::{KeyedState, RecordWindow, StateData, StateRegistry, WindowPart, WindowState};
use rayon::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::VecDeque;
use std::hash::Hash;

/// Runs `f` on the operator's state; a failure here (only possible if the dry run was skipped) fails
/// the batch with the registry's message.
fn with_state<T: StateData, R>(
    state: &StateRegistry,
    slot: usize,
    partitions: usize,
    f: impl FnOnce(&mut T) -> R,
) -> R {
    with_state_from(state, slot, partitions, T::fresh, f)
}

/// [`with_state`] for an operator with an initial state, which a fresh start begins with.
fn with_state_from<T: StateData, R>(
    state: &StateRegistry,
    slot: usize,
    partitions: usize,
    initial: impl FnOnce(usize) -> T,
    f: impl FnOnce(&mut T) -> R,
) -> R {
    state
        .with_initial(slot, partitions, initial, f)
        .unwrap_or_else(|problem| panic!("{problem}"))
}

/// `update_state_by_key`: Spark's semantics. Every key held or seen in the batch gets
/// `f(new values, previous state)`; `None` removes the key. The stream is the whole state after the batch.
/// `initial` gives the `(key, state)` pairs a fresh start begins with (Spark's initial RDD); it is
/// called once, and not at all when the state comes from a checkpoint.
#[allow(clippy::too_many_arguments)]
pub fn update_state_by_key<D, K, V, S, B, F, G, I>(
    ctx: &BatchContext<'_>,
    state: &StateRegistry,
    slot: usize,
    data: D,
    body: B,
    f: F,
    initial: G,
) -> Partitions<(K, S)>
where
    D: Partitioned,
    K: Hash + Eq + Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
    V: Send,
    S: Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
    B: Fn(D::Part, &mut Grouper<K, V>) + Sync + Send,
    F: Fn(&[V], Option<S>) -> Option<S> + Sync + Send,
    G: FnOnce() -> I,
    I: IntoIterator<Item = (K, S)>,
{
    let n = ctx.workers;
    if ctx.dry_run {
        state.check::<KeyedState<K, S>>(slot, n);
        return Vec::new();
    }
    let grouped = group_shuffle(ctx, data, body);
    let initial = |parts| KeyedState::from_pairs(initial(), parts);
    with_state_from(state, slot, n, initial, |held: &mut KeyedState<K, S>| {
        held.parts
            .par_iter_mut()
            .zip(grouped.into_par_iter())
            .map(|(map, mut fresh)| {
                let previous = std::mem::take(map);
                let mut next: FastMap<K, S> = FastMap::with_capacity_and_hasher(
                    previous.len() + fresh.len(),
                    Default::default(),
                );
                for (key, old) in previous {
                    let values = fresh.remove(&key).unwrap_or_default();
                    if let Some(new) = f(&values, Some(old)) {
                        next.insert(key, new);
                    }
                }
                for (key, values) in fresh {
                    if let Some(new) = f(&values, None) {
                        next.insert(key, new);
                    }
                }
                let out = next.iter().map(|(k, s)| (k.clone(), s.clone())).collect();
                *map = next;
                out
            })
            .collect()
    })
}

/// One partition's state, as `(key, state)` pairs.
type Snapshot<K, S> = Vec<(K, S)>;

/// The state of one key as `map_with_state`'s function sees it.
#[derive(Debug)]
pub struct StateCell<S> {
    value: Option<S>,
    removed: bool,
    timing_out: bool,
}

impl<S> StateCell<S> {
    /// The current state, if the key has one.
    pub fn get(&self) -> Option<&S> {
        self.value.as_ref()
    }

    /// Whether the key has a state now (`get` returns `Some`).
    pub fn exists(&self) -> bool {
        self.value.is_some()
    }

    /// Replaces the state. Not allowed while the key is timing out (as in Spark).
    pub fn update(&mut self, value: S) {
        assert!(
            !self.timing_out,
            "map_with_state: a key that is timing out cannot be updated"
        );
        self.value = Some(value);
        self.removed = false;
    }

    /// Forgets the key.
    pub fn remove(&mut self) {
        self.value = None;
        self.removed = true;
    }

    /// Whether this call is the last one for a key idle longer than the timeout (the value is `None`).
    pub fn is_timing_out(&self) -> bool {
        self.timing_out
    }
}

/// Spark checkpoints a `mapWithState` stream, and so scans it for timed-out keys, every this many
/// batch intervals unless told otherwise.
const MAP_WITH_STATE_CHECKPOINT_BATCHES: u64 = 10;

/// Whether `map_with_state` looks for timed-out keys in this batch: every `scan_every_ms` (0: 10
/// intervals of its stream) counted from the run's zero time; downstream of a window (a nonzero
/// `window_slide_ms`), where the stream exists at multiples of the slide, at multiples of the
/// schedule as the slides are, so that the two meet.
fn scans_now(ctx: &BatchContext<'_>, scan_every_ms: u64, window_slide_ms: u64) -> bool {
    let stream_interval = match window_slide_ms {
        0 => ctx.batch_interval_ms,
        slide => slide,
    };
    let every = match scan_every_ms {
        0 => MAP_WITH_STATE_CHECKPOINT_BATCHES * stream_interval,
        every => every,
    };
    if window_slide_ms > 0 {
        every > 0 && ctx.time.millis().is_multiple_of(every)
    } else {
        ctx.on_schedule(every)
    }
}

/// `map_with_state`: calls `f(key, value, state)` for each record of the batch — cost follows the keys
/// touched, not the keys held — and emits what it returns. With a timeout, keys not touched for longer
/// than it (touched strictly before `now - timeout`) get one last call (value `None`,
/// `is_timing_out()`) and are dropped. As in Spark, idle keys are looked for only in the batches
/// where Spark would checkpoint the state stream (see [`scans_now`]): every `.checkpoint(interval)`
/// of the stream, by default every 10 of its intervals — never because the app stops. With `snapshots`, the second result is all state. `initial` seeds a fresh start, as for
/// [`update_state_by_key`]; seeded keys count as touched at the first batch.
#[allow(clippy::too_many_arguments)]
pub fn map_with_state<D, K, V, S, U, B, F, G, I>(
    ctx: &BatchContext<'_>,
    state: &StateRegistry,
    slot: usize,
    data: D,
    body: B,
    f: F,
    timeout_ms: u64,
    scan_every_ms: u64,
    window_slide_ms: u64,
    snapshots: bool,
    initial: G,
) -> (Partitions<U>, Partitions<(K, S)>)
where
    D: Partitioned,
    K: Hash + Eq + Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
    V: Send,
    S: Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
    U: Send,
    B: Fn(D::Part, &mut Vec<(K, V)>) + Sync + Send,
    F: Fn(&K, Option<V>, &mut StateCell<S>) -> U + Sync + Send,
    G: FnOnce() -> I,
    I: IntoIterator<Item = (K, S)>,
{
    let n = ctx.workers;
    if ctx.dry_run {
        state.check::<KeyedState<K, (S, u64)>>(slot, n);
        return (Vec::new(), Vec::new());
    }
    let now = ctx.time.millis();
    let per_reducer = shuffle_by_key(ctx, data, body);
    let scan = timeout_ms > 0 && scans_now(ctx, scan_every_ms, window_slide_ms);
    let initial =
        |parts| KeyedState::from_pairs(initial().into_iter().map(|(k, s)| (k, (s, now))), parts);
    let results: Vec<(Vec<U>, Snapshot<K, S>)> = with_state_from(
        state,
        slot,
        n,
        initial,
        |held: &mut KeyedState<K, (S, u64)>| {
            held.parts
                .par_iter_mut()
                .zip(per_reducer.into_par_iter())
                .map(|(map, buckets)| {
                    let mut out = Vec::new();
                    for (key, value) in buckets.into_iter().flatten() {
                        let mut cell = StateCell {
                            value: map.remove(&key).map(|(s, _)| s),
                            removed: false,
                            timing_out: false,
                        };
                        out.push(f(&key, Some(value), &mut cell));
                        if let Some(s) = cell.value {
                            map.insert(key, (s, now));
                        }
                    }
                    if scan {
                        let idle: Vec<K> = map
                            .iter()
                            .filter(|(_, (_, touched))| touched + timeout_ms < now)
                            .map(|(k, _)| k.clone())
                            .collect();
                        for key in idle {
                            let old = map.remove(&key).map(|(s, _)| s);
                            let mut cell = StateCell {
                                value: old,
                                removed: false,
                                timing_out: true,
                            };
                            out.push(f(&key, None, &mut cell));
                        }
                    }
                    let snapshot = if snapshots {
                        map.iter()
                            .map(|(k, (s, _))| (k.clone(), s.clone()))
                            .collect()
                    } else {
                        Vec::new()
                    };
                    (out, snapshot)
                })
                .collect()
        },
    );
    results.into_iter().unzip()
}

/// Whether a window emits at this batch: at multiples of its slide, as Spark's windowed streams do.
fn emits(ctx: &BatchContext<'_>, slide_ms: u64) -> bool {
    ctx.time.millis().is_multiple_of(slide_ms.max(1))
}

/// What both keyed windows share: the dry-run check, this batch's per-key partial aggregate (map-side
/// combined, shuffled), and a parallel pass over the window state's partitions, where `step` gets the
/// partition, the batch's partial and whether the window emits now.
#[allow(clippy::too_many_arguments)]
fn keyed_window<D, K, V, B, R, F>(
    ctx: &BatchContext<'_>,
    state: &StateRegistry,
    slot: usize,
    data: D,
    body: B,
    reduce: &R,
    slide_ms: u64,
    step: F,
) -> Partitions<(K, V)>
where
    D: Partitioned,
    K: Hash + Eq + Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
    V: Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
    B: for<'c> Fn(D::Part, &mut Combiner<'c, K, V, R>) + Sync + Send,
    R: Fn(V, V) -> V + Sync + Send,
    F: Fn(&mut WindowPart<K, V>, Vec<(K, V)>, bool) -> Vec<(K, V)> + Sync + Send,
{
    let n = ctx.workers;
    if ctx.dry_run {
        state.check::<WindowState<K, V>>(slot, n);
        return Vec::new();
    }
    let partial = combine_shuffle(ctx, data, body, reduce);
    let emit = emits(ctx, slide_ms);
    with_state(state, slot, n, |held: &mut WindowState<K, V>| {
        held.parts
            .par_iter_mut()
            .zip(partial.into_par_iter())
            .map(|(part, pairs)| step(part, pairs, emit))
            .collect()
    })
}

/// Adds batch `now`'s partial to the window's batches and hands every batch that fell out to `leave`.
fn slide_window<T>(
    batches: &mut VecDeque<(u64, Vec<T>)>,
    now: u64,
    window_ms: u64,
    records: Vec<T>,
    mut leave: impl FnMut(Vec<T>),
) {
    batches.push_back((now, records));
    while batches.front().is_some_and(|(t, _)| t + window_ms <= now) {
        if let Some((_, old)) = batches.pop_front() {
            leave(old);
        }
    }
}

/// `reduce_by_key_and_window` without an inverse: each batch's per-key partial aggregate is kept while
/// inside the window; at each slide the partials are combined (never the raw records).
#[allow(clippy::too_many_arguments)]
pub fn reduce_by_key_and_window<D, K, V, B, R>(
    ctx: &BatchContext<'_>,
    state: &StateRegistry,
    slot: usize,
    data: D,
    body: B,
    reduce: R,
    window_ms: u64,
    slide_ms: u64,
) -> Partitions<(K, V)>
where
    D: Partitioned,
    K: Hash + Eq + Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
    V: Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
    B: for<'c> Fn(D::Part, &mut Combiner<'c, K, V, R>) + Sync + Send,
    R: Fn(V, V) -> V + Sync + Send,
{
    let now = ctx.time.millis();
    keyed_window(
        ctx,
        state,
        slot,
        data,
        body,
        &reduce,
        slide_ms,
        |part, pairs, emit| {
            slide_window(&mut part.batches, now, window_ms, pairs, drop);
            if !emit {
                return Vec::new();
            }
            let mut merged: FastMap<K, Option<V>> = FastMap::default();
            for (k, v) in part.batches.iter().flat_map(|(_, batch)| batch) {
                merge_into(&mut merged, k.clone(), v.clone(), &reduce);
            }
            merged
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect()
        },
    )
}

/// `reduce_by_key_and_window` with an inverse: the window's aggregate is kept and updated each batch by
/// adding the new batch and subtracting the batch that left — cost independent of the window length.
/// `keep` drops keys from the window (e.g. counts that fell to zero), as Spark's filter function does.
#[allow(clippy::too_many_arguments)]
pub fn reduce_by_key_and_window_inv<D, K, V, B, R, I, P>(
    ctx: &BatchContext<'_>,
    state: &StateRegistry,
    slot: usize,
    data: D,
    body: B,
    reduce: R,
    inverse: I,
    keep: P,
    window_ms: u64,
    slide_ms: u64,
) -> Partitions<(K, V)>
where
    D: Partitioned,
    K: Hash + Eq + Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
    V: Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
    B: for<'c> Fn(D::Part, &mut Combiner<'c, K, V, R>) + Sync + Send,
    R: Fn(V, V) -> V + Sync + Send,
    I: Fn(V, V) -> V + Sync + Send,
    P: Fn(&K, &V) -> bool + Sync + Send,
{
    let now = ctx.time.millis();
    keyed_window(
        ctx,
        state,
        slot,
        data,
        body,
        &reduce,
        slide_ms,
        |part, pairs, emit| {
            for (k, v) in &pairs {
                merge_into(&mut part.running, k.clone(), v.clone(), &reduce);
            }
            let running = &mut part.running;
            slide_window(&mut part.batches, now, window_ms, pairs, |old| {
                for (k, v) in old {
                    if let Some(slot) = running.get_mut(&k) {
                        *slot = slot.take().map(|acc| inverse(acc, v));
                    }
                }
            });
            if !emit {
                return Vec::new();
            }
            part.running
                .retain(|k, v| v.as_ref().is_some_and(|v| keep(k, v)));
            part.running
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
                .collect()
        },
    )
}

/// `window`: every record of the batches inside the window, at each slide.
#[allow(clippy::too_many_arguments)]
pub fn window<D, T, B>(
    ctx: &BatchContext<'_>,
    state: &StateRegistry,
    slot: usize,
    data: D,
    body: B,
    window_ms: u64,
    slide_ms: u64,
) -> Partitions<T>
where
    D: Partitioned,
    T: Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
    B: Fn(D::Part, &mut Vec<T>) + Sync + Send,
{
    let n = ctx.workers;
    if ctx.dry_run {
        state.check::<RecordWindow<T>>(slot, n);
        return Vec::new();
    }
    let now = ctx.time.millis();
    let records: Vec<T> = collect(ctx, data, body).into_iter().flatten().collect();
    let emit = emits(ctx, slide_ms);
    with_state(state, slot, n, |held: &mut RecordWindow<T>| {
        slide_window(&mut held.batches, now, window_ms, records, drop);
        if !emit {
            return Vec::new();
        }
        let all: Vec<T> = held
            .batches
            .iter()
            .flat_map(|(_, r)| r.iter().cloned())
            .collect();
        split_even(all, n)
    })
}
