//! The pipeline graph: sources, operators and outputs as nodes with resolved inputs, built from the
//! syntax and validated. Code generation, `streamc check` and `streamc graph` all read this.

use crate::diagnostic::{nearest, Diagnostic, Diagnostics};
use crate::ops::{self, Kind, Operator, SourceDef, SourceKind};
use crate::syntax::{AppHeader, PipelineSyntax, Statement};
use proc_macro2::Span;
use std::collections::HashMap;
use syn::{Expr, Ident, Type};

pub type NodeId = usize;

/// A validated pipeline.
pub struct Graph {
    pub app: AppHeader,
    pub nodes: Vec<Node>,
    pub broadcasts: Vec<Broadcast>,
    /// Problems that do not stop the build (streams that never reach an output).
    pub warnings: Diagnostics,
}

/// `let name: Type = broadcast(expr);`: computed once at start, shared read-only with every closure.
pub struct Broadcast {
    pub name: Ident,
    pub ty: Type,
    pub value: Expr,
}

pub struct Node {
    pub kind: NodeKind,
    /// Where the user wrote the operator (its name).
    pub span: Span,
    /// The `let` name bound to this node's stream, if any.
    pub binding: Option<Ident>,
    /// How many operators read this node's stream.
    pub consumers: usize,
}

pub enum NodeKind {
    Source {
        def: &'static SourceDef,
        name: String,
        args: Vec<Expr>,
        record_type: Option<Box<Type>>,
    },
    Op {
        op: &'static Operator,
        input: NodeId,
        other: Option<NodeId>,
        args: Vec<Expr>,
    },
}

impl Node {
    pub fn operator(&self) -> Option<&'static Operator> {
        match &self.kind {
            NodeKind::Op { op, .. } => Some(op),
            NodeKind::Source { .. } => None,
        }
    }

    pub fn is_output(&self) -> bool {
        self.operator().is_some_and(|o| o.kind == Kind::Output)
    }

    /// The operator or source name.
    pub fn label(&self) -> &'static str {
        match &self.kind {
            NodeKind::Source { def, .. } => def.name,
            NodeKind::Op { op, .. } => op.name,
        }
    }

    /// Streams this node reads.
    pub fn inputs(&self) -> Vec<NodeId> {
        match &self.kind {
            NodeKind::Source { .. } => Vec::new(),
            NodeKind::Op { input, other, .. } => std::iter::once(*input).chain(*other).collect(),
        }
    }
}

impl Graph {
    pub fn sources(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| matches!(n.kind, NodeKind::Source { .. }))
    }

    pub fn outputs(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes.iter().enumerate().filter(|(_, n)| n.is_output())
    }

    /// The name a stream is known by in messages, specs and `collect()`: its binding, or the nearest
    /// binding upstream, or the source name.
    pub fn stream_name(&self, id: NodeId) -> String {
        stream_name(&self.nodes, id)
    }
}

