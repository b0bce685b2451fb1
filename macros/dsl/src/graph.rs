//! The pipeline graph: sources, operators and outputs as nodes with resolved inputs, built from the
//! syntax and validated. Code generation, `streamc check` and `streamc graph` all read this.

use crate::diagnostic::{nearest, Diagnostic, Diagnostics};
use crate::duration::parse_duration;
use crate::ops::{self, CheckpointRule, Kind, Operator, Shape, SourceDef};
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
    /// State slots, in slot order.
    pub slots: Vec<StateSlot>,
    /// How often each node's stream has data: the batch interval, or a window's slide downstream of it.
    pub slides: Vec<u64>,
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
    /// The operator the user wrote, where this node implements it (`count_by_window` is lowered to
    /// `map` → `reduce_by_key_and_window` → `map`).
    pub origin: Option<&'static str>,
    /// Window length and slide of a window node.
    pub window: Option<WindowSpec>,
    /// `map_with_state`'s timeout (0: none).
    pub timeout_millis: u64,
    /// `initial = expr` of `update_state_by_key` / `map_with_state`: the `(key, state)` pairs a fresh
    /// start (no checkpoint) begins with.
    pub initial_state: Option<Expr>,
    /// `partitions = n` (Spark's `numPartitions`): how many partitions the operator's shuffle, state
    /// or window makes, instead of one per worker.
    pub partitions: Option<Expr>,
    /// The state slot of a stateful node.
    pub slot: Option<usize>,
    /// `.checkpoint(interval)` on this stream: checkpoint at least this often (ms), and where it was
    /// asked.
    pub checkpoint: Option<(u64, Span)>,
}

/// Length and slide of a window, in milliseconds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    pub length_millis: u64,
    pub slide_millis: u64,
}

