//! Stateful operators, batch by batch through `queue_stream` and the manual-clock driver, against naive
//! reference computations: update_state_by_key, map_with_state (with timeouts and snapshots), and every
//! window operator, with and without an inverse function.

use std::collections::BTreeMap;
use std::path::PathBuf;
use streamc::prelude::*;
use streamc::testkit::Rng;

const BATCHES: usize = 14;

/// 14 batches of words from a small vocabulary, some batches empty.
fn word_batches() -> Vec<Vec<String>> {
    let mut rng = Rng::new(3);
    (0..BATCHES)
        .map(|b| {
            if b == 5 || b == 9 {
                return Vec::new();
            }
            let n = (rng.next_u64() % 12) as usize;
            (0..n).map(|_| format!("w{}", rng.next_u64() % 6)).collect()
        })
        .collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("streamc-state-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn counts<'a>(words: impl IntoIterator<Item = &'a String>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for w in words {
        *m.entry(w.clone()).or_insert(0) += 1;
    }
    m
}

stream! {
    app running_counts { batch: 1s, workers: 2, checkpoint: "target/streamc-test/running_counts" }
    let words = queue_stream::<String>(crate::word_batches());
    let pairs = words.map(|w| (w.clone(), 1u64));
    let totals = pairs.update_state_by_key(|new: &[u64], state: Option<u64>| Some(state.unwrap_or(0) + new.iter().sum::<u64>()));
    // (count, idle batches): a key idle for two batches in a row is dropped.
    let lively = pairs.update_state_by_key(|new: &[u64], state: Option<(u64, u32)>| {
        let (count, idle) = state.unwrap_or((0, 0));
        if new.is_empty() {
            if idle + 1 >= 2 { None } else { Some((count, idle + 1)) }
        } else {
            Some((count + new.len() as u64, 0))
        }
    });
    totals.collect();
    lively.collect();
}

#[test]
fn update_state_by_key_runs_for_every_key_and_none_removes() {
    let mut driver = running_counts::app()
        .configure(|c| c.checkpoint_dir = Some(temp_dir("running").into()))
        .test_driver()
        .unwrap();
    driver.run_batches(BATCHES);
    let totals = driver.take::<(String, u64)>("totals").unwrap();
    let lively = driver.take::<(String, (u64, u32))>("lively").unwrap();
    assert_eq!(totals.len(), BATCHES);
    let mut running: BTreeMap<String, u64> = BTreeMap::new();
    let mut reference_lively: BTreeMap<String, (u64, u32)> = BTreeMap::new();
    for (b, batch) in word_batches().iter().enumerate() {
        let new = counts(batch);
        for (w, n) in &new {
            *running.entry(w.clone()).or_insert(0) += n;
        }
        let mut next = BTreeMap::new();
        for (w, (count, idle)) in &reference_lively {
            match new.get(w) {
                Some(n) => next.insert(w.clone(), (count + n, 0)),
                None if idle + 1 >= 2 => None,
                None => next.insert(w.clone(), (*count, idle + 1)),
            };
        }
        for (w, n) in &new {
            next.entry(w.clone()).or_insert((*n, 0));
        }
        reference_lively = next;
        assert_eq!(
            sorted(totals[b].1.clone()),
            running.clone().into_iter().collect::<Vec<_>>(),
            "totals, batch {b}"
        );
        assert_eq!(
            sorted(lively[b].1.clone()),
            reference_lively.clone().into_iter().collect::<Vec<_>>(),
            "lively, batch {b}"
        );
    }
}

stream! {
    app sessions { batch: 1s, workers: 2, checkpoint: "target/streamc-test/sessions" }
    let words = queue_stream::<String>(crate::word_batches());
    // Emits (word, running count) per record; a word idle for more than 3 s times out with a final
    // (word, 0). The stream is checkpointed, and so scanned for timeouts, every batch.
    let seen = words
        .map(|w| (w.clone(), 1u64))
        .map_with_state(|word: &String, one: Option<u64>, state: &mut StateCell<u64>| {
            match one {
                Some(one) => {
                    let next = state.get().copied().unwrap_or(0) + one;
                    state.update(next);
                    (word.clone(), next)
                }
                None => (word.clone(), 0),
            }
        }, 3s)
        .checkpoint(1s);
    let held = seen.state_snapshots();
    seen.collect();
    held.collect();
}

