//! Stops are bounded and receivers do not stall for good. A receiver parked on its memory budget does
//! not hold a stop up; a graceful stop that cannot finish (a sink that keeps failing) ends at
//! `--graceful-stop-timeout` with exit 124; a second signal ends it at once with exit 130; either way a
//! restart from the checkpoint directory finishes the job with nothing lost or counted twice. A
//! write-ahead log on a full disk pauses receiving, which resumes when there is room again, and stops
//! the app past `--receiver-failure-timeout`.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use streamc::prelude::*;
use streamc::testkit::LineServer;
use support::{ask_to_stop, example_binary, setting, temp_dir, CHECKPOINTS, OUT, PEER};

/// While set, every write of the test pipeline's output fails (as a database that is away would).
static FAIL_WRITES: AtomicBool = AtomicBool::new(false);
/// Set in a child app's environment to make its writes fail.
const FAIL: &str = "STREAMC_TEST_FAIL_WRITES";
const STOP_TIMEOUT: &str = "STREAMC_TEST_STOP_TIMEOUT";
const FAILURE_TIMEOUT: &str = "STREAMC_TEST_FAILURE_TIMEOUT";

struct Unused;

fn connect() -> Result<Unused, String> {
    Ok(Unused)
}

/// Publishes each batch partition as its own file (replaced, not added to, when a batch is replayed),
/// or fails while writes are made to fail.
fn publish_counts(_: &mut Unused, partition: &BatchPartition<(String, u64)>) -> Result<(), String> {
    if FAIL_WRITES.load(Ordering::Relaxed) {
        return Err("the destination refuses connections".into());
    }
    let name = format!("{}-{}", partition.batch_time().millis(), partition.index());
    support::publish(
        &name,
        partition.iter().map(|(word, n)| format!("{word} {n}")),
    );
    Ok(())
}

stream! {
    app stop_counts { batch: 200ms, workers: 2, checkpoint: "target/streamc-test/stop_counts" }
    let lines = socket_text_stream("localhost", 9);
    let counts = lines
        .flat_map(|line: &str| line.split_whitespace())
        .map(|word| (word.to_string(), 1u64))
        .reduce_by_key(|a, b| a + b);
    counts.foreach_partition(crate::connect, crate::publish_counts);
}

fn app_at(peer: &str, checkpoints: &Path) -> streamc::App<stop_counts::Pipeline> {
    let (peer, checkpoints) = (peer.to_string(), checkpoints.to_path_buf());
    stop_counts::app().configure(move |c| {
        c.source_addresses.insert("lines".into(), peer);
        c.checkpoint_dir = Some(checkpoints.into());
        c.write_ahead_log = true;
        // A destination that stays away: retried for minutes, longer than any stop may take.
        c.sinks.retry.attempts = 100_000;
        c.sinks.retry.initial_backoff = Duration::from_millis(20);
        c.sinks.retry.max_backoff = Duration::from_millis(100);
    })
}

#[test]
#[ignore = "run by the stop tests in a child process"]
fn stop_child() {
    streamc::app::init_logging();
    FAIL_WRITES.store(std::env::var(FAIL).is_ok(), Ordering::Relaxed);
    let duration = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|t| streamc::config::parse_duration(&t).ok())
    };
    let code = app_at(&setting(PEER), Path::new(&setting(CHECKPOINTS)))
        .configure(|c| {
            c.graceful_stop_timeout = duration(STOP_TIMEOUT);
            if let Some(timeout) = duration(FAILURE_TIMEOUT) {
                c.receiver_failure_timeout = timeout;
            }
        })
        .run_as_process();
    std::process::exit(code.into());
}

