//! Checkpoints and recovery end to end: a pipeline killed with SIGKILL at random points and restarted
//! produces exactly the outputs and final state of a crash-free run; damaged checkpoints fall back to the
//! previous one; upgrades that keep the state types resume, incompatible ones are refused with the
//! operator and the change named, and `--reset-state` starts over.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use streamc::testkit::Rng;
use support::{setting, temp_dir, CHECKPOINTS};

fn crash_batches() -> Vec<Vec<String>> {
    let mut rng = Rng::new(11);
    (0..40)
        .map(|_| {
            (0..(rng.next_u64() % 30))
                .map(|_| format!("w{}", rng.next_u64() % 9))
                .collect()
        })
        .collect()
}

/// An idempotent sink: one file per output and batch time (see `support::publish`).
fn write_output(name: &str, batch: streamc::Batch<(String, u64)>, time: streamc::Time) {
    let file = format!("{name}-{:020}.txt", time.millis());
    support::publish(
        &file,
        batch.collect().into_iter().map(|(w, n)| format!("{w} {n}")),
    );
}

mod crash {
    use streamc::prelude::*;

    stream! {
        app crash_counts { batch: 100ms, workers: 2, checkpoint: "target/streamc-test/crash", checkpoint_every: 200ms }
        let words = queue_stream::<String>(crate::crash_batches());
        let pairs = words.map(|w| (w.clone(), 1u64));
        let totals = pairs.update_state_by_key(|new: &[u64], old: Option<u64>| Some(old.unwrap_or(0) + new.iter().sum::<u64>()));
        // Slide = batch interval: which batches a window holds depends only on batch order, not on how a
        // run's first tick falls on the slide grid (which differs between runs).
        let recent = pairs.reduce_by_key_and_window(|a, b| a + b, |a, b| a - b, 400ms, 100ms, |_, n: &u64| *n > 0);
        totals.foreach_batch(|batch, time| crate::write_output("totals", batch, time));
        recent.foreach_batch(|batch, time| crate::write_output("recent", batch, time));
    }
}

/// The child process of the crash test: runs the app in real time until its queue is drained.
#[test]
#[ignore = "run by crash_restart_equals_a_crash_free_run in a child process"]
fn crash_child() {
    crash::crash_counts::app()
        .configure(|c| {
            c.checkpoint_dir =
                Some(streamc::store::Location::parse(&setting(CHECKPOINTS)).unwrap());
            c.stop_when_drained = true;
            // On an object store a restart after SIGKILL waits out the dead instance's lease
            // (`crashes_change_nothing` lets it before killing again).
            c.storage.lease = S3_TEST_LEASE;
        })
        .run()
        .expect("the child app runs to the end");
}

/// Short, so that restarts after the test's SIGKILLs get on quickly.
const S3_TEST_LEASE: Duration = Duration::from_millis(300);

fn spawn_child(out: &Path, checkpoints: &str, env: &[(&str, String)]) -> std::process::Child {
    support::child_with("crash_child", out, checkpoints, "", env)
}

/// Each output's files in time order, as (output, contents) — times differ between runs, order does not.
fn outputs(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    let mut by_output: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let output = name.split('-').next().unwrap().to_string();
        by_output
            .entry(output)
            .or_default()
            .push(std::fs::read_to_string(&file).unwrap());
    }
    by_output
}

