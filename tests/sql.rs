//! The SQL sink against real databases: SQLite always; MariaDB and PostgreSQL when
//! `STREAMC_TEST_MYSQL_URL` / `STREAMC_TEST_POSTGRES_URL` are set (CI sets them, and sets
//! `STREAMC_REQUIRE_SERVICES` so that a missing one fails instead of skipping).

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use streamc::testkit::{LineServer, Rng};
use support::{
    child_with, drop_lines, example_binary, finished_lines, setting, temp_dir, terminate,
    CHECKPOINTS, OUT, PEER,
};

/// A database to test against.
struct Db {
    label: &'static str,
    url: String,
}

/// SQLite in `dir`, plus the servers whose URLs are set.
fn databases(dir: &Path) -> Vec<Db> {
    let mut dbs = vec![Db {
        label: "sqlite",
        url: format!("sqlite://{}", dir.join("test.sqlite").display()),
    }];
    for (var, label) in [
        ("STREAMC_TEST_MYSQL_URL", "mariadb"),
        ("STREAMC_TEST_POSTGRES_URL", "postgres"),
    ] {
        match std::env::var(var) {
            Ok(url) if !url.is_empty() => dbs.push(Db { label, url }),
            _ if std::env::var("STREAMC_REQUIRE_SERVICES").is_ok() => {
                panic!("{var} is unset but STREAMC_REQUIRE_SERVICES asks for every database")
            }
            _ => eprintln!("{var} is unset: skipping the {label} run of this test"),
        }
    }
    dbs
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn connect(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let url = if url.starts_with("sqlite:") && !url.contains('?') {
        format!("{url}?mode=rwc")
    } else {
        url.to_string()
    };
    sqlx::AnyPool::connect(&url).await.unwrap()
}

/// Drops `table` and forgets the progress of `pipeline`, so a test starts from nothing.
fn reset(url: &str, table: &str, pipeline: &str) {
    block_on(async {
        let pool = connect(url).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}")))
            .execute(&pool)
            .await
            .unwrap();
        // The progress table may not exist yet.
        let _ = sqlx::query(if url.starts_with("postgres") {
            "DELETE FROM streamc_progress WHERE pipeline = $1"
        } else {
            "DELETE FROM streamc_progress WHERE pipeline = ?"
        })
        .bind(pipeline)
        .execute(&pool)
        .await;
        pool.close().await;
    })
}

/// `word → count` from `table` (empty if the table does not exist yet).
fn table_counts(url: &str, table: &str) -> BTreeMap<String, i64> {
    block_on(async {
        let pool = connect(url).await;
        let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT word, count FROM {table}"
        )))
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
        pool.close().await;
        rows.into_iter().collect()
    })
}

