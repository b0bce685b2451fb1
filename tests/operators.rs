//! Every operator, driven through `queue_stream` with the manual-clock test driver, against a plain
//! reference computation over the same batches.

use std::collections::{BTreeMap, HashMap};
use streamc::prelude::*;
use streamc::TestDriver;

fn words_batches() -> Vec<Vec<String>> {
    vec![
        vec!["a b a".into(), "c a".into(), "".into()],
        vec![],
        vec!["b b".into(), "d".into(), "a c d d".into(), "e".into()],
        (0..500)
            .map(|i| format!("w{} w{} x", i % 37, i % 11))
            .collect(),
    ]
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// Runs the driver until the queue is drained and returns each batch's collected records, sorted.
fn drain<P: streamc::Pipeline, T: Ord + 'static>(
    driver: &mut TestDriver<P>,
    output: &str,
    batches: usize,
) -> Vec<Vec<T>> {
    let infos = driver.run_batches(batches);
    assert!(
        infos.iter().all(|i| i.failure.is_none()),
        "a batch failed: {infos:?}"
    );
    let collected = driver
        .take::<T>(output)
        .expect("collected records of the expected type");
    assert_eq!(collected.len(), batches, "one collected result per batch");
    collected
        .into_iter()
        .map(|(_, records)| sorted(records))
        .collect()
}

fn reference_word_count(lines: &[String]) -> Vec<(String, u64)> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for line in lines {
        for w in line.split(' ') {
            *counts.entry(w.to_string()).or_default() += 1;
        }
    }
    counts.into_iter().collect()
}

stream! {
    app narrow_ops { batch: 1s, workers: 3 }
    let lines = queue_stream::<String>(crate::words_batches());
    let words = lines.flat_map(|line| line.split(' ')).filter(|w| !w.is_empty());
    let pairs = words.map(|w| (w.to_string(), w.len()));
    let doubled = pairs.map_values(|n| n * 2);
    let exploded = doubled.flat_map_values(|n| 0..n);
    exploded.collect();
}

#[test]
fn map_flat_map_filter_map_values_flat_map_values_fuse_correctly() {
    let mut driver = narrow_ops::app().test_driver().unwrap();
    let got: Vec<Vec<(String, usize)>> = drain(&mut driver, "exploded", 4);
    for (batch, lines) in words_batches().iter().enumerate() {
        let mut expected = Vec::new();
        for line in lines {
            for w in line.split(' ').filter(|w| !w.is_empty()) {
                for i in 0..w.len() * 2 {
                    expected.push((w.to_string(), i));
                }
            }
        }
        assert_eq!(got[batch], sorted(expected), "batch {batch}");
    }
}

stream! {
    app keyed_ops { batch: 1s, workers: 2 }
    let lines = queue_stream::<String>(crate::words_batches());
    let pairs = lines.flat_map(|line| line.split(' ')).map(|w| (w.to_string(), 1u64));
    let counts = pairs.reduce_by_key(|a, b| a + b);
    let groups = pairs.group_by_key().map(|(w, ones): (String, Vec<u64>)| (w, ones.len()));
    let values = lines.flat_map(|line| line.split(' ')).map(str::to_string).count_by_value();
    counts.collect();
    groups.collect();
    values.collect();
}

#[test]
fn reduce_by_key_group_by_key_count_by_value_match_the_reference() {
    let mut driver = keyed_ops::app().test_driver().unwrap();
    driver.run_batches(4);
    let counts = driver.take::<(String, u64)>("counts").unwrap();
    let groups = driver.take::<(String, usize)>("groups").unwrap();
    let values = driver.take::<(String, u64)>("values").unwrap();
    for (batch, lines) in words_batches().iter().enumerate() {
        let expected = reference_word_count(lines);
        assert_eq!(
            sorted(counts[batch].1.clone()),
            expected,
            "reduce_by_key, batch {batch}"
        );
        assert_eq!(
            sorted(values[batch].1.clone()),
            expected,
            "count_by_value, batch {batch}"
        );
        let expected_groups: Vec<(String, usize)> = expected
            .iter()
            .map(|(w, n)| (w.clone(), *n as usize))
            .collect();
        assert_eq!(
            sorted(groups[batch].1.clone()),
            expected_groups,
            "group_by_key, batch {batch}"
        );
    }
}

