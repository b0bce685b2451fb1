//! `stream!`: declares a streaming pipeline. See the `streamc` crate for the language; everything here
//! is delegated to `streamc-dsl`, which the CLI shares.

use proc_macro::TokenStream;

/// Declares a pipeline and expands it into a module with fused per-batch code.
#[proc_macro]
pub fn stream(input: TokenStream) -> TokenStream {
    streamc_dsl::expand(input.into()).into()
}