/// A stateful operator's slot: its stable name (the checkpoint key) and operator.
#[derive(Clone, Debug)]
pub struct StateSlot {
    pub name: String,
    pub kind: &'static str,
    pub node: NodeId,
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

/// Builds and validates the graph. Every error is reported, not just the first (as serde_derive's
/// context does): each statement is checked on its own, a stream whose definition failed is
/// remembered so that its uses do not add errors of their own, and the whole-pipeline rules run once
/// every statement is sound. Warnings travel in [`Graph::warnings`].
pub fn build(syntax: PipelineSyntax) -> Result<Graph, Diagnostics> {
    let mut builder = Builder {
        batch_millis: syntax.app.batch_millis,
        nodes: Vec::new(),
        streams: HashMap::new(),
        broadcasts: Vec::new(),
        all_names: HashMap::new(),
        failed: Vec::new(),
    };
    for statement in &syntax.statements {
        if let Statement::Let { name, .. } = statement {
            builder
                .all_names
                .entry(name.to_string())
                .or_insert_with(|| name.clone());
        }
    }
    let mut errors = Diagnostics::default();
    let mut output_statements = 0usize;
    let mut defined: HashMap<String, Ident> = HashMap::new();
    for statement in syntax.statements {
        match statement {
            Statement::Let { name, ty, init } => {
                if defined.contains_key(&name.to_string()) {
                    errors.push(
                        Diagnostic::at(&name, format!("`{name}` is defined twice")).help(
                            "names are unique in a pipeline: rename this one (shadowing is not supported)",
                        ),
                    );
                    continue;
                }
                defined.insert(name.to_string(), name.clone());
                if let Err(e) = builder.define(&name, ty, *init) {
                    builder.failed.push(name.to_string());
                    errors.extend(e);
                }
            }
            Statement::Output(expr) => {
                // An output whose stream failed to build still counts: "no output" would be a cascade.
                output_statements += 1;
                let id = match builder.lower(&expr, None) {
                    Ok(id) => id,
                    Err(e) => {
                        errors.extend(e);
                        continue;
                    }
                };
                if !builder.nodes[id].is_output() {
                    output_statements -= 1;
                    errors.push(Diagnostic::at(&expr, "this statement computes a stream but has no output operation, so it would never run")
                        .help("end it with an output such as `.print()` or `.foreach_batch(|batch, time| ...)`, or bind it with `let name = ...;`"));
                }
            }
        }
    }
    let mut app = syntax.app;
    if output_statements == 0 && !errors.has_errors() {
        errors.push(
            Diagnostic::at(
                &app.name,
                format!(
                    "app `{}` has no output operation, so nothing would run",
                    app.name
                ),
            )
            .help("Spark runs a pipeline only for its outputs: add one, e.g. `counts.print();`"),
        );
    }
    if errors.has_errors() {
        return Err(errors);
    }
    let mut nodes = builder.nodes;
    for id in 0..nodes.len() {
        if let Some(check) = nodes[id].operator().and_then(|op| op.check) {
            errors.collect(check(&nodes, id).map_err(Diagnostics::from));
        }
    }
    if app.checkpoint.is_none() {
        errors.collect(require_checkpoint(&nodes, &app));
    }
    let slots = assign_slots(&mut nodes);
    let slides = match slides(&nodes, app.batch_millis) {
        Ok(slides) => slides,
        Err(e) => {
            errors.extend(e);
            return Err(errors);
        }
    };
    match stream_checkpoints(&nodes, &slides, &app) {
        Ok(every) => app.checkpoint_every_millis = every,
        Err(e) => errors.extend(e),
    }
    if errors.has_errors() {
        return Err(errors);
    }
    let warnings = unused_streams(&nodes);
    Ok(Graph {
        slots,
        slides,
        app,
        nodes,
        broadcasts: builder.broadcasts,
        warnings,
    })
}

fn is_broadcast(init: &Expr) -> bool {
    matches!(init, Expr::Call(call) if matches!(&*call.func, Expr::Path(p) if p.path.is_ident(ops::BROADCAST)))
}

/// Whether a node keeps state that only a checkpoint restores: keyed state, and windows kept with an
/// inverse function (Spark refuses both without a checkpoint directory).
pub fn needs_checkpoint(node: &Node) -> bool {
    match &node.kind {
        NodeKind::Op { op, args, .. } => match op.checkpoint {
            CheckpointRule::Always => true,
            CheckpointRule::WithInverse => args.len() >= 2,
            CheckpointRule::Never => false,
        },
        NodeKind::Source { .. } => false,
    }
}

fn require_checkpoint(nodes: &[Node], app: &AppHeader) -> Result<(), Diagnostics> {
    if let Some(node) = nodes.iter().find(|n| needs_checkpoint(n)) {
        let op = node.origin.unwrap_or(node.label());
        let name = &app.name;
        let what = if node.window.is_some() {
            "a window aggregate updated with an inverse function"
        } else {
            "state across batches"
        };
        return Err(Diagnostic::error(node.span, format!(
            "`{op}` keeps {what}, which needs a checkpoint directory to survive a restart, and app `{name}` has none"
        ))
        .help(format!(
            "add it to the header: `app {name} {{ batch: {}, checkpoint: \"checkpoints/{name}\" }}` (`--checkpoint DIR` can move it at run time)",
            crate::duration::format_millis(app.batch_millis)
        ))
        .into());
    }
    Ok(())
}

/// Checks each `.checkpoint(interval)` (a multiple of the stream's slide, as Spark requires, with a
/// checkpoint directory) and returns the app's checkpoint interval: the shortest asked for, by the
/// header's `checkpoint_every` or by a stream. All state is saved together, so one checkpoint is
/// always consistent; a stream's interval is a promise that it is saved at least that often.
fn stream_checkpoints(
    nodes: &[Node],
    slides: &[u64],
    app: &AppHeader,
) -> Result<Option<u64>, Diagnostics> {
    let mut shortest = app.checkpoint_every_millis;
    for (id, node) in nodes.iter().enumerate() {
        let Some((millis, span)) = node.checkpoint else {
            continue;
        };
        let name = &app.name;
        if app.checkpoint.is_none() {
            return Err(Diagnostic::error(span, format!("`checkpoint` needs a checkpoint directory, and app `{name}` has none"))
                .help(format!(
                    "add it to the header: `app {name} {{ batch: {}, checkpoint: \"checkpoints/{name}\" }}`",
                    crate::duration::format_millis(app.batch_millis)
                ))
                .into());
        }
        let slide = slides[id];
        if millis == 0 || millis % slide != 0 {
            let what = if slide == app.batch_millis {
                "batch interval"
            } else {
                "window's slide"
            };
            return Err(Diagnostic::error(
                span,
                format!(
                    "a checkpoint interval of {} is not a multiple of this stream's {what} ({})",
                    crate::duration::format_millis(millis),
                    crate::duration::format_millis(slide)
                ),
            )
            .help(format!(
                "use a multiple of {}; Spark suggests 5 to 10 slides, e.g. `.checkpoint({})`",
                crate::duration::format_millis(slide),
                crate::duration::format_millis(slide * 10_000u64.div_ceil(slide).max(5))
            ))
            .into());
        }
        shortest = Some(shortest.map_or(millis, |s| s.min(millis)));
    }
    Ok(shortest)
}

/// Gives every stateful node a slot and a stable name: the `let` name of the stream the user sees, else
/// the upstream stream's name and the operator.
fn assign_slots(nodes: &mut [Node]) -> Vec<StateSlot> {
    let mut slots: Vec<StateSlot> = Vec::new();
    for id in 0..nodes.len() {
        let Some(op) = nodes[id].operator() else {
            continue;
        };
        if op.state == ops::StateUse::None {
            continue;
        }
        let kind = nodes[id].origin.unwrap_or(op.name);
        let visible = visible_node(nodes, id);
        let mut name = match &nodes[visible].binding {
            Some(b) => b.to_string(),
            None => format!("{}.{kind}", stream_name(nodes, nodes[id].inputs()[0])),
        };
        let base = name.clone();
        let mut n = 2;
        while slots.iter().any(|s| s.name == name) {
            name = format!("{base}#{n}");
            n += 1;
        }
        nodes[id].slot = Some(slots.len());
        slots.push(StateSlot {
            name,
            kind,
            node: id,
        });
    }
    slots
}

/// The node a lowered operator's user sees: follow the single consumer while it is part of the lowering.
fn visible_node(nodes: &[Node], id: NodeId) -> NodeId {
    let Some(origin) = nodes[id].origin else {
        return id;
    };
    nodes
        .iter()
        .enumerate()
        .skip(id + 1)
        .find(|(_, n)| n.origin == Some(origin) && n.inputs().first() == Some(&id))
        .map(|(next, _)| next)
        .unwrap_or(id)
}

/// Each node's slide; streams combined by `union` or a join must share theirs.
fn slides(nodes: &[Node], batch_millis: u64) -> Result<Vec<u64>, Diagnostics> {
    let mut slides = vec![batch_millis; nodes.len()];
    for (id, node) in nodes.iter().enumerate() {
        let inputs = node.inputs();
        let from_inputs: Vec<u64> = inputs.iter().map(|&i| slides[i]).collect();
        if let [a, b] = from_inputs[..] {
            if a != b {
                return Err(Diagnostic::error(
                    node.span,
                    format!(
                        "`{}` combines streams with different slides ({a} ms and {b} ms)",
                        node.label()
                    ),
                )
                .help("window both streams with the same slide, as Spark requires")
                .into());
            }
        }
        slides[id] = match node.window {
            Some(w) => w.slide_millis,
            None => from_inputs.into_iter().max().unwrap_or(batch_millis),
        };
    }
    Ok(slides)
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
    batch_millis: u64,
    nodes: Vec<Node>,
    streams: HashMap<String, NodeId>,
    broadcasts: Vec<Broadcast>,
    /// Every `let` name in the block, to tell "not yet defined" from "unknown".
    all_names: HashMap<String, Ident>,
    /// `let` names whose definition failed (and was reported).
    failed: Vec<String>,
}

impl Builder {
    /// `let name[: ty] = init;`: a broadcast value or a stream.
    fn define(&mut self, name: &Ident, ty: Option<Type>, init: Expr) -> Result<(), Diagnostics> {
        if is_broadcast(&init) {
            return self.broadcast(name.clone(), ty, init);
        }
        if let Some(ty) = ty {
            return Err(Diagnostic::at(&ty, format!("stream `{name}` takes no type annotation"))
                .help("record types are inferred from the closures; only `broadcast` values are annotated")
                .into());
        }
        let id = self.lower(&init, Some(name))?;
        if self.nodes[id].is_output() {
            return Err(Diagnostic::error(
                self.nodes[id].span,
                format!(
                    "`{}` is an output operation: it produces no stream to bind to `{name}`",
                    self.nodes[id].label()
                ),
            )
            .help("write the output as its own statement, e.g. `counts.print();`")
            .into());
        }
        self.nodes[id].binding = Some(name.clone());
        self.streams.insert(name.to_string(), id);
        Ok(())
    }

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
            origin: None,
            window: None,
            timeout_millis: 0,
            initial_state: None,
            partitions: None,
            slot: None,
            checkpoint: None,
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
                let (args, partitions) = partitions_argument(method, op, args)?;
                if partitions.is_some() {
                    let first_new = self.nodes.len();
                    let id = self.method(method, op, input, args)?;
                    // On the operator, or on the steps of its lowering, not on a stream argument's.
                    for n in first_new..self.nodes.len() {
                        if n == id || self.nodes[n].origin == Some(op.name) {
                            self.nodes[n].partitions.clone_from(&partitions);
                        }
                    }
                    return Ok(id);
                }
                self.method(method, op, input, args)
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

