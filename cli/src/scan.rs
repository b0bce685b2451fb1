//! Finds the `stream!` blocks of a file: every `stream! { ... }` macro call in a Rust file (at any depth),
//! or the whole of a `.stream` file (the body of one block, after optional `use` lines).

use anyhow::{Context, Result};
use proc_macro2::TokenStream;
use std::path::Path;
use syn::visit::Visit;

pub struct Block {
    pub tokens: TokenStream,
}

pub fn blocks(file: &Path, source: &str) -> Result<Vec<Block>> {
    if file.extension().is_some_and(|e| e == "stream") {
        let tokens: TokenStream = source
            .parse()
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        return Ok(vec![Block {
            tokens: strip_use_lines(tokens),
        }]);
    }
    let parsed =
        syn::parse_file(source).with_context(|| format!("{} is not valid Rust", file.display()))?;
    let mut finder = Finder::default();
    finder.visit_file(&parsed);
    Ok(finder.blocks)
}

/// Drops leading `use ...;` items of a `.stream` file; they belong to the generated crate, not the block.
fn strip_use_lines(tokens: TokenStream) -> TokenStream {
    let mut out = Vec::new();
    let mut skipping = false;
    let mut at_statement_start = true;
    for token in tokens {
        let is_use = matches!(&token, proc_macro2::TokenTree::Ident(i) if i == "use");
        if at_statement_start && is_use {
            skipping = true;
        }
        let is_semi = matches!(&token, proc_macro2::TokenTree::Punct(p) if p.as_char() == ';');
        if skipping {
            if is_semi {
                skipping = false;
            }
            continue;
        }
        at_statement_start = false;
        out.push(token);
    }
    out.into_iter().collect()
}

#[derive(Default)]
struct Finder {
    blocks: Vec<Block>,
}

impl<'ast> Visit<'ast> for Finder {
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        if mac
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "stream")
        {
            self.blocks.push(Block {
                tokens: mac.tokens.clone(),
            });
        }
        syn::visit::visit_macro(self, mac);
    }
}