/// Builds and validates the graph. Errors stop; warnings travel in [`Graph::warnings`].
pub fn build(syntax: PipelineSyntax) -> Result<Graph, Diagnostics> {
    let mut builder = Builder {
        nodes: Vec::new(),
        streams: HashMap::new(),
        broadcasts: Vec::new(),
        all_names: HashMap::new(),
    };
    for statement in &syntax.statements {
        if let Statement::Let { name, .. } = statement {
            builder
                .all_names
                .entry(name.to_string())
                .or_insert_with(|| name.clone());
        }
    }
    let mut output_statements = 0usize;
    let mut defined: HashMap<String, Ident> = HashMap::new();
    for statement in syntax.statements {
        match statement {
            Statement::Let { name, ty, init } => {
                if defined.contains_key(&name.to_string()) {
                    return Err(Diagnostic::at(&name, format!("`{name}` is defined twice"))
                        .help("names are unique in a pipeline: rename this one (shadowing is not supported)")
                        .into());
                }
                defined.insert(name.to_string(), name.clone());
                if is_broadcast(&init) {
                    builder.broadcast(name, ty, *init)?;
                    continue;
                }
                if let Some(ty) = ty {
                    return Err(Diagnostic::at(&ty, format!("stream `{name}` takes no type annotation"))
                        .help("record types are inferred from the closures; only `broadcast` values are annotated")
                        .into());
                }
                let id = builder.lower(&init, Some(&name))?;
                if builder.nodes[id].is_output() {
                    return Err(Diagnostic::error(
                        builder.nodes[id].span,
                        format!(
                        "`{}` is an output operation: it produces no stream to bind to `{name}`",
                        builder.nodes[id].label()
                    ),
                    )
                    .help("write the output as its own statement, e.g. `counts.print();`")
                    .into());
                }
                builder.nodes[id].binding = Some(name.clone());
                builder.streams.insert(name.to_string(), id);
            }
            Statement::Output(expr) => {
                let id = builder.lower(&expr, None)?;
                if !builder.nodes[id].is_output() {
                    let outputs: Vec<&str> = ops::OPERATORS
                        .iter()
                        .filter(|o| o.kind == Kind::Output)
                        .map(|o| o.name)
                        .collect();
                    return Err(Diagnostic::at(&expr, "this statement computes a stream but has no output operation, so it would never run")
                        .help(format!("end it with an output ({}) or bind it with `let name = ...;`", outputs.join(", ")))
                        .into());
                }
                output_statements += 1;
            }
        }
    }
    let app = syntax.app;
    if output_statements == 0 {
        return Err(Diagnostic::at(
            &app.name,
            format!(
                "app `{}` has no output operation, so nothing would run",
                app.name
            ),
        )
        .help("Spark runs a pipeline only for its outputs: add one, e.g. `counts.print();`")
        .into());
    }
    let nodes = builder.nodes;
    check_collect_names(&nodes)?;
    let warnings = unused_streams(&nodes);
    Ok(Graph {
        app,
        nodes,
        broadcasts: builder.broadcasts,
        warnings,
    })
}

fn is_broadcast(init: &Expr) -> bool {
    matches!(init, Expr::Call(call) if matches!(&*call.func, Expr::Path(p) if p.path.is_ident(ops::BROADCAST)))
}

/// `collect()` outputs are taken by name, so names must be string literals and unique.
fn check_collect_names(nodes: &[Node]) -> Result<(), Diagnostics> {
    let mut seen: Vec<String> = Vec::new();
    for (id, node) in nodes.iter().enumerate() {
        let NodeKind::Op { op, args, .. } = &node.kind else {
            continue;
        };
        if op.name != "collect" {
            continue;
        }
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
                .help("write `.collect(\"name\")`, or `.collect()` to use the stream's name")
                .into());
            }
        }
        let name = collect_name(nodes, id);
        if seen.contains(&name) {
            return Err(Diagnostic::error(
                node.span,
                format!("a `collect` output named `{name}` already exists"),
            )
            .help(format!(
                "give this one its own name: `.collect(\"{name}_2\")`"
            ))
            .into());
        }
        seen.push(name);
    }
    Ok(())
}

/// The name a `collect` output is taken by: its literal argument, else the stream's name.
pub fn collect_name(nodes: &[Node], id: NodeId) -> String {
    match &nodes[id].kind {
        NodeKind::Op { args, input, .. } => match args.first() {
            Some(Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            })) => s.value(),
            _ => stream_name(nodes, *input),
        },
        NodeKind::Source { name, .. } => name.clone(),
    }
}

/// The name a stream is known by: its binding, or the nearest binding upstream, or the source name.
fn stream_name(nodes: &[Node], id: NodeId) -> String {
    let node = &nodes[id];
    if let Some(b) = &node.binding {
        return b.to_string();
    }
    match &node.kind {
        NodeKind::Source { name, .. } => name.clone(),
        NodeKind::Op { input, .. } => stream_name(nodes, *input),
    }
}

/// Which nodes feed an output (directly or through other nodes); the rest are never computed.
pub fn live_nodes(nodes: &[Node]) -> Vec<bool> {
    let mut live = vec![false; nodes.len()];
    let mut stack: Vec<NodeId> = (0..nodes.len()).filter(|&i| nodes[i].is_output()).collect();
    while let Some(id) = stack.pop() {
        if !std::mem::replace(&mut live[id], true) {
            stack.extend(nodes[id].inputs());
        }
    }
    live
}

/// Bound streams whose records never flow into an output.
fn unused_streams(nodes: &[Node]) -> Diagnostics {
    let live = live_nodes(nodes);
    let mut warnings = Diagnostics::default();
    for (id, node) in nodes.iter().enumerate() {
        if let (false, Some(name)) = (live[id], &node.binding) {
            warnings.push(
                Diagnostic::warning(name.span(), format!("stream `{name}` never reaches an output operation, so it is never computed"))
                    .help(format!("use it (e.g. `{name}.print();`) or remove it")),
            );
        }
    }
    warnings
}

