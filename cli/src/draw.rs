//! `streamc graph`: the pipeline as Mermaid or Graphviz — sources, fused stages, shuffles, state,
//! outputs — drawn from the same validated graph the macro generates code from.

use streamc_dsl::graph::{Graph, NodeKind};
use streamc_dsl::ops;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Mermaid,
    Dot,
}

/// What a node is, for its shape and label.
enum Role {
    Source,
    /// Fused into the loop of the operator that reads it.
    Narrow,
    /// Records move between partitions by key.
    Shuffle,
    /// Needs the whole batch (materialized once, read by what follows).
    Batch,
    /// Keeps state between batches.
    State,
    Output,
}

struct Drawn {
    role: Role,
    label: String,
}

fn describe(graph: &Graph, id: usize) -> Drawn {
    let node = &graph.nodes[id];
    let name = node.origin.unwrap_or(node.label());
    match &node.kind {
        NodeKind::Source { name: var, def, .. } => Drawn {
            role: Role::Source,
            label: format!("{var}: {}", def.name),
        },
        NodeKind::Op { op, .. } => {
            let mut label = match &node.binding {
                Some(b) => format!("{b}: {name}"),
                None => name.to_string(),
            };
            if let Some(w) = node.window {
                label.push_str(&format!(
                    " [{} / {}]",
                    millis(w.length_millis),
                    millis(w.slide_millis)
                ));
            }
            let role = match op.role {
                ops::Role::Output => Role::Output,
                ops::Role::State => Role::State,
                ops::Role::Shuffle => Role::Shuffle,
                ops::Role::Batch => Role::Batch,
                ops::Role::Narrow => Role::Narrow,
            };
            Drawn { role, label }
        }
    }
}

fn millis(ms: u64) -> String {
    if ms.is_multiple_of(60_000) {
        format!("{}min", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The nodes that reach an output (dead branches are warned about by `check`, not drawn).
fn drawn_nodes(graph: &Graph) -> Vec<usize> {
    let live = streamc_dsl::graph::live_nodes(&graph.nodes);
    (0..graph.nodes.len()).filter(|&id| live[id]).collect()
}

pub fn render(graph: &Graph, format: Format) -> String {
    let nodes = drawn_nodes(graph);
    let mut out = String::new();
    let app = &graph.app.name;
    let batch = millis(graph.app.batch_millis);
    match format {
        Format::Mermaid => {
            out.push_str(&format!(
                "---\ntitle: {app} (batch {batch}, {} workers)\n---\nflowchart LR\n",
                graph.app.workers
            ));
            for &id in &nodes {
                let d = describe(graph, id);
                let text = d.label.replace('"', "'");
                let shape = match d.role {
                    Role::Source => format!("n{id}[(\"{text}\")]"),
                    Role::Narrow => format!("n{id}[\"{text}\"]"),
                    Role::Shuffle => format!("n{id}{{{{\"{text}<br/>shuffle\"}}}}"),
                    Role::Batch => format!("n{id}[/\"{text}<br/>whole batch\"/]"),
                    Role::State => format!("n{id}[[\"{text}<br/>state\"]]"),
                    Role::Output => format!("n{id}>\"{text}\"]"),
                };
                out.push_str(&format!("    {shape}\n"));
            }
            for &id in &nodes {
                for input in graph.nodes[id].inputs() {
                    out.push_str(&format!("    n{input} --> n{id}\n"));
                }
            }
        }
        Format::Dot => {
            out.push_str(&format!(
                "digraph {app} {{\n    label=\"{app} (batch {batch}, {} workers)\";\n    rankdir=LR;\n    node [fontname=\"sans-serif\"];\n",
                graph.app.workers
            ));
            for &id in &nodes {
                let d = describe(graph, id);
                let text = d.label.replace('"', "\\\"");
                let attrs = match d.role {
                    Role::Source => format!("shape=cylinder, label=\"{text}\""),
                    Role::Narrow => format!("shape=box, label=\"{text}\""),
                    Role::Shuffle => format!("shape=hexagon, label=\"{text}\\nshuffle\""),
                    Role::Batch => format!("shape=parallelogram, label=\"{text}\\nwhole batch\""),
                    Role::State => format!("shape=box3d, label=\"{text}\\nstate\""),
                    Role::Output => format!("shape=cds, label=\"{text}\""),
                };
                out.push_str(&format!("    n{id} [{attrs}];\n"));
            }
            for &id in &nodes {
                for input in graph.nodes[id].inputs() {
                    out.push_str(&format!("    n{input} -> n{id};\n"));
                }
            }
            out.push_str("}\n");
        }
    }
    out
}