#[test]
fn map_with_state_emits_per_record_times_out_idle_keys_and_snapshots_state() {
    let mut driver = sessions::app()
        .configure(|c| c.checkpoint_dir = Some(temp_dir("sessions").into()))
        .test_driver()
        .unwrap();
    driver.run_batches(BATCHES);
    let seen = driver.take::<(String, u64)>("seen").unwrap();
    let held = driver.take::<(String, u64)>("held").unwrap();
    let mut state: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (b, batch) in word_batches().iter().enumerate() {
        let now = (b as u64 + 1) * 1000;
        let mut expected = Vec::new();
        for w in batch {
            let entry = state.entry(w.clone()).or_insert((0, now));
            entry.0 += 1;
            entry.1 = now;
            expected.push((w.clone(), entry.0));
        }
        // Every batch scans for timeouts here (`.checkpoint(1s)`); idle means touched strictly
        // before `now - timeout`, as in Spark.
        let idle: Vec<String> = state
            .iter()
            .filter(|(_, (_, t))| t + 3000 < now)
            .map(|(w, _)| w.clone())
            .collect();
        for w in idle {
            state.remove(&w);
            expected.push((w, 0));
        }
        assert_eq!(
            sorted(seen[b].1.clone()),
            sorted(expected),
            "mapped records, batch {b}"
        );
        let snapshot: Vec<(String, u64)> =
            state.iter().map(|(w, (c, _))| (w.clone(), *c)).collect();
        assert_eq!(sorted(held[b].1.clone()), snapshot, "snapshots, batch {b}");
    }
}

stream! {
    app windows { batch: 1s, workers: 2, checkpoint: "target/streamc-test/windows" }
    let words = queue_stream::<String>(crate::word_batches());
    let owned = words.map(|w| w.clone());
    let pairs = owned.map(|w| (w, 1u64));
    let plain = pairs.reduce_by_key_and_window(|a, b| a + b, 4s, 2s);
    let inverse = pairs.reduce_by_key_and_window(|a, b| a + b, |a, b| a - b, 4s, 2s);
    let filtered = pairs.reduce_by_key_and_window(|a, b| a + b, |a, b| a - b, 4s, 2s, |_, n: &u64| *n > 0);
    let values = owned.count_by_value_and_window(4s, 2s);
    let how_many = owned.count_by_window(4s, 2s);
    let lengths = owned.map(|w| w.len() as u64).reduce_by_window(|a, b| a + b, |a, b| a - b, 4s, 2s);
    let recent = owned.window(3s);
    let lengths_plain = owned.map(|w| w.len() as u64).reduce_by_window(|a, b| a + b, 4s, 2s);
    let recent_slid = owned.window(4s, 2s);
    let grouped = pairs.group_by_key_and_window(4s, 2s).map(|(w, ones): (String, Vec<u64>)| (w, ones.len() as u64));
    plain.collect();
    inverse.collect();
    filtered.collect();
    values.collect();
    how_many.collect();
    lengths.collect();
    recent.collect();
    grouped.collect();
    lengths_plain.collect();
    recent_slid.collect();
}

/// Words of the batches inside the window ending at batch `end` (1-based times), `length` batches long.
fn window_words(end: usize, length: usize) -> Vec<String> {
    let batches = word_batches();
    (end.saturating_sub(length)..end)
        .flat_map(|b| batches[b].clone())
        .collect()
}

