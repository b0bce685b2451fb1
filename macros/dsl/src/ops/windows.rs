//! Windows: aggregates over the last `window_length` of a stream, every `slide`. The shorthands are
//! lowered onto `reduce_by_key_and_window`, as Spark defines them.

use super::{
    lowered, CheckpointRule, Generate, Kind, Lowered, Operator, Role, Shape, StateUse, BASE,
};
use crate::codegen::StepCode;
use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::Expr;

const WINDOW: Operator = Operator {
    kind: Kind::Wide,
    args: (1, 2),
    state: StateUse::Window,
    role: Role::State,
    shape: Shape::Stateful {
        functions: (0, 0),
        durations: 2,
        trailing_filter: false,
        initial: false,
    },
    ..BASE
};

const WITH_FUNCTIONS: Shape = Shape::Stateful {
    functions: (1, 2),
    durations: 2,
    trailing_filter: false,
    initial: false,
};

pub const OPERATORS: &[Operator] = &[
    Operator {
        name: "window",
        signature: "window(window_length) or window(window_length, slide)",
        summary: "Every record of the last `window_length`, each `slide` (the batch interval by \
                  default).",
        spark: Some("window"),
        generate: Generate::Call(window),
        ..WINDOW
    },
    Operator {
        name: "count_by_window",
        signature: "count_by_window(window_length, slide)",
        summary: "One record, the number of records in the window.",
        spark: Some("countByWindow"),
        checkpoint: CheckpointRule::Always,
        lowering: Some(count_by_window),
        ..WINDOW
    },
    Operator {
        name: "reduce_by_window",
        args: (2, 4),
        signature: "reduce_by_window(|a, b| merged, [|a, b| inverse,] window_length, slide)",
        summary: "One record, the window's records merged; with an inverse, updated by what \
                  entered and left the window instead of recomputed.",
        spark: Some("reduceByWindow"),
        shape: WITH_FUNCTIONS,
        checkpoint: CheckpointRule::WithInverse,
        lowering: Some(reduce_by_window),
        ..WINDOW
    },
    Operator {
        name: "reduce_by_key_and_window",
        args: (2, 5),
        signature: "reduce_by_key_and_window(|a, b| merged, [|a, b| inverse,] window_length, \
                    slide[, |key, value| keep])",
        summary: "Per key, the window's values merged; with an inverse, updated incrementally \
                  (and then checkpointed), keys whose value fails `keep` dropped.",
        spark: Some("reduceByKeyAndWindow"),
        shape: Shape::Stateful {
            functions: (1, 2),
            durations: 2,
            trailing_filter: true,
            initial: false,
        },
        checkpoint: CheckpointRule::WithInverse,
        generate: Generate::Call(reduce_by_key_and_window),
        keyed_input: true,
        partitions: true,
        ..WINDOW
    },
    Operator {
        name: "count_by_value_and_window",
        signature: "count_by_value_and_window(window_length, slide)",
        summary: "One `(record, count)` pair per distinct record in the window.",
        spark: Some("countByValueAndWindow"),
        checkpoint: CheckpointRule::Always,
        lowering: Some(count_by_value_and_window),
        partitions: true,
        ..WINDOW
    },
    Operator {
        name: "group_by_key_and_window",
        signature: "group_by_key_and_window(window_length, slide)",
        summary: "One `(key, values)` pair per key in the window.",
        spark: Some("groupByKeyAndWindow"),
        lowering: Some(group_by_key_and_window),
        partitions: true,
        ..WINDOW
    },
];

fn window(code: &StepCode) -> TokenStream {
    let (length, slide) = code.window();
    code.stateful_call("window", &[quote!(#length), quote!(#slide)])
}

fn reduce_by_key_and_window(code: &StepCode) -> TokenStream {
    let (length, slide) = code.window();
    match code.args {
        [f] => code.stateful_call(
            "reduce_by_key_and_window",
            &[quote!(#f), quote!(#length), quote!(#slide)],
        ),
        [f, inverse, keep @ ..] => {
            let keep = keep
                .first()
                .map(|k| quote!(#k))
                .unwrap_or_else(|| quote!(|_, _| true));
            code.stateful_call(
                "reduce_by_key_and_window_inv",
                &[
                    quote!(#f),
                    quote!(#inverse),
                    keep,
                    quote!(#length),
                    quote!(#slide),
                ],
            )
        }
        [] => unreachable!("its shape asks for a function"),
    }
}

/// A count kept incrementally: added as batches enter the window, subtracted as they leave.
fn counting(span: Span) -> Vec<Expr> {
    vec![
        syn::parse_quote_spanned!(span=> |a: u64, b: u64| a + b),
        syn::parse_quote_spanned!(span=> |a: u64, b: u64| a - b),
    ]
}

fn count_by_window(span: Span, _functions: Vec<Expr>) -> Vec<Lowered> {
    vec![
        lowered(
            "map",
            vec![syn::parse_quote_spanned!(span=> |_| ((), 1u64))],
            false,
        ),
        lowered("reduce_by_key_and_window", counting(span), true),
        lowered(
            "map",
            vec![syn::parse_quote_spanned!(span=> |(_, count): ((), u64)| count)],
            false,
        ),
    ]
}

fn reduce_by_window(span: Span, functions: Vec<Expr>) -> Vec<Lowered> {
    vec![
        lowered(
            "map",
            vec![syn::parse_quote_spanned!(span=> |record| ((), record))],
            false,
        ),
        lowered("reduce_by_key_and_window", functions, true),
        lowered(
            "map",
            vec![syn::parse_quote_spanned!(span=> |((), value)| value)],
            false,
        ),
    ]
}

fn count_by_value_and_window(span: Span, _functions: Vec<Expr>) -> Vec<Lowered> {
    vec![
        lowered(
            "map",
            vec![syn::parse_quote_spanned!(span=> |record| (record, 1u64))],
            false,
        ),
        lowered(
            "reduce_by_key_and_window",
            counting(span)
                .into_iter()
                .chain([syn::parse_quote_spanned!(span=> |_, count: &u64| *count != 0)])
                .collect(),
            true,
        ),
    ]
}

fn group_by_key_and_window(span: Span, _functions: Vec<Expr>) -> Vec<Lowered> {
    vec![
        lowered(
            "map_values",
            vec![syn::parse_quote_spanned!(span=> |value| ::std::vec![value])],
            false,
        ),
        lowered(
            "reduce_by_key_and_window",
            vec![
                syn::parse_quote_spanned!(span=> |mut all: ::std::vec::Vec<_>, more| {
                    all.extend(more);
                    all
                }),
            ],
            true,
        ),
    ]
}