    /// Operator `op` called as `.method(args)` on stream `input`.
    fn method(
        &mut self,
        method: &Ident,
        op: &'static Operator,
        input: NodeId,
        args: Vec<Expr>,
    ) -> Result<NodeId, Diagnostics> {
        let name = op.name;
        check_arity(method, op, args.len())?;
        if op.shape == Shape::CheckpointInterval {
            // Not a step of its own: how often the stream it follows is checkpointed.
            let millis = parse_duration(&args[0])?;
            if self.nodes[input].checkpoint.is_some() {
                return Err(Diagnostic::at(method, "this stream already has a checkpoint interval")
                    .help("keep one `.checkpoint(interval)`: the stream's state is saved at least that often")
                    .into());
            }
            self.nodes[input].checkpoint = Some((millis, method.span()));
            return Ok(input);
        }
        if let Shape::Stateful { .. } = op.shape {
            return self.stateful(method, op, input, args);
        }
        if let Some(of) = op.result_of {
            let follows = self.nodes[input].operator().is_some_and(|o| o.name == of);
            if !follows {
                return Err(Diagnostic::at(method, format!("`{name}` reads the state of a `{of}` stream"))
                    .help(format!("apply it directly to the stream `{of}` returns: `let snapshots = mapped.{name}();`"))
                    .into());
            }
        }
        if op.stream_args {
            // One step per stream, each reading the one before.
            let mut id = input;
            for arg in &args {
                let other = self.lower(arg, None)?;
                id = self.push(
                    NodeKind::Op {
                        op,
                        input: id,
                        other: Some(other),
                        args: Vec::new(),
                    },
                    method.span(),
                );
            }
            return Ok(id);
        }
        let (other, args) = if op.stream_arg {
            let other = self.lower(&args[0], None)?;
            (Some(other), args[1..].to_vec())
        } else {
            (None, args)
        };
        Ok(self.push(
            NodeKind::Op {
                op,
                input,
                other,
                args,
            },
            method.span(),
        ))
    }

