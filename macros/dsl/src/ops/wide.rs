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
        partitions: true,
        ..SHUFFLE
    },
    Operator {
        name: "group_by_key",
        signature: "group_by_key()",
        summary: "One `(key, values)` pair per key, its values in a `Vec`.",
        spark: Some("groupByKey"),
        generate: Generate::Call(group_by_key),
        keyed_input: true,
        partitions: true,
        ..SHUFFLE
    },
    Operator {
        name: "count_by_value",
        signature: "count_by_value()",
        summary: "One `(record, count)` pair per distinct record.",
        spark: Some("countByValue"),
        generate: Generate::Call(count_by_value),
        partitions: true,
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
        partitions: true,
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
        partitions: true,
        ..SHUFFLE
    },
    Operator {
        name: "right_outer_join",
        args: (1, 1),
        stream_arg: true,
        signature: "right_outer_join(other_stream)",
        summary: "Like `join`, keeping every record of the other stream: \
                  `(key, (Option<value>, other_value))`.",
        spark: Some("rightOuterJoin"),
        generate: Generate::Call(right_outer_join),
        partitions: true,
        ..SHUFFLE
    },
    Operator {
        name: "full_outer_join",
        args: (1, 1),
        stream_arg: true,
        signature: "full_outer_join(other_stream)",
        summary: "Like `join`, keeping every record of both streams: \
                  `(key, (Option<value>, Option<other_value>))`.",
        spark: Some("fullOuterJoin"),
        generate: Generate::Call(full_outer_join),
        partitions: true,
        ..SHUFFLE
    },
    Operator {
        name: "cogroup",
        args: (1, 1),
        stream_arg: true,
        signature: "cogroup(other_stream)",
        summary: "One `(key, (values, other_values))` per key of either stream in this batch, \
                  both as `Vec`s.",
        spark: Some("cogroup"),
        generate: Generate::Call(cogroup),
        partitions: true,
        ..SHUFFLE
    },
    Operator {
        name: "combine_by_key",
        args: (3, 3),
        signature: "combine_by_key(|v| combiner, |c, v| combiner, |c1, c2| combiner)",
        summary: "One `(key, combiner)` per key: the first function makes a key's combiner of its \
                  first value in a partition, the second adds the next values, the third merges \
                  the partitions' combiners after the shuffle.",
        spark: Some("combineByKey"),
        generate: Generate::Call(combine_by_key),
        partitions: true,
        ..SHUFFLE
    },
    Operator {
        name: "union",
        args: (1, 8),
        stream_arg: true,
        stream_args: true,
        signature: "union(other_stream) or union(b, c, ...)",
        summary: "The records of all the streams (of the same type and slide): `a.union(b, c)` is \
                  `a.union(b).union(c)`, Spark's `ssc.union`.",
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
        name: "transform_with",
        args: (2, 2),
        stream_arg: true,
        signature: "transform_with(other_stream, |batch, other_batch| new_batch)",
        summary: "Whatever the function makes of this batch of both streams, given as two \
                  `Batch`es (Spark's `transformWith`).",
        spark: Some("transformWith"),
        generate: Generate::Call(transform_with),
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

fn right_outer_join(code: &StepCode) -> TokenStream {
    code.exec_cogroup("right_outer_emit")
}

fn full_outer_join(code: &StepCode) -> TokenStream {
    code.exec_cogroup("full_outer_emit")
}

fn cogroup(code: &StepCode) -> TokenStream {
    code.exec_cogroup("cogroup_emit")
}

fn combine_by_key(code: &StepCode) -> TokenStream {
    code.exec_call("combine_by_key", &[code.arg(0), code.arg(1), code.arg(2)])
}

fn transform_with(code: &StepCode) -> TokenStream {
    code.exec_call_with_other("transform_with", &[code.arg(0)])
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
