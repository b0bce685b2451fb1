//! The seed's stateful programs, run as a user runs them: the example binaries, fed over a loopback
//! socket, their printed blocks checked against reference computations, stopped with SIGTERM.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use streamc::testkit::LineServer;
use support::{example_binary, finished_lines};

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("streamc-examples-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A running example whose printed blocks are collected as they come.
struct Running {
    child: Child,
    blocks: Arc<Mutex<Vec<Vec<String>>>>,
}

impl Running {
    fn start(name: &str, args: &[&str]) -> Running {
        Self::start_with_log(name, args, Stdio::inherit())
    }

    /// [`Running::start`], with the example's log (standard error) sent to `log`.
    fn start_with_log(name: &str, args: &[&str], log: Stdio) -> Running {
        let binary = example_binary(name);
        assert!(
            binary.exists(),
            "cargo test builds the examples: {}",
            binary.display()
        );
        let mut child = Command::new(binary)
            .args(args)
            .env("STREAMC_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let blocks: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let sink = blocks.clone();
        std::thread::spawn(move || {
            let mut current: Option<Vec<String>> = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("Time: ") {
                    current = Some(Vec::new());
                } else if line.starts_with("----") {
                    continue;
                } else if line.is_empty() {
                    if let Some(block) = current.take() {
                        sink.lock().unwrap().push(block);
                    }
                } else if let Some(block) = current.as_mut() {
                    block.push(line);
                }
            }
        });
        Running { child, blocks }
    }

    /// Waits until a printed block has exactly `expected` lines (in any order).
    fn wait_for(&mut self, expected: &[String], limit: Duration) -> bool {
        let mut expected = expected.to_vec();
        expected.sort();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let found = self.blocks.lock().unwrap().iter().any(|b| {
                let mut b = b.clone();
                b.sort();
                b == expected
            });
            if found {
                return true;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the example exited early with {status:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "graceful stop exits 0, got {exit:?}");
    }

    fn printed(&self) -> Vec<Vec<String>> {
        self.blocks.lock().unwrap().clone()
    }
}

fn text(lines: &[&str]) -> Vec<u8> {
    let mut data = lines.join("\n").into_bytes();
    data.push(b'\n');
    data
}

fn word_counts(lines: &[&str]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for line in lines {
        for word in line.split(' ') {
            *counts.entry(word.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

fn shown(counts: &BTreeMap<String, u64>) -> Vec<String> {
    counts.iter().map(|(w, n)| format!("({w},{n})")).collect()
}

/// UpdateStateByKeyWordCount fed `lines` over a socket, checkpointing every 200 ms batch into `dir`,
/// its log sent to `log`. The server is returned with the app so it outlives the run.
fn running_counts(dir: &Path, lines: &[&str], log: Stdio) -> (LineServer, Running) {
    let server = LineServer::once(text(lines)).unwrap();
    let source = format!("lines={}", server.address());
    let dir = dir.to_string_lossy();
    let app = Running::start_with_log(
        "update_state_by_key_word_count",
        &[
            "--source",
            &source,
            "--batch",
            "200ms",
            "--checkpoint",
            &dir,
            "--checkpoint-every",
            "200ms",
        ],
        log,
    );
    (server, app)
}

#[test]
fn update_state_by_key_word_count_keeps_counting_across_a_restart() {
    let checkpoints = temp_dir("running-counts");
    let first_lines = ["hello world", "hello spark", "streaming hello"];
    let second_lines = ["hello again", "world"];
    let (_server, mut app) = running_counts(&checkpoints, &first_lines, Stdio::inherit());
    let expected = word_counts(&first_lines);
    assert!(
        app.wait_for(&shown(&expected), Duration::from_secs(20)),
        "printed: {:?}",
        app.printed()
    );
    app.stop();

    let (_server, mut app) = running_counts(&checkpoints, &second_lines, Stdio::inherit());
    let all: Vec<&str> = first_lines.iter().chain(&second_lines).copied().collect();
    let expected = word_counts(&all);
    assert!(
        app.wait_for(&shown(&expected), Duration::from_secs(20)),
        "counts must carry on from the checkpoint: {:?}",
        app.printed()
    );
    app.stop();
}

#[test]
fn a_damaged_newest_checkpoint_is_skipped_with_a_warning_and_counting_goes_on() {
    let checkpoints = temp_dir("damaged-counts");
    let first_lines = ["to be", "or not to be"];
    let (_server, mut app) = running_counts(&checkpoints, &first_lines, Stdio::inherit());
    assert!(
        app.wait_for(&shown(&word_counts(&first_lines)), Duration::from_secs(20)),
        "printed: {:?}",
        app.printed()
    );
    // A few more checkpoints of the same counts, so the one before the newest holds them too.
    std::thread::sleep(Duration::from_millis(800));
    app.stop();

    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ckpt"))
        .collect();
    files.sort();
    let newest = files.last().expect("checkpoints were written");
    let len = std::fs::metadata(newest).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(newest)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let second_lines = ["that is", "the question"];
    let log_path = checkpoints.with_extension("log");
    let log = std::fs::File::create(&log_path).unwrap();
    let (_server, mut app) = running_counts(&checkpoints, &second_lines, Stdio::from(log));
    let all: Vec<&str> = first_lines.iter().chain(&second_lines).copied().collect();
    assert!(
        app.wait_for(&shown(&word_counts(&all)), Duration::from_secs(20)),
        "counts carry on from the checkpoint before the damaged one: {:?}",
        app.printed()
    );
    app.stop();
    let log = std::fs::read_to_string(&log_path).unwrap();
    let name = newest.file_name().unwrap().to_string_lossy();
    assert!(
        log.contains("skipping a damaged checkpoint") && log.contains(name.as_ref()),
        "the warning names the skipped file:\n{log}"
    );
    let mut aside = newest.as_os_str().to_os_string();
    aside.push(".unreadable");
    assert!(
        std::path::Path::new(&aside).exists() && log.contains(".ckpt.unreadable"),
        "the damaged file is kept aside for inspection, and the warning says where:\n{log}"
    );
    assert!(
        !log.contains('\x1b'),
        "no colour codes in a log file:\n{log}"
    );
}

#[test]
fn window_hot_word_prints_the_top_3_of_the_window() {
    let logs = [
        "leo spark",
        "tom flink",
        "leo spark",
        "ann storm",
        "bob spark",
        "kim flink",
        "joe kafka",
        "malformed",
        "amy storm",
        "eve storm",
    ];
    let server = LineServer::once(text(&logs)).unwrap();
    let source = format!("search_logs={}", server.address());
    let mut app = Running::start("window_hot_word", &["--source", &source]);
    // spark 3, storm 3, flink 2: ties broken by word.
    let expected = ["(spark,3)", "(storm,3)", "(flink,2)"].map(String::from);
    assert!(
        app.wait_for(&expected, Duration::from_secs(25)),
        "printed: {:?}",
        app.printed()
    );
    app.stop();
}

#[test]
fn top3_hot_product_prints_the_top_3_per_category() {
    let clicks = [
        "u1 iphone phone",
        "u2 iphone phone",
        "u3 galaxy phone",
        "u4 pixel phone",
        "u5 iphone phone",
        "u6 galaxy phone",
        "u7 nokia phone",
        "u8 pixel phone",
        "u9 pixel phone",
        "u1 bravia tv",
        "u2 bravia tv",
        "u3 oled tv",
        "broken line",
        "",
    ];
    let server = LineServer::once(text(&clicks)).unwrap();
    let source = format!("click_logs={}", server.address());
    let mut app = Running::start(
        "top3_hot_product",
        &[
            "--source",
            &source,
            "--checkpoint",
            &temp_dir("top3").to_string_lossy(),
        ],
    );
    let expected = [
        "(phone,[(iphone,3), (pixel,3), (galaxy,2)])",
        "(tv,[(bravia,2), (oled,1)])",
    ]
    .map(String::from);
    assert!(
        app.wait_for(&expected, Duration::from_secs(25)),
        "printed: {:?}",
        app.printed()
    );
    app.stop();
}

#[test]
fn transform_blacklist_drops_blacklisted_clicks_and_writes_the_rest_to_rolling_files() {
    let out = temp_dir("valid-clicks");
    let clicks = [
        "20261127 leo",
        "20261127 tom",
        "malformed",
        "20261127 ann",
        "20261128 tom",
    ];
    let server = LineServer::once(text(&clicks)).unwrap();
    let source = format!("ads_click_logs={}", server.address());
    let sink = format!("valid_clicks={}", out.display());
    let mut app = Running::start(
        "transform_blacklist",
        &["--source", &source, "--batch", "300ms", "--sink", &sink],
    );
    let valid = vec!["20261127 leo".to_string(), "20261127 ann".to_string()];
    assert!(
        app.wait_for(&valid, Duration::from_secs(20)),
        "printed: {:?}",
        app.printed()
    );
    app.stop();
    let written = finished_lines(&out);
    let mut expected = valid;
    expected.sort();
    assert_eq!(written, expected, "the stop finishes the rolling file");
}

/// Produces `lines` to topic `wordCount` of the mock cluster, round-robin over its two partitions.
fn produce_lines(brokers: &str, lines: &[&str]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    for (i, line) in lines.iter().enumerate() {
        producer
            .send(
                BaseRecord::<(), str>::to("wordCount")
                    .payload(*line)
                    .partition(i as i32 % 2),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// The sum of every printed `(word,n)` block.
fn printed_totals(app: &Running) -> BTreeMap<String, u64> {
    let mut totals = BTreeMap::new();
    for line in app.printed().iter().flatten() {
        let parsed = line
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .and_then(|l| l.rsplit_once(','))
            .and_then(|(w, n)| Some((w.to_string(), n.parse::<u64>().ok()?)));
        if let Some((word, n)) = parsed {
            *totals.entry(word).or_insert(0) += n;
        }
    }
    totals
}

/// Runs one of the seed's Kafka word counts as its binary against librdkafka's mock cluster: lines
/// produced before it starts and while it runs are all counted, once, and it stops with SIGTERM.
fn kafka_word_count(example: &str, group: &str) {
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    cluster.create_topic("wordCount", 2, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = temp_dir(example);
    let before = ["hello world", "hello streamc hello"];
    produce_lines(&brokers, &before);
    let source = format!("lines={brokers}");
    let checkpoints = dir.to_string_lossy().into_owned();
    let app = Running::start(
        example,
        &[
            "--source",
            &source,
            "--batch",
            "200ms",
            "--checkpoint",
            &checkpoints,
            "--kafka-group",
            group,
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while printed_totals(&app) != word_counts(&before) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        printed_totals(&app),
        word_counts(&before),
        "what was in the topic before the start"
    );
    let after = ["world of streams", "hello again"];
    produce_lines(&brokers, &after);
    let all: Vec<&str> = before.iter().chain(&after).copied().collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while printed_totals(&app) != word_counts(&all) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Nothing counted twice shows up a few batches later either.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        printed_totals(&app),
        word_counts(&all),
        "and what came after, once"
    );
    app.stop();
}

#[test]
fn the_seeds_kafka_direct_word_count_counts_the_topic_as_a_binary() {
    kafka_word_count("kafka_direct_word_count", "direct-binary");
}

#[test]
fn the_seeds_kafka_receiver_word_count_counts_the_topic_as_a_binary() {
    kafka_word_count("kafka_receiver_word_count", "receiver-binary");
}
