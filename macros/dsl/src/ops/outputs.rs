//! Outputs: they end a chain and are what makes a pipeline run (as in Spark, nothing is computed
//! that no output reads). Each runs once per batch, or once per slide downstream of a window, timed
//! and reported to the listeners under `stream.operator`.

use super::{Generate, Kind, Operator, Role, BASE};
use crate::codegen::StepCode;
use crate::diagnostic::Diagnostic;
use crate::graph::{collect_name, Node, NodeId, NodeKind};
use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::Expr;

const OUTPUT: Operator = Operator {
    kind: Kind::Output,
    role: Role::Output,
    ..BASE
};

pub const OPERATORS: &[Operator] = &[
    Operator {
        name: "print",
        args: (0, 1),
        signature: "print() or print(n)",
        summary: "Spark's block with the batch time and the first `n` (10) records, shown with \
                  `Show`.",
        spark: Some("print"),
        generate: Generate::Call(print),
        ..OUTPUT
    },
    Operator {
        name: "save_as_text_files",
        args: (1, 2),
        signature: "save_as_text_files(prefix) or save_as_text_files(prefix, suffix)",
        summary: "Each batch as the directory `prefix-<time in ms>[.suffix]`, one `part-NNNNN` \
                  file per partition, written under a temporary name and renamed.",
        spark: Some("saveAsTextFiles"),
        generate: Generate::Call(save_as_text_files),
        ..OUTPUT
    },
    Operator {
        name: "foreach_batch",
        args: (1, 1),
        signature: "foreach_batch(|batch, time| ...)",
        summary: "Your function with the whole batch (`Batch<T>`) and its time.",
        spark: Some("foreachRDD"),
        generate: Generate::Call(foreach_batch),
        ..OUTPUT
    },
    Operator {
        name: "foreach_partition",
        args: (2, 2),
        signature: "foreach_partition(|| connect(), |connection, partition| ...)",
        summary: "Your function with each partition and a connection from a pool the first \
                  function fills, kept across batches.",
        spark: Some("foreachRDD + foreachPartition"),
        generate: Generate::Call(foreach_partition),
        ..OUTPUT
    },
    Operator {
        name: "save_to_rolling_files",
        args: (1, 1),
        signature: "save_to_rolling_files(RollingFiles::new(directory))",
        summary: "Records appended to files that roll by size and time, each batch exactly once \
                  across restarts.",
        generate: Generate::Call(save_to_rolling_files),
        ..OUTPUT
    },
    Operator {
        name: "save_to_kafka",
        args: (2, 2),
        signature: "save_to_kafka(\"host:9092\", KafkaTopic::new(topic))",
        summary: "Records produced to a Kafka topic, idempotently or in a transaction per batch.",
        feature: Some("kafka"),
        generate: Generate::Call(save_to_kafka),
        ..OUTPUT
    },
    Operator {
        name: "save_to_sql",
        args: (2, 2),
        signature: "save_to_sql(url, SqlTable::new(name).column(..)...)",
        summary: "Records written to a SQLite, MySQL/MariaDB or PostgreSQL table in one \
                  transaction per batch, with the batch time recorded so a replay writes nothing \
                  twice.",
        feature: Some("sql"),
        generate: Generate::Call(save_to_sql),
        ..OUTPUT
    },
    Operator {
        name: "collect",
        args: (0, 1),
        signature: "collect() or collect(\"name\")",
        summary: "Each batch's records kept for the program running the app (a test takes them \
                  with `driver.take::<T>(name)`).",
        check: Some(unique_collect_name),
        generate: Generate::Call(collect),
        ..OUTPUT
    },
];

fn print(code: &StepCode) -> TokenStream {
    let n = code.optional_arg(0).unwrap_or_else(|| quote!(10));
    code.exec_call("print", &[n])
}

fn save_as_text_files(code: &StepCode) -> TokenStream {
    let suffix = code.optional_arg(1).unwrap_or_else(|| quote!(""));
    code.exec_call("save_as_text_files", &[code.arg(0), suffix])
}

fn foreach_batch(code: &StepCode) -> TokenStream {
    code.exec_call("foreach_batch", &[code.arg(0)])
}

fn foreach_partition(code: &StepCode) -> TokenStream {
    // The name its connection pool is kept under, unique per output.
    let pool = format!("{}.foreach_partition#{}", code.input_name(), code.id);
    code.exec_call(
        "foreach_partition",
        &[quote!(#pool), code.arg(0), code.arg(1)],
    )
}

fn save_to_rolling_files(code: &StepCode) -> TokenStream {
    // Typed here, so that a wrong argument is "expected `RollingFiles`" at the argument.
    let (files, span) = (code.arg(0), code.span());
    let destination = Ident::new("destination", Span::mixed_site());
    let typed = quote_spanned! {span=>
        {
            let #destination: ::streamc::__private::RollingFiles = #files;
            #destination
        }
    };
    code.exec_call("save_to", &[typed])
}

fn save_to_kafka(code: &StepCode) -> TokenStream {
    let destination = code.runtime_call("KafkaDestination::new", &[code.arg(0), code.arg(1)]);
    code.exec_call("save_to", &[destination])
}

fn save_to_sql(code: &StepCode) -> TokenStream {
    let destination = code.runtime_call("SqlDestination::new", &[code.arg(0), code.arg(1)]);
    code.exec_call("save_to", &[destination])
}

fn collect(code: &StepCode) -> TokenStream {
    let name = collect_name(code.nodes(), code.id);
    code.exec_call("collect_output", &[quote!(#name)])
}

/// `collect()` outputs are taken by name, so a name is a string literal, and unique.
fn unique_collect_name(nodes: &[Node], id: NodeId) -> Result<(), Diagnostic> {
    let NodeKind::Op { op, args, .. } = &nodes[id].kind else {
        return Ok(());
    };
    if let Some(arg) = args.first() {
        if !matches!(
            arg,
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(_),
                ..
            })
        ) {
            return Err(Diagnostic::at(
                arg,
                "`collect` takes the output's name as a string literal",
            )
            .help("write `.collect(\"name\")`, or `.collect()` to use the stream's name"));
        }
    }
    let name = collect_name(nodes, id);
    let taken = (0..id).any(|earlier| {
        nodes[earlier].operator().is_some_and(|o| o.name == op.name)
            && collect_name(nodes, earlier) == name
    });
    if taken {
        return Err(Diagnostic::error(
            nodes[id].span,
            format!("a `collect` output named `{name}` already exists"),
        )
        .help(format!(
            "give this one its own name: `.collect(\"{name}_2\")`"
        )));
    }
    Ok(())
}
