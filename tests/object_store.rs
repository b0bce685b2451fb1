//! The storage layer against a real S3 server on loopback (moto_server): atomic writes, conditional
//! creates and replaces (the fencing primitives), listings, ranges, renames, and clear errors for a
//! bucket that is not there. `cargo test` without moto_server skips these and says so; `.ci/run`
//! runs them.

mod support;

use streamc::store::{open, Location, Put, StorageOptions, StoreError};

fn options(s3: &support::S3Server) -> StorageOptions {
    StorageOptions {
        options: s3.options(),
        ..StorageOptions::default()
    }
}

#[test]
fn objects_are_created_once_replaced_only_at_their_version_listed_ranged_and_renamed() {
    let Some(s3) = support::S3Server::start("the object store tests") else {
        return;
    };
    let bucket = s3.bucket("store-basics");
    let store = open(
        &Location::parse(&format!("{bucket}/app/ckpt")).unwrap(),
        &options(&s3),
    )
    .unwrap();
    assert_eq!(store.list("").unwrap(), vec![]);

    let first = store.put("a", b"first".to_vec(), Put::Create).unwrap();
    assert!(first.is_some(), "S3 names a version (ETag) for each write");
    match store.put("a", b"second".to_vec(), Put::Create) {
        Err(StoreError::Exists(_)) => {}
        other => panic!("a second create must be refused, got {other:?}"),
    }
    assert_eq!(store.get("a").unwrap().bytes, b"first");

    let second = store
        .put(
            "a",
            b"second".to_vec(),
            Put::Replace(first.clone().unwrap()),
        )
        .unwrap();
    match store.put("a", b"third".to_vec(), Put::Replace(first.unwrap())) {
        Err(StoreError::Changed(_)) => {}
        other => panic!("a replace at a stale version must be refused, got {other:?}"),
    }
    let blob = store.get("a").unwrap();
    assert_eq!((blob.bytes, blob.version), (b"second".to_vec(), second));

    store
        .put("dir/b", b"0123456789".to_vec(), Put::Overwrite)
        .unwrap();
    assert_eq!(store.get_range("dir/b", 3, 4).unwrap(), b"3456");
    assert_eq!(store.get_range("dir/b", 8, 10).unwrap(), b"89");
    assert_eq!(store.get_range("dir/b", 10, 4).unwrap(), b"");
    let mut names: Vec<(String, u64)> = store
        .list("")
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.len))
        .collect();
    names.sort();
    assert_eq!(names, vec![("a".into(), 6)], "only the root's own objects");
    let inside: Vec<String> = store
        .list("dir")
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(inside, vec!["b".to_string()]);

    store.rename("a", "c").unwrap();
    assert!(matches!(store.get("a"), Err(StoreError::NotFound(_))));
    assert_eq!(store.get("c").unwrap().bytes, b"second");
    store.delete("c").unwrap();
    store.delete("c").unwrap();
    assert!(matches!(store.get("c"), Err(StoreError::NotFound(_))));
    assert_eq!(
        s3.keys("store-basics", "app/"),
        vec!["app/ckpt/dir/b".to_string()]
    );

    // What --reset-state does to the write-ahead logs: every level under the prefix goes.
    for name in [
        "wal/lines/segment-1.wal",
        "wal/lines/segment-2.wal",
        "wal/kafka/segment-1.wal",
    ] {
        store.put(name, b"x".to_vec(), Put::Overwrite).unwrap();
    }
    assert_eq!(store.remove_all("wal").unwrap(), 3);
    assert_eq!(store.remove_all("wal").unwrap(), 0);
    assert_eq!(
        s3.keys("store-basics", "app/"),
        vec!["app/ckpt/dir/b".to_string()]
    );
}

/// An object past the multipart threshold (64 MiB) goes up in parts and reads back whole.
#[test]
fn a_large_object_goes_up_in_parts_and_reads_back_whole() {
    let Some(s3) = support::S3Server::start("the object store tests") else {
        return;
    };
    let bucket = s3.bucket("large-objects");
    let store = open(&Location::parse(&bucket).unwrap(), &options(&s3)).unwrap();
    let bytes: Vec<u8> = (0..70u32 << 20).map(|i| (i % 251) as u8).collect();
    store.put("big", bytes.clone(), Put::Overwrite).unwrap();
    let listed = store.list("").unwrap();
    assert_eq!(listed[0].len, bytes.len() as u64);
    let at = (40 << 20) + 17;
    assert_eq!(
        store.get_range("big", at, 1000).unwrap(),
        &bytes[at as usize..at as usize + 1000]
    );
    assert!(
        store.get("big").unwrap().bytes == bytes,
        "the parts add up to the object"
    );
}

