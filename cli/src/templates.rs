//! The project templates of `streamc new`: a pipeline, a config file, a README and a test each.
//! `{{name}}` is the project (and app) name, `{{streamc}}` the dependency line for the runtime.

/// A template: its name, what it is, and its files' contents (the runtime features it needs are
/// read from its pipeline, as `streamc build` reads them).
pub struct Template {
    pub name: &'static str,
    pub about: &'static str,
    pub pipeline: &'static str,
    pub config: &'static str,
    pub test: &'static str,
    pub run: &'static str,
}

pub const TEMPLATES: &[Template] = &[
    Template {
        name: "word-count",
        about: "words from a socket, counted per batch and printed (the seed's WordCount)",
        pipeline: r#"stream! {
    app {{name}} { batch: 1s, workers: 2 }

    let lines = socket_text_stream("localhost", 9999);
    let counts = lines
        .flat_map(|line: &str| line.split_whitespace())
        .map(|word| (word.to_string(), 1u64))
        .reduce_by_key(|a, b| a + b);
    counts.print();
}
"#,
        config: r#"# Flags override these; `cargo run -- --help` lists them all.
batch = "1s"
workers = 2

[sources.lines]
address = "localhost:9999"
"#,
        test: r#"//! Feeds the pipeline over a loopback socket and checks what it prints.

use streamc::app::SharedBuffer;
use streamc::demo::LineServer;

#[path = "../src/pipeline.rs"]
mod pipeline;

#[test]
fn counts_the_words_of_a_batch() {
    let server = LineServer::once(b"hello world\nhello streamc\n".to_vec()).unwrap();
    let printed = SharedBuffer::default();
    pipeline::{{name}}::app()
        .source_address("lines", server.address().to_string())
        .print_to(printed.clone())
        .configure(|c| {
            c.batch_interval = std::time::Duration::from_millis(300);
            c.stop_after_batches = Some(10);
        })
        .run()
        .unwrap();
    let text = printed.take();
    assert!(text.contains("(hello,2)"), "{text}");
    assert!(text.contains("(world,1)"), "{text}");
}
"#,
        run: "nc -lk 9999          # then type lines; or: cargo run -- --demo",
    },
    Template {
        name: "kafka",
        about: "word count over a Kafka topic read with the direct approach (offsets in checkpoints)",
        pipeline: r#"stream! {
    app {{name}} { batch: 2s, workers: 2, checkpoint: "checkpoints/{{name}}" }

    let records = kafka_direct_stream("localhost:9092", ["words"]);
    let counts = records
        .flat_map(|record: &KafkaRecord| record.value_str().unwrap_or("").split_whitespace())
        .map(|word| (word.to_string(), 1u64))
        .reduce_by_key(|a, b| a + b);
    counts.print();
}
"#,
        config: r#"# Flags override these; `cargo run -- --help` lists them all.
batch = "2s"
workers = 2
checkpoint = "checkpoints/{{name}}"

[sources.records]
address = "localhost:9092"
"#,
        test: r#"//! Runs the pipeline against librdkafka's mock cluster (a real Kafka protocol peer, in process).

use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use streamc::app::SharedBuffer;

#[path = "../src/pipeline.rs"]
mod pipeline;

#[test]
fn counts_the_words_of_the_topic() {
    let cluster = MockCluster::new(1).unwrap();
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("words", 1, 1).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    for line in ["hello world", "hello kafka"] {
        producer.send(BaseRecord::<(), _>::to("words").payload(line)).unwrap();
    }
    producer.flush(std::time::Duration::from_secs(10)).unwrap();
    let printed = SharedBuffer::default();
    let checkpoints = std::env::temp_dir().join(format!("{{name}}-test-{}", std::process::id()));
    pipeline::{{name}}::app()
        .source_address("records", brokers)
        .print_to(printed.clone())
        .configure(|c| {
            c.batch_interval = std::time::Duration::from_millis(300);
            c.checkpoint_dir = Some(checkpoints.clone().into());
            c.kafka.start = streamc::source::StartAt::Earliest;
            c.stop_after_batches = Some(10);
        })
        .run()
        .unwrap();
    let _ = std::fs::remove_dir_all(checkpoints);
    let text = printed.take();
    assert!(text.contains("(hello,2)"), "{text}");
    assert!(text.contains("(kafka,1)"), "{text}");
}
"#,
        run: "cargo run -- --source records=BROKER:9092",
    },
    Template {
        name: "window",
        about: "the 3 most frequent words of the last 60 s, every 10 s (the seed's WindowHotWord)",
        pipeline: r#"stream! {
    app {{name}} { batch: 1s, workers: 2, checkpoint: "checkpoints/{{name}}" }

    let lines = socket_text_stream("localhost", 9999);
    let words = lines.flat_map(|line: &str| line.split_whitespace().map(|word| (word.to_string(), 1u64)));
    // With an inverse function each slide adds the new batches and removes the expired ones; words
    // whose count fell to zero are dropped.
    let counts = words.reduce_by_key_and_window(|a, b| a + b, |a, b| a - b, 60s, 10s, |_, count: &u64| *count > 0);
    let top3 = counts.transform(|batch| batch.top_k(3, |(word, count)| (*count, std::cmp::Reverse(word.clone()))));
    top3.print();
}
"#,
        config: r#"# Flags override these; `cargo run -- --help` lists them all.
