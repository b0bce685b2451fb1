//! Outputs without a database: `save_as_text_files` (one directory per batch in Spark's layout,
//! atomically), the rolling file sink, and `foreach_partition` with its pool of connections.

use std::path::Path;
use streamc::prelude::*;

fn batches() -> Vec<Vec<String>> {
    vec![vec!["a b a".into(), "c".into()], vec![], vec!["b".into()]]
}

fn prefix() -> String {
    std::env::temp_dir()
        .join(format!("streamc-sinks-{}", std::process::id()))
        .join("counts")
        .to_string_lossy()
        .into_owned()
}

stream! {
    app saved { batch: 1s, workers: 2 }
    let lines = queue_stream::<String>(crate::batches());
    let counts = lines.flat_map(|l| l.split(' ')).map(|w| (w.to_string(), 1u64)).reduce_by_key(|a, b| a + b);
    counts.save_as_text_files(crate::prefix(), "txt");
}

fn lines_in(dir: &Path) -> Vec<String> {
    let mut parts: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    parts.sort();
    assert!(
        parts.iter().all(|p| p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("part-")),
        "{parts:?}"
    );
    let mut lines: Vec<String> = parts
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn save_as_text_files_writes_one_directory_per_batch_in_sparks_layout() {
    let root = Path::new(&prefix()).parent().unwrap().to_path_buf();
    let _ = std::fs::remove_dir_all(&root);
    let mut driver = saved::app().test_driver().unwrap();
    let infos = driver.run_batches(3);
    assert!(infos.iter().all(|i| i.failure.is_none()), "{infos:?}");
    let mut dirs: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    assert_eq!(
        dirs,
        vec!["counts-1000.txt", "counts-2000.txt", "counts-3000.txt"],
        "no temporary directory is left behind"
    );
    assert_eq!(
        lines_in(&root.join("counts-1000.txt")),
        vec!["(a,2)", "(b,1)", "(c,1)"]
    );
    assert_eq!(
        lines_in(&root.join("counts-2000.txt")),
        Vec::<String>::new(),
        "an empty batch still gets its directory"
    );
    assert_eq!(lines_in(&root.join("counts-3000.txt")), vec!["(b,1)"]);
    // A batch written again (a replay after a crash) replaces its directory with the same content.
    streamc::output::write_batch_dir(&root.join("counts-3000.txt"), &[vec![("b", 1u64)]]).unwrap();
    assert_eq!(lines_in(&root.join("counts-3000.txt")), vec!["(b,1)"]);
    std::fs::remove_dir_all(&root).ok();
}

fn unwritable_prefix() -> String {
    let file = std::env::temp_dir().join(format!("streamc-sinks-file-{}", std::process::id()));
    std::fs::write(&file, "a file, not a directory").unwrap();
    file.join("counts").to_string_lossy().into_owned()
}

stream! {
    app unwritable { batch: 1s, workers: 1 }
    let lines = queue_stream::<String>(crate::batches());
    lines.map(|l| l.clone()).save_as_text_files(crate::unwritable_prefix());
}

#[test]
fn an_unwritable_destination_is_retried_then_stops_the_app_with_the_reason() {
    let mut driver = unwritable::app()
        .configure(|c| {
            c.sinks.retry.attempts = 3;
            c.sinks.retry.initial_backoff = std::time::Duration::from_millis(1);
        })
        .test_driver()
        .unwrap();
    let info = driver.run_batch();
    let failure = info.failure.expect("the batch must fail");
    assert!(info.output_failed, "an output that gives up stops the app");
    assert!(
        failure.contains("gave up after 3 attempts")
            && failure.contains("cannot write")
            && failure.contains("counts-1000"),
        "{failure}"
    );
}

#[test]
fn a_run_whose_output_gives_up_ends_with_an_output_failure() {
    let result = unwritable::app()
        .configure(|c| {
            c.sinks.retry.attempts = 2;
            c.sinks.retry.initial_backoff = std::time::Duration::from_millis(1);
            c.batch_interval = std::time::Duration::from_millis(50);
            c.stop_when_drained = true;
        })
        .run();
    match result {
        Err(e @ streamc::RunError::OutputFailed(_)) => {
            assert_eq!(e.exit_code(), 1);
            assert!(e.to_string().contains("gave up after 2 attempts"), "{e}");
        }
        other => panic!("expected an output failure, got {other:?}"),
    }
}

fn pool_batches() -> Vec<Vec<String>> {
    (0..6)
        .map(|b| (0..20).map(|i| format!("r{b}-{i}")).collect())
        .collect()
}

/// A stand-in for a database connection: counts how many were opened.
struct Connection {
    id: u64,
}

static OPENED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static WRITTEN: std::sync::Mutex<Vec<(u64, usize, u64, String)>> =
    std::sync::Mutex::new(Vec::new());
static FAIL_ONCE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

fn open_connection() -> Result<Connection, String> {
    let id = OPENED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    Ok(Connection { id })
}

fn send(connection: &mut Connection, partition: &BatchPartition<String>) -> Result<(), String> {
    if partition.batch_time() == Time(3000)
        && partition.index() == 0
        && FAIL_ONCE.swap(false, std::sync::atomic::Ordering::SeqCst)
    {
        return Err("connection reset by peer".into());
    }
    let mut written = WRITTEN.lock().unwrap();
    for record in partition {
        written.push((
            partition.batch_time().millis(),
            partition.index(),
            connection.id,
            record.clone(),
        ));
    }
    Ok(())
}

stream! {
    app pooled { batch: 1s, workers: 2 }
    let records = queue_stream::<String>(crate::pool_batches());
    records.map(|r| r.clone()).repartition(2).foreach_partition(crate::open_connection, crate::send);
}

#[test]
fn foreach_partition_reuses_pooled_connections_and_retries_with_a_fresh_one() {
    let mut driver = pooled::app()
        .configure(|c| c.sinks.retry.initial_backoff = std::time::Duration::from_millis(1))
        .test_driver()
        .unwrap();
    let infos = driver.run_batches(6);
    assert!(infos.iter().all(|i| i.failure.is_none()), "{infos:?}");
    let written = WRITTEN.lock().unwrap().clone();
    let mut records: Vec<String> = written.iter().map(|w| w.3.clone()).collect();
    records.sort();
    let mut expected: Vec<String> = pool_batches().concat();
    expected.sort();
    assert_eq!(
        records, expected,
        "every record once, the failed attempt retried"
    );
    for (batch, partition, _, record) in &written {
        let b: u64 = record[1..record.find('-').unwrap()].parse().unwrap();
        assert_eq!(*batch, (b + 1) * 1000, "the partition knows its batch time");
        assert!(*partition < 2);
    }
    let opened = OPENED.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (2..=3).contains(&opened),
        "one connection per concurrent partition, reused across batches, plus one to replace the \
         failed one: {opened} opened for 12 partitions and 120 records"
    );
}

fn rolling_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("streamc-rolling-app-{}", std::process::id()))
}

stream! {
    app rolled { batch: 1s, workers: 2 }
    let records = queue_stream::<String>(crate::pool_batches());
    records.map(|r| r.clone()).save_to_rolling_files(RollingFiles::new(crate::rolling_dir()).max_bytes(100));
}

#[test]
fn rolling_files_roll_by_size_and_finish_on_a_graceful_stop() {
    let dir = rolling_dir();
    let _ = std::fs::remove_dir_all(&dir);
    rolled::app()
        .configure(|c| c.stop_when_drained = true)
        .run()
        .unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    // 20 records of 5-6 bytes per batch: every batch passes 100 bytes, so each batch rolls a file.
    assert_eq!(names.len(), 6, "{names:?}");
    assert!(
        !dir.join(".inprogress").exists(),
        "the last file is finished at stop"
    );
    let text: String = names
        .iter()
        .map(|n| std::fs::read_to_string(dir.join(n)).unwrap())
        .collect();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut expected = pool_batches().concat();
    let mut sorted = lines.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected);
    std::fs::remove_dir_all(&dir).ok();
}
