//! Code generation: a validated [`Graph`] becomes a module with a `Pipeline` type and an `app()` function.
//!
//! Every operator that needs the whole batch (a shuffle, a join, `transform`, an output) is a call to a
//! generic `streamc::exec` function. Narrow operators (`map`, `filter`, `flat_map`, ...) between two such
//! calls are fused into the *stage body* handed to the call: one loop per partition, one user closure call
//! per record and operator, no intermediate collections.

use crate::graph::{live_nodes, Graph, Node, NodeId, NodeKind};
use crate::ops::{Generate, Kind};
use proc_macro2::{Ident, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::{Expr, Type};

/// The generated module, plus the tokens of any warnings.
/// The module of a pipeline that has errors: `Pipeline` and `app()` as a real one has them, standing
/// for nothing (see `streamc::__private::InvalidPipeline`).
pub fn placeholder(app: &syn::Ident) -> TokenStream {
    let doc = format!("The `{app}` pipeline, which has errors (reported by `stream!`).");
    quote! {
        #[doc = #doc]
        #[allow(dead_code)]
        pub mod #app {
            /// Stands for the pipeline until its errors are fixed.
            pub type Pipeline = ::streamc::__private::InvalidPipeline;

            /// Stands for the app until the pipeline's errors are fixed.
            pub fn app() -> ::streamc::App<Pipeline> {
                ::streamc::App::new()
            }
        }
    }
}

pub fn generate(graph: &Graph) -> TokenStream {
    Generator::new(graph).module()
}

struct Generator<'g> {
    graph: &'g Graph,
    live: Vec<bool>,
    /// Live consumers per node.
    consumers: Vec<usize>,
    exec: TokenStream,
    ctx: Ident,
}

/// How a stage reads the partitions of a materialized stream.
struct Input {
    root: TokenStream,
    records: TokenStream,
}

impl<'g> Generator<'g> {
    fn new(graph: &'g Graph) -> Self {
        let live = live_nodes(&graph.nodes);
        let mut consumers = vec![0; graph.nodes.len()];
        for (id, node) in graph.nodes.iter().enumerate() {
            // A second result of another operator (`state_snapshots`) is not a reader of its stream.
            let result = node.operator().is_some_and(|o| o.result_of.is_some());
            if live[id] && !result {
                for input in node.inputs() {
                    consumers[input] += 1;
                }
            }
        }
        Self {
            graph,
            live,
            consumers,
            exec: quote!(::streamc::__private::exec),
            ctx: Ident::new("ctx", Span::mixed_site()),
        }
    }

    /// The local variable holding a materialized stream. Mixed-site hygiene keeps it out of the user's
    /// closures' sight.
    fn var(&self, id: NodeId) -> Ident {
        let node = &self.graph.nodes[id];
        let name = match (&node.binding, &node.kind) {
            (Some(b), _) => b.to_string(),
            (None, NodeKind::Source { name, .. }) => name.clone(),
            (None, _) => format!("{}_{id}", node.label()),
        };
        Ident::new(&name, Span::mixed_site())
    }

    /// The name a window is known by: its `let` binding, else the binding of the `map` that ends a
    /// lowered shorthand (`count_by_window`), else the stream it windows.
    fn window_stream(&self, id: NodeId) -> String {
        let nodes = &self.graph.nodes;
        let node = &nodes[id];
        if node.binding.is_none() && node.origin.is_some() {
            let lowered_end = nodes
                .iter()
                .find(|n| n.origin == node.origin && n.inputs() == [id])
                .and_then(|n| n.binding.as_ref());
            if let Some(binding) = lowered_end {
                return binding.to_string();
            }
        }
        self.graph.stream_name(id)
    }

    fn materialized(&self, id: NodeId) -> bool {
        let node = &self.graph.nodes[id];
        match node.operator() {
            None => true,
            Some(op) => op.kind != Kind::Narrow || self.consumers[id] > 1,
        }
    }