#[test]
fn a_missing_bucket_is_an_error_that_names_it_and_no_credential() {
    let Some(s3) = support::S3Server::start("the object store tests") else {
        return;
    };
    let mut options = options(&s3);
    options.retry_timeout = std::time::Duration::from_secs(2);
    let store = open(&Location::parse("s3://no-such-bucket/x").unwrap(), &options).unwrap();
    let err = match store.put("a", b"x".to_vec(), Put::Create) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("writing to a missing bucket must fail"),
    };
    assert!(err.contains("no-such-bucket"), "{err}");
    assert!(!err.contains("test-secret-key"), "{err}");
}

/// The seed's UpdateStateByKeyWordCount with its checkpoint in a bucket: a second instance on the
/// same location is refused while the first renews its lease, and once the first is SIGKILLed a new
/// one takes the location over after the lease runs out.
#[test]
fn a_second_instance_on_a_checkpoint_in_a_bucket_is_refused_while_the_first_runs() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let Some(s3) = support::S3Server::start("the second-instance test on S3") else {
        return;
    };
    let checkpoints = format!("{}/word-count", s3.bucket("second-instance"));
    let command = || {
        let mut command = Command::new(support::example_binary("update_state_by_key_word_count"));
        command
            .args(["--demo", "--batch", "200ms", "--storage-lease", "2s"])
            .args(["--checkpoint", &checkpoints])
            .envs(s3.env())
            .env("STREAMC_LOG", "info");
        command
    };
    let mut first = command()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !s3
        .keys("second-instance", "word-count/")
        .iter()
        .any(|k| k.ends_with(".ckpt"))
    {
        assert!(
            Instant::now() < deadline,
            "the first instance must checkpoint"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let second = streamc::testkit::output_within(&mut command(), Duration::from_secs(30)).unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(
        stderr.contains("in use by another running app")
            && stderr.contains(&format!("process {}", first.id()))
            && stderr.contains("renewing its lease"),
        "{stderr}"
    );
    assert!(!stderr.contains("test-secret-key"), "{stderr}");
    first.kill().unwrap();
    first.wait().unwrap();
    let mut third = command()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = support::StderrLines::of(&mut third);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log.text().contains("resumed from checkpoint") {
        assert!(
            third.try_wait().unwrap().is_none(),
            "the third instance must wait out the lease, then run: {}",
            log.text()
        );
        assert!(Instant::now() < deadline, "{}", log.text());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        log.text().contains("took over the checkpoint location"),
        "{}",
        log.text()
    );
    support::terminate(third);
}

/// Reads a child's standard output on a thread into `into`, until it ends.
fn keep_stdout(child: &mut std::process::Child, into: &std::sync::Arc<std::sync::Mutex<String>>) {
    use std::io::Read;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let into = into.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            into.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_str(&text);
        }
    });
}

/// The `(word,n)` records each `print` block shows, by batch time. A batch run again after a
/// crash (cut identically from the journal) prints again; the last print of each time counts.
fn printed_by_batch(stdout: &str) -> std::collections::BTreeMap<String, Vec<(String, u64)>> {
    let mut batches = std::collections::BTreeMap::new();
    let mut current: Option<String> = None;
    for line in stdout.lines() {
        if let Some(time) = line.strip_prefix("Time: ") {
            current = Some(time.to_string());
            batches.insert(time.to_string(), Vec::new());
        } else if let (Some(time), Some(record)) = (&current, line.strip_prefix('(')) {
            if let Some((word, n)) = record.trim_end_matches(')').rsplit_once(',') {
                if let Ok(n) = n.parse() {
                    batches
                        .get_mut(time)
                        .expect("a block's time comes first")
                        .push((word.to_string(), n));
                }
            }
        }
    }
    batches
}