#[test]
fn window_operators_match_a_naive_recount_of_the_window() {
    let mut driver = windows::app()
        .configure(|c| c.checkpoint_dir = Some(temp_dir("windows").into()))
        .test_driver()
        .unwrap();
    driver.run_batches(BATCHES);
    let take = |name: &str| driver.take::<(String, u64)>(name).unwrap();
    let (plain, inverse, filtered, values, grouped) = (
        take("plain"),
        take("inverse"),
        take("filtered"),
        take("values"),
        take("grouped"),
    );
    let how_many = driver.take::<u64>("how_many").unwrap();
    let lengths = driver.take::<u64>("lengths").unwrap();
    let recent = driver.take::<String>("recent").unwrap();
    let lengths_plain = driver.take::<u64>("lengths_plain").unwrap();
    let recent_slid = driver.take::<String>("recent_slid").unwrap();
    // Slide 2 s: windowed outputs run at even seconds only.
    let slide_times: Vec<u64> = (1..=BATCHES as u64)
        .filter(|t| t % 2 == 0)
        .map(|t| t * 1000)
        .collect();
    for output in [&plain, &inverse, &filtered, &values, &grouped] {
        assert_eq!(
            output.iter().map(|(t, _)| t.millis()).collect::<Vec<_>>(),
            slide_times
        );
    }
    assert_eq!(
        lengths_plain
            .iter()
            .map(|(t, _)| t.millis())
            .collect::<Vec<_>>(),
        slide_times,
        "reduce_by_window without an inverse"
    );
    assert_eq!(
        recent_slid
            .iter()
            .map(|(t, _)| t.millis())
            .collect::<Vec<_>>(),
        slide_times,
        "window(4s, 2s)"
    );
    assert_eq!(recent.len(), BATCHES, "window(3s) slides every batch");
    let mut ever_seen: BTreeMap<String, u64> = BTreeMap::new();
    for (i, &time) in slide_times.iter().enumerate() {
        let end = (time / 1000) as usize;
        let in_window = counts(&window_words(end, 4));
        let expected: Vec<(String, u64)> = in_window.clone().into_iter().collect();
        assert_eq!(
            sorted(plain[i].1.clone()),
            expected,
            "plain window at {time}"
        );
        assert_eq!(
            sorted(filtered[i].1.clone()),
            expected,
            "inverse + filter at {time}"
        );
        assert_eq!(
            sorted(values[i].1.clone()),
            expected,
            "count_by_value_and_window at {time}"
        );
        assert_eq!(
            sorted(grouped[i].1.clone()),
            expected,
            "group_by_key_and_window at {time}"
        );
        // Without a filter, keys that left the window stay with a zero count (Spark's behaviour).
        for w in window_words(end, end) {
            ever_seen.insert(w, 0);
        }
        let with_zeros: Vec<(String, u64)> = ever_seen
            .keys()
            .map(|w| (w.clone(), in_window.get(w).copied().unwrap_or(0)))
            .collect();
        assert_eq!(
            sorted(inverse[i].1.clone()),
            with_zeros,
            "inverse without filter at {time}"
        );
        let total = window_words(end, 4).len() as u64;
        let expected_count = if end >= 1 { vec![total] } else { vec![] };
        assert_eq!(how_many[i].1, expected_count, "count_by_window at {time}");
        let length_sum: u64 = window_words(end, 4).iter().map(|w| w.len() as u64).sum();
        assert_eq!(lengths[i].1, vec![length_sum], "reduce_by_window at {time}");
        assert_eq!(
            lengths_plain[i].1,
            vec![length_sum],
            "reduce_by_window without an inverse at {time}"
        );
        assert_eq!(
            sorted(recent_slid[i].1.clone()),
            sorted(window_words(end, 4)),
            "window(4s, 2s) at {time}"
        );
    }
    for (b, (time, records)) in recent.iter().enumerate() {
        assert_eq!(time.millis(), (b as u64 + 1) * 1000);
        assert_eq!(
            sorted(records.clone()),
            sorted(window_words(b + 1, 3)),
            "window(3s) at batch {b}"
        );
    }
}

#[test]
fn state_survives_a_restart_from_the_checkpoint() {
    let dir = temp_dir("restart");
    let configure = |c: &mut streamc::AppConfig| {
        c.checkpoint_dir = Some(dir.clone().into());
        c.checkpoint_every = Some(std::time::Duration::from_secs(2));
    };
    // Crash-free: all batches in one go.
    let mut whole = running_counts::app()
        .configure(|c| c.checkpoint_dir = Some(temp_dir("restart-whole").into()))
        .test_driver()
        .unwrap();
    whole.run_batches(BATCHES);
    let expected = whole.take::<(String, u64)>("totals").unwrap();
    // Interrupted after 7 batches (the last checkpoint is at 6 s), then restarted from the checkpoint.
    let mut first = running_counts::app()
        .configure(configure)
        .test_driver()
        .unwrap();
    first.run_batches(7);
    let before = first.take::<(String, u64)>("totals").unwrap();
    drop(first);
    let mut second = running_counts::app()
        .configure(configure)
        .test_driver()
        .unwrap();
    second.run_batches(BATCHES - 6);
    let after = second.take::<(String, u64)>("totals").unwrap();
    assert_eq!(
        after.first().map(|(t, _)| t.millis()),
        Some(7000),
        "batch 7 is re-run from the checkpoint at 6 s"
    );
    let mut combined: BTreeMap<u64, Vec<(String, u64)>> = BTreeMap::new();
    for (t, records) in before.into_iter().chain(after) {
        combined.insert(t.millis(), sorted(records));
    }
    let expected: BTreeMap<u64, Vec<(String, u64)>> = expected
        .into_iter()
        .map(|(t, r)| (t.millis(), sorted(r)))
        .collect();
    assert_eq!(combined, expected);
}