fn numbers() -> Vec<Vec<i64>> {
    vec![vec![1, 2, 3, 4], vec![], vec![10], (1..=1000).collect()]
}

stream! {
    app whole_batch_ops { batch: 500ms, workers: 2 }
    let nums = queue_stream::<i64>(crate::numbers());
    let how_many = nums.count();
    let spread = nums.map(|n| *n).repartition(5);
    let sizes = spread.transform(|batch: Batch<i64>| {
        let parts = batch.num_partitions() as i64;
        batch.map(move |n| (n, parts))
    });
    let sorted_desc = nums.map(|n| *n).transform(|batch| batch.sort_by(false, |n| *n).map(|n| n * 10));
    how_many.collect();
    sizes.collect();
    sorted_desc.collect();
}

#[test]
fn reduce_count_repartition_transform() {
    let mut driver = whole_batch_ops::app().test_driver().unwrap();
    driver.run_batches(4);
    let how_many = driver.take::<u64>("how_many").unwrap();
    assert_eq!(
        how_many.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>(),
        vec![vec![4], vec![0], vec![1], vec![1000]]
    );
    let sizes = driver.take::<(i64, i64)>("sizes").unwrap();
    for (batch, nums) in numbers().iter().enumerate() {
        let expected: Vec<(i64, i64)> = nums.iter().map(|n| (*n, 5)).collect();
        assert_eq!(
            sorted(sizes[batch].1.clone()),
            sorted(expected),
            "repartition(5) + transform, batch {batch}"
        );
    }
    let sorted_desc = driver.take::<i64>("sorted_desc").unwrap();
    for (batch, nums) in numbers().iter().enumerate() {
        let mut expected: Vec<i64> = nums.iter().map(|n| n * 10).collect();
        expected.sort_by(|a, b| b.cmp(a));
        assert_eq!(
            sorted_desc[batch].1, expected,
            "sort_by in transform keeps order, batch {batch}"
        );
    }
}

stream! {
    app reduce_owned { batch: 1s, workers: 2 }
    let nums = queue_stream::<i64>(crate::numbers());
    let total = nums.map(|n| *n).reduce(|a, b| a + b);
    total.collect();
}

#[test]
fn reduce_matches_the_sum_and_is_empty_for_empty_batches() {
    let mut driver = reduce_owned::app().test_driver().unwrap();
    let got: Vec<Vec<i64>> = drain(&mut driver, "total", 4);
    assert_eq!(got, vec![vec![10], vec![], vec![10], vec![500_500]]);
}

fn clicks() -> Vec<Vec<(String, String)>> {
    vec![
        vec![
            ("tom".into(), "ad1".into()),
            ("ann".into(), "ad2".into()),
            ("bob".into(), "ad1".into()),
            ("tom".into(), "ad3".into()),
        ],
        vec![("zed".into(), "ad9".into())],
    ]
}

fn users() -> Vec<Vec<(String, u32)>> {
    vec![
        vec![("tom".into(), 30), ("ann".into(), 25), ("ann".into(), 26)],
        vec![],
    ]
}

stream! {
    app joins { batch: 1s, workers: 2 }
    let click_stream = queue_stream::<(String, String)>(crate::clicks());
    let user_stream = queue_stream::<(String, u32)>(crate::users());
    let owned_clicks = click_stream.map(|c| c.clone());
    let owned_users = user_stream.map(|u| u.clone());
    let inner = owned_clicks.join(owned_users);
    let outer = owned_clicks.left_outer_join(owned_users);
    let both = owned_clicks.map(|(u, _)| u).union(owned_users.map(|(u, _)| u));
    inner.collect();
    outer.collect();
    both.collect();
}

