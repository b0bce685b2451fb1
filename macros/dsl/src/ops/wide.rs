//! Whole-batch transformations: each one a parallel step over every partition of the batch, its
//! result materialized for the stages that read it.

use super::{Generate, Kind, Operator, Role, BASE};
use crate::codegen::StepCode;
use proc_macro2::TokenStream;

const WIDE: Operator = Operator {
    kind: Kind::Wide,
    role: Role::Batch,
    ..BASE
};

const SHUFFLE: Operator = Operator {
    role: Role::Shuffle,
    ..WIDE
};

pub const OPERATORS: &[Operator] = &[
    Operator {
        name: "reduce_by_key",
        args: (1, 1),
        signature: "reduce_by_key(|a, b| merged)",
        summary: "One `(key, value)` pair per key, its values merged by the function (combined \
                  within each partition before the shuffle, as Spark does).",
        spark: Some("reduceByKey"),
        generate: Generate::Call(reduce_by_key),
        keyed_input: true,
        ..SHUFFLE
    },
    Operator {
        name: "group_by_key",
        signature: "group_by_key()",
        summary: "One `(key, values)` pair per key, its values in a `Vec`.",
        spark: Some("groupByKey"),
        generate: Generate::Call(group_by_key),
        keyed_input: true,
        ..SHUFFLE
    },
    Operator {
        name: "count_by_value",
        signature: "count_by_value()",
        summary: "One `(record, count)` pair per distinct record.",
        spark: Some("countByValue"),
        generate: Generate::Call(count_by_value),
        ..SHUFFLE
    },
    Operator {
        name: "count",
        signature: "count()",
        summary: "One record: the number of records in the batch (a `u64`).",
        spark: Some("count"),
        generate: Generate::Call(count),
        ..WIDE
    },
    Operator {
        name: "reduce",
        args: (1, 1),
        signature: "reduce(|a, b| merged)",
        summary: "At most one record: all the batch's records merged by the function.",
        spark: Some("reduce"),
        generate: Generate::Call(reduce),
        ..WIDE
    },
    Operator {
        name: "join",
        args: (1, 1),
        stream_arg: true,
        signature: "join(other_stream)",
        summary: "`(key, (value, other_value))` for every pair of records with the same key in \
                  this batch of both streams.",
        spark: Some("join"),
        generate: Generate::Call(join),
        ..SHUFFLE
    },
    Operator {
        name: "left_outer_join",
        args: (1, 1),
        stream_arg: true,
        signature: "left_outer_join(other_stream)",
        summary: "Like `join`, keeping every record of this stream: \
                  `(key, (value, Option<other_value>))`.",
        spark: Some("leftOuterJoin"),
        generate: Generate::Call(left_outer_join),
        ..SHUFFLE
    },
    Operator {
        name: "union",
        args: (1, 1),
        stream_arg: true,
        signature: "union(other_stream)",
        summary: "The records of both streams (of the same type and slide).",
        spark: Some("union"),
        generate: Generate::Call(union),
        ..WIDE
    },
    Operator {
        name: "repartition",
        args: (1, 1),
        signature: "repartition(partitions)",
        summary: "The same records spread evenly over the given number of partitions.",
        spark: Some("repartition"),
        generate: Generate::Call(repartition),
        ..SHUFFLE
    },
    Operator {
        name: "transform",
        args: (1, 1),
        signature: "transform(|batch| new_batch)",
        summary: "Whatever the function makes of the whole batch, given as a `Batch<T>` with an \
                  RDD-like API (`sort_by`, `take`, `join`, `top_k`, ...).",
        spark: Some("transform"),
        generate: Generate::Call(transform),
        ..WIDE
    },
    Operator {
        name: "persist",
        signature: "persist()",
        summary: "The same records, computed once per batch for all the stream's readers.",
        spark: Some("persist"),
        generate: Generate::Call(materialize),
        ..WIDE
    },
    Operator {
        name: "cache",
        signature: "cache()",
        summary: "The same as `persist()`.",
        spark: Some("cache"),
        generate: Generate::Call(materialize),
        ..WIDE
    },
];

fn reduce_by_key(code: &StepCode) -> TokenStream {
    code.exec_call("reduce_by_key", &[code.arg(0)])
}

fn group_by_key(code: &StepCode) -> TokenStream {
    code.exec_call("group_by_key", &[])
}

fn count_by_value(code: &StepCode) -> TokenStream {
    code.exec_call("count_by_value", &[])
}

fn count(code: &StepCode) -> TokenStream {
    code.exec_call("count", &[])
}

fn reduce(code: &StepCode) -> TokenStream {
    code.exec_call("reduce", &[code.arg(0)])
}

fn join(code: &StepCode) -> TokenStream {
    code.exec_join("inner_emit")
}

fn left_outer_join(code: &StepCode) -> TokenStream {
    code.exec_join("left_outer_emit")
}

fn union(code: &StepCode) -> TokenStream {
    code.exec_call_with_other("union", &[])
}

fn repartition(code: &StepCode) -> TokenStream {
    code.exec_call("repartition", &[code.arg(0)])
}

fn transform(code: &StepCode) -> TokenStream {
    code.exec_call("transform", &[code.arg(0)])
}

/// `persist`/`cache`: the stream is collected once per batch; every reader then reads that.
fn materialize(code: &StepCode) -> TokenStream {
    code.exec_call("collect", &[])
}
