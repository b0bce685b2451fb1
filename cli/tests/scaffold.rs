//! `streamc new` and `streamc build` as a user runs them: each template is scaffolded into a temporary
//! directory, its own test passes (`cargo test` there), `streamc build` makes a binary, and the binary
//! runs against local input and prints or stores the expected result. A `.stream` file builds too.
//!
//! The projects build with the workspace's target directory, so the dependencies compiled for the
//! workspace are reused.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

fn streamc(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_streamc"))
        .args(args)
        .current_dir(cwd)
        .env("CARGO_TARGET_DIR", repo().join("target"))
        .env("STREAMC_CACHE_DIR", repo().join("target/streamc-cache"))
        .output()
        .unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("streamc-scaffold-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A one-shot line server: serves `text` to the first client, then closes.
fn serve(text: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = stream.write_all(text.as_bytes());
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    address
}

/// Scaffolds `template`, runs the project's own test, builds it with `streamc build --debug`, and
/// returns the binary.
fn scaffold_and_build(template: &str) -> (PathBuf, PathBuf) {
    let root = scratch(template);
    let project = root.join(format!("my-{template}"));
    let out = streamc(
        &["new", project.to_str().unwrap(), "--template", template],
        &root,
    );
    assert_ok(&out, "streamc new");
    for file in [
        "Cargo.toml",
        "src/main.rs",
        "src/pipeline.rs",
        "streamc.toml",
        "README.md",
        "tests/pipeline.rs",
    ] {
        assert!(project.join(file).exists(), "{file} is scaffolded");
    }
    let check = streamc(&["check", "src/pipeline.rs"], &project);
    assert_ok(&check, "streamc check on the scaffold");
    let test = Command::new(env!("CARGO"))
        .args(["test", "--offline"])
        .current_dir(&project)
        .env("CARGO_TARGET_DIR", repo().join("target"))
        .output()
        .unwrap();
    assert_ok(&test, &format!("cargo test in the {template} project"));
    let build = streamc(&["build", "--debug", "."], &project);
    assert_ok(&build, "streamc build");
    let stdout = String::from_utf8_lossy(&build.stdout);
    assert!(stdout.contains("ok: app `my_"), "the summary: {stdout}");
    let binary = stdout
        .lines()
        .find_map(|l| l.strip_prefix("built "))
        .and_then(|l| l.rsplit_once(" in "))
        .map(|(path, _)| PathBuf::from(path))
        .expect("the binary's path");
    assert!(binary.exists(), "{}", binary.display());
    // An app's own build carries no test machinery: nothing in it aborts on an environment variable.
    let bytes = std::fs::read(&binary).unwrap();
    assert!(
        !bytes
            .windows(b"STREAMC_FAILPOINT".len())
            .any(|w| w == b"STREAMC_FAILPOINT"),
        "{} contains the crash tests' failpoints",
        binary.display()
    );
    (project, binary)
}

/// The longest a built binary may run: every run here stops by itself well before (`--batches`,
/// `--run-for`, or a refused flag), so one still running has hung.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs a built binary to completion; one still running after [`RUN_LIMIT`] is killed and fails the
/// test instead of hanging it.
fn run_binary(binary: &Path, cwd: &Path, args: &[&str]) -> Output {
    streamc::testkit::output_within(
        Command::new(binary)
            .args(args)
            .current_dir(cwd)
            .env("STREAMC_LOG", "warn"),
        RUN_LIMIT,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", binary.display()))
}

#[test]
fn the_word_count_template_builds_and_counts() {
    let (project, binary) = scaffold_and_build("word-count");
    let source = format!("lines={}", serve("hello world\nhello streamc\n"));
    let out = run_binary(
        &binary,
        &project,
        &["--source", &source, "--batch", "300ms", "--batches", "10"],
    );
    assert_ok(&out, "the word-count binary");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("(hello,2)") && printed.contains("(streamc,1)"),
        "{printed}"
    );
    // A bad flag is refused with a message and a non-zero exit.
    let bad = run_binary(&binary, &project, &["--batch", "soon"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--batch"));
}

#[test]
fn the_window_template_builds_and_prints_the_top_3() {
    let (project, binary) = scaffold_and_build("window");
    let source = format!("lines={}", serve("a b c d\na b c\na b\na\n"));
    let checkpoint = project.join("checkpoints");
    let out = run_binary(
        &binary,
        &project,
        &[
            "--source",
            &source,
            "--run-for",
            "11s",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
        ],
    );
    assert_ok(&out, "the window binary");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("(a,4)\n(b,3)\n(c,2)\n"), "{printed}");
}

#[test]
fn the_sql_template_builds_and_stores_counts() {
    let (project, binary) = scaffold_and_build("sql");
    let source = format!("lines={}", serve("to be or not to be\n"));
    let out = run_binary(
        &binary,
        &project,
        &[
            "--config",
            "streamc.toml",
            "--source",
            &source,
            "--batch",
            "300ms",
            "--batches",
            "10",
            "--report",
        ],
    );
    assert_ok(&out, "the sql binary");
    // The run report (on stderr) counts what the sink wrote.
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(report.contains("output wordcount:"), "{report}");
    let rows = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            sqlx::any::install_default_drivers();
            let url = format!("sqlite://{}", project.join("wordcount.db").display());
            let pool = sqlx::AnyPool::connect(&url).await.unwrap();
            let rows: Vec<(String, i64)> =
                sqlx::query_as("SELECT word, count FROM wordcount ORDER BY word")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            rows
        });
    let expected: Vec<(String, i64)> = [("be", 2), ("not", 1), ("or", 1), ("to", 2)]
        .iter()
        .map(|(w, n)| (w.to_string(), *n))
        .collect();
    assert_eq!(rows, expected);
}

#[test]
fn the_kafka_template_builds_and_counts_a_topic() {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let (project, binary) = scaffold_and_build("kafka");
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("words", 1, 1).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    for line in ["hello world", "hello kafka"] {
        producer
            .send(BaseRecord::<(), _>::to("words").payload(line))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let source = format!("records={brokers}");
    let checkpoint = project.join("checkpoints");
    let out = run_binary(
        &binary,
        &project,
        &[
            "--source",
            &source,
            "--kafka-start",
            "earliest",
            "--batch",
            "300ms",
            "--batches",
            "10",
            "--checkpoint",
            checkpoint.to_str().unwrap(),
        ],
    );
    assert_ok(&out, "the kafka binary");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("(hello,2)") && printed.contains("(kafka,1)"),
        "{printed}"
    );
}

/// Writes `NAME.stream` in `dir` and builds it (debug) into the binary `dir/NAME`.
fn build_stream_file(dir: &Path, name: &str, pipeline: &str) -> (Output, PathBuf) {
    let file = format!("{name}.stream");
    std::fs::write(dir.join(&file), pipeline).unwrap();
    let binary = dir.join(name);
    let build = streamc(
        &["build", "--debug", &file, "--out", binary.to_str().unwrap()],
        dir,
    );
    (build, binary)
}

#[test]
fn a_stream_file_builds_into_a_binary_that_runs() {
    let dir = scratch("stream-file");
    let file = dir.join("shout.stream");
    let (build, shout) = build_stream_file(
        &dir,
        "shout",
        "use std::time::Duration;\n\n\
         app shout { batch: 300ms, workers: 1 }\n\
         let lines = socket_text_stream(\"localhost\", 9999);\n\
         let loud = lines.map(|line: &str| line.to_uppercase());\n\
         loud.print();\n",
    );
    assert_ok(&build, "streamc build of a .stream file");
    let source = format!("lines={}", serve("quiet please\n"));
    let out = run_binary(&shout, &dir, &["--source", &source, "--batches", "10"]);
    assert_ok(&out, "the built pipeline");
    assert!(String::from_utf8_lossy(&out.stdout).contains("QUIET PLEASE"));

    // Another pipeline shares the cache's target directory: only its own crate is compiled.
    let (second, hush) = build_stream_file(
        &dir,
        "hush",
        "app hush { batch: 300ms, workers: 1 }\n\
         let lines = socket_text_stream(\"localhost\", 9999);\n\
         let soft = lines.map(|line: &str| line.to_lowercase());\n\
         soft.print();\n",
    );
    assert_ok(&second, "streamc build of a second .stream file");
    let progress = String::from_utf8_lossy(&second.stderr);
    assert!(
        progress.contains("Compiling hush") && !progress.contains("Compiling streamc v"),
        "the second pipeline reuses the compiled runtime:\n{progress}"
    );
    let source = format!("lines={}", serve("QUIET PLEASE\n"));
    let out = run_binary(&hush, &dir, &["--source", &source, "--batches", "10"]);
    assert_ok(&out, "the second pipeline");
    assert!(String::from_utf8_lossy(&out.stdout).contains("quiet please"));

    // Errors are reported like rustc's, before any compiling, with exit code 1.
    std::fs::write(&file, "app shout { batch: 300ms }\nlet lines = socket_text_stream(\"localhost\", 9999);\nlines.mapp(|l: &str| l.len()).print();\n").unwrap();
    let bad = streamc(&["build", "--debug", "shout.stream"], &dir);
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("unknown operator `mapp`") && stderr.contains("shout.stream:3:7"),
        "{stderr}"
    );
}
