//! Narrow transformations: one record in, zero or more out, fused into the loop of the stage that
//! reads them (no intermediate collection, one closure call per record).

use super::{Generate, Kind, Operator, Role, BASE};
use crate::codegen::FuseCode;
use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;

const NARROW: Operator = Operator {
    kind: Kind::Narrow,
    args: (1, 1),
    role: Role::Narrow,
    ..BASE
};

pub const OPERATORS: &[Operator] = &[
    Operator {
        name: "map",
        signature: "map(|record| new_record)",
        summary: "Each record turned into a new one.",
        spark: Some("map"),
        generate: Generate::Fuse(map),
        fuse_keyed: Some(map_keyed),
        ..NARROW
    },
    Operator {
        name: "flat_map",
        signature: "flat_map(|record| iterator)",
        summary: "Each record turned into any number of records (the iterator's items).",
        spark: Some("flatMap"),
        generate: Generate::Fuse(flat_map),
        ..NARROW
    },
    Operator {
        name: "filter",
        signature: "filter(|record| keep)",
        summary: "The records for which the function returns `true`.",
        spark: Some("filter"),
        generate: Generate::Fuse(filter),
        ..NARROW
    },
    Operator {
        name: "map_values",
        signature: "map_values(|value| new_value)",
        summary: "Each `(key, value)` pair with its value turned into a new one; the key is kept.",
        spark: Some("mapValues"),
        generate: Generate::Fuse(map_values),
        ..NARROW
    },
    Operator {
        name: "flat_map_values",
        signature: "flat_map_values(|value| iterator)",
        summary: "Each `(key, value)` pair turned into one pair per item of the value's iterator, \
                  the key cloned into each.",
        spark: Some("flatMapValues"),
        generate: Generate::Fuse(flat_map_values),
        ..NARROW
    },
];

fn map(code: &FuseCode) -> TokenStream {
    let (record, inner, call) = (code.record, &code.inner, code.call("map", false));
    quote! {
        let #record = #call;
        #inner
    }
}