/// Starts [`stop_child`], its log kept in `log`.
fn child(out: &Path, checkpoints: &Path, peer: &str, env: &[(&str, &str)], log: &Path) -> Child {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args([
            "stop_child",
            "--exact",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(OUT, out)
        .env(CHECKPOINTS, checkpoints)
        .env(PEER, peer)
        .env("STREAMC_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("create the log"));
    for (name, value) in env {
        command.env(name, value);
    }
    command.spawn().expect("start the child app")
}

/// Waits at most `limit` for `child` to exit; its exit code and how long it took.
fn exit_within(child: &mut Child, limit: Duration) -> (Option<i32>, Duration) {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().expect("wait") {
            return (status.code(), started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the app still ran {limit:?} after it was asked to stop");
}

fn lines(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("w{} w{} all", i % 7, i % 13))
        .collect()
}

fn reference(lines: &[String]) -> BTreeMap<String, u64> {
    streamc::testkit::reference_word_counts(lines.iter().map(String::as_str))
        .into_iter()
        .collect()
}

/// The counts of every published batch partition, added up.
fn published_counts(out: &Path) -> BTreeMap<String, u64> {
    let mut total = BTreeMap::new();
    for entry in std::fs::read_dir(out).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            continue;
        }
        let lines = support::published(out, &name);
        for (word, n) in support::counts(&lines) {
            *total.entry(word).or_insert(0) += n;
        }
    }
    total
}

/// A restart with writes working again: it replays what the stopped run left, from the journal and
/// the write-ahead log, and the published counts reach the reference exactly.
fn restart_finishes(out: &Path, checkpoints: &Path, expected: &BTreeMap<String, u64>, log: &Path) {
    let idle = LineServer::once(Vec::new()).unwrap();
    let mut resumed = child(out, checkpoints, &idle.address().to_string(), &[], log);
    let deadline = Instant::now() + Duration::from_secs(30);
    while published_counts(out) != *expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    ask_to_stop(&mut resumed);
    let (code, _) = exit_within(&mut resumed, Duration::from_secs(20));
    assert_eq!(code, Some(0), "the restart stops cleanly");
    assert_eq!(
        published_counts(out),
        *expected,
        "every line counted exactly once after the restart; its log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// A child app whose writes fail, fed `input`, with this graceful stop timeout; signalled to stop
/// once its receiver has read and logged everything (it then reconnects) and while its first batch
/// is still failing.
struct FailingRun {
    dir: std::path::PathBuf,
    out: std::path::PathBuf,
    checkpoints: std::path::PathBuf,
    log: std::path::PathBuf,
    app: Child,
    _server: LineServer,
}

impl FailingRun {
    fn stopped(name: &str, input: &[String], stop_timeout: &str) -> Self {
        let dir = temp_dir(name);
        let (out, checkpoints, log) = (dir.join("out"), dir.join("ckpt"), dir.join("first.log"));
        std::fs::create_dir_all(&out).unwrap();
        let server = LineServer::once((input.join("\n") + "\n").into_bytes()).unwrap();
        let peer = server.address().to_string();
        let env = [(FAIL, "1"), (STOP_TIMEOUT, stop_timeout)];
        let mut app = child(&out, &checkpoints, &peer, &env, &log);
        assert!(server.wait_for_connections(2, Duration::from_secs(20)));
        ask_to_stop(&mut app);
        Self {
            dir,
            out,
            checkpoints,
            log,
            app,
            _server: server,
        }
    }

    fn restart_finishes(&self, input: &[String]) {
        let log = self.dir.join("second.log");
        restart_finishes(&self.out, &self.checkpoints, &reference(input), &log);
    }
}

#[test]
fn a_graceful_stop_that_cannot_finish_ends_at_its_timeout_and_a_restart_finishes_the_job() {
    let input = lines(3000);
    let mut run = FailingRun::stopped("stop-timeout", &input, "1s");
    let (code, took) = exit_within(&mut run.app, Duration::from_secs(15));
    let text = std::fs::read_to_string(&run.log).unwrap();
    assert_eq!(
        code,
        Some(124),
        "a stop past its timeout exits 124; log:\n{text}"
    );
    assert!(
        took < Duration::from_secs(6),
        "the stop is bounded by its 1 s timeout, not by the sink's retries: {took:?}"
    );
    assert!(
        text.contains("did not finish within 1s")
            && text.contains("a restart from the checkpoint directory replays them"),
        "the error says what was left and what a restart does: {text}"
    );
    assert!(
        published_counts(&run.out).is_empty(),
        "nothing was written yet"
    );
    run.restart_finishes(&input);
}

#[test]
fn a_second_signal_stops_at_once_and_a_restart_finishes_the_job() {
    let input = lines(2000);
    // The graceful stop would wait for the sink for up to 10 minutes.
    let mut run = FailingRun::stopped("stop-second-signal", &input, "10min");
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        run.app.try_wait().unwrap().is_none(),
        "the graceful stop waits for the failing sink"
    );
    ask_to_stop(&mut run.app);
    let (code, took) = exit_within(&mut run.app, Duration::from_secs(15));
    let text = std::fs::read_to_string(&run.log).unwrap();
    assert_eq!(code, Some(130), "a second signal exits 130; log:\n{text}");
    assert!(took < Duration::from_secs(3), "at once: {took:?}");
    assert!(text.contains("stopped at once"), "{text}");
    run.restart_finishes(&input);
}

#[test]
fn stop_now_and_wait_timeout_end_an_in_process_run_without_finishing() {
    let dir = temp_dir("stop-now");
    let input = lines(500);
    let server = LineServer::once((input.join("\n") + "\n").into_bytes()).unwrap();
    FAIL_WRITES.store(true, Ordering::Relaxed);
    let running = app_at(&server.address().to_string(), &dir.join("ckpt"))
        .start()
        .unwrap();
    assert!(server.wait_for_connections(2, Duration::from_secs(20)));
    assert!(
        !running.wait_timeout(Duration::from_millis(300)),
        "a run that was not asked to stop is still going"
    );
    let started = Instant::now();
    let result = running.stop_now();
    FAIL_WRITES.store(false, Ordering::Relaxed);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    match result {
        Err(e @ streamc::RunError::StoppedAtOnce { .. }) => {
            assert_eq!(e.exit_code(), 130);
            assert!(e.to_string().contains("replays them"), "{e}");
        }
        other => panic!("expected a stop at once, got {other:?}"),
    }
}

/// A sender that writes as fast as the socket takes it, until the test ends.
fn flood() -> LineServer {
    LineServer::generated(100_000_000, 7).unwrap()
}

/// `records: N` and the source's `N records` from a `--report` summary.
fn reported(stderr: &str) -> (u64, u64) {
    let number_after = |marker: &str| -> u64 {
        let at = stderr
            .find(marker)
            .unwrap_or_else(|| panic!("no `{marker}` in the report:\n{stderr}"));
        stderr[at + marker.len()..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number after `{marker}`:\n{stderr}"))
    };
    (number_after("records: "), number_after("source lines: "))
}

#[test]
fn sigterm_does_not_wait_for_a_receiver_parked_on_its_memory_budget() {
    let server = flood();
    let mut app = Command::new(example_binary("word_count"))
        .args(["--source", &format!("lines={}", server.address())])
        .args(["--receiver-buffer-bytes", "65536", "--batch", "1s"])
        .args(["--workers", "1", "--report"])
        .env("STREAMC_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = app.stderr.take().unwrap();
    let drained = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    assert!(server.wait_for_connections(1, Duration::from_secs(20)));
    // Two batch cuts: the receiver has filled its budget and waits for the next cut to free it.
    std::thread::sleep(Duration::from_millis(2500));
    ask_to_stop(&mut app);
    let (code, took) = exit_within(&mut app, Duration::from_secs(20));
    let text = drained.join().unwrap();
    assert_eq!(code, Some(0), "a complete graceful stop; log:\n{text}");
    assert!(took < Duration::from_secs(5), "stopped in {took:?}");
    let (processed, received) = reported(&text);
    assert!(received > 0, "{text}");
    assert_eq!(
        processed, received,
        "every line the receiver took in was processed before the exit"
    );
}

/// A line server the test feeds chunk by chunk, to its one connection.
struct ChunkServer {
    address: String,
    chunks: std::sync::mpsc::Sender<String>,
}

impl ChunkServer {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (chunks, to_send) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            for chunk in to_send {
                if std::io::Write::write_all(&mut stream, chunk.as_bytes()).is_err() {
                    return;
                }
            }
        });
        Self { address, chunks }
    }

    fn send(&self, lines: &[String]) {
        self.chunks.send(lines.join("\n") + "\n").unwrap();
    }
}

/// A small filesystem of its own (tmpfs) at `dir`, unmounted when dropped. `None` (and why) where
/// the test cannot mount one: it needs root, which CI has.
struct SmallDisk {
    dir: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !status.status.success() {
            return Err(format!(
                "mount -t tmpfs failed (it needs root): {}",
                String::from_utf8_lossy(&status.stderr).trim()
            ));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// Fills the filesystem with one file; its path.
    fn fill(&self) -> std::path::PathBuf {
        let filler = self.dir.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        loop {
            match std::io::Write::write(&mut file, &block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // The last page may still have room: take it with small writes.
        while std::io::Write::write(&mut file, &[0u8; 512]).is_ok_and(|n| n > 0) {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn small_disk_or_skip(dir: &Path) -> Option<SmallDisk> {
    match SmallDisk::mount(dir, "4m") {
        Ok(disk) => Some(disk),
        Err(why) if std::env::var("STREAMC_REQUIRE_SERVICES").is_ok() => {
            panic!("{why}; STREAMC_REQUIRE_SERVICES asks for the full-disk test to run")
        }
        Err(why) => {
            eprintln!("skipping the full-disk test: {why}");
            None
        }
    }
}

fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

#[test]
fn a_full_disk_pauses_receiving_which_resumes_with_every_line_counted_once() {
    let dir = temp_dir("full-disk");
    let Some(disk) = small_disk_or_skip(&dir.join("ckpt")) else {
        return;
    };
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let log = dir.join("app.log");
    let server = ChunkServer::start();
    let mut app = child(&out, &disk.dir, &server.address, &[], &log);
    let first: Vec<String> = lines(1000);
    server.send(&first);
    assert!(
        wait_for(Duration::from_secs(20), || published_counts(&out)
            == reference(&first)),
        "the first lines are counted"
    );

    let filler = disk.fill();
    let second: Vec<String> = (0..2000).map(|i| format!("late{} all", i % 11)).collect();
    let everything: Vec<String> = first.iter().chain(&second).cloned().collect();
    server.send(&second);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_for(Duration::from_secs(10), || read_log()
            .contains("receiving paused")),
        "a write-ahead log that cannot be written pauses receiving: {}",
        read_log()
    );
    std::thread::sleep(Duration::from_millis(1000));
    assert_ne!(
        published_counts(&out),
        reference(&everything),
        "what cannot be logged is not used while the disk is full"
    );
    assert!(
        app.try_wait().unwrap().is_none(),
        "the app rides the pause out"
    );

    std::fs::remove_file(filler).unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || published_counts(&out)
            == reference(&everything)),
        "once there is room, receiving resumes and every line is counted exactly once: {:?}\n{}",
        published_counts(&out),
        read_log()
    );
    assert!(read_log().contains("receiving resumes"), "{}", read_log());
    ask_to_stop(&mut app);
    let (code, _) = exit_within(&mut app, Duration::from_secs(20));
    assert_eq!(code, Some(0), "{}", read_log());
    drop(server);

    // A disk that stays full past --receiver-failure-timeout stops the app, naming the cause.
    let filler = disk.fill();
    let server = ChunkServer::start();
    let log = dir.join("stays-full.log");
    let mut app = child(
        &out,
        &disk.dir,
        &server.address,
        &[(FAILURE_TIMEOUT, "1s")],
        &log,
    );
    server.send(&lines(500));
    let (code, took) = exit_within(&mut app, Duration::from_secs(30));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(code, Some(1), "{text}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert!(
        text.contains("could not store what it received for 1s")
            && text.contains("No space left on device"),
        "{text}"
    );
    std::fs::remove_file(filler).unwrap();
}

/// `persist_word_count` writing to a database port where nothing listens: every write is retried,
/// and an attempt in flight waits on the connection pool's own timeout.
fn persist_to_nowhere(dir: &Path, extra: &[&str]) -> (Child, LineServer) {
    let server = LineServer::once(b"hello world\nhello again\n".to_vec()).unwrap();
    let app = Command::new(example_binary("persist_word_count"))
        .args(["--source", &format!("lines={}", server.address())])
        .args(["--checkpoint", &dir.to_string_lossy()])
        .args(["--sink", "wordcount=mysql://root@127.0.0.1:1/test"])
        .args(["--batch", "200ms", "--graceful-stop-timeout", "1s"])
        .args(extra)
        .env("STREAMC_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (app, server)
}

#[test]
fn every_way_of_stopping_obeys_the_bound_while_a_database_stays_away() {
    let dir = temp_dir("stop-every-way");
    // A signal.
    let (mut app, server) = persist_to_nowhere(&dir.join("signal"), &[]);
    assert!(server.wait_for_connections(1, Duration::from_secs(20)));
    std::thread::sleep(Duration::from_millis(500));
    ask_to_stop(&mut app);
    let (code, took) = exit_within(&mut app, Duration::from_secs(20));
    let mut stderr = String::new();
    app.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(code, Some(124), "{stderr}");
    assert!(took < Duration::from_secs(4), "SIGTERM: {took:?}");
    assert!(stderr.contains("did not finish within 1s"), "{stderr}");
    // --run-for and --batches end the run the same way, bounded the same way.
    for (how, flags) in [
        ("run-for", ["--run-for", "1s"]),
        ("batches", ["--batches", "4"]),
    ] {
        let started = Instant::now();
        let (mut app, _server) = persist_to_nowhere(&dir.join(how), &flags);
        let (code, _) = exit_within(&mut app, Duration::from_secs(30));
        assert_eq!(code, Some(124), "--{how}");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "--{how}: {:?}",
            started.elapsed()
        );
    }
}