#[test]
fn join_left_outer_join_union_match_the_reference() {
    let mut driver = joins::app().test_driver().unwrap();
    driver.run_batches(2);
    let inner = driver.take::<(String, (String, u32))>("inner").unwrap();
    let outer = driver
        .take::<(String, (String, Option<u32>))>("outer")
        .unwrap();
    let both = driver.take::<String>("both").unwrap();
    for (batch, (cs, us)) in clicks().iter().zip(users()).enumerate() {
        let mut by_user: HashMap<&str, Vec<u32>> = HashMap::new();
        for (u, age) in &us {
            by_user.entry(u.as_str()).or_default().push(*age);
        }
        let mut expected_inner = Vec::new();
        let mut expected_outer = Vec::new();
        for (u, ad) in cs {
            match by_user.get(u.as_str()) {
                Some(ages) => {
                    for age in ages {
                        expected_inner.push((u.clone(), (ad.clone(), *age)));
                        expected_outer.push((u.clone(), (ad.clone(), Some(*age))));
                    }
                }
                None => expected_outer.push((u.clone(), (ad.clone(), None))),
            }
        }
        assert_eq!(
            sorted(inner[batch].1.clone()),
            sorted(expected_inner),
            "join, batch {batch}"
        );
        assert_eq!(
            sorted(outer[batch].1.clone()),
            sorted(expected_outer),
            "left_outer_join, batch {batch}"
        );
        let expected_union: Vec<String> = cs
            .iter()
            .map(|c| c.0.clone())
            .chain(us.iter().map(|u| u.0.clone()))
            .collect();
        assert_eq!(
            sorted(both[batch].1.clone()),
            sorted(expected_union),
            "union, batch {batch}"
        );
    }
}

fn blacklist() -> Vec<(String, bool)> {
    vec![("tom".into(), true), ("bob".into(), false)]
}

stream! {
    app blacklist_filter { batch: 1s, workers: 2 }
    let table: Batch<(String, bool)> = broadcast(Batch::from_vec(crate::blacklist(), 2));
    let logs = queue_stream::<(String, String)>(crate::clicks());
    let valid = logs
        .map(|(user, ad)| (user.clone(), format!("{user} {ad}")))
        .transform(|batch| {
            batch
                .left_outer_join(table)
                .filter(|(_, (_, blocked))| !blocked.unwrap_or(false))
                .map(|(_, (log, _))| log)
        });
    valid.collect();
}

#[test]
fn transform_with_a_broadcast_blacklist_filters_like_the_seed() {
    let mut driver = blacklist_filter::app().test_driver().unwrap();
    let got: Vec<Vec<String>> = drain(&mut driver, "valid", 2);
    assert_eq!(got[0], vec!["ann ad2".to_string(), "bob ad1".to_string()]);
    assert_eq!(got[1], vec!["zed ad9".to_string()]);
}

stream! {
    app outputs { batch: 1s, workers: 2 }
    let lines = queue_stream::<String>(crate::words_batches());
    let counts = lines
        .flat_map(|line| line.split(' '))
        .map(|w| (w.to_string(), 1u64))
        .reduce_by_key(|a, b| a + b);
    let sorted_counts = counts.transform(|b| b.sort_by(true, |(w, _)| w.clone()));
    sorted_counts.print();
    sorted_counts.print(2);
    counts.foreach_batch(|batch, time| crate::record_batch(batch.len(), time.millis()));
}

static SEEN: std::sync::Mutex<Vec<(usize, u64)>> = std::sync::Mutex::new(Vec::new());

fn record_batch(len: usize, time: u64) {
    SEEN.lock().unwrap().push((len, time));
}