/// What an app knew before streamc ran it (Spark's initial state RDD).
fn earlier_counts() -> Vec<(String, u64)> {
    vec![("w0".to_string(), 100), ("old".to_string(), 7)]
}

mod seeded {
    use streamc::prelude::*;
    stream! {
        app seeded_counts { batch: 1s, workers: 2, checkpoint: "target/streamc-test/seeded_counts" }
        let words = queue_stream::<String>(crate::word_batches());
        let pairs = words.map(|w| (w.clone(), 1u64));
        let totals = pairs.update_state_by_key(
            |new: &[u64], state: Option<u64>| Some(state.unwrap_or(0) + new.iter().sum::<u64>()),
            initial = crate::earlier_counts(),
        );
        // Emits (word, count before this record, count after); the seeded count is the "before".
        let seen = pairs.map_with_state(
            |word: &String, one: Option<u64>, state: &mut StateCell<u64>| {
                let before = state.get().copied().unwrap_or(0);
                let after = before + one.unwrap_or(0);
                state.update(after);
                (word.clone(), before, after)
            },
            initial = crate::earlier_counts(),
        );
        totals.collect();
        seen.collect();
    }
}

#[test]
fn initial_state_seeds_a_fresh_start_and_a_checkpoint_overrides_it() {
    let dir = temp_dir("seeded");
    let at = |c: &mut streamc::AppConfig| {
        c.checkpoint_dir = Some(dir.clone().into());
        c.checkpoint_every = Some(std::time::Duration::from_secs(1));
    };
    let mut driver = seeded::seeded_counts::app()
        .configure(at)
        .test_driver()
        .unwrap();
    driver.run_batches(4);
    let mut reference: BTreeMap<String, u64> = crate::earlier_counts().into_iter().collect();
    let totals = driver.take::<(String, u64)>("totals").unwrap();
    let seen = driver.take::<(String, u64, u64)>("seen").unwrap();
    for (b, batch) in word_batches()[..4].iter().enumerate() {
        let mut expected_seen = Vec::new();
        // A word's records in a batch are alike, so whatever their order, they see its count go up
        // one by one from the count before the batch.
        for w in batch {
            let count = reference.entry(w.clone()).or_insert(0);
            expected_seen.push((w.clone(), *count, *count + 1));
            *count += 1;
        }
        assert_eq!(
            sorted(totals[b].1.clone()),
            reference.clone().into_iter().collect::<Vec<_>>(),
            "batch {b}: the seeded keys are there from the first batch, `old` without new values"
        );
        assert_eq!(
            sorted(seen[b].1.clone()),
            sorted(expected_seen),
            "batch {b}"
        );
    }
    drop(driver);

    // Restarted from the checkpoint after batch 4: the state comes from it, not from `initial`.
    let mut resumed = seeded::seeded_counts::app()
        .configure(at)
        .test_driver()
        .unwrap();
    resumed.run_batch();
    let (time, fifth) = resumed.take::<(String, u64)>("totals").unwrap().remove(0);
    assert_eq!(time.millis(), 5000);
    for w in &word_batches()[4] {
        *reference.entry(w.clone()).or_insert(0) += 1;
    }
    assert_eq!(sorted(fifth), reference.into_iter().collect::<Vec<_>>());
}

/// One `a`, three empty batches, another `a` (the minimal cases from a comparison with Spark
/// 4.3 on the same queued batches).
fn a_then_idle_then_a() -> Vec<Vec<String>> {
    let a = || vec!["a".to_string()];
    vec![a(), vec![], vec![], vec![], a()]
}