struct Builder {
    nodes: Vec<Node>,
    streams: HashMap<String, NodeId>,
    broadcasts: Vec<Broadcast>,
    /// Every `let` name in the block, to tell "not yet defined" from "unknown".
    all_names: HashMap<String, Ident>,
}

impl Builder {
    fn broadcast(&mut self, name: Ident, ty: Option<Type>, init: Expr) -> Result<(), Diagnostics> {
        let Expr::Call(call) = init else {
            unreachable!("checked by is_broadcast")
        };
        let Some(ty) = ty else {
            return Err(
                Diagnostic::at(&name, format!("broadcast value `{name}` needs its type"))
                    .help(format!(
                        "annotate it: `let {name}: Vec<String> = broadcast(...);`"
                    ))
                    .into(),
            );
        };
        if call.args.len() != 1 {
            return Err(Diagnostic::at(
                &call.func,
                format!("`broadcast` takes 1 argument, found {}", call.args.len()),
            )
            .help("broadcast(value)")
            .into());
        }
        let value = call.args.into_iter().next().expect("one argument");
        self.broadcasts.push(Broadcast { name, ty, value });
        Ok(())
    }

    fn push(&mut self, kind: NodeKind, span: Span) -> NodeId {
        if let NodeKind::Op { input, other, .. } = &kind {
            self.nodes[*input].consumers += 1;
            if let Some(other) = other {
                self.nodes[*other].consumers += 1;
            }
        }
        self.nodes.push(Node {
            kind,
            span,
            binding: None,
            consumers: 0,
        });
        self.nodes.len() - 1
    }

    fn lower(&mut self, expr: &Expr, binding: Option<&Ident>) -> Result<NodeId, Diagnostics> {
        match expr {
            Expr::MethodCall(call) => {
                let input = self.lower(&call.receiver, None)?;
                let method = &call.method;
                let name = method.to_string();
                let Some(op) = ops::operator(&name) else {
                    return Err(unknown_operator(method).into());
                };
                if self.nodes[input].is_output() {
                    return Err(Diagnostic::at(method, format!(
                        "`{name}` cannot follow `{}`, an output operation that ends the chain",
                        self.nodes[input].label()
                    ))
                    .help("bind the stream with `let` and apply each output to it in its own statement")
                    .into());
                }
                let args: Vec<Expr> = call.args.iter().cloned().collect();
                check_arity(method, op, args.len())?;
                let (other, args) = if op.stream_arg {
                    let other = self.lower(&args[0], None)?;
                    (Some(other), args[1..].to_vec())
                } else {
                    (None, args)
                };
                Ok(self.push(NodeKind::Op { op, input, other, args }, method.span()))
            }
            Expr::Path(path) if path.path.get_ident().is_some() && path.qself.is_none() => {
                let ident = path.path.get_ident().expect("checked");
                self.stream_ref(ident)
            }
            Expr::Call(call) => self.source(call, binding),
            Expr::Paren(p) => self.lower(&p.expr, binding),
            other => Err(Diagnostic::at(other, "expected a stream")
                .help("a stream is a source such as `socket_text_stream(\"localhost\", 9999)`, a stream name, or a method chain on one")
                .into()),
        }
    }

    fn stream_ref(&mut self, ident: &Ident) -> Result<NodeId, Diagnostics> {
        let name = ident.to_string();
        if let Some(&id) = self.streams.get(&name) {
            return Ok(id);
        }
        if self.broadcasts.iter().any(|b| b.name == name) {
            return Err(Diagnostic::at(
                ident,
                format!("`{name}` is a broadcast value, not a stream"),
            )
            .help(format!(
                "use `{name}` inside a closure, e.g. `.filter(|r| !{name}.contains(r))`"
            ))
            .into());
        }
        if self.all_names.contains_key(&name) {
            return Err(Diagnostic::at(
                ident,
                format!("stream `{name}` is used before its definition"),
            )
            .help(format!("move `let {name} = ...;` above its first use"))
            .into());
        }
        let known: Vec<&str> = self.streams.keys().map(String::as_str).collect();
        let mut d = Diagnostic::at(ident, format!("unknown stream `{name}`"));
        if let Some(near) = nearest(&name, known.iter().copied()) {
            d = d.help(format!("did you mean `{near}`?"));
        } else if ops::source(&name).is_some() {
            d = d.help(format!(
                "`{name}` is a source: call it, e.g. `{}`",
                ops::source(&name).map(|s| s.signature).unwrap_or("")
            ));
        } else if !known.is_empty() {
            let mut known = known;
            known.sort_unstable();
            d = d.help(format!("streams defined so far: {}", known.join(", ")));
        }
        Err(d.into())
    }