/// The seed's HDFSWordCount with its directory and its checkpoint in a bucket, SIGKILLed every
/// ten files and restarted: each batch's counts, taken once per batch time, add up to exactly the
/// words of the objects written.
#[test]
fn the_seeds_hdfs_word_count_counts_a_bucket_exactly_once_across_sigkills() {
    use std::collections::BTreeMap;
    use std::process::{Command, Stdio};
    use std::time::Duration;
    let Some(s3) = support::S3Server::start("HDFSWordCount on S3") else {
        return;
    };
    let bucket = s3.bucket("hdfs-word-count");
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let start = || {
        let mut child = Command::new(support::example_binary("dir_word_count"))
            .args(["--source", &format!("lines={bucket}/wordcount_dir/")])
            .args(["--checkpoint", &format!("{bucket}/checkpoints")])
            .args(["--batch", "200ms", "--storage-lease", "1s"])
            // Objects arrive from the first moment (see tests/files.rs).
            .arg("--files-include-existing")
            .envs(s3.env())
            .env("STREAMC_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        keep_stdout(&mut child, &printed);
        child
    };
    let mut rng = streamc::testkit::Rng::new(9);
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut app = start();
    for i in 0..30 {
        // Seven words at most: `print` shows a batch's first ten records.
        let words: Vec<String> = (0..1 + rng.next_u64() % 15)
            .map(|_| format!("w{}", rng.next_u64() % 7))
            .collect();
        for w in &words {
            *expected.entry(w.clone()).or_insert(0) += 1;
        }
        s3.put_object(
            "hdfs-word-count",
            &format!("wordcount_dir/part-{i:03}.txt"),
            words.join(" ").as_bytes(),
        );
        std::thread::sleep(Duration::from_millis(rng.next_u64() % 250));
        if i % 10 == 9 {
            app.kill().unwrap();
            app.wait().unwrap();
            app = start();
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    support::ask_to_stop(&mut app);
    assert!(app.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(200));
    let stdout = printed.lock().unwrap().clone();
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    for records in printed_by_batch(&stdout).into_values() {
        for (word, n) in records {
            *counted.entry(word).or_insert(0) += n;
        }
    }
    assert_eq!(counted, expected, "printed:\n{stdout}");
}

/// The seed's UpdateStateByKeyWordCount with its checkpoint and its write-ahead log in a bucket:
/// SIGKILLed after each round of lines is logged, then restarted against a silent socket, its
/// running totals are exactly the words sent.
#[test]
fn the_seeds_update_state_by_key_word_count_keeps_exact_totals_in_a_bucket_across_sigkills() {
    use std::collections::BTreeMap;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    use streamc::testkit::LineServer;
    let Some(s3) = support::S3Server::start("UpdateStateByKeyWordCount on S3") else {
        return;
    };
    let bucket = s3.bucket("state-word-count");
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let start = |peer: String| {
        let mut child = Command::new(support::example_binary("update_state_by_key_word_count"))
            .args(["--source", &format!("lines={peer}")])
            .args(["--checkpoint", &format!("{bucket}/checkpoints")])
            .args(["--wal", "--batch", "3s", "--storage-lease", "1s"])
            .envs(s3.env())
            .env("STREAMC_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        keep_stdout(&mut child, &printed);
        child
    };
    let logged = || {
        s3.objects("state-word-count", "checkpoints/wal/lines/")
            .iter()
            .map(|(_, size)| size)
            .sum::<u64>()
    };
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut sent = 0u64;
    for round in 0..3 {
        let lines: Vec<String> = (0..500)
            .map(|i| format!("w{} w{}", (i + round) % 7, i % 3))
            .collect();
        for w in lines.iter().flat_map(|l| l.split(' ')) {
            *expected.entry(w.to_string()).or_insert(0) += 1;
        }
        let text = lines.join("\n") + "\n";
        sent += text.len() as u64 - 1;
        let server = LineServer::once(text.into_bytes()).unwrap();
        let mut app = start(server.address().to_string());
        assert!(
            server.wait_for_connections(2, Duration::from_secs(30)),
            "round {round}: the receiver never read the data to its end"
        );
        assert!(
            logged() >= sent,
            "round {round}: the log never held the data"
        );
        app.kill().unwrap();
        app.wait().unwrap();
    }
    let idle = LineServer::once(Vec::new()).unwrap();
    let mut app = start(idle.address().to_string());
    let total: u64 = expected.values().sum();
    let last_totals = || -> BTreeMap<String, u64> {
        let stdout = printed.lock().unwrap().clone();
        printed_by_batch(&stdout)
            .into_values()
            .last()
            .unwrap_or_default()
            .into_iter()
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    while last_totals().values().sum::<u64>() < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    support::ask_to_stop(&mut app);
    assert!(app.wait().unwrap().success());
    assert_eq!(
        last_totals(),
        expected,
        "printed:\n{}",
        printed.lock().unwrap()
    );
}

fn output_batches() -> Vec<Vec<String>> {
    vec![
        vec!["a b a".into(), "c".into()],
        vec![],
        vec!["b".into(), "d d d d".into()],
    ]
}

mod outputs {
    use streamc::prelude::*;
    stream! {
        app s3_outputs { batch: 1s, workers: 2 }
        let lines = queue_stream::<String>(crate::output_batches());
        let counts = lines.flat_map(|l| l.split(' ')).map(|w| (w.to_string(), 1u64)).reduce_by_key(|a, b| a + b);
        counts.save_as_text_files("s3://outputs/counts", "txt");
        lines.map(|l| l.clone()).save_to_rolling_files(RollingFiles::new("s3://outputs/rolled").max_bytes(8));
    }
}

/// `save_as_text_files` and the rolling sink on a bucket: Spark's layout with a `_SUCCESS` marker
/// per batch; finished rolled objects only, no piece left after a graceful stop.
#[test]
fn file_outputs_write_whole_objects_to_a_bucket() {
    let Some(s3) = support::S3Server::start("the file outputs on S3") else {
        return;
    };
    s3.bucket("outputs");
    let options = s3.options();
    outputs::s3_outputs::app()
        .configure(|c| {
            c.storage.options = options;
            c.stop_when_drained = true;
        })
        .run()
        .unwrap();
    let mut keys = s3.keys("outputs", "counts-");
    keys.sort();
    let batch_dirs: std::collections::BTreeSet<String> = keys
        .iter()
        .map(|k| k.split('/').next().unwrap().to_string())
        .collect();
    assert_eq!(batch_dirs.len(), 3, "{keys:?}");
    for dir in &batch_dirs {
        assert!(keys.contains(&format!("{dir}/_SUCCESS")), "{keys:?}");
        assert!(keys.contains(&format!("{dir}/part-00000")), "{keys:?}");
    }
    let first = batch_dirs.iter().next().unwrap();
    let mut lines: Vec<String> = keys
        .iter()
        .filter(|k| k.starts_with(&format!("{first}/part-")))
        .flat_map(|k| {
            s3.get_object("outputs", k)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    assert_eq!(lines, vec!["(a,2)", "(b,1)", "(c,1)"]);

    let rolled = s3.keys("outputs", "rolled/");
    assert!(
        rolled.iter().all(|k| !k.contains(".inprogress")),
        "no piece is left after the stop: {rolled:?}"
    );
    let mut text = String::new();
    for key in rolled.iter().filter(|k| k.starts_with("rolled/part-")) {
        text.push_str(&s3.get_object("outputs", key));
    }
    let mut got: Vec<&str> = text.lines().collect();
    got.sort();
    let mut expected = output_batches().concat();
    expected.sort();
    assert_eq!(got, expected, "{rolled:?}");
    assert!(rolled.len() >= 3, "rolled at 8 bytes: {rolled:?}");
}

/// An app whose lease was taken over (here: its lock object replaced, as a newcomer would after
/// an outage longer than the lease) stops before its next batch writes anything, and says why.
#[test]
fn an_app_that_lost_its_lease_stops_fenced() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let Some(s3) = support::S3Server::start("the lost-lease test on S3") else {
        return;
    };
    let checkpoints = format!("{}/app", s3.bucket("lost-lease"));
    let mut app = Command::new(support::example_binary("update_state_by_key_word_count"))
        .args(["--demo", "--batch", "200ms", "--storage-lease", "1s"])
        .args(["--checkpoint", &checkpoints])
        .envs(s3.env())
        .env("STREAMC_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = support::StderrLines::of(&mut app);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !s3
        .keys("lost-lease", "app/")
        .iter()
        .any(|k| k.ends_with(".ckpt"))
    {
        assert!(
            Instant::now() < deadline,
            "the app must checkpoint: {}",
            log.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Through a signed client, as another streamc would: moto refuses anonymous overwrites.
    let bucket = open(&Location::parse("s3://lost-lease").unwrap(), &options(&s3)).unwrap();
    bucket
        .put(
            "app/lock",
            b"process 1 on another-host, renewal 0".to_vec(),
            Put::Overwrite,
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = app.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "a fenced app must stop: {}",
            log.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(status.code(), Some(1), "{}", log.text());
    assert!(
        log.text()
            .contains("another app took the checkpoint location")
            && log.text().contains("fenced"),
        "{}",
        log.text()
    );
    assert_eq!(
        s3.get_object("lost-lease", "app/lock"),
        "process 1 on another-host, renewal 0",
        "the fenced app leaves the newcomer's lease alone"
    );
}
