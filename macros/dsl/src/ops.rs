//! The operator catalog: every source, transformation and output the DSL knows, with its arguments.

/// What an operator does to the shape of the computation.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Record at a time; fused into the loop of the operator that consumes it.
    Narrow,
    /// Needs the whole batch or a shuffle; its result is materialized.
    Wide,
    /// Ends a chain and makes the pipeline run.
    Output,
}

/// One operator.
#[derive(Debug)]
pub struct Operator {
    pub name: &'static str,
    pub kind: Kind,
    /// Fewest and most arguments.
    pub args: (usize, usize),
    /// Whether the first argument is another stream.
    pub stream_arg: bool,
    /// The argument list as users write it, for messages.
    pub signature: &'static str,
    /// What state the operator keeps between batches.
    pub state: StateUse,
}

/// State an operator keeps between batches.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum StateUse {
    None,
    /// A window: arguments end with `window[, slide]` durations.
    Window,
    /// Keyed state that only a checkpoint can bring back after a crash (Spark requires one too).
    Keyed,
}

const fn op(
    name: &'static str,
    kind: Kind,
    args: (usize, usize),
    stream_arg: bool,
    signature: &'static str,
) -> Operator {
    Operator {
        name,
        kind,
        args,
        stream_arg,
        signature,
        state: StateUse::None,
    }
}

const fn stateful(
    name: &'static str,
    args: (usize, usize),
    signature: &'static str,
    state: StateUse,
) -> Operator {
    Operator {
        name,
        kind: Kind::Wide,
        args,
        stream_arg: false,
        signature,
        state,
    }
}

/// Transformations and outputs (called as methods on a stream).
pub const OPERATORS: &[Operator] = &[
    op(
        "map",
        Kind::Narrow,
        (1, 1),
        false,
        "map(|record| new_record)",
    ),
    op(
        "flat_map",
        Kind::Narrow,
        (1, 1),
        false,
        "flat_map(|record| iterator)",
    ),
    op(
        "filter",
        Kind::Narrow,
        (1, 1),
        false,
        "filter(|record| keep)",
    ),
    op(
        "map_values",
        Kind::Narrow,
        (1, 1),
        false,
        "map_values(|value| new_value)",
    ),
    op(
        "flat_map_values",
        Kind::Narrow,
        (1, 1),
        false,
        "flat_map_values(|value| iterator)",
    ),
    op(
        "reduce_by_key",
        Kind::Wide,
        (1, 1),
        false,
        "reduce_by_key(|a, b| merged)",
    ),
    op("group_by_key", Kind::Wide, (0, 0), false, "group_by_key()"),
    op(
        "count_by_value",
        Kind::Wide,
        (0, 0),
        false,
        "count_by_value()",
    ),
    op("count", Kind::Wide, (0, 0), false, "count()"),
    op("reduce", Kind::Wide, (1, 1), false, "reduce(|a, b| merged)"),
    op("join", Kind::Wide, (1, 1), true, "join(other_stream)"),
    op(
        "left_outer_join",
        Kind::Wide,
        (1, 1),
        true,
        "left_outer_join(other_stream)",
    ),
    op("union", Kind::Wide, (1, 1), true, "union(other_stream)"),
    op(
        "repartition",
        Kind::Wide,
        (1, 1),
        false,
        "repartition(partitions)",
    ),
    op(
        "transform",
        Kind::Wide,
        (1, 1),
        false,
        "transform(|batch| new_batch)",
    ),
    stateful(
        "update_state_by_key",
        (1, 2),
        "update_state_by_key(|new_values, state| new_state[, initial = pairs])",
        StateUse::Keyed,
    ),
    stateful(
        "map_with_state",
        (1, 3),
        "map_with_state(|key, value, state| mapped[, timeout][, initial = pairs])",
        StateUse::Keyed,
    ),
    op("state_snapshots", Kind::Wide, (0, 0), false, "state_snapshots()"),
    stateful("window", (1, 2), "window(window_length) or window(window_length, slide)", StateUse::Window),
    stateful("count_by_window", (1, 2), "count_by_window(window_length, slide)", StateUse::Window),
    stateful(
        "reduce_by_window",
        (2, 4),
        "reduce_by_window(|a, b| merged, [|a, b| inverse,] window_length, slide)",
        StateUse::Window,
    ),
    stateful(
        "reduce_by_key_and_window",
        (2, 5),
        "reduce_by_key_and_window(|a, b| merged, [|a, b| inverse,] window_length, slide[, |key, value| keep])",
        StateUse::Window,
    ),
    stateful(
        "count_by_value_and_window",
        (1, 2),
        "count_by_value_and_window(window_length, slide)",
        StateUse::Window,
    ),
    stateful(
        "group_by_key_and_window",
        (1, 2),
        "group_by_key_and_window(window_length, slide)",
        StateUse::Window,
    ),
    op(
        "checkpoint",
        Kind::Narrow,
        (1, 1),
        false,
        "checkpoint(interval), e.g. checkpoint(10s)",
    ),
    op("persist", Kind::Wide, (0, 0), false, "persist()"),
    op("cache", Kind::Wide, (0, 0), false, "cache()"),
    op("print", Kind::Output, (0, 1), false, "print() or print(n)"),
    op(
        "save_as_text_files",
        Kind::Output,
        (1, 2),
        false,
        "save_as_text_files(prefix) or save_as_text_files(prefix, suffix)",
    ),
    op(
        "foreach_batch",
        Kind::Output,
        (1, 1),
        false,
        "foreach_batch(|batch, time| ...)",
    ),
    op(
        "foreach_partition",
        Kind::Output,
        (2, 2),
        false,
        "foreach_partition(|| connect(), |connection, partition| ...)",
    ),
    op(
        "save_to_rolling_files",
        Kind::Output,
        (1, 1),
        false,
        "save_to_rolling_files(RollingFiles::new(directory))",
    ),
    op(
        "save_to_kafka",
        Kind::Output,
        (2, 2),
        false,
        "save_to_kafka(\"host:9092\", KafkaTopic::new(topic))",
    ),
    op(
        "save_to_sql",
        Kind::Output,
        (2, 2),
        false,
        "save_to_sql(url, SqlTable::new(name).column(..)...)",
    ),
    op(
        "collect",
        Kind::Output,
        (0, 1),
        false,
        "collect() or collect(\"name\")",
    ),
];

