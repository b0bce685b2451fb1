//! Errors and warnings about a pipeline, each tied to the span of the user's code it is about.

use proc_macro2::{Span, TokenStream};
use quote::{quote_spanned, ToTokens};

/// How serious a diagnostic is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
}

/// One message about the pipeline.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub level: Level,
    pub span: Span,
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>) -> Self {
        Self {
            level: Level::Error,
            span,
            message: message.into(),
            help: None,
        }
    }

    pub fn warning(span: Span, message: impl Into<String>) -> Self {
        Self {
            level: Level::Warning,
            span,
            message: message.into(),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn at(spanned: &impl ToTokens, message: impl Into<String>) -> Self {
        Self::error(first_span(spanned), message)
    }

    /// The message with its help line, as shown by the compiler.
    pub fn full_message(&self) -> String {
        match &self.help {
            Some(help) => format!("{}\n\nhelp: {}", self.message, help),
            None => self.message.clone(),
        }
    }

    /// Tokens that make the compiler report this diagnostic at its span: `compile_error!` for errors, a
    /// use of a deprecated item for warnings (the only warning a stable proc macro can raise).
    pub fn to_tokens(&self, index: usize) -> TokenStream {
        let message = self.full_message();
        match self.level {
            Level::Error => quote_spanned!(self.span=> ::core::compile_error!{ #message }),
            Level::Warning => {
                let name = quote::format_ident!("streamc_warning_{}", index, span = self.span);
                quote_spanned! {self.span=>
                    const _: () = {
                        #[deprecated(note = #message)]
                        #[allow(non_upper_case_globals)]
                        const #name: () = ();
                        #name
                    };
                }
            }
        }
    }
}

/// The span of the first token of `spanned` (a whole-expression span would be joined only on nightly).
pub fn first_span(spanned: &impl ToTokens) -> Span {
    spanned
        .to_token_stream()
        .into_iter()
        .next()
        .map(|t| t.span())
        .unwrap_or_else(Span::call_site)
}

/// Several diagnostics; errors stop code generation, warnings do not.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// Adds every diagnostic of `other`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    /// Keeps the diagnostics of a check that failed.
    pub fn collect(&mut self, result: Result<(), Diagnostics>) {
        if let Err(e) = result {
            self.extend(e);
        }
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.level == Level::Error)
    }

    pub fn to_tokens(&self) -> TokenStream {
        self.0
            .iter()
            .enumerate()
            .map(|(i, d)| d.to_tokens(i))
            .collect()
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl From<syn::Error> for Diagnostics {
    fn from(e: syn::Error) -> Self {
        Diagnostics(
            e.into_iter()
                .map(|e| Diagnostic::error(e.span(), e.to_string()))
                .collect(),
        )
    }
}

/// The closest candidate to `name` within a small edit distance, for "did you mean" hints.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_finds_typos_only() {
        let ops = ["reduce_by_key", "group_by_key", "map", "flat_map"];
        assert_eq!(
            nearest("reduceByKey", ops),
            Some("reduce_by_key"),
            "Spark spellings find their Rust name"
        );
        assert_eq!(nearest("reduce_by_kye", ops), Some("reduce_by_key"));
        assert_eq!(nearest("flatmap", ops), Some("flat_map"));
        assert_eq!(nearest("zzzzzz", ops), None);
    }
}