    /// Stateful operators: reads window durations and timeouts, and lowers the window shorthands onto
    /// `reduce_by_key_and_window`, as Spark defines them.
    fn stateful(
        &mut self,
        method: &Ident,
        op: &'static Operator,
        input: NodeId,
        args: Vec<Expr>,
    ) -> Result<NodeId, Diagnostics> {
        let span = method.span();
        let (args, initial_state) = initial_state_argument(method, op, args)?;
        let first_duration = args.iter().position(is_duration).unwrap_or(args.len());
        let closures: Vec<Expr> = args[..first_duration].to_vec();
        let durations: Vec<&Expr> = args[first_duration..]
            .iter()
            .take_while(|a| is_duration(a))
            .collect();
        let trailing: Vec<Expr> = args[first_duration + durations.len()..].to_vec();
        let shape_error = || -> Diagnostics {
            Diagnostic::at(method, format!("`{}` takes {}", op.name, op.signature))
                .help("durations are literals such as `60s` or `500ms`, after the functions")
                .into()
        };
        let Shape::Stateful {
            functions: (min_closures, max_closures),
            durations: max_durations,
            trailing_filter,
            ..
        } = op.shape
        else {
            unreachable!("called for stateful shapes")
        };
        let window_op = op.state == ops::StateUse::Window;
        // Only an inverse window takes a trailing filter: `f, inverse, window, slide, keep`.
        let trailing_ok =
            trailing.is_empty() || (trailing_filter && closures.len() == 2 && trailing.len() == 1);
        if closures.len() < min_closures
            || closures.len() > max_closures
            || durations.len() > max_durations
            || (window_op && durations.is_empty())
            || !trailing_ok
        {
            return Err(shape_error());
        }
        let millis: Vec<u64> = durations
            .iter()
            .map(|d| parse_duration(d))
            .collect::<Result<_, _>>()?;
        if !window_op {
            // Keyed state: its functions, an optional timeout and initial state.
            let id = self.push(
                NodeKind::Op {
                    op,
                    input,
                    other: None,
                    args: closures,
                },
                span,
            );
            self.nodes[id].timeout_millis = millis.first().copied().unwrap_or(0);
            self.nodes[id].initial_state = initial_state;
            return Ok(id);
        }
        let window = self.window_spec(&durations, &millis)?;
        let Some(lowering) = op.lowering else {
            let mut args = closures;
            args.extend(trailing);
            let id = self.push(
                NodeKind::Op {
                    op,
                    input,
                    other: None,
                    args,
                },
                span,
            );
            self.nodes[id].window = Some(window);
            return Ok(id);
        };
        // A shorthand: the chain of operators it stands for, each marked with its origin.
        let mut id = input;
        for step in lowering(span, closures) {
            let lowered =
                ops::operator(step.operator).expect("lowerings name operators of the table");
            id = self.push(
                NodeKind::Op {
                    op: lowered,
                    input: id,
                    other: None,
                    args: step.args,
                },
                span,
            );
            self.nodes[id].origin = Some(op.name);
            if step.windowed {
                self.nodes[id].window = Some(window);
            }
        }
        Ok(id)
    }

