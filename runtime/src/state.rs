//! State kept between batches by the stateful operators, and how it is saved in checkpoints.
//!
//! Each stateful operator owns one slot of the pipeline's [`StateRegistry`], named by the operator's stable
//! name (its `let` binding), not by closures or code layout. A slot holds typed state once the operator
//! has run; state read from a checkpoint waits in its slot, as bytes with a description of its types,
//! until the operator first asks for it with its own types — a mismatch is a precise error, found by a
//! dry run before the first batch.

use crate::shuffle::{partition_of, FastMap};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::any::{type_name, Any};
use std::collections::VecDeque;
use std::hash::Hash;
use std::sync::Mutex;

/// A slot's saved form, as stored in a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedState {
    /// The operator's stable name.
    pub name: String,
    /// The operator (`update_state_by_key`, ...).
    pub kind: String,
    /// The state's types, e.g. `keyed<alloc::string::String, u64>`.
    pub types: String,
    /// The state itself, as [`StateData::save`] encoded it.
    pub bytes: Vec<u8>,
}

/// Typed state that can be saved and restored.
pub trait StateData: Send + 'static {
    /// The description of this state's types; a checkpoint only restores into identical types.
    fn describe() -> String
    where
        Self: Sized;
    /// Empty state spread over `partitions`.
    fn fresh(partitions: usize) -> Self
    where
        Self: Sized;
    /// Decodes saved bytes, spreading keys over `partitions` (which may differ from when it was saved).
    fn load(bytes: &[u8], partitions: usize) -> Result<Self, String>
    where
        Self: Sized;
    /// Encodes the state for a checkpoint (postcard), for [`StateData::load`] to read back. An
    /// error means a key or value could not be serialized.
    fn save(&self) -> Result<Vec<u8>, String>;
    /// Keys held (for reports and metrics).
    fn keys(&self) -> usize;
    /// The state as `Any`, so that the registry can hand it back with its concrete type.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// [`StateData::describe`] of this value's type, callable on a `dyn StateData`.
    fn types(&self) -> String;
}

enum Cell {
    Empty,
    Saved(SavedState),
    Live(Box<dyn StateData>),
}

struct Slot {
    name: &'static str,
    kind: &'static str,
    cell: Mutex<Cell>,
}

/// All state of one pipeline, one slot per stateful operator.
pub struct StateRegistry {
    slots: Vec<Slot>,
    problems: Mutex<Vec<String>>,
}

impl StateRegistry {
    /// Slots for the operators `(name, kind)`, in the order generated code refers to them.
    pub fn new(operators: &[(&'static str, &'static str)]) -> Self {
        let slots = operators
            .iter()
            .map(|&(name, kind)| Slot {
                name,
                kind,
                cell: Mutex::new(Cell::Empty),
            })
            .collect();
        Self {
            slots,
            problems: Mutex::new(Vec::new()),
        }
    }

