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

/// The full expansion of a `stream!` block: the generated module, or every error as a
/// `compile_error!` beside a placeholder module of the same name (as tokio's and Hydro's macros still
/// emit their item on error), so the program's uses of the module add no errors of their own.
pub fn expand(tokens: TokenStream) -> TokenStream {
    let syntax = match syntax::parse(tokens) {
        Ok(syntax) => syntax,
        Err(error) => return Diagnostics::from(error).to_tokens(),
    };
    let app = syntax.app.name.clone();
    match graph::build(syntax) {
        Ok(graph) => codegen::generate(&graph),
        Err(diagnostics) => {
            let mut tokens = diagnostics.to_tokens();
            tokens.extend(codegen::placeholder(&app));
            tokens
        }
    }
}