    /// `window[, slide]`: multiples of the batch interval, slide no longer than the window.
    fn window_spec(&self, durations: &[&Expr], millis: &[u64]) -> Result<WindowSpec, Diagnostics> {
        let batch = self.batch_millis;
        for (expr, &ms) in durations.iter().zip(millis) {
            if ms % batch != 0 {
                return Err(Diagnostic::at(
                    *expr,
                    format!("{ms} ms is not a multiple of the batch interval ({batch} ms)"),
                )
                .help("window lengths and slides are whole numbers of batches")
                .into());
            }
        }
        let length_millis = millis[0];
        let slide_millis = millis.get(1).copied().unwrap_or(batch);
        if slide_millis > length_millis {
            return Err(Diagnostic::at(durations[1], format!("the slide ({slide_millis} ms) is longer than the window ({length_millis} ms)"))
                .help("a window slides by at most its own length; swap the two durations if they are reversed")
                .into());
        }
        Ok(WindowSpec {
            length_millis,
            slide_millis,
        })
    }

    fn stream_ref(&mut self, ident: &Ident) -> Result<NodeId, Diagnostics> {
        let name = ident.to_string();
        if let Some(&id) = self.streams.get(&name) {
            return Ok(id);
        }
        if self.failed.contains(&name) {
            // Its definition was reported already; its uses add nothing.
            return Err(Diagnostics::default());
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
                    "did you mean `{near}`? it is written `{}`",
                    ops::source(near).map(|s| s.signature).unwrap_or(near)
                )),
                None if name == ops::BROADCAST => d.help(
                    "`broadcast(...)` must be bound directly: `let name: Type = broadcast(value);`",
                ),
                None => d.help(format!("sources: {}", list.join(", "))),
            };
            return Err(d.into());
        };
        let (min, max) = def.args;
        if !(min..=max).contains(&call.args.len()) {
            let expected = match (min, max) {
                (1, 1) => "1 argument".to_string(),
                (a, b) if a == b => format!("{a} arguments"),
                (a, b) => format!("{a} or {b} arguments"),
            };
            return Err(Diagnostic::at(
                &segment.ident,
                format!("`{name}` takes {expected}, found {}", call.args.len()),
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
        let record_type = record_type.or_else(|| {
            let infer = def.type_from_args?;
            infer(&call.args.iter().cloned().collect::<Vec<_>>()).map(Box::new)
        });
        if def.needs_record_type && record_type.is_none() {
            return Err(Diagnostic::at(
                &segment.ident,
                format!("`{name}` needs its {}", def.type_param),
            )
            .help(format!("write `{}`", def.signature))
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

/// A duration literal: a number with a unit suffix (`60s`).
fn is_duration(expr: &Expr) -> bool {
    let Expr::Lit(lit) = expr else { return false };
    let suffix = match &lit.lit {
        syn::Lit::Int(i) => i.suffix(),
        syn::Lit::Float(f) => f.suffix(),
        _ => return false,
    };
    crate::duration::UNITS
        .iter()
        .any(|(unit, _)| *unit == suffix)
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
            "did you mean `{near}`? it is written `.{}`",
            ops::operator(near).map(|o| o.signature).unwrap_or(near)
        )),
        None => d.help(format!("operators: {}", list.join(", "))),
    }
}

/// Splits a trailing `initial = expr` off a stateful operator's arguments. Only the two keyed state
/// operators take one; any other `name = value` argument is a mistake worth naming.
fn initial_state_argument(
    method: &Ident,
    op: &Operator,
    mut args: Vec<Expr>,
) -> Result<(Vec<Expr>, Option<Expr>), Diagnostics> {
    let takes_initial = matches!(op.shape, Shape::Stateful { initial: true, .. });
    for (i, arg) in args.iter().enumerate() {
        let Expr::Assign(assign) = arg else { continue };
        let name = match &*assign.left {
            Expr::Path(p) => p.path.get_ident().cloned(),
            _ => None,
        };
        if name.as_ref().is_none_or(|n| n != "initial") {
            let shown = name.map(|n| format!(" `{n}`")).unwrap_or_default();
            return Err(
                Diagnostic::at(&assign.left, format!("unknown named argument{shown}"))
                    .help(if takes_initial {
                        format!(
                            "`{}` takes one named argument, `initial = pairs`, last",
                            op.name
                        )
                    } else {
                        format!("`{}` takes {}", op.name, op.signature)
                    })
                    .into(),
            );
        }
        if !takes_initial {
            return Err(Diagnostic::at(
                &assign.left,
                format!("`{}` has no initial state", op.name),
            )
            .help(format!("`initial = pairs` seeds {}", seeded_operators()))
            .into());
        }
        if i + 1 != args.len() {
            return Err(Diagnostic::at(&assign.left, "`initial = ...` comes last")
                .help(format!("write `{}(f, initial = pairs)`", method))
                .into());
        }
    }
    // Checked above: a named argument can only be a last `initial = ...`.
    let initial = match args.pop() {
        Some(Expr::Assign(assign)) => Some(*assign.right),
        other => {
            args.extend(other);
            None
        }
    };
    Ok((args, initial))
}

/// The operators that take `initial = pairs`, for messages: "`a` and `b`".
fn seeded_operators() -> String {
    let names: Vec<String> = ops::operators()
        .filter(|o| matches!(o.shape, Shape::Stateful { initial: true, .. }))
        .map(|o| format!("`{}`", o.name))
        .collect();
    names.join(" and ")
}

/// Takes `partitions = n` (Spark's `numPartitions`) out of the arguments, for the operators that
/// shuffle, window or keep state by key.
fn partitions_argument(
    method: &Ident,
    op: &Operator,
    mut args: Vec<Expr>,
) -> Result<(Vec<Expr>, Option<Expr>), Diagnostics> {
    let named = |arg: &Expr| match arg {
        Expr::Assign(assign) => match &*assign.left {
            Expr::Path(p) => p.path.is_ident("partitions"),
            _ => false,
        },
        _ => false,
    };
    let Some(at) = args.iter().position(named) else {
        return Ok((args, None));
    };
    let Expr::Assign(assign) = args.remove(at) else {
        unreachable!("found as an assignment")
    };
    if !op.partitions {
        let takers: Vec<&str> = ops::operators()
            .filter(|o| o.partitions)
            .map(|o| o.name)
            .collect();
        return Err(Diagnostic::at(
            &assign.left,
            format!("`{}` takes no partition count", method),
        )
        .help(format!(
            "`partitions = n` is for the operators that shuffle by key: {}",
            takers.join(", ")
        ))
        .into());
    }
    Ok((args, Some(*assign.right)))
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

#[cfg(test)]
mod tests {
    use quote::quote;

    fn messages(tokens: proc_macro2::TokenStream) -> Vec<String> {
        match crate::check(tokens) {
            Ok(_) => Vec::new(),
            Err(d) => d.0.into_iter().map(|d| d.message).collect(),
        }
    }

    #[test]
    fn every_statement_error_is_reported_and_uses_of_a_failed_stream_add_none() {
        let errors = messages(quote! {
            app several { batch: 1s }
            let lines = socket_text_stream("localhost", 9999);
            let words = lines.flat_mapp(|line: &str| line.split(' '));
            let counts = words.map(|w| (w.to_string(), 1u64)).reduce_by_key(|a, b| a + b);
            let lines = socket_text_stream("localhost", 9998);
            counts.print();
            lines.map(|line: &str| line.len()).filter(|n| *n > 0);
            nowhere.print();
        });
        assert_eq!(
            errors,
            [
                "unknown operator `flat_mapp`",
                "`lines` is defined twice",
                "this statement computes a stream but has no output operation, so it would never run",
                "unknown stream `nowhere`",
            ],
            "one error per faulty statement, in order; `counts` and its output add none"
        );
    }

    #[test]
    fn whole_pipeline_rules_run_once_the_statements_are_sound_and_report_together() {
        let errors = messages(quote! {
            app stateful { batch: 1s }
            let words = queue_stream::<String>(Vec::new());
            let totals = words.map(|w| (w.clone(), 1u64)).update_state_by_key(|new: &[u64], old: Option<u64>| Some(old.unwrap_or(0) + new.len() as u64));
            totals.collect("out");
            words.collect("out");
        });
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("a `collect` output named `out` already exists"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("needs a checkpoint directory"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_sound_pipeline_gets_its_slides_slots_and_no_errors() {
        let graph = crate::check(quote! {
            app counts { batch: 1s, checkpoint: "ckpt" }
            let lines = socket_text_stream("localhost", 9999);
            let pairs = lines.map(|w: &str| (w.to_string(), 1u64));
            let windowed = pairs.reduce_by_key_and_window(|a, b| a + b, 30s, 10s);
            let totals = pairs.update_state_by_key(|new: &[u64], old: Option<u64>| Some(old.unwrap_or(0) + new.len() as u64));
            windowed.print();
            totals.print();
        })
        .unwrap_or_else(|d| panic!("{:?}", d.0.iter().map(|d| &d.message).collect::<Vec<_>>()));
        assert_eq!(graph.sources().count(), 1);
        assert_eq!(graph.outputs().count(), 2);
        let slots: Vec<&str> = graph.slots.iter().map(|s| s.name.as_str()).collect();
        assert!(slots.contains(&"totals"), "{slots:?}");
        let windowed = graph
            .nodes
            .iter()
            .position(|n| n.binding.as_ref().is_some_and(|b| b == "windowed"))
            .unwrap();
        assert_eq!(
            graph.slides[windowed], 10_000,
            "a window's stream has data at its slide"
        );
        assert!(graph.warnings.0.is_empty());
    }
}
