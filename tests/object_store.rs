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