/// Runs the crash child to the end, SIGKILLed at random points of each seed's runs, with its
/// checkpoints at `location(seed)`: the outputs equal those of a crash-free run. Each kill comes
/// `settle` plus up to 900 ms after a start.
fn crashes_change_nothing(
    seeds: &[u64],
    location: impl Fn(u64) -> String,
    env: &[(&str, String)],
    settle: Duration,
) {
    let clean_out = temp_dir(&format!("clean-out-{}", seeds[0]));
    let clean_ckpt = temp_dir(&format!("clean-ckpt-{}", seeds[0]));
    let status = spawn_child(&clean_out, &clean_ckpt.to_string_lossy(), &[])
        .wait()
        .unwrap();
    assert!(status.success());
    let expected = outputs(&clean_out);
    assert_eq!(expected["totals"].len(), 40, "one totals file per batch");

    for &seed in seeds {
        let out = temp_dir(&format!("crash-out-{seed}"));
        let ckpt = location(seed);
        let mut rng = Rng::new(seed);
        let mut kills = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut child = spawn_child(&out, &ckpt, env);
            if kills < 8 {
                // Kill at a random point, the first time possibly before any checkpoint exists: the
                // batches journaled by then are run again with the same times and data.
                std::thread::sleep(settle + Duration::from_millis(rng.next_u64() % 900));
                if child.try_wait().unwrap().is_none() {
                    child.kill().unwrap();
                    child.wait().unwrap();
                    kills += 1;
                    continue;
                }
            }
            let status = child.wait().unwrap();
            assert!(status.success(), "the restarted app failed: {status:?}");
            break;
        }
        assert!(Instant::now() < deadline);
        // Each restart after a kill first waits out `settle`: fewer kills fit into the run.
        assert!(
            kills >= 4 || (kills >= 2 && !settle.is_zero()),
            "the test must actually crash the app (seed {seed}: {kills} kills)"
        );
        assert_eq!(
            outputs(&out),
            expected,
            "seed {seed}: outputs after {kills} SIGKILLs differ from the crash-free run"
        );
    }
}

#[test]
fn crash_restart_equals_a_crash_free_run() {
    crashes_change_nothing(
        &[1, 2, 3],
        |seed| {
            temp_dir(&format!("crash-ckpt-{seed}"))
                .to_string_lossy()
                .into_owned()
        },
        &[],
        Duration::ZERO,
    );
}

#[test]
fn crash_restart_with_checkpoints_in_an_s3_bucket_equals_a_crash_free_run() {
    let Some(s3) = support::S3Server::start("the crash test with checkpoints on S3") else {
        return;
    };
    let bucket = s3.bucket("crash-checkpoints");
    // A restart waits up to 1.25 leases for the killed instance's claim to run out.
    crashes_change_nothing(
        &[4, 5],
        |seed| format!("{bucket}/seed-{seed}"),
        &s3.env(),
        S3_TEST_LEASE * 3 / 2,
    );
    assert!(
        s3.keys("crash-checkpoints", "seed-4/")
            .iter()
            .any(|k| k.ends_with(".ckpt")),
        "the checkpoints are in the bucket"
    );
}

mod v1 {
    use streamc::prelude::*;
    stream! {
        app counter { batch: 1s, checkpoint: "target/streamc-test/counter" }
        let words = queue_stream::<String>(crate::crash_batches());
        let totals = words.map(|w| (w.clone(), 1u64)).update_state_by_key(|new: &[u64], old: Option<u64>| Some(old.unwrap_or(0) + new.len() as u64));
        totals.collect();
    }
}

mod v1_rebuilt_with_more {
    use streamc::prelude::*;
    stream! {
        app counter { batch: 1s, checkpoint: "target/streamc-test/counter" }
        let words = queue_stream::<String>(crate::crash_batches());
        let pairs = words.map(|w| (w.clone(), 1u64));
        // Same operator name and state types as v1; the closure and the code around it changed.
        let totals = pairs.update_state_by_key(|new: &[u64], old: Option<u64>| {
            let before = old.unwrap_or(0);
            Some(before + new.iter().sum::<u64>())
        });
        let lengths = pairs.map_values(|n| n * 2).update_state_by_key(|new: &[u64], old: Option<u64>| Some(old.unwrap_or(0) + new.iter().sum::<u64>()));
        totals.collect();
        lengths.collect();
    }
}

mod v2_changed_type {
    use streamc::prelude::*;
    stream! {
        app counter { batch: 1s, checkpoint: "target/streamc-test/counter" }
        let words = queue_stream::<String>(crate::crash_batches());
        let totals = words.map(|w| (w.clone(), 1i64)).update_state_by_key(|new: &[i64], old: Option<i64>| Some(old.unwrap_or(0) + new.len() as i64));
        totals.collect();
    }
}

mod v3_renamed {
    use streamc::prelude::*;
    stream! {
        app counter { batch: 1s, checkpoint: "target/streamc-test/counter" }
        let words = queue_stream::<String>(crate::crash_batches());
        let running = words.map(|w| (w.clone(), 1u64)).update_state_by_key(|new: &[u64], old: Option<u64>| Some(old.unwrap_or(0) + new.len() as u64));
        running.collect();
    }
}