#[test]
fn print_matches_spark_and_foreach_batch_sees_every_batch() {
    let mut driver = outputs::app().test_driver().unwrap();
    driver.run_batches(3);
    let printed = driver.take_printed();
    let rule = "-------------------------------------------";
    let expected_first = format!(
        "{rule}\nTime: 1000 ms\n{rule}\n(,1)\n(a,3)\n(b,1)\n(c,1)\n\n{rule}\nTime: 1000 ms\n{rule}\n(,1)\n(a,3)\n...\n\n"
    );
    assert!(printed.starts_with(&expected_first), "got:\n{printed}");
    assert!(
        printed.contains(&format!("{rule}\nTime: 2000 ms\n{rule}\n\n")),
        "empty batch block missing:\n{printed}"
    );
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(seen, vec![(4, 1000), (0, 2000), (5, 3000)]);
}

stream! {
    app one_worker { batch: 1s, workers: 1 }
    let lines = queue_stream::<String>(crate::words_batches());
    let counts = lines.flat_map(|l| l.split(' ')).map(|w| (w.to_string(), 1u64)).reduce_by_key(|a, b| a + b);
    counts.collect();
}

#[test]
fn one_worker_is_enough() {
    let mut driver = one_worker::app().test_driver().unwrap();
    let got: Vec<Vec<(String, u64)>> = drain(&mut driver, "counts", 4);
    for (batch, lines) in words_batches().iter().enumerate() {
        assert_eq!(got[batch], reference_word_count(lines));
    }
}

#[test]
fn a_panicking_closure_fails_its_batch_only() {
    stream! {
        app fragile { batch: 1s, workers: 2 }
        let nums = queue_stream::<i64>(vec![vec![1, 2], vec![0], vec![5]]);
        let inverted = nums.map(|n| 10 / *n);
        inverted.collect();
    }
    let mut driver = fragile::app().test_driver().unwrap();
    let infos = driver.run_batches(3);
    assert!(infos[0].failure.is_none());
    assert!(
        infos[1]
            .failure
            .as_deref()
            .unwrap_or("")
            .contains("divide by zero"),
        "{infos:?}"
    );
    assert!(infos[2].failure.is_none());
    let got = driver.take::<i64>("inverted").unwrap();
    assert_eq!(
        got.iter()
            .map(|(t, r)| (t.millis(), sorted(r.clone())))
            .collect::<Vec<_>>(),
        vec![(1000, vec![5, 10]), (3000, vec![2])]
    );
}

static PARSED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn parse_counted(line: &str) -> usize {
    PARSED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    line.len()
}

stream! {
    app shared { batch: 1s, workers: 2 }
    let lines = queue_stream::<String>(crate::words_batches());
    let lengths = lines.map(|l| crate::parse_counted(l)).cache();
    let total = lengths.reduce(|a, b| a + b);
    let longest = lengths.reduce(|a, b| a.max(b));
    total.collect();
    longest.collect();
    lengths.print(3);
}

#[test]
fn a_cached_stream_is_computed_once_per_batch_for_all_its_outputs() {
    let mut driver = shared::app().test_driver().unwrap();
    driver.run_batches(4);
    let lines: usize = words_batches().iter().map(Vec::len).sum();
    assert_eq!(
        PARSED.load(std::sync::atomic::Ordering::SeqCst),
        lines,
        "three outputs, one computation"
    );
    let total = driver.take::<usize>("total").unwrap();
    let longest = driver.take::<usize>("longest").unwrap();
    for (b, batch) in words_batches().iter().enumerate() {
        let lens: Vec<usize> = batch.iter().map(String::len).collect();
        assert_eq!(
            total[b].1,
            lens.iter()
                .copied()
                .reduce(|a, c| a + c)
                .into_iter()
                .collect::<Vec<_>>()
        );
        assert_eq!(
            longest[b].1,
            lens.iter().copied().max().into_iter().collect::<Vec<_>>()
        );
    }
}

fn word_refs() -> Vec<Vec<&'static str>> {
    vec![vec!["a", "b", "a"], vec![], vec!["c", "a", "c"]]
}