fn word_counts<'a>(lines: impl IntoIterator<Item = &'a String>) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for line in lines {
        for word in line.split_whitespace() {
            *counts.entry(word.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

/// Words a string-concatenating sink (the seed's) would execute or mangle, and pairs that a key
/// column with a case- or accent-insensitive collation (MariaDB's default) would merge.
fn hostile_words() -> Vec<String> {
    [
        "it's",
        "\"quoted\"",
        "back\\slash",
        "x');DROP/**/TABLE/**/wordcount;--",
        "1;DELETE/**/FROM/**/wordcount",
        "%_wild*",
        "中文",
        "émoji🎉",
        "ünïcödé",
        "Hello",
        "hello",
        "café",
        "cafe",
        "Straße",
        "strasse",
        "STRASSE",
    ]
    .iter()
    .map(|w| w.to_string())
    .collect()
}

/// The tests that use the seed's table name `wordcount` on the shared servers take turns.
static WORDCOUNT_TABLE: Mutex<()> = Mutex::new(());

#[test]
fn persist_word_count_stores_the_reference_counts_verbatim() {
    let _table = WORDCOUNT_TABLE.lock().unwrap_or_else(|p| p.into_inner());
    let dir = temp_dir("persist");
    let mut lines: Vec<String> = vec![
        "hello world".into(),
        "hello spark streaming".into(),
        "world hello".into(),
    ];
    lines.push(hostile_words().join(" "));
    lines.push(hostile_words()[..4].join(" "));
    let expected = word_counts(&lines);
    for db in databases(&dir) {
        reset(&db.url, "wordcount", "persist_word_count");
        let server = LineServer::once((lines.join("\n") + "\n").into_bytes()).unwrap();
        let checkpoints = dir.join(format!("ckpt-{}", db.label));
        let mut app = Command::new(example_binary("persist_word_count"))
            .args(["--source", &format!("lines={}", server.address())])
            .args(["--batch", "200ms", "--checkpoint-every", "200ms"])
            .args(["--checkpoint", &checkpoints.to_string_lossy()])
            .args(["--sink", &format!("wordcount={}", db.url)])
            .env("STREAMC_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let arrived = wait_until(Duration::from_secs(30), || {
            table_counts(&db.url, "wordcount") == expected
        });
        let status = Command::new("kill")
            .args(["-TERM", &app.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(app.wait().unwrap().success());
        assert!(
            arrived,
            "{}: the table must equal the reference, every word stored verbatim: {:?}",
            db.label,
            table_counts(&db.url, "wordcount")
        );
    }
}

/// The crash test's words fit a column this long, except the ones it makes too long on purpose.
const SHORT_WORD: u32 = 4;
const DEAD_LETTER: &str = "STREAMC_TEST_DEAD_LETTER";

mod crash {
    use crate::SHORT_WORD;
    use streamc::prelude::*;

    stream! {
        app sql_totals { batch: 100ms, workers: 2, checkpoint: "target/streamc-test/sql_totals", checkpoint_every: 300ms }
        let lines = text_file_stream("target/streamc-test/sql_totals_in");
        let words = lines.flat_map(|line: &str| line.split_whitespace()).map(|w| w.to_string());
        // Per-batch deltas added to the stored counts: a batch written twice would show. Words
        // longer than the column are refused and set aside: one listed twice would show too.
        let counts = words.map(|w| (w, 1u64)).reduce_by_key(|a, b| a + b);
        counts.save_to_sql(
            "sqlite://target/streamc-test/sql_totals.db",
            SqlTable::new("crash_totals")
                .column("word", SqlType::Text(SHORT_WORD))
                .column("count", SqlType::BigInt)
                .key(["word"])
                .accumulate(["count"])
                .dead_letter(crate::support::setting(crate::DEAD_LETTER)),
        );
        words.save_to_rolling_files(RollingFiles::new("target/streamc-test/sql_totals_words").max_bytes(300));
    }
}

#[test]
#[ignore = "run by the crash tests in a child process"]
fn sql_crash_child() {
    crash::sql_totals::app()
        .source_address("lines", setting(PEER))
        .configure(|c| {
            c.checkpoint_dir =
                Some(streamc::store::Location::parse(&setting(CHECKPOINTS)).unwrap());
            // Files arrive from the first moment (see tests/files.rs).
            c.files_include_existing = true;
            c.sinks
                .urls
                .insert("crash_totals".into(), setting("STREAMC_TEST_SINK_URL"));
            c.sinks.urls.insert("sql_totals_words".into(), setting(OUT));
            c.sinks.retry.initial_backoff = Duration::from_millis(20);
            // With the checkpoints in a bucket, a restart after a kill waits out this lease.
            c.storage.lease = Duration::from_millis(300);
        })
        .stop_on_signals()
        .run()
        .unwrap();
}

/// Where a child may be made to crash on its own (besides SIGKILLs at random moments).
const FAILPOINTS: &[&str] = &[
    "sql.after_dead_letter",
    "sql.before_commit",
    "sql.after_commit",
    "rolling.before_state",
    "rolling.after_rename",
];

/// How a child ends at its failpoint (`abort()`) and by our SIGKILL.
const SIGABRT: i32 = 6;
const SIGKILL: i32 = 9;

/// Puts one input file (its name, its lines) in place.
type DropInput<'a> = Box<dyn Fn(&str, &[String]) + 'a>;

/// Where a crash run keeps its checkpoints and its input: local directories, or a bucket.
struct Place<'a> {
    checkpoints: String,
    input: String,
    drop: DropInput<'a>,
    env: Vec<(&'static str, String)>,
}

fn crash_child(db: &Db, out: &Path, place: &Place<'_>, failpoint: Option<String>) -> Child {
    let mut env = vec![
        ("STREAMC_TEST_SINK_URL", db.url.clone()),
        (
            DEAD_LETTER,
            dead_letter_file(out).to_string_lossy().into_owned(),
        ),
    ];
    env.extend(failpoint.map(|f| ("STREAMC_FAILPOINT", f)));
    env.extend(place.env.iter().cloned());
    child_with(
        "sql_crash_child",
        out,
        &place.checkpoints,
        &place.input,
        &env,
    )
}

fn dead_letter_file(out: &Path) -> PathBuf {
    out.with_extension("dead.tsv")
}

/// The refused `(word, count)` records in a dead-letter file, summed per word; panics if one batch
/// partition lists a word twice.
fn dead_lettered(file: &Path) -> BTreeMap<String, i64> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut seen = std::collections::BTreeSet::new();
    let mut totals = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 4, "a dead-letter line: {line:?}");
        let (word, count) = fields[2]
            .strip_prefix("(\"")
            .and_then(|r| r.strip_suffix(')'))
            .and_then(|r| r.split_once("\", "))
            .unwrap_or_else(|| panic!("a (word, count) record: {line:?}"));
        assert!(
            seen.insert((fields[0], fields[1], word)),
            "batch {} partition {} lists {word} twice:\n{text}",
            fields[0],
            fields[1]
        );
        *totals.entry(word.to_string()).or_default() += count.parse::<i64>().unwrap();
    }
    totals
}

/// SIGKILLs `app` unless it has already exited, and returns how it ended.
fn end(app: &mut Child) -> ExitStatus {
    // A child that exited since it was last polled is a zombie until waited for: the SIGKILL does
    // nothing to it, and its own status is what `wait` reports.
    let _ = app.kill();
    app.wait().unwrap()
}

/// How the incarnations of a crash run ended.
#[derive(Debug)]
struct Ends {
    /// Aborts at each of [`FAILPOINTS`].
    fired: Vec<usize>,
    kills: usize,
    /// Anything else, such as an incarnation that failed on its own.
    other: Vec<String>,
}

impl Ends {
    fn record(&mut self, armed: Option<usize>, status: ExitStatus) {
        match (armed, status.signal()) {
            (Some(p), Some(SIGABRT)) => self.fired[p] += 1,
            (_, Some(SIGKILL)) => self.kills += 1,
            _ => {
                let point = armed.map(|p| FAILPOINTS[p]);
                self.other.push(format!("{status} (failpoint {point:?})"));
            }
        }
    }
}

/// Kills the app again and again — SIGKILL at random moments, and aborts between setting refused
/// records aside and committing, between writing rows and committing, between committing and
/// checkpointing, and inside the rolling sink's steps — while files arrive; the table, the rolled files
/// and the dead-letter file must equal a crash-free run's.
///
/// Incarnations take turns: one that is only SIGKILLed, then one per failpoint in order, so that
/// every failpoint fires on every database. An incarnation is SIGKILLed after 4 files unless it has
/// aborted by then; one whose failpoint has never fired yet gets up to 16 files (a roll comes every
/// 10 files or so).
fn crash_run(db: &Db, dir: &Path) {
    let input = dir.join(format!("in-{}", db.label));
    std::fs::create_dir_all(&input).unwrap();
    let place = Place {
        checkpoints: dir
            .join(format!("ckpt-{}", db.label))
            .to_string_lossy()
            .into_owned(),
        input: input.to_string_lossy().into_owned(),
        drop: Box::new(move |name: &str, lines: &[String]| drop_lines(&input, name, lines)),
        env: Vec::new(),
    };
    crash_run_at(db, dir, &place);
}

/// Fewer ends than these and the crash test has not tested what it says.
const MIN_RESTARTS: usize = 8;
const MIN_KILLS: usize = 2;

fn crash_run_at(db: &Db, dir: &Path, place: &Place<'_>) {
    let out = dir.join(format!("out-{}", db.label));
    reset(&db.url, "crash_totals", "sql_totals");
    let mut rng = Rng::new(11 + db.label.len() as u64);
    let mut all_lines: Vec<String> = Vec::new();
    let turns = FAILPOINTS.len() + 1;
    let mut ends = Ends {
        fired: vec![0; FAILPOINTS.len()],
        kills: 0,
        other: Vec::new(),
    };
    let (mut restarts, mut files_seen) = (0usize, 0usize);
    let mut armed: Option<usize> = None;
    let mut app = crash_child(db, &out, place, None);
    let mut i = 0;
    // 36 files; more, up to 100, while a failpoint has not fired yet or too few incarnations have ended
    // (a slow start on a loaded machine, or a slow bucket, can use up a turn).
    let too_few = |ends: &Ends, restarts: usize| {
        ends.fired.contains(&0) || restarts < MIN_RESTARTS || ends.kills < MIN_KILLS
    };
    while i < 36 || (too_few(&ends, restarts) && i < 100) {
        let lines: Vec<String> = (0..1 + rng.next_u64() % 8)
            .map(|_| match rng.next_u64() % 4 {
                0 => format!("w{} toolong{}", rng.next_u64() % 9, rng.next_u64() % 3),
                _ => format!("w{} w{}", rng.next_u64() % 9, rng.next_u64() % 4),
            })
            .collect();
        (place.drop)(&format!("f{i:03}.txt"), &lines);
        all_lines.extend(lines);
        std::thread::sleep(Duration::from_millis(50 + rng.next_u64() % 150));
        i += 1;
        files_seen += 1;
        let exited = matches!(app.try_wait(), Ok(Some(_)));
        let waiting = armed.is_some_and(|p| ends.fired[p] == 0) && files_seen < 16;
        if !exited && (files_seen < 4 || waiting) {
            continue;
        }
        ends.record(armed, end(&mut app));
        restarts += 1;
        armed = (restarts % turns).checked_sub(1);
        // A point's first hit until it has fired once; then a later one, to vary the moment.
        let failpoint = armed.map(|p| {
            let nth = if ends.fired[p] == 0 {
                1
            } else {
                1 + (restarts / turns) % 3
            };
            format!("{}:{nth}", FAILPOINTS[p])
        });
        app = crash_child(db, &out, place, failpoint);
        files_seen = 0;
    }
    if armed.is_some() || matches!(app.try_wait(), Ok(Some(_))) {
        // A failpoint could fire while the last incarnation catches up: that one runs without.
        ends.record(armed, end(&mut app));
        app = crash_child(db, &out, place, None);
    }
    // Give the last incarnation time to start and install its signal handlers before it is stopped.
    std::thread::sleep(Duration::from_millis(1500));
    let (expected, expected_refused): (BTreeMap<_, _>, BTreeMap<_, _>) = word_counts(&all_lines)
        .into_iter()
        .partition(|(w, _)| w.len() <= SHORT_WORD as usize);
    let caught_up = wait_until(Duration::from_secs(20), || {
        table_counts(&db.url, "crash_totals") == expected
    });
    terminate(app);
    let mut words: Vec<String> = all_lines
        .iter()
        .flat_map(|l| l.split_whitespace().map(str::to_string))
        .collect();
    words.sort();
    assert!(
        restarts >= MIN_RESTARTS && ends.kills >= MIN_KILLS,
        "{}: too few crashes: {restarts} restarts ({ends:?})",
        db.label
    );
    assert!(
        caught_up,
        "{}: after {restarts} restarts ({ends:?}) every word must be counted exactly once: \
         {:?} != {expected:?}",
        db.label,
        table_counts(&db.url, "crash_totals")
    );
    assert_eq!(
        finished_lines(&out),
        words,
        "{}: the rolled files hold every word once",
        db.label
    );
    assert_eq!(
        dead_lettered(&dead_letter_file(&out)),
        expected_refused,
        "{}: every refused word is set aside once",
        db.label
    );
    let never: Vec<&str> = FAILPOINTS
        .iter()
        .zip(&ends.fired)
        .filter(|(_, n)| **n == 0)
        .map(|(p, _)| *p)
        .collect();
    assert!(
        never.is_empty(),
        "{}: failpoints that never fired: {never:?} ({ends:?})",
        db.label
    );
}

#[test]
fn sql_and_rolling_sinks_are_exactly_once_across_kills_sqlite() {
    let dir = temp_dir("sql-crash-sqlite");
    let db = databases(&dir).remove(0);
    crash_run(&db, &dir);
}

/// The same crash test with the checkpoints and the watched directory in an S3 bucket.
#[test]
fn sql_and_rolling_sinks_are_exactly_once_across_kills_with_checkpoints_in_a_bucket() {
    let Some(s3) = support::S3Server::start("the SQL crash test on S3") else {
        return;
    };
    let dir = temp_dir("sql-crash-s3");
    let db = databases(&dir).remove(0);
    let bucket = s3.bucket("sql-crash");
    let place = Place {
        checkpoints: format!("{bucket}/checkpoints"),
        input: format!("{bucket}/incoming/"),
        drop: Box::new(|name: &str, lines: &[String]| {
            s3.put_object(
                "sql-crash",
                &format!("incoming/{name}"),
                lines.join("\n").as_bytes(),
            )
        }),
        env: s3.env(),
    };
    crash_run_at(&db, &dir, &place);
}

#[test]
fn sql_sink_is_exactly_once_across_kills_on_servers() {
    let dir = temp_dir("sql-crash-servers");
    for db in databases(&dir).into_iter().skip(1) {
        crash_run(&db, &dir);
    }
}

mod refused {
    use streamc::prelude::*;

    /// Where this run's refused records go (none: they stop the app).
    pub static DEAD_LETTER: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

    pub fn dead_letter() -> Option<String> {
        DEAD_LETTER.lock().unwrap().clone()
    }

    pub fn batches() -> Vec<Vec<String>> {
        vec![
            vec!["ok".into(), "fine".into()],
            vec![
                "good".into(),
                "waytoolongforthecolumn".into(),
                "also".into(),
            ],
        ]
    }

    pub fn table(dead_letter: Option<String>) -> SqlTable {
        let table = SqlTable::new("short_words")
            .column("word", SqlType::Text(8))
            .column("count", SqlType::BigInt)
            .key(["word"]);
        match dead_letter {
            Some(path) => table.dead_letter(path),
            None => table,
        }
    }

    stream! {
        app short_words { batch: 100ms, workers: 2 }
        let words = queue_stream::<String>(crate::refused::batches());
        let counts = words.map(|w| (w, 1u64)).reduce_by_key(|a, b| a + b);
        counts.save_to_sql("sqlite://unused.db", crate::refused::table(crate::refused::dead_letter()));
    }
}

fn run_short_words(
    url: &str,
    dead_letter: Option<&Path>,
) -> Result<streamc::RunReport, streamc::RunError> {
    *refused::DEAD_LETTER.lock().unwrap() = dead_letter.map(|p| p.to_string_lossy().into_owned());
    refused::short_words::app()
        .configure(|c| {
            c.stop_when_drained = true;
            c.sinks.urls.insert("short_words".into(), url.to_string());
        })
        .run()
}

#[test]
fn a_refused_record_stops_the_app_by_name_or_goes_to_the_dead_letter_file() {
    let dir = temp_dir("sql-refused");
    for db in databases(&dir) {
        reset(&db.url, "short_words", "short_words");
        let err = run_short_words(&db.url, None).expect_err("a refused row stops the app");
        let message = err.to_string();
        assert!(
            message.contains("\"waytoolongforthecolumn\"") && message.contains("dead_letter"),
            "{}: the error names the record and the way out: {message}",
            db.label
        );
        // Each partition is one transaction: the refused row's partition is not committed, the
        // other partitions of its batch are (a restart skips them).
        let counts = table_counts(&db.url, "short_words");
        let bad = streamc::exec::partition_of(&"waytoolongforthecolumn".to_string(), 2);
        let mut expected = vec!["fine".to_string(), "ok".to_string()];
        expected.extend(
            ["good", "also"]
                .into_iter()
                .filter(|w| streamc::exec::partition_of(&w.to_string(), 2) != bad)
                .map(str::to_string),
        );
        expected.sort();
        assert_eq!(
            counts.keys().cloned().collect::<Vec<_>>(),
            expected,
            "{}: nothing of the refused row's partition is committed",
            db.label
        );

        reset(&db.url, "short_words", "short_words");
        let dead = dir.join(format!("dead-{}.tsv", db.label));
        let report = run_short_words(&db.url, Some(&dead)).expect("bad rows set aside");
        let counts = table_counts(&db.url, "short_words");
        assert_eq!(
            counts.keys().cloned().collect::<Vec<_>>(),
            vec!["also", "fine", "good", "ok"],
            "{}",
            db.label
        );
        let text = std::fs::read_to_string(&dead).unwrap();
        let fields: Vec<&str> = text.trim_end().split('\t').collect();
        assert_eq!(fields.len(), 4, "{text}");
        assert_eq!(fields[2], "(\"waytoolongforthecolumn\", 1)", "{}", db.label);
        let output = &report.outputs[0].1;
        assert_eq!(
            (output.records, output.dead_lettered),
            (4, 1),
            "{}",
            db.label
        );
    }
}

/// A TCP proxy in front of a database that can be taken down (every connection cut, new ones
/// refused) and brought back.
struct Proxy {
    address: String,
    up: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let up = Arc::new(AtomicBool::new(true));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (up2, streams2) = (up.clone(), streams.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let mut kept = streams2.lock().unwrap();
                kept.push(client.try_clone().unwrap());
                kept.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy {
            address,
            up,
            streams,
        }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// `url` with its host and port replaced by the proxy's.
    fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let user = authority
            .rsplit_once('@')
            .map(|(u, _)| format!("{u}@"))
            .unwrap_or_default();
        format!("{scheme}://{user}{}/{path}", self.address)
    }
}

fn target_of(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split('/').next().unwrap();
    let host = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    if host.contains(':') {
        host.to_string()
    } else if url.starts_with("postgres") {
        format!("{host}:5432")
    } else {
        format!("{host}:3306")
    }
}

mod outage {
    use streamc::prelude::*;

    pub fn batches() -> Vec<Vec<String>> {
        (0..40)
            .map(|i| {
                vec![
                    format!("k{}", i % 5),
                    format!("k{}", i % 3),
                    "all".to_string(),
                ]
            })
            .collect()
    }

    stream! {
        app outage_totals { batch: 100ms, workers: 2, checkpoint: "target/streamc-test/outage", checkpoint_every: 200ms }
        let words = queue_stream::<String>(crate::outage::batches());
        let counts = words.map(|w| (w, 1u64)).reduce_by_key(|a, b| a + b);
        counts.save_to_sql(
            "sqlite://unused.db",
            SqlTable::new("outage_totals")
                .column("word", SqlType::Text(16))
                .column("count", SqlType::BigInt)
                .key(["word"])
                .accumulate(["count"]),
        );
    }
}

fn outage_expected() -> BTreeMap<String, i64> {
    word_counts(
        &outage::batches()
            .into_iter()
            .map(|b| b.join(" "))
            .collect::<Vec<_>>(),
    )
}

fn outage_app(
    url: &str,
    checkpoints: &Path,
    attempts: u32,
) -> streamc::App<outage::outage_totals::Pipeline> {
    let (url, checkpoints) = (url.to_string(), checkpoints.to_path_buf());
    outage::outage_totals::app().configure(move |c| {
        c.stop_when_drained = true;
        c.checkpoint_dir = Some(checkpoints.into());
        c.sinks.urls.insert("outage_totals".into(), url);
        c.sinks.retry.attempts = attempts;
        c.sinks.retry.initial_backoff = Duration::from_millis(50);
        c.sinks.retry.max_backoff = Duration::from_millis(400);
    })
}

#[test]
fn a_database_that_goes_away_is_retried_then_stops_the_app_resumably() {
    let dir = temp_dir("sql-outage");
    let servers: Vec<Db> = databases(&dir).into_iter().skip(1).collect();
    if servers.is_empty() {
        eprintln!("no database server URL is set: the outage test needs one (SQLite has no connection to cut)");
    }
    for db in servers {
        let proxy = Proxy::start(target_of(&db.url));
        let url = proxy.url(&db.url);

        // A short outage: the batches wait, are retried, and nothing is lost.
        reset(&db.url, "outage_totals", "outage_totals");
        let checkpoints = dir.join(format!("short-{}", db.label));
        let running = outage_app(&url, &checkpoints, 30).start().unwrap();
        std::thread::sleep(Duration::from_millis(1200));
        proxy.down();
        std::thread::sleep(Duration::from_millis(1500));
        proxy.up();
        let report = running.wait().expect("the app rides out a short outage");
        assert_eq!(
            table_counts(&db.url, "outage_totals"),
            outage_expected(),
            "{}",
            db.label
        );
        assert!(
            report.outputs[0].1.retries > 0,
            "{}: retries are counted",
            db.label
        );

        // A long outage: the policy gives up, the app stops with the reason; once the database is back
        // a restart from the checkpoint finishes the job, nothing lost or doubled.
        reset(&db.url, "outage_totals", "outage_totals");
        let checkpoints = dir.join(format!("long-{}", db.label));
        let running = outage_app(&url, &checkpoints, 3).start().unwrap();
        std::thread::sleep(Duration::from_millis(1200));
        proxy.down();
        let err = running
            .wait()
            .expect_err("the app stops when the policy gives up");
        assert!(
            err.to_string().contains("gave up after 3 attempts"),
            "{}: {err}",
            db.label
        );
        proxy.up();
        outage_app(&url, &checkpoints, 3)
            .run()
            .expect("the restart resumes");
        assert_eq!(
            table_counts(&db.url, "outage_totals"),
            outage_expected(),
            "{}",
            db.label
        );
    }
}

mod kafka_crash {
    use streamc::prelude::*;

    stream! {
        app kafka_sql_totals { batch: 100ms, workers: 2, checkpoint: "target/streamc-test/kafka_sql_totals", checkpoint_every: 300ms }
        let records = kafka_direct_stream("127.0.0.1:9", ["sql_words"]);
        let counts = records
            .flat_map(|record: &KafkaRecord| record.value_str().unwrap_or("").split_whitespace())
            .map(|w| (w.to_string(), 1u64))
            .reduce_by_key(|a, b| a + b);
        counts.save_to_sql(
            "sqlite://unused.db",
            SqlTable::new("kafka_totals")
                .column("word", SqlType::Text(64))
                .column("count", SqlType::BigInt)
                .key(["word"])
                .accumulate(["count"]),
        );
    }
}

#[test]
#[ignore = "run by kafka_to_sql_is_exactly_once_across_kills in a child process"]
fn kafka_sql_child() {
    kafka_crash::kafka_sql_totals::app()
        .source_address("records", setting(PEER))
        .configure(|c| {
            c.checkpoint_dir =
                Some(streamc::store::Location::parse(&setting(CHECKPOINTS)).unwrap());
            c.kafka.start = streamc::source::StartAt::Earliest;
            c.sinks
                .urls
                .insert("kafka_totals".into(), setting("STREAMC_TEST_SINK_URL"));
            c.sinks.retry.initial_backoff = Duration::from_millis(20);
            // With the checkpoints in a bucket, a restart after a kill waits out this lease.
            c.storage.lease = Duration::from_millis(300);
        })
        .stop_on_signals()
        .run()
        .unwrap();
}

/// The direct Kafka source and the SQL sink, end to end: SIGKILLs and aborts between writing rows and
/// committing and between committing and checkpointing; the table must count every message once.
#[test]
fn kafka_to_sql_is_exactly_once_across_kills() {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("sql_words", 2, 1).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let dir = temp_dir("kafka-sql-crash");
    let db = Db {
        label: "sqlite",
        url: format!("sqlite://{}", dir.join("test.sqlite").display()),
    };
    reset(&db.url, "kafka_totals", "kafka_sql_totals");
    let checkpoints = dir.join("ckpt");
    let spawn = |failpoint: Option<String>| {
        let mut env = vec![("STREAMC_TEST_SINK_URL", db.url.clone())];
        env.extend(failpoint.map(|f| ("STREAMC_FAILPOINT", f)));
        child_with("kafka_sql_child", &dir, &checkpoints, &brokers, &env)
    };
    let mut rng = Rng::new(31);
    let mut lines = Vec::new();
    let mut app = spawn(None);
    for wave in 0..8 {
        let wave_lines: Vec<String> = (0..200)
            .map(|_| format!("m{} m{}", rng.next_u64() % 7, rng.next_u64() % 3))
            .collect();
        for (i, line) in wave_lines.iter().enumerate() {
            producer
                .send(
                    BaseRecord::<(), _>::to("sql_words")
                        .payload(line)
                        .partition(i as i32 % 2),
                )
                .unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
        lines.extend(wave_lines);
        std::thread::sleep(Duration::from_millis(150 + rng.next_u64() % 300));
        if !matches!(app.try_wait(), Ok(Some(_))) {
            app.kill().unwrap();
        }
        app.wait().unwrap();
        let failpoint = (wave % 2 == 1).then(|| {
            let point = ["sql.before_commit", "sql.after_commit"][(wave / 2) % 2];
            format!("{point}:{}", 1 + rng.next_u64() % 3)
        });
        app = spawn(failpoint);
    }
    // The last incarnation runs without a failpoint, so that its graceful stop is clean.
    if !matches!(app.try_wait(), Ok(Some(_))) {
        app.kill().unwrap();
    }
    app.wait().unwrap();
    let app = spawn(None);
    // Earlier incarnations may have written everything already: give this one time to start (and
    // install its signal handlers) before it is asked to stop.
    std::thread::sleep(Duration::from_millis(1500));
    let expected = word_counts(&lines);
    let caught_up = wait_until(Duration::from_secs(20), || {
        table_counts(&db.url, "kafka_totals") == expected
    });
    terminate(app);
    assert!(
        caught_up,
        "every message counted exactly once: {:?} != {expected:?}",
        table_counts(&db.url, "kafka_totals")
    );
}

mod appended {
    use streamc::prelude::*;

    /// Ad clicks, (user, ad), a few per batch.
    pub fn clicks() -> Vec<Vec<(String, String)>> {
        (0..5)
            .map(|b| {
                (0..=b)
                    .map(|i| (format!("user{i}"), format!("ad{}", (b + i) % 3)))
                    .collect()
            })
            .collect()
    }

    stream! {
        app click_log { batch: 1s, workers: 2, checkpoint: "target/streamc-test/click_log" }
        let clicks = queue_stream::<(String, String)>(crate::appended::clicks());
        let valid = clicks
            .map(|click: &(String, String)| click.clone())
            .filter(|(user, _): &(String, String)| !user.is_empty());
        valid.save_to_sql(
            "sqlite://unused.db",
            SqlTable::new("click_log")
                .column("user_name", SqlType::Text(50))
                .column("ad", SqlType::Text(50))
                .updated_time("updated_time"),
        );
    }
}

/// `(user_name, ad, second of updated_time)` of every row of `click_log`, sorted.
fn click_rows(url: &str) -> Vec<(String, String, String)> {
    block_on(async {
        let pool = connect(url).await;
        let text = if url.starts_with("mysql") {
            "CHAR"
        } else {
            "TEXT"
        };
        let mut rows: Vec<(String, String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT user_name, ad, CAST(updated_time AS {text}) FROM click_log"
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        for row in &mut rows {
            // Fractions are shown differently by each database; the batch times are whole seconds.
            row.2.truncate("1970-01-01 00:00:01".len());
        }
        rows.sort();
        rows
    })
}

#[test]
fn append_mode_writes_every_record_once_with_its_batch_time_even_after_a_replay() {
    let dir = temp_dir("sql-append");
    for db in databases(&dir) {
        reset(&db.url, "click_log", "click_log");
        let checkpoints = dir.join(format!("ckpt-append-{}", db.label));
        let _ = std::fs::remove_dir_all(&checkpoints);
        let at = |c: &mut streamc::AppConfig| {
            c.checkpoint_dir = Some(checkpoints.clone().into());
            c.checkpoint_every = Some(Duration::from_secs(2));
            c.sinks.urls.insert("click_log".into(), db.url.clone());
        };
        // Batches 1–3 written; the checkpoint covers 2, so the crash leaves batch 3 to be replayed.
        let mut first = appended::click_log::app()
            .configure(at)
            .test_driver()
            .unwrap();
        first.run_batches(3);
        drop(first);
        let mut resumed = appended::click_log::app()
            .configure(at)
            .test_driver()
            .unwrap();
        resumed.run_batches(3);
        drop(resumed);
        let mut expected: Vec<(String, String, String)> = appended::clicks()
            .into_iter()
            .enumerate()
            .flat_map(|(b, clicks)| {
                let second = format!("1970-01-01 00:00:{:02}", b + 1);
                clicks
                    .into_iter()
                    .map(move |(user, ad)| (user, ad, second.clone()))
            })
            .collect();
        expected.sort();
        assert_eq!(
            click_rows(&db.url),
            expected,
            "{}: every click once (batch 3 replayed, not written again), stamped with its batch time",
            db.label
        );
    }
}

/// The seed's DDL for `wordcount`, in each database's words: an auto-increment `id` is the only key,
/// and `updated_time` is filled by the database.
fn seed_wordcount_ddl(url: &str) -> &'static str {
    if url.starts_with("mysql") {
        "create table wordcount(id integer auto_increment primary key, updated_time timestamp not null \
         default current_timestamp on update current_timestamp, word varchar(255), count integer)"
    } else if url.starts_with("postgres") {
        "create table wordcount(id serial primary key, updated_time timestamp not null default \
         current_timestamp, word varchar(255), count integer)"
    } else {
        "create table wordcount(id integer primary key autoincrement, updated_time timestamp not null \
         default current_timestamp, word varchar(255), count integer)"
    }
}

fn execute(url: &str, sql: &str) {
    block_on(async {
        let pool = connect(url).await;
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        pool.close().await;
    })
}

/// `(word, count, updated_time is set)` of every row of `wordcount`, sorted.
fn seed_rows(url: &str) -> Vec<(String, i64, bool)> {
    // MySQL casts to SIGNED where the others cast to BIGINT.
    let integer = if url.starts_with("mysql") {
        "SIGNED"
    } else {
        "BIGINT"
    };
    block_on(async {
        let pool = connect(url).await;
        let mut rows: Vec<(String, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT word, CAST(count AS {integer}), \
             CAST(CASE WHEN updated_time IS NULL THEN 0 ELSE 1 END AS {integer}) FROM wordcount"
        )))
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        rows.sort();
        rows.into_iter().map(|(w, n, t)| (w, n, t == 1)).collect()
    })
}

