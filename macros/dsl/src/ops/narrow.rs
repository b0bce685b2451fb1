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
