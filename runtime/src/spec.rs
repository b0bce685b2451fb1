//! What a pipeline declares, as the `stream!` macro writes it down: name, defaults, sources, outputs,
//! windows and checkpoint intervals. Plain data, read by the configuration, the engine and the
//! monitoring; a leaf.

use std::time::Duration;

/// A pipeline's declaration.
#[derive(Debug)]
pub struct AppSpec {
    /// The app's name, from `app NAME` in the header.
    pub name: &'static str,
    /// The default batch interval, from `batch:` in the header.
    pub batch_interval: Duration,
    /// The default number of workers, from `workers:` in the header.
    pub workers: usize,
    /// `checkpoint: "dir"` from the header.
    pub checkpoint_dir: Option<&'static str>,
    /// `checkpoint_every: 10s` from the header.
    pub checkpoint_every: Option<Duration>,
    /// The least common multiple of the batch interval and every window's slide: default checkpoints
    /// fall on a multiple of it, as Spark's do.
    pub state_slide: Duration,
    /// Every source, in the order of the pipeline's source set.
    pub sources: &'static [SourceSpec],
    /// Every output operation of the pipeline.
    pub outputs: &'static [OutputSpec],
    /// Every window, so a batch interval changed at run time can be checked against them.
    pub windows: &'static [WindowSpec],
    /// Every `.checkpoint(interval)` on a stream, checked again when the batch interval changes.
    pub stream_checkpoints: &'static [StreamCheckpointSpec],
}

/// A source, by its `let` name and operator.
#[derive(Debug)]
pub struct SourceSpec {
    /// The source's `let` name, which `--source NAME=ADDRESS` uses.
    pub name: &'static str,
    /// The source operator, e.g. `socket_text_stream`.
    pub kind: &'static str,
    /// Whether it reads text lines from an address, so that `--demo` can feed it from a local
    /// generator instead.
    pub demo: bool,
}

/// An output operation, by the stream it reads and its operator.
#[derive(Debug)]
pub struct OutputSpec {
    /// The name of the stream the output reads.
    pub stream: &'static str,
    /// The output operator, e.g. `print`.
    pub kind: &'static str,
}

/// A window, by the stream it makes and the operator the user wrote (`count_by_window`, not what it is
/// lowered to). Length and slide are fixed in the generated code; only the batch interval can change.
#[derive(Debug)]
pub struct WindowSpec {
    /// The name of the stream the window makes.
    pub stream: &'static str,
    /// The operator the user wrote, e.g. `reduce_by_key_and_window`.
    pub operator: &'static str,
    /// The window's length, a multiple of the batch interval.
    pub length: Duration,
    /// How far the window moves between two results, a multiple of the batch interval.
    pub slide: Duration,
}

/// `.checkpoint(interval)` on a stream.
#[derive(Debug)]
pub struct StreamCheckpointSpec {
    /// The name of the checkpointed stream.
    pub stream: &'static str,
    /// The interval given to `.checkpoint`, a multiple of the batch interval.
    pub interval: Duration,
    /// The slide of the window upstream of the stream; `None` when no window is, so the stream has data
    /// every batch, whatever the batch interval is at run time.
    pub window_slide: Option<Duration>,
}