    fn source(
        &mut self,
        call: &syn::ExprCall,
        binding: Option<&Ident>,
    ) -> Result<NodeId, Diagnostics> {
        let Expr::Path(func) = &*call.func else {
            return Err(Diagnostic::at(
                &call.func,
                "expected a source name such as `socket_text_stream`",
            )
            .into());
        };
        let Some(segment) = func
            .path
            .segments
            .last()
            .filter(|_| func.path.segments.len() == 1)
        else {
            return Err(Diagnostic::at(
                &call.func,
                "expected a source name such as `socket_text_stream`",
            )
            .into());
        };
        let name = segment.ident.to_string();
        let Some(def) = ops::source(&name) else {
            let list: Vec<&str> = ops::source_names().collect();
            let mut d = Diagnostic::at(&segment.ident, format!("unknown source `{name}`"));
            d = match nearest(&name, list.iter().copied()) {
                Some(near) => d.help(format!(
                    "did you mean `{near}`? sources: {}",
                    list.join(", ")
                )),
                None if name == ops::BROADCAST => d.help(
                    "`broadcast(...)` must be bound directly: `let name: Type = broadcast(value);`",
                ),
                None => d.help(format!("sources: {}", list.join(", "))),
            };
            return Err(d.into());
        };
        if call.args.len() != def.args {
            return Err(Diagnostic::at(
                &segment.ident,
                format!(
                    "`{name}` takes {} argument{}, found {}",
                    def.args,
                    if def.args == 1 { "" } else { "s" },
                    call.args.len()
                ),
            )
            .help(format!("write `{}`", def.signature))
            .into());
        }
        let record_type = match &segment.arguments {
            syn::PathArguments::AngleBracketed(a) if a.args.len() == 1 => match a.args.first() {
                Some(syn::GenericArgument::Type(t)) => Some(Box::new(t.clone())),
                _ => None,
            },
            _ => None,
        };
        if def.kind == SourceKind::Queue && record_type.is_none() {
            return Err(Diagnostic::at(&segment.ident, "`queue_stream` needs its record type")
                .help("write `queue_stream::<T>(batches)`, e.g. `queue_stream::<String>(test_batches())`")
                .into());
        }
        let taken: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|n| match &n.kind {
                NodeKind::Source { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect();
        let mut source_name = binding
            .map(|b| b.to_string())
            .unwrap_or_else(|| format!("source{}", taken.len()));
        while taken.contains(&source_name) {
            source_name.push('_');
        }
        let args = call.args.iter().cloned().collect();
        Ok(self.push(
            NodeKind::Source {
                def,
                name: source_name,
                args,
                record_type,
            },
            segment.ident.span(),
        ))
    }
}

fn unknown_operator(method: &Ident) -> Diagnostic {
    let name = method.to_string();
    let list: Vec<&str> = ops::operator_names().collect();
    let d = Diagnostic::at(method, format!("unknown operator `{name}`"));
    if ops::source(&name).is_some() {
        return d.help(format!("`{name}` is a source, not an operator: start a chain with it, e.g. `let lines = {name}(...);`"));
    }
    match nearest(&name, list.iter().copied()) {
        Some(near) => d.help(format!(
            "did you mean `{near}`? operators: {}",
            list.join(", ")
        )),
        None => d.help(format!("operators: {}", list.join(", "))),
    }
}

fn check_arity(method: &Ident, op: &Operator, found: usize) -> Result<(), Diagnostic> {
    let (min, max) = op.args;
    if (min..=max).contains(&found) {
        return Ok(());
    }
    let expected = if min == max {
        format!("{min} argument{}", if min == 1 { "" } else { "s" })
    } else {
        format!("{min} to {max} arguments")
    };
    Err(Diagnostic::at(
        method,
        format!("`{}` takes {expected}, found {found}", op.name),
    )
    .help(format!("write `.{}`", op.signature)))
}
