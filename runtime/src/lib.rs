//! # streamc
//!
//! Spark Streaming's model — micro-batches, receivers, DStream operators, outputs — compiled ahead of
//! time. Write a pipeline with [`stream!`]; it expands into a module whose `app()` returns an [`App`]
//! to configure and run, and whose per-batch code is fused, monomorphized Rust calling the runtime.
//!
//! ```no_run
//! use streamc::prelude::*;
//!
//! stream! {
//!     app word_count { batch: 1s, workers: 2 }
//!     let lines = socket_text_stream("localhost", 9999);
//!     let counts = lines
//!         .flat_map(|line: &str| line.split(' '))
//!         .map(|w| (w.to_string(), 1u64))
//!         .reduce_by_key(|a, b| a + b);
//!     counts.print();
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     word_count::app().main()
//! }
//! ```
//!
//! ## The public API
//!
//! - [`prelude`]: what a pipeline file needs in scope (the macro, [`Batch`], [`Show`], [`Time`],
//!   [`StateCell`], the sink builders);
//! - [`App`] to configure ([`AppConfig`], [`App::configure`], flags through [`App::main`]) and run
//!   an app, [`RunningApp`] to stop or wait for one started in the background, [`TestDriver`] to
//!   run batches one at a time in tests; a failed run is a [`RunError`];
//! - [`monitor`]: the listener API ([`StreamingListener`], [`BatchInfo`], [`RunReport`]);
//! - [`source`] and [`sink`]: the connectors' option types and records ([`source::KafkaRecord`],
//!   [`sink::RollingFiles`], ...); [`output`]: how records are shown and written as text;
//! - [`stop`]: stopping an app from another thread ([`StopHandle`]); [`demo`]: the `--demo` line
//!   generator; `testkit` (with the `testkit` feature): helpers for test suites.
//!
//! Generated code reaches the rest through a hidden `__private` module; it is not a stable API.
//!
//! ## Layers
//!
//! Each module belongs to a layer and names only modules of its own layer or below
//! (`runtime/tests/layers.rs` checks it, and that the imports form no cycle), lowest first:
//!
//! 1. leaf types and kernels: `time`, `spec` (what a pipeline declares), `settings` (a setting
//!    declared once for its flag and its config key), `stop`, `rate`, `wal`, `shuffle`
//!    (partitions, key hashing, the bucket shuffles), `demo`, `secret` (references to secrets and
//!    their redaction), `store` (where durable things live: a local directory or an object store
//!    prefix, behind one `Store` trait), `kafka_client` (what every Kafka client shares:
//!    properties, owned keys, librdkafka's log);
//! 2. data: `state`, `checkpoint`, `output` (how records are shown);
//! 3. connectors: `source` and `sink`, which never name the engine, the executor or the batch
//!    context: receivers get a `ReceiverEnv`, sinks a `SinkEnv`;
//! 4. monitoring: `monitor`, with the listener API's `BatchInfo` and `RunReport`;
//! 5. execution: `context`, `exec` (what generated code calls), `stateful`, `batch`;
//! 6. the pipeline contract and configuration: `pipeline`, `config`;
//! 7. the engine: `engine`;
//! 8. the app: `app` (and `testkit`, with the `testkit` feature).

#![warn(missing_docs)]

/// With the `mimalloc` feature, every binary that links the runtime allocates with mimalloc.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod app;
pub mod batch;
mod checkpoint;
pub mod config;
mod context;
pub mod demo;
mod engine;
#[doc(hidden)]
pub mod exec;
#[cfg(feature = "kafka")]
pub mod kafka_client;
pub mod monitor;
pub mod output;
mod pipeline;
mod rate;
pub mod secret;
mod settings;
mod shuffle;
pub mod sink;
pub mod source;
mod spec;
mod state;
#[doc(hidden)]
pub mod stateful;
pub mod stop;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod time;
mod wal;

pub use app::{App, RunningApp, TestDriver};
pub use batch::Batch;
pub use config::AppConfig;
pub use engine::{BatchInfo, RunError, RunReport};
pub use monitor::StreamingListener;
pub use output::Show;
pub use pipeline::Pipeline;
pub use stateful::StateCell;
pub use stop::StopHandle;
pub use streamc_macros::stream;
pub use time::Time;

/// What a pipeline file needs in scope.
pub mod prelude {
    #[cfg(feature = "kafka")]
    pub use crate::sink::kafka::KafkaTopic;
    #[cfg(feature = "sql")]
    pub use crate::sink::sql::{SqlTable, SqlType};
    pub use crate::sink::{BatchPartition, RollingFiles};
    #[cfg(feature = "kafka")]
    pub use crate::source::KafkaRecord;
    pub use crate::{stream, App, Batch, Show, StateCell, Time};
}

/// Paths used by generated code. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::context::BatchContext;
    pub use crate::exec;
    pub use crate::pipeline::{
        AppSpec, BuildError, InvalidPipeline, OutputSpec, Pipeline, SourceSpec,
        StreamCheckpointSpec, WindowSpec,
    };
    #[cfg(feature = "kafka")]
    pub use crate::sink::kafka::KafkaDestination;
    #[cfg(feature = "sql")]
    pub use crate::sink::sql::SqlDestination;
    pub use crate::sink::{OutputResult, RollingFiles};
    pub use crate::source::{
        FileOptions, QueueSource, ReceiverSource, SocketRecords, SocketTextSource, SourceSet,
        TextFileSource,
    };
    #[cfg(feature = "kafka")]
    pub use crate::source::{KafkaDirectSource, KafkaReceiver};
    pub use crate::state::StateRegistry;
    pub use crate::stateful;
    pub use crate::{App, AppConfig};
    pub use std::time::Duration;
}