fn a_alone() -> Vec<Vec<String>> {
    vec![vec!["a".to_string()]]
}

/// `key count` per record, `key timed out` for a key's last call.
fn counted(word: &String, one: Option<u64>, state: &mut StateCell<u64>) -> String {
    match one {
        Some(one) => {
            let next = state.get().copied().unwrap_or(0) + one;
            state.update(next);
            format!("{word} {next}")
        }
        None => format!("{word} timed out"),
    }
}

stream! {
    app scanned_each_batch { batch: 100ms, workers: 2, checkpoint: "target/streamc-test/scanned_each_batch" }
    let words = queue_stream::<String>(crate::a_then_idle_then_a());
    let seen = words.map(|w| (w.clone(), 1u64)).map_with_state(crate::counted, 300ms).checkpoint(100ms);
    seen.collect();
}

stream! {
    app scanned_by_default { batch: 100ms, workers: 2, checkpoint: "target/streamc-test/scanned_by_default" }
    let words = queue_stream::<String>(crate::a_alone());
    let seen = words.map(|w| (w.clone(), 1u64)).map_with_state(crate::counted, 300ms);
    seen.collect();
}

stream! {
    app scanned_exactly { batch: 100ms, workers: 2, checkpoint: "target/streamc-test/scanned_exactly" }
    let words = queue_stream::<String>(crate::a_alone());
    let seen = words.map(|w| (w.clone(), 1u64)).map_with_state(crate::counted, 300ms).checkpoint(100ms);
    seen.collect();
}

/// What each batch emitted, by its 1-based number, empty batches left out.
fn emitted(batches: Vec<(Time, Vec<String>)>) -> Vec<(usize, Vec<String>)> {
    batches
        .into_iter()
        .enumerate()
        .filter(|(_, (_, records))| !records.is_empty())
        .map(|(i, (_, records))| (i + 1, records))
        .collect()
}

#[test]
fn map_with_state_times_out_when_spark_does() {
    // Scanned every batch, `a` touched at batch 1 and 300 ms of timeout: at batch 4 it is exactly
    // 300 ms old, not older, so the `a` of batch 5 finds its state (Spark: `a 1`, then `a 2`).
    let mut driver = scanned_each_batch::app()
        .configure(|c| c.checkpoint_dir = Some(temp_dir("scanned-each").into()))
        .test_driver()
        .unwrap();
    driver.run_batches(8);
    assert_eq!(
        emitted(driver.take::<String>("seen").unwrap()),
        [(1, vec!["a 1".to_string()]), (5, vec!["a 2".to_string()])]
    );
    // Alone, it times out at the first scan where it is older than the timeout: batch 5.
    let mut driver = scanned_exactly::app()
        .configure(|c| c.checkpoint_dir = Some(temp_dir("scanned-exactly").into()))
        .test_driver()
        .unwrap();
    driver.run_batches(8);
    assert_eq!(
        emitted(driver.take::<String>("seen").unwrap()),
        [
            (1, vec!["a 1".to_string()]),
            (5, vec!["a timed out".to_string()])
        ]
    );
    // By default the stream is checkpointed, and scanned, every 10 batch intervals: the 10th batch.
    let mut driver = scanned_by_default::app()
        .configure(|c| c.checkpoint_dir = Some(temp_dir("scanned-default").into()))
        .test_driver()
        .unwrap();
    driver.run_batches(25);
    assert_eq!(
        emitted(driver.take::<String>("seen").unwrap()),
        [
            (1, vec!["a 1".to_string()]),
            (10, vec!["a timed out".to_string()])
        ]
    );
}

stream! {
    app stopped_idle { batch: 100ms, workers: 2, checkpoint: "target/streamc-test/stopped_idle" }
    let words = queue_stream::<String>(crate::a_alone());
    let seen = words.map(|w| (w.clone(), 1u64)).map_with_state(crate::counted, 100ms);
    let held = seen.state_snapshots();
    seen.collect();
    held.collect();
}