// The forms of `map(|w| (w.to_string(), value))` before a keyed table, which the generated code
// pushes by the word's text, next to forms it must leave as written.
stream! {
    app owned_key_forms { batch: 1s, workers: 2, checkpoint: "target/streamc-test/owned-key-forms" }
    let lines = queue_stream::<String>(crate::words_batches());
    let plain = lines.flat_map(|line| line.split(' ')).map(|w| (w.to_string(), 1u64)).reduce_by_key(|a, b| a + b);
    let annotated = lines.flat_map(|line| line.split(' ')).map(|w: &str| { (w.to_string(), 1u64) }).reduce_by_key(|a, b| a + b);
    let numeric = lines.flat_map(|line| line.split(' ')).map(|w| w.len()).map(|n| (n.to_string(), 1u64)).reduce_by_key(|a, b| a + b);
    let lengths = lines.flat_map(|line| line.split(' ')).map(|w| (w.to_string(), w.len() as u64)).reduce_by_key(|a, b| a + b);
    let groups = lines.flat_map(|line| line.split(' ')).map(|w| (w.to_string(), 1u64)).group_by_key().map(|(w, ones): (String, Vec<u64>)| (w, ones.len() as u64));
    let totals = lines.flat_map(|line| line.split(' ')).map(|w| (w.to_string(), 1u64)).update_state_by_key(|new: &[u64], old: Option<u64>| Some(old.unwrap_or(0) + new.iter().sum::<u64>()));
    let windowed = lines.flat_map(|line| line.split(' ')).map(|w| (w.to_string(), 1u64)).reduce_by_key_and_window(|a, b| a + b, 2s, 1s);
    let refs = queue_stream::<&'static str>(crate::word_refs());
    let borrowed_twice = refs.map(|w| (w.to_string(), 1u64)).reduce_by_key(|a, b| a + b);
    plain.collect();
    annotated.collect();
    numeric.collect();
    lengths.collect();
    groups.collect();
    totals.collect();
    windowed.collect();
    borrowed_twice.collect();
}

fn tally<K: Ord>(pairs: impl IntoIterator<Item = (K, u64)>) -> BTreeMap<K, u64> {
    let mut out = BTreeMap::new();
    for (k, v) in pairs {
        *out.entry(k).or_default() += v;
    }
    out
}

