//! Code generation: a validated [`Graph`] becomes a module with a `Pipeline` type and an `app()` function.
//!
//! Every operator that needs the whole batch (a shuffle, a join, `transform`, an output) is a call to a
//! generic `streamc::exec` function. Narrow operators (`map`, `filter`, `flat_map`, ...) between two such
//! calls are fused into the *stage body* handed to the call: one loop per partition, one user closure call
//! per record and operator, no intermediate collections.

use crate::graph::{live_nodes, Graph, NodeId, NodeKind};
use crate::ops::{Kind, SourceKind};
use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};

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
            // `state_snapshots` is the second result of its `map_with_state`, not a reader of its stream.
            let snapshots = node.operator().is_some_and(|o| o.name == "state_snapshots");
            if live[id] && !snapshots {
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
        let source_types = sources.iter().map(|(_, n)| match &n.kind {
            NodeKind::Source {
                def, record_type, ..
            } => match def.kind {
                SourceKind::SocketText => quote!(#p::SocketTextSource),
                SourceKind::Queue => quote!(#p::QueueSource<#record_type>),
                SourceKind::TextFiles => quote!(#p::TextFileSource),
                SourceKind::KafkaDirect => quote!(#p::KafkaDirectSource),
                SourceKind::KafkaReceiver => quote!(#p::KafkaReceiverSource),
            },
            NodeKind::Op { .. } => unreachable!("sources() yields sources"),
        });
        let source_values = sources.iter().map(|(_, n)| self.source_value(n));
        let source_specs = sources.iter().map(|(_, n)| match &n.kind {
            NodeKind::Source { def, name, .. } => {
                let kind = def.name;
                quote!(#p::SourceSpec { name: #name, kind: #kind })
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

    fn source_value(&self, node: &crate::graph::Node) -> TokenStream {
        let p = quote!(::streamc::__private);
        let config = Ident::new("config", Span::mixed_site());
        let NodeKind::Source {
            def,
            name,
            args,
            record_type,
        } = &node.kind
        else {
            unreachable!("called for sources")
        };
        let span = node.span;
        match def.kind {
            SourceKind::SocketText => {
                let (host, port) = (&args[0], &args[1]);
                quote_spanned! {span=>
                    #p::SocketTextSource::new(
                        #name,
                        #config.source_address(#name, || ::std::format!("{}:{}", #host, #port)),
                        #config.socket.clone(),
                    )
                }
            }
            SourceKind::Queue => {
                let batches = &args[0];
                quote_spanned!(span=> #p::QueueSource::<#record_type>::new(#name, #batches))
            }
            SourceKind::KafkaDirect => {
                let (brokers, topics) = (&args[0], &args[1]);
                quote_spanned! {span=>
                    #p::KafkaDirectSource::new(
                        #name,
                        #config.source_address(#name, || ::std::string::ToString::to_string(&#brokers)),
                        ::std::iter::IntoIterator::into_iter(#topics).map(|topic| ::std::string::ToString::to_string(&topic)).collect(),
                        #config.kafka_options(),
                    )
                }
            }
            SourceKind::KafkaReceiver => {
                let (brokers, topics) = (&args[0], &args[1]);
                quote_spanned! {span=>
                    #p::KafkaReceiverSource::new(
                        #name,
                        #config.source_address(#name, || ::std::string::ToString::to_string(&#brokers)),
                        ::std::iter::IntoIterator::into_iter(#topics).map(|topic| ::std::string::ToString::to_string(&topic)).collect(),
                        #config.kafka_options().group,
                    )
                }
            }
            SourceKind::TextFiles => {
                let dir = &args[0];
                let pattern = match args.get(1) {
                    Some(pattern) => {
                        quote!(::core::option::Option::Some(::std::string::ToString::to_string(&#pattern)))
                    }
                    None => quote!(::core::option::Option::None),
                };
                quote_spanned! {span=>
                    #p::TextFileSource::new(
                        #name,
                        #config.source_address(#name, || ::std::string::ToString::to_string(&#dir)),
                        #p::FileOptions { pattern: #pattern, max_line_bytes: #config.socket.max_line_bytes, ..::core::default::Default::default() },
                    )
                }
            }
        }
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
        self.stage_with(Vec::new(), from)
    }

    /// Like [`Self::stage`], with narrow operators `chain` (innermost last) applied after `from`.
    fn stage_with(&self, mut chain: Vec<NodeId>, from: NodeId) -> (TokenStream, TokenStream) {
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
        let loop_body = self.fuse(&chain, &record, &quote!(#out.push(#record);));
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
        let f = &args[0];
        let op_fn = format_ident!("{}", op.name, span = node.span);
        let exec = &self.exec;
        match op.name {
            "map" | "map_values" => quote! {
                let #record = #exec::op::#op_fn(#record, #f);
                #inner
            },
            "filter" => quote! {
                if #exec::op::#op_fn(&#record, #f) {
                    #inner
                }
            },
            "flat_map" => quote! {
                for #record in #exec::op::#op_fn(#record, #f) {
                    #inner
                }
            },
            "flat_map_values" => {
                let key = Ident::new("key", Span::mixed_site());
                let value = Ident::new("value", Span::mixed_site());
                quote! {
                    let (#key, #value) = #record;
                    for #value in #exec::op::#op_fn(#value, #f) {
                        let #record = (::core::clone::Clone::clone(&#key), #value);
                        #inner
                    }
                }
            }
            other => unreachable!("`{other}` is not narrow"),
        }
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
        if (op.kind == Kind::Narrow && !self.materialized(id)) || op.name == "state_snapshots" {
            return None;
        }
        let exec = &self.exec;
        let stateful = quote!(::streamc::__private::stateful);
        let ctx = &self.ctx;
        let span = node.span;
        let function = format_ident!("{}", op.name, span = span);
        let (root, body) = if op.kind == Kind::Narrow {
            // A narrow operator materialized for its several consumers includes itself in the stage.
            self.stage_with(vec![id], *input)
        } else {
            self.stage(*input)
        };
        let call = match (op.kind, op.name) {
            // `persist`/`cache` materialize the stream once per batch; every consumer then reads that.
            (Kind::Narrow, _) | (_, "persist" | "cache") => {
                quote_spanned!(span=> #exec::collect(#ctx, #root, #body))
            }
            (_, "union" | "join" | "left_outer_join") => {
                let (other_root, other_body) = self.stage(other.expect("stream argument"));
                quote_spanned!(span=> #exec::#function(#ctx, #root, #body, #other_root, #other_body))
            }
            (_, "print") => {
                let n = args
                    .first()
                    .map(|n| quote!(#n))
                    .unwrap_or_else(|| quote!(10));
                quote_spanned!(span=> #exec::print(#ctx, #root, #body, #n))
            }
            (_, "save_as_text_files") => {
                let prefix = &args[0];
                let suffix = args
                    .get(1)
                    .map(|s| quote!(#s))
                    .unwrap_or_else(|| quote!(""));
                quote_spanned!(span=> #exec::save_as_text_files(#ctx, #root, #body, #prefix, #suffix))
            }
            (_, "save_to_sql") => {
                let (url, table) = (&args[0], &args[1]);
                quote_spanned!(span=> #exec::save_to_sql(#ctx, #root, #body, #url, #table))
            }
            (_, "save_to_kafka") => {
                let (brokers, topic) = (&args[0], &args[1]);
                quote_spanned!(span=> #exec::save_to_kafka(#ctx, #root, #body, #brokers, #topic))
            }
            (_, "save_to_rolling_files") => {
                let spec = &args[0];
                quote_spanned!(span=> #exec::save_to_rolling_files(#ctx, #root, #body, #spec))
            }
            (_, "foreach_partition") => {
                let (connect, f) = (&args[0], &args[1]);
                let output = format!("{}.foreach_partition#{id}", self.graph.stream_name(*input));
                quote_spanned!(span=> #exec::foreach_partition(#ctx, #root, #body, #output, #connect, #f))
            }
            (_, "collect") => {
                let name = crate::graph::collect_name(&self.graph.nodes, id);
                quote_spanned!(span=> #exec::collect_output(#ctx, #root, #body, #name))
            }
            (_, "group_by_key" | "count_by_value" | "count") => {
                quote_spanned!(span=> #exec::#function(#ctx, #root, #body))
            }
            (_, "reduce_by_key" | "reduce" | "repartition" | "transform" | "foreach_batch") => {
                let f = &args[0];
                quote_spanned!(span=> #exec::#function(#ctx, #root, #body, #f))
            }
            (_, "update_state_by_key") => {
                let (slot, f) = (node.slot.expect("stateful"), &args[0]);
                let initial = initial_state(node);
                quote_spanned!(span=> #stateful::update_state_by_key(#ctx, &self.state, #slot, #root, #body, #f, #initial))
            }
            (_, "map_with_state") => {
                let (slot, f, timeout) =
                    (node.slot.expect("stateful"), &args[0], node.timeout_millis);
                let mapped = if self.consumers[id] > 0 {
                    self.var(id)
                } else {
                    Ident::new("_", Span::mixed_site())
                };
                let snapshots = self.graph.nodes.iter().enumerate().find(|(s, n)| {
                    self.live[*s]
                        && n.operator().is_some_and(|o| o.name == "state_snapshots")
                        && n.inputs() == [id]
                });
                let (wanted, snapshot_var) = match snapshots {
                    Some((s, _)) => (true, self.var(s)),
                    None => (false, Ident::new("_", Span::mixed_site())),
                };
                let initial = initial_state(node);
                return Some(quote_spanned! {span=>
                    let (#mapped, #snapshot_var) =
                        #stateful::map_with_state(#ctx, &self.state, #slot, #root, #body, #f, #timeout, #wanted, #initial);
                });
            }
            (_, "window") => {
                let slot = node.slot.expect("stateful");
                let w = node.window.expect("window");
                let (length, slide) = (w.length_millis, w.slide_millis);
                quote_spanned!(span=> #stateful::window(#ctx, &self.state, #slot, #root, #body, #length, #slide))
            }
            (_, "reduce_by_key_and_window") => {
                let slot = node.slot.expect("stateful");
                let w = node.window.expect("window");
                let (length, slide) = (w.length_millis, w.slide_millis);
                match &args[..] {
                    [f] => quote_spanned! {span=>
                        #stateful::reduce_by_key_and_window(#ctx, &self.state, #slot, #root, #body, #f, #length, #slide)
                    },
                    [f, inverse, keep @ ..] => {
                        let keep = keep
                            .first()
                            .map(|k| quote!(#k))
                            .unwrap_or_else(|| quote!(|_, _| true));
                        quote_spanned! {span=>
                            #stateful::reduce_by_key_and_window_inv(
                                #ctx, &self.state, #slot, #root, #body, #f, #inverse, #keep, #length, #slide
                            )
                        }
                    }
                    [] => unreachable!("checked when the graph was built"),
                }
            }
            (_, other) => unreachable!("no code generation for `{other}`"),
        };
        if op.kind == Kind::Output {
            // Timed and reported to the listeners under the name `--help` lists it by.
            let name = format!("{}.{}", self.graph.stream_name(*input), op.name);
            let call = quote!(#ctx.run_output(#name, || #call)?);
            // Downstream of a window, outputs run at the window's slide only (as in Spark).
            let slide = self.graph.slides[id];
            if slide > self.graph.app.batch_millis {
                Some(quote!(if #ctx.time.millis().is_multiple_of(#slide) { #call; }))
            } else {
                Some(quote!(#call;))
            }
        } else {
            let var = self.var(id);
            Some(quote!(let #var = #call;))
        }
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