/// A stop does nothing special to timeouts: the last batch (a checkpoint batch) does not scan, so a
/// key idle past its timeout is still in the final checkpoint, as in Spark.
#[test]
fn a_stop_times_nothing_out() {
    let dir = temp_dir("stopped-idle");
    let app = stopped_idle::app()
        .configure(|c| {
            c.checkpoint_dir = Some(dir.clone().into());
            c.stop_after_batches = Some(4);
        })
        .start()
        .unwrap();
    app.wait().unwrap();
    let mut driver = stopped_idle::app()
        .configure(|c| c.checkpoint_dir = Some(dir.clone().into()))
        .test_driver()
        .unwrap();
    driver.run_batch();
    let held = driver.take::<(String, u64)>("held").unwrap();
    assert_eq!(
        held[0].1,
        [("a".to_string(), 1)],
        "`a` outlived the stop in the checkpoint"
    );
}

fn letters() -> Vec<Vec<String>> {
    ["a", "b a", "", "c", "a c", "b", "", "a", "c c", "b"]
        .iter()
        .map(|line| line.split_whitespace().map(str::to_string).collect())
        .collect()
}

static TRANSFORMS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

stream! {
    app windowed_state { batch: 1s, workers: 2, checkpoint: "target/streamc-test/windowed_state" }
    let words = queue_stream::<String>(crate::letters());
    let recent = words.map(|w| (w.clone(), 1u64)).window(4s, 2s);
    // (occurrences summed over the windows seen, calls of the function)
    let totals = recent.update_state_by_key(|new: &[u64], old: Option<(u64, u64)>| {
        let (sum, calls) = old.unwrap_or((0, 0));
        Some((sum + new.iter().sum::<u64>(), calls + 1))
    });
    let seen = recent.transform(|batch| {
        crate::TRANSFORMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        batch
    });
    totals.collect();
    seen.collect();
}

/// Downstream of a window the stream exists only at the slide, as in Spark: a stateful operator
/// updates (and calls its function) only then, a `transform` runs only then.
#[test]
fn operators_downstream_of_a_window_run_at_its_slide() {
    let mut driver = windowed_state::app()
        .configure(|c| c.checkpoint_dir = Some(temp_dir("windowed-state").into()))
        .test_driver()
        .unwrap();
    let n = letters().len();
    driver.run_batches(n);
    let totals = driver.take::<(String, (u64, u64))>("totals").unwrap();
    let slides: Vec<u64> = totals.iter().map(|(t, _)| t.millis()).collect();
    assert_eq!(
        slides,
        (1..=n as u64 / 2).map(|i| i * 2000).collect::<Vec<_>>()
    );
    let mut state: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (time, got) in &totals {
        let end = (time.millis() / 1000) as usize;
        let window: Vec<String> = letters()
            .into_iter()
            .take(end)
            .skip(end.saturating_sub(4))
            .flatten()
            .collect();
        let counts = counts(&window);
        let keys: std::collections::BTreeSet<String> =
            state.keys().chain(counts.keys()).cloned().collect();
        for key in keys {
            let entry = state.entry(key.clone()).or_insert((0, 0));
            *entry = (
                entry.0 + counts.get(&key).copied().unwrap_or(0),
                entry.1 + 1,
            );
        }
        let expected: Vec<(String, (u64, u64))> =
            state.iter().map(|(k, v)| (k.clone(), *v)).collect();
        assert_eq!(sorted(got.clone()), expected, "at {time:?}");
    }
    assert_eq!(
        TRANSFORMS.load(std::sync::atomic::Ordering::Relaxed),
        n / 2,
        "the transform ran once per slide"
    );
}

stream! {
    app windowed_timeouts { batch: 1s, workers: 2, checkpoint: "target/streamc-test/windowed_timeouts" }
    let words = queue_stream::<String>(crate::a_alone());
    let seen = words.map(|w| (w.clone(), 1u64)).window(2s, 2s).map_with_state(crate::counted, 1s);
    seen.collect();
}

/// Downstream of a window the timeout scan falls on slides (every 10 of them by default), so an
/// idle key does time out there.
#[test]
fn map_with_state_after_a_window_times_out_idle_keys() {
    let mut driver = windowed_timeouts::app()
        .configure(|c| c.checkpoint_dir = Some(temp_dir("windowed-timeouts").into()))
        .test_driver()
        .unwrap();
    driver.run_batches(45);
    let seen: Vec<String> = driver
        .take::<String>("seen")
        .unwrap()
        .into_iter()
        .flat_map(|(_, s)| s)
        .collect();
    assert_eq!(seen, ["a 1", "a timed out"]);
}
