//! The streamc pipeline language, as a plain library: [`syntax`] parses a `stream!` block, [`graph`]
//! resolves it into a validated pipeline graph, [`codegen`] turns the graph into Rust. The `stream!`
//! macro and the `streamc` CLI are thin shells over [`expand`] and [`check`].

pub mod codegen;
pub mod diagnostic;
pub mod duration;
pub mod graph;
pub mod ops;
pub mod syntax;

pub use diagnostic::{Diagnostic, Diagnostics, Level};
use proc_macro2::TokenStream;

/// Parses and validates a `stream!` block's tokens.
pub fn check(tokens: TokenStream) -> Result<graph::Graph, Diagnostics> {
    let syntax = syntax::parse(tokens)?;
    graph::build(syntax)
}

/// The full expansion of a `stream!` block: the generated module, or the errors as `compile_error!`s.
pub fn expand(tokens: TokenStream) -> TokenStream {
    match check(tokens) {
        Ok(graph) => codegen::generate(&graph),
        Err(diagnostics) => diagnostics.to_tokens(),
    }
}