batch = "1s"
workers = 2
checkpoint = "checkpoints/{{name}}"

[sources.lines]
address = "localhost:9999"
"#,
        test: r#"//! Feeds the pipeline over a loopback socket and checks the first window's top 3.

use streamc::app::SharedBuffer;
use streamc::demo::LineServer;

#[path = "../src/pipeline.rs"]
mod pipeline;

#[test]
fn prints_the_top_3_of_the_window() {
    let server = LineServer::once(b"a b c d\na b c\na b\na\n".to_vec()).unwrap();
    let printed = SharedBuffer::default();
    let checkpoints = std::env::temp_dir().join(format!("{{name}}-test-{}", std::process::id()));
    pipeline::{{name}}::app()
        .source_address("lines", server.address().to_string())
        .print_to(printed.clone())
        .configure(|c| {
            c.checkpoint_dir = Some(checkpoints.clone().into());
            c.run_for = Some(std::time::Duration::from_secs(12));
        })
        .run()
        .unwrap();
    let _ = std::fs::remove_dir_all(checkpoints);
    let text = printed.take();
    assert!(text.contains("(a,4)\n(b,3)\n(c,2)\n"), "{text}");
}
"#,
        run: "nc -lk 9999          # then type lines",
    },
    Template {
        name: "sql",
        about: "running word counts upserted into SQLite, MySQL/MariaDB or PostgreSQL (the seed's PersistWordCount)",
        pipeline: r#"stream! {
    app {{name}} { batch: 1s, workers: 2, checkpoint: "checkpoints/{{name}}" }

    let lines = socket_text_stream("localhost", 9999);
    let totals = lines
        .flat_map(|line: &str| line.split_whitespace())
        .map(|word| (word.to_string(), 1u64))
        .update_state_by_key(|new_values: &[u64], state: Option<u64>| {
            Some(state.unwrap_or(0) + new_values.iter().sum::<u64>())
        });
    // Each batch partition is one transaction, recorded in `streamc_progress`: written exactly once.
    totals.save_to_sql(
        "sqlite://wordcount.db",
        SqlTable::new("wordcount")
            .column("word", SqlType::Text(255))
            .column("count", SqlType::BigInt)
            .key(["word"])
            .updated_time("updated_time"),
    );
}
"#,
        config: r#"# Flags override these; `cargo run -- --help` lists them all.
batch = "1s"
workers = 2
checkpoint = "checkpoints/{{name}}"

[sources.lines]
address = "localhost:9999"

# Another database: url = "postgres://postgres@127.0.0.1:5432/test" or "mysql://root@127.0.0.1:3306/test"
[sinks.wordcount]
url = "sqlite://wordcount.db"
"#,
        test: r#"//! Feeds the pipeline over a loopback socket and checks the table it writes (SQLite, in a temp dir).

use streamc::demo::LineServer;

#[path = "../src/pipeline.rs"]
mod pipeline;

#[test]
fn stores_the_running_counts() {
    let dir = std::env::temp_dir().join(format!("{{name}}-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("test.db");
    let server = LineServer::once(b"it's a test\na test\n".to_vec()).unwrap();
    pipeline::{{name}}::app()
        .source_address("lines", server.address().to_string())
        .configure(|c| {
            c.batch_interval = std::time::Duration::from_millis(300);
            c.checkpoint_dir = Some(dir.join("checkpoints").into());
            c.sinks.urls.insert("wordcount".into(), format!("sqlite://{}", db.display()));
            c.stop_after_batches = Some(10);
        })
        .run()
        .unwrap();
    let rows = tokio::runtime::Runtime::new().unwrap().block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT word, count FROM wordcount ORDER BY word")
            .fetch_all(&pool)
            .await
            .unwrap();
        rows
    });
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(
        rows,
        vec![("a".to_string(), 2), ("it's".to_string(), 1), ("test".to_string(), 2)]
    );
}
"#,
        run: "nc -lk 9999          # then type lines; the counts land in wordcount.db",
    },
];

pub fn find(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

/// `src/main.rs`: loads the pipeline and runs it.
pub const MAIN: &str = r#"mod pipeline;

fn main() -> std::process::ExitCode {
    pipeline::{{name}}::app().main()
}
"#;

/// `src/pipeline.rs`: the `use` line, then the template's `stream!` block.
pub const PIPELINE_HEADER: &str = r#"//! The {{name}} pipeline. `streamc check src/pipeline.rs` validates it in well under a second;
//! `streamc graph src/pipeline.rs` draws it.

#[allow(unused_imports)]
use streamc::prelude::*;

"#;

pub const README: &str = r#"# {{name}}

A streamc pipeline: {{about}}.

```sh
{{run}}
cargo run --release -- --config streamc.toml      # in another terminal
cargo test                                        # feeds the pipeline from the test and checks it
```

- `src/pipeline.rs`: the pipeline (`stream! { ... }`); `src/main.rs` runs it.
- `streamc.toml`: batch interval, workers, source addresses; every key is also a flag
  (`cargo run -- --help`).
- `streamc check src/pipeline.rs`, `streamc graph src/pipeline.rs`, `streamc build .`: validate, draw,
  build a release binary.
"#;