#[test]
fn words_owned_by_to_string_before_a_keyed_table_count_as_written() {
    let dir = std::env::temp_dir().join(format!("streamc-owned-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut driver = owned_key_forms::app()
        .configure(|c| c.checkpoint_dir = Some(dir.clone().into()))
        .test_driver()
        .unwrap();
    driver.run_batches(4);
    let take = |driver: &mut TestDriver<_>, name: &str| -> Vec<BTreeMap<String, u64>> {
        driver
            .take::<(String, u64)>(name)
            .unwrap()
            .into_iter()
            .map(|(_, records)| tally(records))
            .collect()
    };
    let [plain, annotated, numeric, lengths, groups, totals, windowed, borrowed_twice] = [
        "plain",
        "annotated",
        "numeric",
        "lengths",
        "groups",
        "totals",
        "windowed",
        "borrowed_twice",
    ]
    .map(|name| take(&mut driver, name));
    let batches = words_batches();
    let words: Vec<Vec<&str>> = batches
        .iter()
        .map(|lines| lines.iter().flat_map(|l| l.split(' ')).collect())
        .collect();
    let mut running = BTreeMap::new();
    for (batch, ws) in words.iter().enumerate() {
        let counts = tally(ws.iter().map(|w| (w.to_string(), 1)));
        assert_eq!(plain[batch], counts, "plain, batch {batch}");
        assert_eq!(annotated[batch], counts, "annotated, batch {batch}");
        assert_eq!(groups[batch], counts, "group_by_key, batch {batch}");
        let by_length = tally(ws.iter().map(|w| (w.len().to_string(), 1)));
        assert_eq!(numeric[batch], by_length, "numeric keys, batch {batch}");
        let lengths_expected = tally(ws.iter().map(|w| (w.to_string(), w.len() as u64)));
        assert_eq!(lengths[batch], lengths_expected, "lengths, batch {batch}");
        for (w, n) in &counts {
            *running.entry(w.clone()).or_insert(0) += n;
        }
        assert_eq!(totals[batch], running, "update_state_by_key, batch {batch}");
        let previous = batch
            .checked_sub(1)
            .map(|b| words[b].clone())
            .unwrap_or_default();
        let window = tally(ws.iter().chain(&previous).map(|w| (w.to_string(), 1)));
        assert_eq!(windowed[batch], window, "window, batch {batch}");
    }
    for (batch, ws) in word_refs().iter().enumerate() {
        let counts = tally(ws.iter().map(|w| (w.to_string(), 1)));
        assert_eq!(
            borrowed_twice[batch], counts,
            "&&str records, batch {batch}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Random keyed batches, the same every run: small keys so that they repeat within and across
/// streams, some batches empty.
fn random_batches(seed: u64) -> Vec<Vec<(u8, u32)>> {
    let mut rng = streamc::testkit::Rng::new(seed);
    (0..8)
        .map(|_| {
            let len = rng.next_u64() % 30;
            (0..len)
                .map(|_| ((rng.next_u64() % 7) as u8, (rng.next_u64() % 9) as u32))
                .collect()
        })
        .collect()
}

fn left_batches() -> Vec<Vec<(u8, u32)>> {
    random_batches(1)
}

fn right_batches() -> Vec<Vec<(u8, u32)>> {
    random_batches(2)
}

fn third_batches() -> Vec<Vec<(u8, u32)>> {
    random_batches(3)
}

type Sums = (u64, u64);

stream! {
    app more_pairs { batch: 1s, workers: 2 }
    let left = queue_stream::<(u8, u32)>(crate::left_batches());
    let right = queue_stream::<(u8, u32)>(crate::right_batches());
    let third = queue_stream::<(u8, u32)>(crate::third_batches());
    let l = left.map(|p| *p);
    let r = right.map(|p| *p);
    let t = third.map(|p| *p);
    let right_outer = l.right_outer_join(r);
    let full_outer = l.full_outer_join(r);
    let grouped = l.cogroup(r).map(|(k, (vs, ws)): (u8, (Vec<u32>, Vec<u32>))| (k, (crate::sorted(vs), crate::sorted(ws))));
    let sums = l.combine_by_key(
        |v: u32| (u64::from(v), 1u64),
        |(s, n): crate::Sums, v: u32| (s + u64::from(v), n + 1),
        |a: crate::Sums, b: crate::Sums| (a.0 + b.0, a.1 + b.1),
    );
    let all = l.union(r, t);
    let only_left = l.transform_with(r, |a, b| a.subtract(&b));
    right_outer.collect();
    full_outer.collect();
    grouped.collect();
    sums.collect();
    all.collect();
    only_left.collect();
}

/// The values of `key` in `pairs`.
fn values_of(pairs: &[(u8, u32)], key: u8) -> Vec<u32> {
    pairs
        .iter()
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .collect()
}

#[test]
fn outer_joins_cogroup_combine_by_key_many_unions_and_transform_with_match_a_recount() {
    let mut driver = more_pairs::app().test_driver().unwrap();
    let n = left_batches().len();
    type RightOuter = (u8, (Option<u32>, u32));
    let right_outer: Vec<Vec<RightOuter>> = drain(&mut driver, "right_outer", n);
    let full_outer = driver
        .take::<(u8, (Option<u32>, Option<u32>))>("full_outer")
        .unwrap();
    let grouped = driver
        .take::<(u8, (Vec<u32>, Vec<u32>))>("grouped")
        .unwrap();
    let sums = driver.take::<(u8, Sums)>("sums").unwrap();
    let all = driver.take::<(u8, u32)>("all").unwrap();
    let only_left = driver.take::<(u8, u32)>("only_left").unwrap();
    let (lefts, rights, thirds) = (left_batches(), right_batches(), third_batches());
    for b in 0..n {
        let (l, r) = (&lefts[b], &rights[b]);
        let keys: std::collections::BTreeSet<u8> = l.iter().chain(r).map(|(k, _)| *k).collect();
        let (mut ro, mut fo, mut cg, mut sm) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for &k in &keys {
            let (vs, ws) = (values_of(l, k), values_of(r, k));
            for &w in &ws {
                if vs.is_empty() {
                    ro.push((k, (None, w)));
                }
                ro.extend(vs.iter().map(|&v| (k, (Some(v), w))));
            }
            if vs.is_empty() {
                fo.extend(ws.iter().map(|&w| (k, (None, Some(w)))));
            } else if ws.is_empty() {
                fo.extend(vs.iter().map(|&v| (k, (Some(v), None))));
            } else {
                for &v in &vs {
                    fo.extend(ws.iter().map(|&w| (k, (Some(v), Some(w)))));
                }
            }
            if !vs.is_empty() {
                sm.push((k, (vs.iter().map(|v| u64::from(*v)).sum(), vs.len() as u64)));
            }
            cg.push((k, (sorted(vs), sorted(ws))));
        }
        assert_eq!(right_outer[b], sorted(ro), "right_outer_join, batch {b}");
        assert_eq!(
            sorted(full_outer[b].1.clone()),
            sorted(fo),
            "full_outer_join, batch {b}"
        );
        assert_eq!(sorted(grouped[b].1.clone()), cg, "cogroup, batch {b}");
        assert_eq!(sorted(sums[b].1.clone()), sm, "combine_by_key, batch {b}");
        let union: Vec<(u8, u32)> = l.iter().chain(r).chain(&thirds[b]).copied().collect();
        assert_eq!(
            sorted(all[b].1.clone()),
            sorted(union),
            "union of three, batch {b}"
        );
        let subtracted: Vec<(u8, u32)> = l.iter().filter(|p| !r.contains(p)).copied().collect();
        assert_eq!(
            sorted(only_left[b].1.clone()),
            sorted(subtracted),
            "transform_with, batch {b}"
        );
    }
}

fn many_random_batches() -> Vec<Vec<(u8, u32)>> {
    let mut rng = streamc::testkit::Rng::new(17);
    (0..40)
        .map(|_| {
            let len = rng.next_u64() % 25;
            (0..len)
                .map(|_| ((rng.next_u64() % 9) as u8, 1 + (rng.next_u64() % 4) as u32))
                .collect()
        })
        .collect()
}

stream! {
    app inverse_or_not { batch: 1s, workers: 2, checkpoint: "target/streamc-test/inverse_or_not" }
    let pairs = queue_stream::<(u8, u32)>(crate::many_random_batches());
    let owned = pairs.map(|p| *p);
    let plain = owned.reduce_by_key_and_window(|a, b| a + b, 5s, 2s);
    let inverse = owned.reduce_by_key_and_window(|a, b| a + b, |a, b| a - b, 5s, 2s, |_, n: &u32| *n > 0);
    plain.collect();
    inverse.collect();
}

/// Property: on random input, a window kept with an inverse function (and keys at zero filtered
/// out) equals the same window recomputed from its batches, at every slide.
#[test]
fn a_window_with_an_inverse_function_equals_the_window_without_one() {
    let dir = std::env::temp_dir().join(format!("streamc-inverse-or-not-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut driver = inverse_or_not::app()
        .configure(|c| c.checkpoint_dir = Some(dir.clone().into()))
        .test_driver()
        .unwrap();
    let n = many_random_batches().len();
    driver.run_batches(n + 5);
    let plain = driver.take::<(u8, u32)>("plain").unwrap();
    let inverse = driver.take::<(u8, u32)>("inverse").unwrap();
    assert_eq!(plain.len(), inverse.len());
    let batches = many_random_batches();
    let mut slides = 0;
    for ((time, p), (t2, i)) in plain.into_iter().zip(inverse) {
        assert_eq!(time, t2);
        assert_eq!(sorted(p.clone()), sorted(i), "at {time:?}");
        // And both equal the recount of the batches inside the window ending here.
        let end = (time.millis() / 1000) as usize;
        if end.is_multiple_of(2) {
            let mut counts: BTreeMap<u8, u32> = BTreeMap::new();
            for batch in batches.iter().take(end).skip(end.saturating_sub(5)) {
                for (k, v) in batch {
                    *counts.entry(*k).or_default() += v;
                }
            }
            assert_eq!(
                sorted(p),
                counts.into_iter().collect::<Vec<_>>(),
                "recount at {time:?}"
            );
            slides += 1;
        }
    }
    assert!(slides >= 20, "{slides} slides compared");
}

static PARTITION_COUNTS: std::sync::Mutex<Vec<(&'static str, usize)>> =
    std::sync::Mutex::new(Vec::new());

fn note_partitions<T>(what: &'static str, batch: Batch<T>) -> Batch<T> {
    PARTITION_COUNTS
        .lock()
        .unwrap()
        .push((what, batch.num_partitions()));
    batch
}

stream! {
    app partitioned { batch: 1s, workers: 2, checkpoint: "target/streamc-test/partitioned" }
    let lines = queue_stream::<String>(crate::words_batches());
    let pairs = lines.flat_map(|l: &String| l.split(' ')).map(|w| (w.to_string(), 1u64));
    let counts = pairs.reduce_by_key(|a, b| a + b, partitions = 5);
    let totals = pairs.update_state_by_key(|new: &[u64], old: Option<u64>| Some(old.unwrap_or(0) + new.iter().sum::<u64>()), partitions = 3);
    let recent = pairs.reduce_by_key_and_window(|a, b| a + b, 2s, partitions = 4);
    counts.transform(|b| crate::note_partitions("counts", b)).collect("counts");
    totals.transform(|b| crate::note_partitions("totals", b)).collect("totals");
    recent.transform(|b| crate::note_partitions("recent", b)).collect("recent");
}

/// `partitions = n` (Spark's `numPartitions`): the shuffle, the keyed state and the window make
/// that many partitions, and the results are the same.
#[test]
fn a_partition_count_sets_the_partitions_of_shuffles_state_and_windows() {
    let dir = std::env::temp_dir().join(format!("streamc-partitioned-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut driver = partitioned::app()
        .configure(|c| c.checkpoint_dir = Some(dir.clone().into()))
        .test_driver()
        .unwrap();
    let n = words_batches().len();
    driver.run_batches(n);
    let counts = driver.take::<(String, u64)>("counts").unwrap();
    let totals = driver.take::<(String, u64)>("totals").unwrap();
    let recent = driver.take::<(String, u64)>("recent").unwrap();
    let mut running: BTreeMap<String, u64> = BTreeMap::new();
    for (b, lines) in words_batches().iter().enumerate() {
        let expected = reference_word_count(lines);
        assert_eq!(sorted(counts[b].1.clone()), expected, "counts, batch {b}");
        for (w, c) in &expected {
            *running.entry(w.clone()).or_default() += c;
        }
        let expected_totals: Vec<(String, u64)> =
            running.iter().map(|(w, c)| (w.clone(), *c)).collect();
        assert_eq!(
            sorted(totals[b].1.clone()),
            expected_totals,
            "totals, batch {b}"
        );
        let window: Vec<String> = words_batches()[b.saturating_sub(1)..=b].concat();
        assert_eq!(
            sorted(recent[b].1.clone()),
            reference_word_count(&window),
            "window, batch {b}"
        );
    }
    let noted = PARTITION_COUNTS.lock().unwrap().clone();
    for (what, wanted) in [("counts", 5), ("totals", 3), ("recent", 4)] {
        let seen: Vec<usize> = noted
            .iter()
            .filter(|(w, _)| *w == what)
            .map(|(_, p)| *p)
            .collect();
        assert_eq!(seen, vec![wanted; n], "{what}");
    }
}