/// How a source's records are stored, which decides the Rust type generated for it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SourceKind {
    SocketText,
    Queue,
    TextFiles,
    KafkaDirect,
    KafkaReceiver,
}

/// A source (called as a function).
#[derive(Debug)]
pub struct SourceDef {
    pub name: &'static str,
    pub kind: SourceKind,
    /// Fewest and most arguments.
    pub args: (usize, usize),
    pub signature: &'static str,
}

pub const SOURCES: &[SourceDef] = &[
    SourceDef {
        name: "socket_text_stream",
        kind: SourceKind::SocketText,
        args: (2, 2),
        signature: "socket_text_stream(host, port)",
    },
    SourceDef {
        name: "queue_stream",
        kind: SourceKind::Queue,
        args: (1, 1),
        signature: "queue_stream::<T>(batches)",
    },
    SourceDef {
        name: "kafka_direct_stream",
        kind: SourceKind::KafkaDirect,
        args: (2, 2),
        signature: "kafka_direct_stream(\"host:9092\", [\"topic\"])",
    },
    SourceDef {
        name: "kafka_receiver_stream",
        kind: SourceKind::KafkaReceiver,
        args: (2, 2),
        signature: "kafka_receiver_stream(\"host:9092\", [\"topic\"])",
    },
    SourceDef {
        name: "text_file_stream",
        kind: SourceKind::TextFiles,
        args: (1, 2),
        signature: "text_file_stream(directory) or text_file_stream(directory, \"*.log\")",
    },
];

/// Values computed once when the app starts, visible to every closure by reference.
pub const BROADCAST: &str = "broadcast";

pub fn operator(name: &str) -> Option<&'static Operator> {
    OPERATORS.iter().find(|o| o.name == name)
}

pub fn source(name: &str) -> Option<&'static SourceDef> {
    SOURCES.iter().find(|s| s.name == name)
}

pub fn operator_names() -> impl Iterator<Item = &'static str> {
    OPERATORS.iter().map(|o| o.name)
}

pub fn source_names() -> impl Iterator<Item = &'static str> {
    SOURCES.iter().map(|s| s.name)
}