/// Checkpoints into `dir` after every batch (of the tests' 1 s interval).
fn checkpointed_every_batch(dir: &Path) -> impl Fn(&mut streamc::AppConfig) + Copy + '_ {
    move |c| {
        c.checkpoint_dir = Some(dir.to_path_buf().into());
        c.checkpoint_every = Some(Duration::from_secs(1));
    }
}

fn error_of<T>(result: Result<T, streamc::RunError>) -> String {
    match result {
        Ok(_) => panic!("expected the start to be refused"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn upgrades_resume_when_state_types_match_and_are_refused_otherwise() {
    let dir = temp_dir("upgrade");
    let at = checkpointed_every_batch(&dir);
    let mut first = v1::counter::app().configure(at).test_driver().unwrap();
    first.run_batches(5);
    let five = first
        .take::<(String, u64)>("totals")
        .unwrap()
        .pop()
        .unwrap()
        .1;
    drop(first);

    let err = error_of(v2_changed_type::counter::app().configure(at).test_driver());
    assert!(
        err.contains("`totals`") && err.contains("u64") && err.contains("i64"),
        "{err}"
    );
    assert!(err.contains("--reset-state"), "the way out is named: {err}");
    let err = error_of(v3_renamed::counter::app().configure(at).test_driver());
    assert!(
        err.contains("`totals`") && err.contains("no longer has") && err.contains("running"),
        "{err}"
    );

    let mut upgraded = v1_rebuilt_with_more::counter::app()
        .configure(at)
        .test_driver()
        .unwrap();
    upgraded.run_batch();
    let (time, six) = upgraded
        .take::<(String, u64)>("totals")
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        time.millis(),
        6000,
        "resumes after the checkpointed batch 5"
    );
    let mut expected: BTreeMap<String, u64> = five.into_iter().collect();
    for w in &crash_batches()[5] {
        *expected.entry(w.clone()).or_insert(0) += 1;
    }
    let mut six: Vec<(String, u64)> = six;
    six.sort();
    assert_eq!(six, expected.into_iter().collect::<Vec<_>>());
    drop(upgraded);

    let mut driver = v2_changed_type::counter::app()
        .configure(|c| {
            at(c);
            c.reset_state = true;
        })
        .test_driver()
        .unwrap();
    driver.run_batch();
    let (time, _) = driver
        .take::<(String, i64)>("totals")
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(time.millis(), 1000, "--reset-state starts over");
}

#[test]
fn a_caller_tells_a_bad_setting_from_a_checkpoint_that_does_not_fit() {
    let refused = v1::counter::app()
        .configure(|c| c.workers = 0)
        .test_driver()
        .err();
    assert!(
        matches!(refused, Some(streamc::RunError::Config(ref m)) if m.contains("workers")),
        "{refused:?}"
    );
    let dir = temp_dir("kinds");
    let at = checkpointed_every_batch(&dir);
    let mut first = v1::counter::app().configure(at).test_driver().unwrap();
    first.run_batches(2);
    drop(first);
    let refused = v2_changed_type::counter::app()
        .configure(at)
        .test_driver()
        .err();
    assert!(
        matches!(refused, Some(streamc::RunError::Checkpoint(ref m)) if m.contains("--reset-state")),
        "{refused:?}"
    );
    let refused = v1::counter::app()
        .configure(|c| {
            at(c);
            c.batch_interval = Duration::from_secs(2);
            c.checkpoint_every = Some(Duration::from_secs(2));
        })
        .test_driver()
        .err();
    assert!(
        matches!(refused, Some(streamc::RunError::Checkpoint(ref m)) if m.contains("batch interval changed")),
        "{refused:?}"
    );
}

/// Cuts the checkpoint of batch `time_ms` in `dir` to `length(its length)` bytes, as a crash mid-write
/// on a file system without atomic renames, or a bad disk, would leave it.
fn truncate_checkpoint(dir: &Path, time_ms: u64, length: impl Fn(u64) -> u64) {
    let file = dir.join(format!("checkpoint-{time_ms:020}.ckpt"));
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(length(len))
        .unwrap();
}

/// Runs four checkpointed batches under `at`, damages the newest checkpoint with `damage`, and
/// checks that a restart re-runs batch 4 from the 3 s checkpoint.
fn a_damaged_newest_checkpoint_is_skipped(
    at: impl Fn(&mut streamc::AppConfig) + Copy,
    damage: impl FnOnce(),
) {
    let mut first = v1::counter::app().configure(at).test_driver().unwrap();
    first.run_batches(4);
    drop(first);
    damage();
    let mut resumed = v1::counter::app().configure(at).test_driver().unwrap();
    resumed.run_batch();
    let (time, _) = resumed
        .take::<(String, u64)>("totals")
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        time.millis(),
        4000,
        "the 4 s checkpoint is truncated, so batch 4 is re-run from the 3 s one"
    );
}

#[test]
fn a_damaged_newest_checkpoint_falls_back_to_the_previous_one() {
    let dir = temp_dir("damaged");
    a_damaged_newest_checkpoint_is_skipped(checkpointed_every_batch(&dir), || {
        truncate_checkpoint(&dir, 4000, |len| len / 2)
    });
}

/// The same with the checkpoints in a bucket: a truncated newest checkpoint object is skipped
/// (and set aside), and the one before it restored.
#[test]
fn a_damaged_newest_checkpoint_in_a_bucket_falls_back_to_the_previous_one() {
    use streamc::store::{Location, Put, StorageOptions};
    let Some(s3) = support::S3Server::start("the damaged checkpoint test on S3") else {
        return;
    };
    let location = Location::parse(&format!("{}/counter", s3.bucket("damaged"))).unwrap();
    let storage = StorageOptions {
        options: s3.options(),
        ..Default::default()
    };
    let at = |c: &mut streamc::AppConfig| {
        c.checkpoint_dir = Some(location.clone());
        c.checkpoint_every = Some(Duration::from_secs(1));
        c.storage = storage.clone();
    };
    a_damaged_newest_checkpoint_is_skipped(at, || {
        let store = streamc::store::open(&location, &storage).unwrap();
        let name = format!("checkpoint-{:020}.ckpt", 4000);
        let bytes = store.get(&name).unwrap().bytes;
        store
            .put(&name, bytes[..bytes.len() / 2].to_vec(), Put::Overwrite)
            .unwrap();
    });
    assert!(
        s3.keys("damaged", "counter/")
            .iter()
            .any(|k| k.ends_with(".ckpt.unreadable")),
        "the damaged object is kept aside: {:?}",
        s3.keys("damaged", "counter/")
    );
}

mod per_stream {
    use streamc::prelude::*;
    stream! {
        app per_stream { batch: 1s, checkpoint: "target/streamc-test/per_stream" }
        let words = queue_stream::<String>(crate::crash_batches());
        // Checkpointed at least every 3 batches; with no app-wide interval, that sets the app's.
        let totals = words
            .map(|w| (w.clone(), 1u64))
            .update_state_by_key(|new: &[u64], old: Option<u64>| Some(old.unwrap_or(0) + new.len() as u64))
            .checkpoint(3s);
        totals.collect();
    }
}

#[test]
fn a_stream_checkpoint_interval_sets_how_often_state_is_saved() {
    let dir = temp_dir("per-stream");
    let spec = <per_stream::per_stream::Pipeline as streamc::Pipeline>::spec();
    assert_eq!(spec.checkpoint_every, Some(Duration::from_secs(3)));
    let mut driver = per_stream::per_stream::app()
        .configure(|c| c.checkpoint_dir = Some(dir.clone().into()))
        .test_driver()
        .unwrap();
    let checkpointed: Vec<u64> = driver
        .run_batches(9)
        .iter()
        .filter(|b| b.checkpoint_time.is_some())
        .map(|b| b.time.millis())
        .collect();
    assert_eq!(checkpointed, vec![3000, 6000, 9000]);
}

/// Each batch's totals, sorted, by batch time.
fn totals_by_time(
    driver: &streamc::TestDriver<v1::counter::Pipeline>,
) -> Vec<(u64, Vec<(String, u64)>)> {
    driver
        .take::<(String, u64)>("totals")
        .unwrap()
        .into_iter()
        .map(|(time, mut rows)| {
            rows.sort();
            (time.millis(), rows)
        })
        .collect()
}

#[test]
fn a_crash_then_a_damaged_newest_checkpoint_replays_from_the_one_before_with_the_same_outputs() {
    let every_two = |dir: &Path| {
        let dir = dir.to_path_buf();
        move |c: &mut streamc::AppConfig| {
            c.checkpoint_dir = Some(dir.clone().into());
            c.checkpoint_every = Some(Duration::from_secs(2));
        }
    };
    let clean = temp_dir("fallback-clean");
    let mut reference = v1::counter::app()
        .configure(every_two(&clean))
        .test_driver()
        .unwrap();
    reference.run_batches(8);
    let expected = totals_by_time(&reference);
    drop(reference);

    // Batches 1–5 run; checkpoints after 2 and 4; batch 5 completed but not checkpointed. Then the app
    // dies (dropped without a stop) and the newest checkpoint turns out truncated.
    let dir = temp_dir("fallback");
    let mut first = v1::counter::app()
        .configure(every_two(&dir))
        .test_driver()
        .unwrap();
    first.run_batches(5);
    drop(first);
    truncate_checkpoint(&dir, 4000, |len| len - 3);

    // Resuming from the 2 s checkpoint needs the journal of batches 3, 4 and 5, which the 4 s
    // checkpoint had made unnecessary — but not deletable while the 2 s one is kept.
    let mut resumed = v1::counter::app()
        .configure(every_two(&dir))
        .test_driver()
        .unwrap();
    resumed.run_batches(6);
    let after = totals_by_time(&resumed);
    assert_eq!(
        after.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        vec![3000, 4000, 5000, 6000, 7000, 8000],
        "batches 3–5 are cut again with their own times, then the run goes on"
    );
    assert_eq!(
        after,
        expected[2..],
        "the same outputs as a run without the crash"
    );
}

#[test]
fn batches_cut_before_a_crash_are_replayed_only_with_the_same_partitions() {
    let dir = temp_dir("replay-partitions");
    let with = |workers: usize| {
        let dir = dir.clone();
        move |c: &mut streamc::AppConfig| {
            c.checkpoint_dir = Some(dir.clone().into());
            c.checkpoint_every = Some(Duration::from_secs(2));
            c.workers = workers;
        }
    };
    let mut first = v1::counter::app().configure(with(2)).test_driver().unwrap();
    first.run_batches(3); // batch 3 is journaled, not checkpointed: the crash leaves it pending
    drop(first);
    let err = error_of(v1::counter::app().configure(with(3)).test_driver());
    assert!(
        err.contains("cut into 2 partitions") && err.contains("--workers 2"),
        "{err}"
    );
    let mut same = v1::counter::app().configure(with(2)).test_driver().unwrap();
    same.run_batch();
    let (time, _) = same.take::<(String, u64)>("totals").unwrap().remove(0);
    assert_eq!(time.millis(), 3000, "batch 3 replayed");
    same.run_batch(); // batch 4 checkpoints: nothing is pending any more
    drop(same);
    let mut more = v1::counter::app().configure(with(3)).test_driver().unwrap();
    more.run_batch();
    let (time, _) = more.take::<(String, u64)>("totals").unwrap().remove(0);
    assert_eq!(
        time.millis(),
        5000,
        "after a checkpoint, the worker count may change"
    );
}

/// Two instances of an app on one checkpoint directory would overwrite each other's checkpoints:
/// the second is refused while the first runs, naming it, and starts once the first has stopped.
#[test]
fn a_second_instance_on_the_same_checkpoint_directory_is_refused() {
    use std::process::{Command, Stdio};
    let dir = temp_dir("second-instance");
    let checkpoints = dir.join("checkpoints");
    let start = || {
        Command::new(support::example_binary("update_state_by_key_word_count"))
            .args(["--demo", "--batch", "200ms"])
            .args(["--checkpoint", &checkpoints.to_string_lossy()])
            .env("STREAMC_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = start();
    // Until the first holds the directory (its lock file carries its process id).
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(checkpoints.join("lock")).unwrap_or_default()
        != first.id().to_string()
    {
        assert!(
            Instant::now() < deadline,
            "the first instance must claim the directory"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = streamc::testkit::output_within(
        Command::new(support::example_binary("update_state_by_key_word_count"))
            .args(["--demo", "--batch", "200ms"])
            .args(["--checkpoint", &checkpoints.to_string_lossy()]),
        Duration::from_secs(30),
    )
    .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(
        stderr.contains("in use by another running app")
            && stderr.contains(&format!("process {}", first.id())),
        "{stderr}"
    );
    // SIGKILL: the operating system lets the directory go with the process.
    first.kill().unwrap();
    first.wait().unwrap();
    let mut third = start();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        third.try_wait().unwrap().is_none(),
        "the directory is free once its holder is gone"
    );
    support::terminate(third);
}
