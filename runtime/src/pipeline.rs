//! The contract between generated code and the engine.

use crate::config::AppConfig;
use crate::context::BatchContext;
use crate::source::SourceSet;
use std::time::Duration;

/// What the `stream!` macro generates for each app: how to build its sources and run one batch.
pub trait Pipeline: Sized + Send + Sync + 'static {
    /// The app's sources, as a tuple.
    type Sources: SourceSet;

    /// What the pipeline declares: name, defaults, sources and outputs.
    fn spec() -> &'static AppSpec;

    /// Creates the sources (not yet started) and the per-batch job state.
    fn build(config: &AppConfig) -> Result<(Self::Sources, Self), BuildError>;

    /// The state of the pipeline's stateful operators.
    fn state(&self) -> &crate::state::StateRegistry;

    /// Runs every output operation of one batch; the first that cannot write the batch ends it.
    fn run_batch(
        &self,
        ctx: &BatchContext<'_>,
        batch: <Self::Sources as SourceSet>::Batch,
    ) -> crate::sink::OutputResult;
}

pub use crate::spec::{AppSpec, OutputSpec, SourceSpec, StreamCheckpointSpec, WindowSpec};

/// Building the pipeline failed (a source or broadcast value could not be created).
#[derive(Debug)]
pub struct BuildError(pub String);

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

/// The pipeline `stream!` names for a block that did not compile, beside its errors: uses of the app
/// module (`word_count::app().main()`) still type-check, so the compiler shows the pipeline's own
/// errors and no "unresolved module" after them. It never runs: the program does not compile.
#[doc(hidden)]
pub struct InvalidPipeline {
    state: crate::state::StateRegistry,
}

static INVALID_SPEC: AppSpec = AppSpec {
    name: "invalid",
    batch_interval: Duration::from_secs(1),
    workers: 1,
    checkpoint_dir: None,
    checkpoint_every: None,
    state_slide: Duration::from_secs(1),
    sources: &[],
    outputs: &[],
    windows: &[],
    stream_checkpoints: &[],
};

impl Pipeline for InvalidPipeline {
    type Sources = (crate::source::QueueSource<()>,);

    fn spec() -> &'static AppSpec {
        &INVALID_SPEC
    }

    fn build(_: &AppConfig) -> Result<(Self::Sources, Self), BuildError> {
        Err(BuildError("the pipeline did not compile".into()))
    }

    fn state(&self) -> &crate::state::StateRegistry {
        &self.state
    }

    fn run_batch(
        &self,
        _: &BatchContext<'_>,
        _: <Self::Sources as SourceSet>::Batch,
    ) -> crate::sink::OutputResult {
        Ok(())
    }
}
