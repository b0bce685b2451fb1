//! State across batches: keyed state updated by the user's function, its snapshots, and how often a
//! stream is checkpointed.

use super::{CheckpointRule, Generate, Kind, Operator, Role, Shape, StateUse, BASE};
use crate::codegen::StepCode;
use crate::diagnostic::Diagnostic;
use crate::graph::{Node, NodeId, NodeKind};
use proc_macro2::{Ident, Span, TokenStream};
use quote::quote_spanned;

const KEYED: Operator = Operator {
    kind: Kind::Wide,
    state: StateUse::Keyed,
    checkpoint: CheckpointRule::Always,
    role: Role::State,
    ..BASE
};

pub const OPERATORS: &[Operator] = &[
    Operator {
        name: "update_state_by_key",
        args: (1, 2),
        signature: "update_state_by_key(|new_values, state| new_state[, initial = pairs])",
        summary: "Per key, a state the function updates every batch from the key's new values; \
                  returning `None` drops the key. The stream is every `(key, state)` pair.",
        spark: Some("updateStateByKey"),
        shape: Shape::Stateful {
            functions: (1, 1),
            durations: 0,
            trailing_filter: false,
            initial: true,
        },
        generate: Generate::Call(update_state_by_key),
        keyed_input: true,
        partitions: true,
        ..KEYED
    },
    Operator {
        name: "map_with_state",
        args: (1, 3),
        signature: "map_with_state(|key, value, state| mapped[, timeout][, initial = pairs])",
        summary:
            "Per record, what the function maps it to, given its key's `StateCell`; keys idle \
                  for the timeout are called once more with the state timing out.",
        spark: Some("mapWithState"),
        shape: Shape::Stateful {
            functions: (1, 1),
            durations: 1,
            trailing_filter: false,
            initial: true,
        },
        generate: Generate::Statement(map_with_state),
        partitions: true,
        ..KEYED
    },
    Operator {
        name: "state_snapshots",
        signature: "state_snapshots()",
        summary: "Every `(key, state)` pair of the `map_with_state` it follows, each batch.",
        spark: Some("stateSnapshots"),
        kind: Kind::Wide,
        result_of: Some("map_with_state"),
        check: Some(one_snapshot_stream),
        ..BASE
    },
    Operator {
        name: "checkpoint",
        args: (1, 1),
        signature: "checkpoint(interval), e.g. checkpoint(10s)",
        summary: "The same stream, its state checkpointed at least this often (a multiple of its \
                  slide; Spark suggests 5 to 10 slides).",
        spark: Some("checkpoint"),
        kind: Kind::Narrow,
        role: Role::Narrow,
        shape: Shape::CheckpointInterval,
        ..BASE
    },
];

fn update_state_by_key(code: &StepCode) -> TokenStream {
    code.stateful_call("update_state_by_key", &[code.arg(0), code.initial_state()])
}

/// Binds the mapped stream and, when a live `state_snapshots` reads it, the snapshots: both come
/// out of one pass over the state.
fn map_with_state(code: &StepCode) -> TokenStream {
    let id = code.id;
    let mapped = if code.consumers(id) > 0 {
        code.var(id)
    } else {
        Ident::new("_", Span::mixed_site())
    };
    let snapshots = code.results_of(id).next();
    let (wanted, snapshot_var) = match snapshots {
        Some(s) => (true, code.var(s)),
        None => (false, Ident::new("_", Span::mixed_site())),
    };
    let timeout = code.node.timeout_millis;
    // Timed-out keys are looked for when the state stream is checkpointed, as in Spark: its own
    // `.checkpoint(interval)`, or 0 for Spark's default of every 10 batches.
    let scan_every = code.node.checkpoint.map_or(0, |(ms, _)| ms);
    let window_slide = code.downstream_slide().unwrap_or(0);
    let call = code.stateful_call(
        "map_with_state",
        &[
            code.arg(0),
            quote_spanned!(code.span()=> #timeout),
            quote_spanned!(code.span()=> #scan_every),
            quote_spanned!(code.span()=> #window_slide),
            quote_spanned!(code.span()=> #wanted),
            code.initial_state(),
        ],
    );
    let call = code.at_slide(code.with_partitions(call));
    quote_spanned! {code.span()=>
        let (#mapped, #snapshot_var) = #call;
    }
}

/// At most one `state_snapshots` per `map_with_state`: they would be the same stream.
fn one_snapshot_stream(nodes: &[Node], id: NodeId) -> Result<(), Diagnostic> {
    let input = nodes[id].inputs()[0];
    let earlier = nodes[..id].iter().any(|n| {
        matches!(&n.kind, NodeKind::Op { op, input: i, .. } if op.name == nodes[id].label() && *i == input)
    });
    if earlier {
        return Err(Diagnostic::error(
            nodes[id].span,
            "this `map_with_state` stream already has a `state_snapshots`",
        )
        .help("bind the snapshots once with `let` and use that stream in both places"));
    }
    Ok(())
}