mod seed_append {
    use streamc::prelude::*;

    pub fn batches() -> Vec<Vec<String>> {
        vec![
            vec!["hello".into(), "world".into()],
            vec!["hello".into(), "again".into()],
        ]
    }

    stream! {
        app seed_append { batch: 1s, workers: 1 }
        let words = queue_stream::<String>(crate::seed_append::batches());
        let ones = words.map(|w: &String| (w.clone(), 1u64));
        // Append mode: no key, and `updated_time` left to the table's default.
        ones.save_to_sql(
            "sqlite://unused.db",
            SqlTable::new("wordcount")
                .column("word", SqlType::Text(255))
                .column("count", SqlType::BigInt),
        );
    }
}

/// `persist_word_count` reading from `server`, writing to `url`.
fn persist_command(server: &LineServer, checkpoints: &Path, url: &str) -> Command {
    let mut command = Command::new(example_binary("persist_word_count"));
    command
        .args(["--source", &format!("lines={}", server.address())])
        .args([
            "--batch",
            "200ms",
            "--checkpoint",
            &checkpoints.to_string_lossy(),
        ])
        .args(["--sink", &format!("wordcount={url}")]);
    command
}

#[test]
fn the_seeds_own_wordcount_table_refuses_upserts_by_name_and_takes_appends() {
    let _table = WORDCOUNT_TABLE.lock().unwrap_or_else(|p| p.into_inner());
    let dir = temp_dir("seed-table");
    let lines: Vec<String> = vec!["hello world".into(), "hello spark".into()];
    for db in databases(&dir) {
        reset(&db.url, "wordcount", "persist_word_count");
        reset(&db.url, "wordcount", "seed_append");
        execute(&db.url, seed_wordcount_ddl(&db.url));

        // Upserts by word into a table without a unique key on it: refused before anything is written.
        let server = LineServer::once((lines.join("\n") + "\n").into_bytes()).unwrap();
        let checkpoints = dir.join(format!("ckpt-seed-{}", db.label));
        let output = streamc::testkit::output_within(
            persist_command(&server, &checkpoints, &db.url).env("STREAMC_LOG", "error"),
            Duration::from_secs(60),
        )
        .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{}: {stderr}", db.label);
        assert!(
            stderr.contains("table `wordcount` has no unique key on (word)")
                && stderr.contains("append mode"),
            "{}: the refusal says what is missing and the two ways out: {stderr}",
            db.label
        );
        assert_eq!(
            seed_rows(&db.url),
            vec![],
            "{}: no row was written",
            db.label
        );

        // Append mode on the same table: a row per record, `updated_time` filled by the database.
        seed_append::seed_append::app()
            .configure(|c| {
                c.stop_when_drained = true;
                c.sinks.urls.insert("wordcount".into(), db.url.clone());
            })
            .run()
            .unwrap_or_else(|e| panic!("{}: {e}", db.label));
        let appended: Vec<(String, i64, bool)> = ["again", "hello", "hello", "world"]
            .into_iter()
            .map(|w| (w.to_string(), 1, true))
            .collect();
        assert_eq!(seed_rows(&db.url), appended, "{}", db.label);

        // The statement the refusal shows makes upserts work.
        let add = stderr
            .split("Add one (after removing any duplicate rows): `")
            .nth(1)
            .and_then(|rest| rest.split('`').next())
            .unwrap_or_else(|| panic!("{}: no statement in {stderr}", db.label));
        execute(&db.url, "DELETE FROM wordcount");
        execute(&db.url, add);
        let server = LineServer::once((lines.join("\n") + "\n").into_bytes()).unwrap();
        let _ = std::fs::remove_dir_all(&checkpoints);
        let app = persist_command(&server, &checkpoints, &db.url)
            .env("STREAMC_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let expected = word_counts(&lines);
        let arrived = wait_until(Duration::from_secs(30), || {
            table_counts(&db.url, "wordcount") == expected
        });
        terminate(app);
        assert!(arrived, "{}: after `{add}` the upserts land", db.label);
        assert_eq!(
            seed_rows(&db.url).len(),
            expected.len(),
            "{}: one row per word",
            db.label
        );
    }
}