/// `map(|w| (w.to_string(), value))` ending the stage of a keyed table (the seed's WordCount):
/// the closure hands back the word itself, and the table finds the word's entry by its text, so a
/// word is owned (by `to_owned`, which for text is what `to_string` does) only the first time the
/// partition sees it. A key that is not text is owned by `to_string` as written, so the meaning
/// never changes. Any other function is left alone.
fn map_keyed(code: &FuseCode, table: &Ident) -> Option<TokenStream> {
    let borrowing = borrowing_key(code.function)?;
    let (exec, record) = (code.exec, code.record);
    let key = Ident::new("key", Span::mixed_site());
    let value = Ident::new("value", Span::mixed_site());
    Some(quote! {
        let (#key, #value) = #exec::op::map(#record, #borrowing);
        {
            use #exec::{DisplayKey as _, TextKey as _};
            (&#exec::KeyText(#key)).push_keyed(#table, #value);
        }
    })
}

/// For `|w| (w.to_string(), value)` where `value` does not name `w`: `|w| (w, value)`. The
/// parameter's type annotation is dropped, since a closure annotated `&str` cannot hand its
/// argument back; the record's type gives the parameter its type anyway.
fn borrowing_key(function: &syn::Expr) -> Option<syn::Expr> {
    let syn::Expr::Closure(closure) = function else {
        return None;
    };
    let [param] = closure.inputs.iter().collect::<Vec<_>>()[..] else {
        return None;
    };
    let pattern = match param {
        syn::Pat::Type(typed) => &*typed.pat,
        other => other,
    };
    let syn::Pat::Ident(binding) = pattern else {
        return None;
    };
    if binding.by_ref.is_some() || binding.subpat.is_some() {
        return None;
    }
    let syn::Expr::Tuple(pair) = innermost(&closure.body) else {
        return None;
    };
    let [key, value] = pair.elems.iter().collect::<Vec<_>>()[..] else {
        return None;
    };
    let syn::Expr::MethodCall(call) = innermost(key) else {
        return None;
    };
    let receiver_is_binding = matches!(
        innermost(&call.receiver),
        syn::Expr::Path(path) if path.path.is_ident(&binding.ident)
    );
    if !receiver_is_binding
        || call.method != "to_string"
        || !call.args.is_empty()
        || call.turbofish.is_some()
        || names(quote!(#value), &binding.ident)
    {
        return None;
    }
    let name = &binding.ident;
    let mut rewritten = closure.clone();
    rewritten.inputs = std::iter::once(syn::Pat::Ident(syn::PatIdent {
        attrs: Vec::new(),
        by_ref: None,
        mutability: None,
        ident: name.clone(),
        subpat: None,
    }))
    .collect();
    rewritten.output = syn::ReturnType::Default;
    rewritten.body =
        Box::new(syn::parse_quote_spanned!(pair.paren_token.span.join()=> (#name, #value)));
    Some(syn::Expr::Closure(rewritten))
}

/// The expression inside parentheses and blocks that hold nothing else.
fn innermost(expr: &syn::Expr) -> &syn::Expr {
    match expr {
        syn::Expr::Paren(inner) => innermost(&inner.expr),
        syn::Expr::Block(block) if block.attrs.is_empty() && block.label.is_none() => {
            match &block.block.stmts[..] {
                [syn::Stmt::Expr(inner, None)] => innermost(inner),
                _ => expr,
            }
        }
        _ => expr,
    }
}

/// Whether `tokens` mention `name` anywhere (conservatively: a shadowing binding counts too).
fn names(tokens: TokenStream, name: &Ident) -> bool {
    tokens.into_iter().any(|token| match token {
        proc_macro2::TokenTree::Ident(ident) => ident == *name,
        proc_macro2::TokenTree::Group(group) => names(group.stream(), name),
        _ => false,
    })
}

fn map_values(code: &FuseCode) -> TokenStream {
    let (record, inner, call) = (code.record, &code.inner, code.call("map_values", false));
    quote! {
        let #record = #call;
        #inner
    }
}

fn filter(code: &FuseCode) -> TokenStream {
    let (inner, call) = (&code.inner, code.call("filter", true));
    quote! {
        if #call {
            #inner
        }
    }
}

fn flat_map(code: &FuseCode) -> TokenStream {
    let (record, inner, call) = (code.record, &code.inner, code.call("flat_map", false));
    quote! {
        for #record in #call {
            #inner
        }
    }
}

fn flat_map_values(code: &FuseCode) -> TokenStream {
    let (record, inner) = (code.record, &code.inner);
    let key = Ident::new("key", Span::mixed_site());
    let value = Ident::new("value", Span::mixed_site());
    let call = code.call_on(&value, "flat_map_values");
    quote! {
        let (#key, #value) = #record;
        for #value in #call {
            let #record = (::core::clone::Clone::clone(&#key), #value);
            #inner
        }
    }
}

#[cfg(test)]
mod tests {
    use super::borrowing_key;
    use quote::ToTokens;

    fn rewritten(closure: &str) -> Option<String> {
        let expr: syn::Expr = syn::parse_str(closure).unwrap();
        borrowing_key(&expr).map(|e| e.to_token_stream().to_string())
    }

    #[test]
    fn a_word_owned_by_to_string_is_handed_back_borrowed() {
        assert_eq!(
            rewritten("|w| (w.to_string(), 1u64)").as_deref(),
            Some("| w | (w , 1u64)")
        );
        assert_eq!(
            rewritten("|w: &str| { (w.to_string(), 1) }").as_deref(),
            Some("| w | (w , 1)")
        );
        assert_eq!(
            rewritten("move |w| ((w).to_string(), one)").as_deref(),
            Some("move | w | (w , one)")
        );
    }

    #[test]
    fn other_functions_are_left_as_written() {
        for closure in [
            "|w| (w.to_string(), w.len())",
            "|w| (w.to_owned(), 1)",
            "|w| (format!(\"{w}\"), 1)",
            "|w| (w.trim().to_string(), 1)",
            "|(w, n)| (w.to_string(), n)",
            "|w| { let k = w.to_string(); (k, 1) }",
            "|w| (w.to_string(), 1, 2)",
            "to_pair",
        ] {
            assert_eq!(rewritten(closure), None, "{closure}");
        }
    }
}