    fn module(&self) -> TokenStream {
        let g = self.graph;
        let app = &g.app.name;
        let app_name = app.to_string();
        let batch_millis = g.app.batch_millis;
        let workers = g.app.workers;
        let p = quote!(::streamc::__private);

        let sources: Vec<(NodeId, &crate::graph::Node)> = g.sources().collect();
        let source_types = sources
            .iter()
            .map(|(_, n)| self.source_code(n, |def| def.rust_type));
        let source_values = sources
            .iter()
            .map(|(_, n)| self.source_code(n, |def| def.build));
        let source_specs = sources.iter().map(|(_, n)| match &n.kind {
            NodeKind::Source { def, name, .. } => {
                let (kind, demo) = (def.name, def.demo);
                quote!(#p::SourceSpec { name: #name, kind: #kind, demo: #demo })
            }
            NodeKind::Op { .. } => unreachable!("sources() yields sources"),
        });
        let source_bindings = sources.iter().map(|(id, _)| {
            if self.live[*id] {
                let var = self.var(*id);
                quote!(#var)
            } else {
                quote!(_)
            }
        });
        let output_specs = g.outputs().map(|(id, n)| {
            let stream = g.stream_name(g.nodes[id].inputs()[0]);
            let kind = n.label();
            quote!(#p::OutputSpec { stream: #stream, kind: #kind })
        });

        let slot_decls = g.slots.iter().map(|slot| {
            let (name, kind) = (&slot.name, slot.kind);
            quote!((#name, #kind))
        });
        let checkpoint_dir = match &g.app.checkpoint {
            Some(dir) => quote!(::core::option::Option::Some(#dir)),
            None => quote!(::core::option::Option::None),
        };
        let state_slide = {
            fn gcd(a: u64, b: u64) -> u64 {
                if b == 0 {
                    a
                } else {
                    gcd(b, a % b)
                }
            }
            g.nodes
                .iter()
                .filter_map(|n| n.window.map(|w| w.slide_millis))
                .fold(batch_millis, |acc, s| acc / gcd(acc, s) * s)
        };
        let checkpoint_every = match g.app.checkpoint_every_millis {
            Some(ms) => quote!(::core::option::Option::Some(#p::Duration::from_millis(#ms))),
            None => quote!(::core::option::Option::None),
        };
        let spec_types = &p;
        let window_specs = g
            .nodes
            .iter()
            .enumerate()
            .filter(|(id, _)| self.live[*id])
            .filter_map(|(id, n)| n.window.map(|w| (id, n, w)))
            .map(|(id, n, w)| {
                let stream = self.window_stream(id);
                let operator = n.origin.unwrap_or(n.label());
                let (length, slide) = (w.length_millis, w.slide_millis);
                quote! {
                    #spec_types::WindowSpec {
                        stream: #stream,
                        operator: #operator,
                        length: #p::Duration::from_millis(#length),
                        slide: #p::Duration::from_millis(#slide),
                    }
                }
            });
        // Downstream of a window a stream's slide is fixed at compile time; elsewhere it is the batch
        // interval, whatever that is at run time. Inputs precede their readers.
        let mut windowed = vec![false; g.nodes.len()];
        for (id, n) in g.nodes.iter().enumerate() {
            let downstream = n.inputs().iter().any(|&input| windowed[input]);
            windowed[id] = n.window.is_some() || downstream;
        }
        let stream_checkpoints = g
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(id, n)| n.checkpoint.map(|(ms, _)| (id, ms)))
            .map(|(id, ms)| {
                let stream = g.stream_name(id);
                let window_slide = if windowed[id] {
                    let slide = g.slides[id];
                    quote!(::core::option::Option::Some(#p::Duration::from_millis(#slide)))
                } else {
                    quote!(::core::option::Option::None)
                };
                quote! {
                    #spec_types::StreamCheckpointSpec {
                        stream: #stream,
                        interval: #p::Duration::from_millis(#ms),
                        window_slide: #window_slide,
                    }
                }
            });
        let broadcast_fields = g.broadcasts.iter().map(|b| {
            let (name, ty) = (&b.name, &b.ty);
            quote!(#name: #ty)
        });
        let broadcast_values = g.broadcasts.iter().map(|b| {
            let (name, value) = (&b.name, &b.value);
            quote!(#name: #value)
        });
        let broadcast_refs = g.broadcasts.iter().map(|b| {
            let name = &b.name;
            quote!(let #name = &self.#name;)
        });

        let steps = (0..g.nodes.len())
            .filter(|&id| self.live[id])
            .filter_map(|id| self.step(id));
        let warnings = g.warnings.to_tokens();
        let ctx = &self.ctx;
        let batch = Ident::new("batch", Span::mixed_site());
        let config = Ident::new("config", Span::mixed_site());
        let doc = format!("The `{app_name}` pipeline, generated by `stream!`.");

        quote! {
            #[doc = #doc]
            pub mod #app {
                #[allow(unused_imports)]
                use super::*;

                /// Per-batch job state: the pipeline's broadcast values and the state of its stateful operators.
                pub struct Pipeline {
                    #(#broadcast_fields,)*
                    state: #p::StateRegistry,
                }

                static SPEC: #p::AppSpec = #p::AppSpec {
                    name: #app_name,
                    batch_interval: #p::Duration::from_millis(#batch_millis),
                    workers: #workers,
                    checkpoint_dir: #checkpoint_dir,
                    checkpoint_every: #checkpoint_every,
                    state_slide: #p::Duration::from_millis(#state_slide),
                    sources: &[#(#source_specs),*],
                    outputs: &[#(#output_specs),*],
                    windows: &[#(#window_specs),*],
                    stream_checkpoints: &[#(#stream_checkpoints),*],
                };

                impl #p::Pipeline for Pipeline {
                    type Sources = (#(#source_types,)*);

                    fn spec() -> &'static #p::AppSpec {
                        &SPEC
                    }

                    fn build(#config: &#p::AppConfig) -> ::core::result::Result<(Self::Sources, Self), #p::BuildError> {
                        // Socket sources read their address from the configuration.
                        let _ = #config;
                        let sources = (#(#source_values,)*);
                        let state = #p::StateRegistry::new(&[#(#slot_decls),*]);
                        ::core::result::Result::Ok((sources, Pipeline { #(#broadcast_values,)* state }))
                    }

                    fn state(&self) -> &#p::StateRegistry {
                        &self.state
                    }

                    fn run_batch(&self, #ctx: &#p::BatchContext<'_>, #batch: <Self::Sources as #p::SourceSet>::Batch) -> #p::OutputResult {
                        let (#(#source_bindings,)*) = #batch;
                        #(#broadcast_refs)*
                        #(#steps)*
                        ::core::result::Result::Ok(())
                    }
                }

                /// The app with the configuration the pipeline declares; configure it further or run it.
                pub fn app() -> ::streamc::App<Pipeline> {
                    ::streamc::App::new()
                }
            }
            #warnings
        }
    }

    /// One of a source's code-writing functions (its type, its construction), given the source.
    fn source_code(
        &self,
        node: &Node,
        write: impl Fn(&crate::ops::SourceDef) -> fn(&SourceCode) -> TokenStream,
    ) -> TokenStream {
        let NodeKind::Source {
            def,
            name,
            args,
            record_type,
        } = &node.kind
        else {
            unreachable!("called for sources")
        };
        let code = SourceCode {
            runtime: quote!(::streamc::__private),
            config: Ident::new("config", Span::mixed_site()),
            name,
            args,
            record_type: record_type.as_deref(),
            span: node.span,
        };
        write(def)(&code)
    }

    /// How a stage reads stream `id`, which must be materialized.
    fn input(&self, id: NodeId) -> Input {
        let var = self.var(id);
        let exec = &self.exec;
        let is_source = self.graph.nodes[id].operator().is_none();
        if is_source {
            Input {
                root: quote!(&#var),
                records: quote!(#exec::records),
            }
        } else if self.consumers[id] > 1 {
            Input {
                root: quote!(&#var),
                records: quote!(#exec::records_cloned),
            }
        } else {
            Input {
                root: quote!(#var),
                records: quote!(#exec::records),
            }
        }
    }

    /// The stage reading stream `from`: its materialized root, and a body fusing the narrow operators
    /// between that root and `from`.
    fn stage(&self, from: NodeId) -> (TokenStream, TokenStream) {
        self.stage_into(Vec::new(), from, false)
    }

    /// Like [`Self::stage`], with narrow operators `chain` (innermost last) applied after `from`.
    fn stage_with(&self, chain: Vec<NodeId>, from: NodeId) -> (TokenStream, TokenStream) {
        self.stage_into(chain, from, false)
    }

    /// The stage, for a consumer whose output is a keyed table when `keyed` (see
    /// [`crate::ops::Operator::keyed_input`]): its last operator may then push into the table
    /// directly.
    fn stage_into(
        &self,
        mut chain: Vec<NodeId>,
        from: NodeId,
        keyed: bool,
    ) -> (TokenStream, TokenStream) {
        chain.reverse();
        let mut current = from;
        while !self.materialized(current) {
            chain.push(current);
            current = self.graph.nodes[current].inputs()[0];
        }
        chain.reverse();
        let Input { root, records } = self.input(current);
        let part = Ident::new("part", Span::mixed_site());
        let out = Ident::new("out", Span::mixed_site());
        let record = Ident::new("record", Span::mixed_site());
        let keyed_end = chain
            .last()
            .filter(|_| keyed)
            .and_then(|&last| self.fuse_keyed(last, &record, &out));
        let loop_body = match keyed_end {
            Some(end) => self.fuse(&chain[..chain.len() - 1], &record, &end),
            None => self.fuse(&chain, &record, &quote!(#out.push(#record);)),
        };
        let body = quote! {
            |#part, #out| {
                for #record in #records(#part) {
                    #loop_body
                }
            }
        };
        (root, body)
    }

    /// Nested code applying the narrow operators `chain` to `record`, then `sink`.
    fn fuse(&self, chain: &[NodeId], record: &Ident, sink: &TokenStream) -> TokenStream {
        let Some((&first, rest)) = chain.split_first() else {
            return sink.clone();
        };
        let inner = self.fuse(rest, record, sink);
        let node = &self.graph.nodes[first];
        let NodeKind::Op { op, args, .. } = &node.kind else {
            unreachable!("chains hold operators")
        };
        let Generate::Fuse(write) = op.generate else {
            unreachable!("`{}` is not fused", op.name)
        };
        write(&FuseCode {
            exec: &self.exec,
            record,
            function: &args[0],
            inner,
            span: node.span,
        })
    }

    /// Node `id`'s code pushing its result into the keyed table `out`, if its operator has a better
    /// way than making the record (see [`crate::ops::Operator::fuse_keyed`]).
    fn fuse_keyed(&self, id: NodeId, record: &Ident, out: &Ident) -> Option<TokenStream> {
        let node = &self.graph.nodes[id];
        let NodeKind::Op { op, args, .. } = &node.kind else {
            return None;
        };
        let write = op.fuse_keyed?;
        write(
            &FuseCode {
                exec: &self.exec,
                record,
                function: &args[0],
                inner: TokenStream::new(),
                span: node.span,
            },
            out,
        )
    }

    /// The statement computing node `id`, if it is materialized or an output.
    fn step(&self, id: NodeId) -> Option<TokenStream> {
        let node = &self.graph.nodes[id];
        let NodeKind::Op {
            op,
            input,
            other,
            args,
        } = &node.kind
        else {
            return None;
        };
        if (op.kind == Kind::Narrow && !self.materialized(id)) || op.result_of.is_some() {
            return None;
        }
        let span = node.span;
        let ((root, body), other) = if op.kind == Kind::Narrow {
            // A narrow operator materialized for its several consumers includes itself in the stage.
            (self.stage_with(vec![id], *input), None)
        } else {
            (
                self.stage_into(Vec::new(), *input, op.keyed_input),
                other.map(|other| self.stage(other)),
            )
        };
        let code = StepCode {
            id,
            node,
            args,
            root,
            body,
            other,
            generator: self,
        };
        let call = match op.generate {
            Generate::Fuse(_) => {
                let (exec, ctx, root, body) = (&self.exec, &self.ctx, &code.root, &code.body);
                quote_spanned!(span=> #exec::collect(#ctx, #root, #body))
            }
            Generate::Call(write) => write(&code),
            Generate::Statement(write) => return Some(write(&code)),
            Generate::Nothing => unreachable!("`{}` generates no code", op.name),
        };
        let ctx = &self.ctx;
        if op.kind == Kind::Output {
            // Timed and reported to the listeners under the name `--help` lists it by.
            let name = format!("{}.{}", self.graph.stream_name(*input), op.name);
            let call = quote!(#ctx.run_output(#name, || #call)?);
            match self.off_slide(id) {
                Some(slide) => {
                    Some(quote!(if #ctx.time.millis().is_multiple_of(#slide) { #call; }))
                }
                None => Some(quote!(#call;)),
            }
        } else {
            let var = self.var(id);
            let call = code.at_slide(code.with_partitions(call));
            Some(quote!(let #var = #call;))
        }
    }

    /// Downstream of a window, a stream exists only at the window's slide, as in Spark: its
    /// operators (a `transform`, a stateful operator, an output) run only then. The slide, when
    /// node `id` is such an operator; the window itself runs every batch, to take each batch in.
    fn off_slide(&self, id: NodeId) -> Option<u64> {
        let slide = self.graph.slides[id];
        (slide > self.graph.app.batch_millis && self.graph.nodes[id].window.is_none())
            .then_some(slide)
    }
}

/// What a narrow operator's code is written from (see [`Generate::Fuse`]).
pub struct FuseCode<'a> {
    /// The path of the runtime's `exec` module.
    pub exec: &'a TokenStream,
    /// The variable holding the record, in and out.
    pub record: &'a Ident,
    /// The user's function.
    pub function: &'a Expr,
    /// The code consuming what the operator makes of the record, found in `record`.
    pub inner: TokenStream,
    /// Where the user wrote the operator.
    pub span: Span,
}

impl FuseCode<'_> {
    /// `exec::op::<function>(record, f)` (or `(&record, f)`), the runtime's helper that calls the
    /// user's function with the types spelled out, so that a type error points at the operator.
    pub fn call(&self, function: &str, by_reference: bool) -> TokenStream {
        let record = self.record;
        if by_reference {
            self.call_with(quote!(&#record), function)
        } else {
            self.call_with(quote!(#record), function)
        }
    }

    /// `exec::op::<function>(value, f)` for a part of the record.
    pub fn call_on(&self, value: &Ident, function: &str) -> TokenStream {
        self.call_with(quote!(#value), function)
    }

    fn call_with(&self, value: TokenStream, function: &str) -> TokenStream {
        let (exec, f) = (self.exec, self.function);
        let function = Ident::new(function, self.span);
        quote!(#exec::op::#function(#value, #f))
    }
}

/// What a whole-batch operator's or an output's code is written from (see [`Generate::Call`]).
pub struct StepCode<'a> {
    /// The operator's node.
    pub id: NodeId,
    pub node: &'a Node,
    /// Its arguments, without a stream argument.
    pub args: &'a [Expr],
    root: TokenStream,
    body: TokenStream,
    other: Option<(TokenStream, TokenStream)>,
    generator: &'a Generator<'a>,
}

impl StepCode<'_> {
    /// Where the user wrote the operator.
    pub fn span(&self) -> Span {
        self.node.span
    }

    /// Argument `i`, which the operator's shape guarantees.
    pub fn arg(&self, i: usize) -> TokenStream {
        let arg = &self.args[i];
        quote!(#arg)
    }

    pub fn optional_arg(&self, i: usize) -> Option<TokenStream> {
        self.args.get(i).map(|arg| quote!(#arg))
    }

    /// `exec::<function>(ctx, input, stage, extra...)`: the runtime function running the operator
    /// over the batch of its input stream, whose records come through the fused `stage`.
    pub fn exec_call(&self, function: &str, extra: &[TokenStream]) -> TokenStream {
        let (exec, ctx, root, body) = (
            &self.generator.exec,
            &self.generator.ctx,
            &self.root,
            &self.body,
        );
        let span = self.span();
        let function = Ident::new(function, span);
        quote_spanned!(span=> #exec::#function(#ctx, #root, #body #(, #extra)*))
    }

    /// `exec::<function>(ctx, input, stage, other_input, other_stage, extra...)`, for an operator
    /// combining its stream with the stream argument.
    pub fn exec_call_with_other(&self, function: &str, extra: &[TokenStream]) -> TokenStream {
        let (other_root, other_body) = self
            .other
            .clone()
            .expect("an operator with a stream argument");
        let mut all = vec![other_root, other_body];
        all.extend_from_slice(extra);
        self.exec_call(function, &all)
    }

    /// `exec::join_with(..., exec::<emit>)`: a join of the two streams by key, each left record
    /// emitted with the right values of its key by `emit`.
    pub fn exec_join(&self, emit: &str) -> TokenStream {
        let (exec, emit) = (&self.generator.exec, Ident::new(emit, self.span()));
        self.exec_call_with_other("join_with", &[quote!(#exec::#emit)])
    }

    /// `call`, or downstream of a window, `call` at the window's slide and nothing (an empty
    /// result) in between (see [`Generator::off_slide`]).
    pub fn at_slide(&self, call: TokenStream) -> TokenStream {
        let ctx = &self.generator.ctx;
        match self.generator.off_slide(self.id) {
            Some(slide) => quote_spanned! {self.span()=>
                if #ctx.time.millis().is_multiple_of(#slide) {
                    #call
                } else {
                    ::core::default::Default::default()
                }
            },
            None => call,
        }
    }

    /// The window slide this operator's stream exists at, when it is downstream of a window.
    pub fn downstream_slide(&self) -> Option<u64> {
        self.generator.off_slide(self.id)
    }

    /// `call` with the batch context's partition count set to the operator's `partitions = n`,
    /// if it has one.
    pub fn with_partitions(&self, call: TokenStream) -> TokenStream {
        let ctx = &self.generator.ctx;
        match &self.node.partitions {
            Some(n) => quote_spanned! {self.span()=>
                {
                    let #ctx = &#ctx.with_partitions(#n);
                    #call
                }
            },
            None => call,
        }
    }

    /// `exec::cogroup_with(..., exec::<emit>)`: both streams grouped by key, each key's values on
    /// both sides handed to `emit`.
    pub fn exec_cogroup(&self, emit: &str) -> TokenStream {
        let (exec, emit) = (&self.generator.exec, Ident::new(emit, self.span()));
        self.exec_call_with_other("cogroup_with", &[quote!(#exec::#emit)])
    }

    /// `stateful::<function>(ctx, &self.state, slot, input, stage, extra...)`: a stateful operator
    /// reading and updating its state slot.
    pub fn stateful_call(&self, function: &str, extra: &[TokenStream]) -> TokenStream {
        let (ctx, root, body) = (&self.generator.ctx, &self.root, &self.body);
        let slot = self.node.slot.expect("stateful operators have a slot");
        let span = self.span();
        let function = Ident::new(function, span);
        quote_spanned! {span=>
            ::streamc::__private::stateful::#function(#ctx, &self.state, #slot, #root, #body #(, #extra)*)
        }
    }

    /// `__private::<path>(args...)`: a runtime constructor, spanned at the operator so that a
    /// wrong argument type is reported there.
    pub fn runtime_call(&self, path: &str, args: &[TokenStream]) -> TokenStream {
        let span = self.span();
        let path: syn::Path = syn::parse_str(path).expect("a runtime path written in the table");
        let path = path
            .segments
            .iter()
            .map(|s| Ident::new(&s.ident.to_string(), span));
        quote_spanned!(span=> ::streamc::__private #(::#path)*(#(#args),*))
    }

    /// A window's length and slide, in milliseconds.
    pub fn window(&self) -> (u64, u64) {
        let w = self.node.window.expect("a window node");
        (w.length_millis, w.slide_millis)
    }

    /// The function giving a keyed state operator's initial state.
    pub fn initial_state(&self) -> TokenStream {
        initial_state(self.node)
    }

    /// The name of the stream the operator reads.
    pub fn input_name(&self) -> String {
        self.generator.graph.stream_name(self.node.inputs()[0])
    }

    pub fn nodes(&self) -> &[Node] {
        &self.generator.graph.nodes
    }

    /// The variable holding node `id`'s stream.
    pub fn var(&self, id: NodeId) -> Ident {
        self.generator.var(id)
    }

    /// How many live operators read node `id`'s stream.
    pub fn consumers(&self, id: NodeId) -> usize {
        self.generator.consumers[id]
    }

    /// The live nodes that are second results of node `id` (see `Operator::result_of`).
    pub fn results_of(&self, id: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        let g = self.generator;
        g.graph
            .nodes
            .iter()
            .enumerate()
            .filter_map(move |(n, node)| {
                let result = node.operator().is_some_and(|o| o.result_of.is_some());
                (g.live[n] && result && node.inputs() == [id]).then_some(n)
            })
    }
}

/// What a source's code is written from (see [`crate::ops::SourceDef`]).
pub struct SourceCode<'a> {
    /// `::streamc::__private`, where the source types are.
    pub runtime: TokenStream,
    /// The `&AppConfig` variable of `Pipeline::build`.
    pub config: Ident,
    /// The source's name (its `let` binding), which its flags and metrics use.
    pub name: &'a str,
    pub args: &'a [Expr],
    /// The record type written as `source::<T>(..)`.
    pub record_type: Option<&'a Type>,
    pub span: Span,
}

impl SourceCode<'_> {
    /// `Source::new(name, address, rest...)`: a receiver-backed source whose address (the
    /// pipeline's `address` expression) the app's `--source name=ADDRESS` can replace.
    pub fn new_source(
        &self,
        source: TokenStream,
        address: TokenStream,
        rest: &[TokenStream],
    ) -> TokenStream {
        let (p, config, name) = (&self.runtime, &self.config, self.name);
        quote_spanned! {self.span=>
            #p::#source::new(
                #name,
                #config.source_address(#name, || #address),
                #(#rest,)*
            )
        }
    }

    /// A source type of the runtime, by its path under `__private`.
    pub fn runtime_type(&self, path: TokenStream) -> TokenStream {
        let p = &self.runtime;
        quote!(#p::#path)
    }
}

/// The initial state of a keyed state operator, as a function the runtime calls once, on a fresh
/// start: the user's `initial = pairs`, or none (`std::iter::empty`, typed by the operator).
fn initial_state(node: &crate::graph::Node) -> TokenStream {
    match &node.initial_state {
        // A closure, so that the pairs are only computed on a fresh start; `initial = load()` would
        // otherwise make clippy call it redundant in the user's crate.
        Some(pairs) => quote_spanned! {node.span=> {
            #[allow(clippy::redundant_closure)]
            let initial = || #pairs;
            initial
        }},
        None => quote!(::std::iter::empty),
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    #[test]
    fn a_sound_pipeline_becomes_its_module_and_a_faulty_one_a_placeholder_beside_its_errors() {
        let sound = crate::expand(quote! {
            app wc { batch: 1s }
            let lines = socket_text_stream("localhost", 9999);
            lines.map(|line: &str| line.len()).print();
        })
        .to_string();
        assert!(sound.contains("pub mod wc"), "{sound}");
        assert!(sound.contains("Pipeline for Pipeline"), "{sound}");
        assert!(sound.contains("fn run_batch"), "{sound}");
        assert!(!sound.contains("compile_error"), "{sound}");

        let faulty = crate::expand(quote! {
            app wc { batch: 1s }
            let lines = socket_text_stream("localhost", 9999);
            lines.prnt();
            nowhere.print();
        })
        .to_string();
        assert_eq!(faulty.matches("compile_error").count(), 2, "{faulty}");
        assert!(faulty.contains("pub mod wc"), "{faulty}");
        assert!(faulty.contains("InvalidPipeline"), "{faulty}");
        assert!(!faulty.contains("fn run_batch"), "{faulty}");
    }
}