    /// Whether the pipeline has any stateful operator.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn cell(&self, index: usize) -> std::sync::MutexGuard<'_, Cell> {
        self.slots[index]
            .cell
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on slot `index` as `T`, creating it or decoding its saved form first.
    pub fn with<T: StateData, R>(
        &self,
        index: usize,
        partitions: usize,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R, String> {
        self.with_initial(index, partitions, T::fresh, f)
    }

    /// [`StateRegistry::with`], where a slot that neither ran nor was restored starts as
    /// `initial(partitions)` (an operator's initial state) instead of empty.
    pub fn with_initial<T: StateData, R>(
        &self,
        index: usize,
        partitions: usize,
        initial: impl FnOnce(usize) -> T,
        f: impl FnOnce(&mut T) -> R,
    ) -> Result<R, String> {
        let slot = &self.slots[index];
        let mut cell = self.cell(index);
        if let Cell::Saved(saved) = &*cell {
            if let Some(change) = type_change(&saved.types, &T::describe()) {
                return Err(format!(
                    "the state of `{}` ({}) changed type: {change}",
                    slot.name, slot.kind,
                ));
            }
            let loaded = T::load(&saved.bytes, partitions).map_err(|e| {
                format!("the saved state of `{}` cannot be decoded: {e}", slot.name)
            })?;
            *cell = Cell::Live(Box::new(loaded));
        }
        if matches!(*cell, Cell::Empty) {
            *cell = Cell::Live(Box::new(initial(partitions)));
        }
        let Cell::Live(state) = &mut *cell else {
            unreachable!("made live above")
        };
        match state.as_any_mut().downcast_mut::<T>() {
            Some(typed) => Ok(f(typed)),
            None => Err(format!(
                "the state of `{}` is used with two different types",
                slot.name
            )),
        }
    }

    /// Dry run: checks that slot `index` can be used as `T`, remembering any problem.
    pub fn check<T: StateData>(&self, index: usize, partitions: usize) {
        if matches!(*self.cell(index), Cell::Empty) {
            // Nothing restored: nothing to check, and the slot stays empty for its initial state.
            return;
        }
        if let Err(problem) = self.with::<T, ()>(index, partitions, |_| ()) {
            self.problems
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(problem);
        }
    }

    /// Problems found by [`StateRegistry::check`] since the last call.
    pub fn take_problems(&self) -> Vec<String> {
        std::mem::take(&mut *self.problems.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Every slot in its saved form (slots never used are left out).
    pub fn snapshot(&self) -> Result<Vec<SavedState>, String> {
        let mut out = Vec::new();
        for (index, slot) in self.slots.iter().enumerate() {
            match &*self.cell(index) {
                Cell::Empty => {}
                Cell::Saved(saved) => out.push(saved.clone()),
                Cell::Live(state) => out.push(SavedState {
                    name: slot.name.to_string(),
                    kind: slot.kind.to_string(),
                    types: state.types(),
                    bytes: state
                        .save()
                        .map_err(|e| format!("cannot save the state of `{}`: {e}", slot.name))?,
                }),
            }
        }
        Ok(out)
    }

    /// Puts saved state back into its slots. Refuses state of operators the pipeline no longer has, or
    /// whose operator changed.
    pub fn restore(&self, saved: Vec<SavedState>) -> Result<(), String> {
        for state in saved {
            let Some(index) = self.slots.iter().position(|s| s.name == state.name) else {
                let known: Vec<&str> = self.slots.iter().map(|s| s.name).collect();
                return Err(format!(
                    "the checkpoint holds state of `{}` ({}), which the pipeline no longer has (stateful operators now: {})",
                    state.name,
                    state.kind,
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ));
            };
            let slot = &self.slots[index];
            if slot.kind != state.kind {
                return Err(format!(
                    "`{}` was `{}` when the checkpoint was written and is `{}` now",
                    state.name, state.kind, slot.kind
                ));
            }
            *self.cell(index) = Cell::Saved(state);
        }
        Ok(())
    }

    /// Keys held per operator, for operators that ran.
    pub fn key_counts(&self) -> Vec<(&'static str, usize)> {
        (0..self.slots.len())
            .filter_map(|i| match &*self.cell(i) {
                Cell::Live(state) => Some((self.slots[i].name, state.keys())),
                _ => None,
            })
            .collect()
    }
}

/// Separates a description's type names from the layout traced from its serde implementation.
const SCHEMA: &str = "\nschema ";

/// A state description: the Rust type names, for people, and, where serde lets it be traced, the
/// layout of `T` as serde sees it (field names and types, enum variants), for the check. The layout
/// does not depend on module paths, so moving a type keeps its checkpoints, while adding, removing or
/// retyping a field — which would decode into wrong values or not at all — is refused.
fn described<T: DeserializeOwned>(names: String) -> String {
    use serde_reflection::{Tracer, TracerConfig};
    let mut tracer = Tracer::new(TracerConfig::default());
    let traced = tracer
        .trace_simple_type::<T>()
        .ok()
        .and_then(|(format, _)| Some((format, tracer.registry().ok()?)))
        .and_then(|layout| serde_json::to_string(&layout).ok());
    match traced {
        Some(layout) => format!("{names}{SCHEMA}{layout}"),
        // A type whose deserializer validates its input cannot be traced: its names are compared.
        None => names,
    }
}

/// Why state saved as `saved` cannot be restored as `now` (descriptions from [`described`]); `None`
/// when it can.
fn type_change(saved: &str, now: &str) -> Option<String> {
    let split = |d: &str| match d.split_once(SCHEMA) {
        Some((names, layout)) => (names.to_string(), Some(layout.to_string())),
        None => (d.to_string(), None),
    };
    let ((saved_names, saved_layout), (now_names, now_layout)) = (split(saved), split(now));
    let what = if saved_names == now_names {
        format!("{now_names} has different fields or variants than when the checkpoint was written")
    } else {
        format!("the checkpoint holds {saved_names}, the pipeline now keeps {now_names}")
    };
    match (saved_layout, now_layout) {
        (Some(before), Some(after)) if before == after => None,
        (Some(before), Some(after)) => Some(format!("{what} (then: {before}; now: {after})")),
        _ if saved_names == now_names => None,
        _ => Some(what),
    }
}

/// Keyed state (`update_state_by_key`, `map_with_state`), one map per partition.
pub struct KeyedState<K, S> {
    pub(crate) parts: Vec<FastMap<K, S>>,
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    postcard::to_stdvec(value).map_err(|e| e.to_string())
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| e.to_string())
}

impl<K: Hash + Eq, S> KeyedState<K, S> {
    /// State holding `pairs`, spread over `partitions` as the shuffle spreads keys.
    pub(crate) fn from_pairs(pairs: impl IntoIterator<Item = (K, S)>, partitions: usize) -> Self {
        Self {
            parts: spread(pairs, partitions),
        }
    }
}

fn spread<K: Hash + Eq, V>(
    pairs: impl IntoIterator<Item = (K, V)>,
    partitions: usize,
) -> Vec<FastMap<K, V>> {
    let mut parts: Vec<FastMap<K, V>> =
        (0..partitions.max(1)).map(|_| FastMap::default()).collect();
    let n = parts.len();
    for (k, v) in pairs {
        parts[partition_of(&k, n)].insert(k, v);
    }
    parts
}

impl<K, S> StateData for KeyedState<K, S>
where
    K: Hash + Eq + Send + Serialize + DeserializeOwned + 'static,
    S: Send + Serialize + DeserializeOwned + 'static,
{
    fn describe() -> String {
        described::<(K, S)>(format!("keyed<{}, {}>", type_name::<K>(), type_name::<S>()))
    }

    fn fresh(partitions: usize) -> Self {
        Self {
            parts: spread(Vec::new(), partitions),
        }
    }

    fn load(bytes: &[u8], partitions: usize) -> Result<Self, String> {
        let pairs: Vec<(K, S)> = decode(bytes)?;
        Ok(Self {
            parts: spread(pairs, partitions),
        })
    }

    fn save(&self) -> Result<Vec<u8>, String> {
        let pairs: Vec<(&K, &S)> = self.parts.iter().flatten().collect();
        encode(&pairs)
    }

    fn keys(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn types(&self) -> String {
        Self::describe()
    }
}

/// A keyed window: each batch's per-key partial aggregate for as long as it is inside the window, and,
/// with an inverse function, the running aggregate of the whole window.
pub struct WindowState<K, V> {
    pub(crate) parts: Vec<WindowPart<K, V>>,
}

pub(crate) struct WindowPart<K, V> {
    /// (batch time, that batch's partial aggregate: one pair per key), oldest first. Kept as plain
    /// vectors: they are only ever walked in order, when combined or when they leave the window.
    pub batches: VecDeque<(u64, Vec<(K, V)>)>,
    /// `Option` slots let the aggregate be updated in place (a remove and insert per key and batch would
    /// litter the table with tombstones); a slot is `None` only during an update.
    pub running: FastMap<K, Option<V>>,
}

#[derive(Serialize, Deserialize)]
struct SavedWindow<K, V> {
    batches: Vec<(u64, Vec<(K, V)>)>,
    running: Vec<(K, V)>,
}

impl<K, V> StateData for WindowState<K, V>
where
    K: Hash + Eq + Send + Serialize + DeserializeOwned + 'static,
    V: Send + Serialize + DeserializeOwned + 'static,
{
    fn describe() -> String {
        described::<(K, V)>(format!(
            "window<{}, {}>",
            type_name::<K>(),
            type_name::<V>()
        ))
    }

    fn fresh(partitions: usize) -> Self {
        let parts = (0..partitions.max(1))
            .map(|_| WindowPart {
                batches: VecDeque::new(),
                running: FastMap::default(),
            })
            .collect();
        Self { parts }
    }

    fn load(bytes: &[u8], partitions: usize) -> Result<Self, String> {
        let saved: SavedWindow<K, V> = decode(bytes)?;
        let mut state = Self::fresh(partitions);
        let n = state.parts.len();
        for (time, pairs) in saved.batches {
            for part in &mut state.parts {
                part.batches.push_back((time, Vec::new()));
            }
            for (k, v) in pairs {
                let p = partition_of(&k, n);
                if let Some((_, pairs)) = state.parts[p].batches.back_mut() {
                    pairs.push((k, v));
                }
            }
        }
        for (k, v) in saved.running {
            let p = partition_of(&k, n);
            state.parts[p].running.insert(k, Some(v));
        }
        Ok(state)
    }

    fn save(&self) -> Result<Vec<u8>, String> {
        #[derive(Serialize)]
        struct Borrowed<'a, K, V> {
            batches: Vec<(u64, Vec<(&'a K, &'a V)>)>,
            running: Vec<(&'a K, &'a V)>,
        }
        let times: Vec<u64> = self
            .parts
            .first()
            .map(|p| p.batches.iter().map(|(t, _)| *t).collect())
            .unwrap_or_default();
        let batches = times
            .iter()
            .enumerate()
            .map(|(i, &time)| {
                (
                    time,
                    self.parts
                        .iter()
                        .flat_map(|p| p.batches[i].1.iter().map(|(k, v)| (k, v)))
                        .collect(),
                )
            })
            .collect();
        let running = self
            .parts
            .iter()
            .flat_map(|p| {
                p.running
                    .iter()
                    .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
            })
            .collect();
        encode(&Borrowed { batches, running })
    }

    fn keys(&self) -> usize {
        self.parts
            .iter()
            .map(|p| {
                p.running
                    .len()
                    .max(p.batches.iter().map(|(_, m)| m.len()).max().unwrap_or(0))
            })
            .sum()
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn types(&self) -> String {
        Self::describe()
    }
}

/// A window of whole records (`window`): each batch's records while inside the window.
pub struct RecordWindow<T> {
    pub(crate) batches: VecDeque<(u64, Vec<T>)>,
}

impl<T> StateData for RecordWindow<T>
where
    T: Send + Serialize + DeserializeOwned + 'static,
{
    fn describe() -> String {
        described::<T>(format!("records<{}>", type_name::<T>()))
    }

    fn fresh(_partitions: usize) -> Self {
        Self {
            batches: VecDeque::new(),
        }
    }

    fn load(bytes: &[u8], _partitions: usize) -> Result<Self, String> {
        let batches: Vec<(u64, Vec<T>)> = decode(bytes)?;
        Ok(Self {
            batches: batches.into(),
        })
    }

    fn save(&self) -> Result<Vec<u8>, String> {
        let batches: Vec<&(u64, Vec<T>)> = self.batches.iter().collect();
        encode(&batches)
    }

    fn keys(&self) -> usize {
        self.batches.iter().map(|(_, r)| r.len()).sum()
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn types(&self) -> String {
        Self::describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_state_round_trips_across_a_change_of_partitions() {
        let registry = StateRegistry::new(&[("totals", "update_state_by_key")]);
        registry
            .with::<KeyedState<String, u64>, _>(0, 2, |s| {
                for i in 0..100u64 {
                    let p = partition_of(&format!("k{i}"), 2);
                    s.parts[p].insert(format!("k{i}"), i);
                }
            })
            .unwrap();
        let saved = registry.snapshot().unwrap();
        let restored = StateRegistry::new(&[("totals", "update_state_by_key")]);
        restored.restore(saved).unwrap();
        let total: u64 = restored
            .with::<KeyedState<String, u64>, _>(0, 3, |s| {
                assert_eq!(s.parts.len(), 3);
                s.parts.iter().flat_map(|p| p.values()).sum()
            })
            .unwrap();
        assert_eq!(total, (0..100).sum::<u64>());
    }

    #[test]
    fn a_changed_state_type_is_refused_with_the_operator_and_both_types() {
        let registry = StateRegistry::new(&[("totals", "update_state_by_key")]);
        registry
            .with::<KeyedState<String, u64>, _>(0, 1, |_| ())
            .unwrap();
        let saved = registry.snapshot().unwrap();
        let changed = StateRegistry::new(&[("totals", "update_state_by_key")]);
        changed.restore(saved.clone()).unwrap();
        changed.check::<KeyedState<String, i32>>(0, 1);
        let problems = changed.take_problems();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("`totals`")
                && problems[0].contains("u64")
                && problems[0].contains("i32"),
            "{problems:?}"
        );
        let renamed = StateRegistry::new(&[("running", "update_state_by_key")]);
        let err = renamed.restore(saved).unwrap_err();
        assert!(
            err.contains("`totals`") && err.contains("no longer has") && err.contains("running"),
            "{err}"
        );
    }

    mod before {
        #[derive(serde::Serialize, serde::Deserialize)]
        pub struct Clicks {
            pub count: u64,
        }
    }

    mod moved {
        #[derive(serde::Serialize, serde::Deserialize)]
        pub struct Clicks {
            pub count: u64,
        }
    }

    mod grown {
        #[derive(serde::Serialize, serde::Deserialize)]
        pub struct Clicks {
            pub count: u64,
            pub last_seen: u32,
        }
    }

    /// State of `before::Clicks` saved, then checked as `T`: the problems found.
    fn restored_as<T: StateData>() -> Vec<String> {
        let registry = StateRegistry::new(&[("clicks", "update_state_by_key")]);
        registry
            .with::<KeyedState<String, before::Clicks>, _>(0, 1, |s| {
                s.parts[0].insert("ad".into(), before::Clicks { count: 3 });
            })
            .unwrap();
        let restored = StateRegistry::new(&[("clicks", "update_state_by_key")]);
        restored.restore(registry.snapshot().unwrap()).unwrap();
        restored.check::<T>(0, 1);
        restored.take_problems()
    }

    #[test]
    fn a_state_type_is_compared_by_its_fields_not_its_module_path() {
        assert_eq!(
            restored_as::<KeyedState<String, moved::Clicks>>(),
            Vec::<String>::new(),
            "the same fields under another module path resume"
        );
        let problems = restored_as::<KeyedState<String, grown::Clicks>>();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("`clicks`") && problems[0].contains("last_seen"),
            "{problems:?}"
        );
    }

    #[test]
    fn window_state_round_trips() {
        let mut w = WindowState::<String, u64>::fresh(2);
        for (t, k) in [(1000u64, "a"), (2000, "b")] {
            for part in &mut w.parts {
                part.batches.push_back((t, Vec::new()));
            }
            let p = partition_of(&k.to_string(), 2);
            w.parts[p]
                .batches
                .back_mut()
                .unwrap()
                .1
                .push((k.to_string(), t));
            w.parts[p].running.insert(k.to_string(), Some(t));
        }
        let bytes = w.save().unwrap();
        let back = WindowState::<String, u64>::load(&bytes, 3).unwrap();
        assert_eq!(back.parts.len(), 3);
        let times: Vec<u64> = back.parts[0].batches.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, vec![1000, 2000]);
        let running: u64 = back
            .parts
            .iter()
            .flat_map(|p| p.running.values().flatten())
            .sum();
        assert_eq!(running, 3000);
    }
}
