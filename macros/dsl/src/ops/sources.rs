//! Sources: the functions that start a chain. Each names the runtime type that reads it and writes
//! the expression that builds one from the app's configuration.

use crate::codegen::SourceCode;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

/// Reads a source's type from its arguments, when they show it.
pub type TypeFromArgs = fn(&[syn::Expr]) -> Option<syn::Type>;

/// A source (called as a function).
pub struct SourceDef {
    pub name: &'static str,
    /// Fewest and most arguments.
    pub args: (usize, usize),
    pub signature: &'static str,
    /// The records it gives, for the reference.
    pub records: &'static str,
    pub summary: &'static str,
    /// Spark Streaming's name for it.
    pub spark: Option<&'static str>,
    /// The runtime's cargo feature an app using it needs.
    pub feature: Option<&'static str>,
    /// Whether `--demo` can feed it from a local line generator (it reads text lines from an
    /// address).
    pub demo: bool,
    /// Whether a type must be written (`queue_stream::<T>(...)`) or found by `type_from_args`:
    /// nothing else tells it.
    pub needs_record_type: bool,
    /// What that type is, for the error that asks for it ("record type").
    pub type_param: &'static str,
    /// Reads the type from the arguments when it is not written: the receiver of
    /// `receiver_stream(MyReceiver::new(..))`.
    pub type_from_args: Option<TypeFromArgs>,
    /// The Rust type of the source, one field of the pipeline's `Sources` tuple.
    pub rust_type: fn(&SourceCode) -> TokenStream,
    /// The expression building the source in `Pipeline::build`.
    pub build: fn(&SourceCode) -> TokenStream,
}

pub const SOURCES: &[SourceDef] = &[
    SourceDef {
        name: "socket_text_stream",
        args: (2, 2),
        signature: "socket_text_stream(host, port)",
        records: "`&str`, one per line",
        summary:
            "Lines read from a TCP server by a receiver that reconnects with backoff; invalid \
                  UTF-8 and over-long lines are counted and skipped; backpressure through a memory \
                  budget.",
        spark: Some("socketTextStream"),
        feature: None,
        demo: true,
        needs_record_type: false,
        type_param: "record type",
        type_from_args: None,
        rust_type: |code| code.runtime_type(quote!(SocketTextSource)),
        build: socket_text_stream,
    },
    SourceDef {
        name: "queue_stream",
        args: (1, 1),
        signature: "queue_stream::<T>(batches)",
        records: "`&T`",
        summary: "Spark's test source: one `Vec<T>` per batch, in order; empty batches once \
                  drained.",
        spark: Some("queueStream"),
        feature: None,
        demo: false,
        needs_record_type: true,
        type_param: "record type",
        type_from_args: None,
        rust_type: |code| {
            let record = code.record_type;
            code.runtime_type(quote!(QueueSource<#record>))
        },
        build: queue_stream,
    },
    SourceDef {
        name: "kafka_direct_stream",
        args: (2, 3),
        signature: "kafka_direct_stream(\"host:9092\", [\"topic\"]) or kafka_direct_stream(\"host:9092\", [\"topic\"], [(\"security.protocol\", \"ssl\")])",
        records: "`&KafkaRecord`",
        summary: "Spark's direct approach: each batch reads a range of offsets per partition, the \
                  ranges checkpointed with the state, so a restart reads them again exactly. The \
                  optional third argument: librdkafka properties fixed in code, under the \
                  configured ones.",
        spark: Some("KafkaUtils.createDirectStream"),
        feature: Some("kafka"),
        demo: false,
        needs_record_type: false,
        type_param: "record type",
        type_from_args: None,
        rust_type: |code| code.runtime_type(quote!(KafkaDirectSource)),
        build: kafka_direct_stream,
    },
    SourceDef {
        name: "kafka_receiver_stream",
        args: (2, 3),
        signature: "kafka_receiver_stream(\"host:9092\", [\"topic\"]) or kafka_receiver_stream(\"host:9092\", [\"topic\"], [(\"key\", \"value\")])",
        records: "`&KafkaRecord`",
        summary: "Spark's receiver approach: a consumer group member stores what it reads in the \
                  write-ahead log and commits offsets once it is there. The optional third \
                  argument: librdkafka properties fixed in code.",
        spark: Some("KafkaUtils.createStream"),
        feature: Some("kafka"),
        demo: false,
        needs_record_type: false,
        type_param: "record type",
        type_from_args: None,
        rust_type: |code| {
            let p = &code.runtime;
            quote!(#p::ReceiverSource<#p::KafkaReceiver>)
        },
        build: kafka_receiver_stream,
    },
    SourceDef {
        name: "text_file_stream",
        args: (1, 2),
        signature: "text_file_stream(directory) or text_file_stream(directory, \"*.log\")",
        records: "`&str`, one per line",
        summary: "The lines of each new file moved into a directory (optionally matching a \
                  pattern), each file read once across restarts.",
        spark: Some("textFileStream"),
        feature: None,
        demo: false,
        needs_record_type: false,
        type_param: "record type",
        type_from_args: None,
        rust_type: |code| code.runtime_type(quote!(TextFileSource)),
        build: text_file_stream,
    },
    SourceDef {
        name: "socket_stream",
        args: (3, 3),
        signature: "socket_stream::<T>(host, port, |input: &mut dyn std::io::BufRead| -> std::io::Result<Option<T>> { .. })",
        records: "`&T`",
        summary: "Records of any protocol read from a TCP server: the converter reads one record \
                  from the connection (`Ok(None)` at its end); an error or the end of the stream \
                  reconnects with backoff. `T` must be serde-serializable (for the write-ahead \
                  log).",
        spark: Some("socketStream"),
        feature: None,
        demo: false,
        needs_record_type: true,
        type_param: "record type",
        type_from_args: None,
        rust_type: |code| {
            let (p, record) = (&code.runtime, code.record_type);
            quote!(#p::ReceiverSource<#p::SocketRecords<#record>>)
        },
        build: socket_stream,
    },
    SourceDef {
        name: "receiver_stream",
        args: (1, 1),
        signature: "receiver_stream(MyReceiver::new(..)) or receiver_stream::<MyReceiver>(make_receiver())",
        records: "`&R::Record`",
        summary: "The app's own receiver (a type implementing `streamc::source::Receiver`), run \
                  like the built-in ones: rate limits, backpressure, the memory budget, the \
                  write-ahead log, restarts, monitoring and the graceful stop apply.",
        spark: Some("receiverStream"),
        feature: None,
        demo: false,
        needs_record_type: true,
        type_param: "receiver type",
        type_from_args: Some(receiver_type),
        rust_type: |code| {
            let receiver = code.record_type;
            code.runtime_type(quote!(ReceiverSource<#receiver>))
        },
        build: receiver_stream,
    },
];

/// The receiver's type, read from the expression that makes it: the path before the function of
/// `Type::new(..)`, a tuple struct's constructor (`Type(..)`, capitalized), or the type of a struct
/// literal. A call of a plain function says nothing about its type.
fn receiver_type(args: &[syn::Expr]) -> Option<syn::Type> {
    let path = match args.first()? {
        syn::Expr::Call(call) => match &*call.func {
            syn::Expr::Path(p) if p.qself.is_none() => {
                let mut path = p.path.clone();
                let capitalized = |path: &syn::Path| {
                    path.segments.last().is_some_and(|s| {
                        s.ident
                            .to_string()
                            .starts_with(|c: char| c.is_ascii_uppercase())
                    })
                };
                if !capitalized(&path) {
                    // `Type::new(..)`: the type is what comes before the function, if capitalized
                    // (not a module's function, `receivers::make()`).
                    path.segments.pop();
                    path.segments.pop_punct();
                    if !capitalized(&path) {
                        return None;
                    }
                }
                path
            }
            _ => return None,
        },
        syn::Expr::Struct(s) if s.qself.is_none() => s.path.clone(),
        _ => return None,
    };
    Some(syn::Type::Path(syn::TypePath { qself: None, path }))
}

fn socket_stream(code: &SourceCode) -> TokenStream {
    let (host, port, converter) = (&code.args[0], &code.args[1], &code.args[2]);
    let (p, config, name, record, span) = (
        &code.runtime,
        &code.config,
        code.name,
        code.record_type,
        code.span,
    );
    quote_spanned! {span=>
        #p::ReceiverSource::new(
            #name,
            #p::SocketRecords::<#record>::new(
                #config.source_address(#name, || ::std::format!("{}:{}", #host, #port)),
                #converter,
                #config.socket.clone(),
            ),
            #config.receiver_options(),
        )
    }
}

fn receiver_stream(code: &SourceCode) -> TokenStream {
    let (p, config, name, span) = (&code.runtime, &code.config, code.name, code.span);
    let receiver = &code.args[0];
    quote_spanned! {span=>
        #p::ReceiverSource::new(#name, #receiver, #config.receiver_options())
    }
}

fn socket_text_stream(code: &SourceCode) -> TokenStream {
    let (host, port, config) = (&code.args[0], &code.args[1], &code.config);
    code.new_source(
        quote!(SocketTextSource),
        quote!(::std::format!("{}:{}", #host, #port)),
        &[quote!(#config.socket.clone())],
    )
}

fn queue_stream(code: &SourceCode) -> TokenStream {
    let SourceCode {
        runtime: p,
        name,
        span,
        record_type,
        ..
    } = code;
    let batches = &code.args[0];
    quote_spanned!(*span=> #p::QueueSource::<#record_type>::new(#name, #batches))
}

fn kafka_direct_stream(code: &SourceCode) -> TokenStream {
    let (brokers, topics, options) = kafka_arguments(code);
    code.new_source(quote!(KafkaDirectSource), brokers, &[topics, options])
}

fn kafka_receiver_stream(code: &SourceCode) -> TokenStream {
    let (p, config, name) = (&code.runtime, &code.config, code.name);
    let (brokers, topics, options) = kafka_arguments(code);
    quote_spanned! {code.span=>
        #p::ReceiverSource::new(
            #name,
            #p::KafkaReceiver::new(#config.source_address(#name, || #brokers), #topics, #options),
            #config.receiver_options(),
        )
    }
}

/// A Kafka source's brokers (movable by `--source name=...`), its `topics` (any iterable of
/// displayable names, read into the `Vec<String>` the sources take) and its options: from the app's
/// configuration, over the properties of the third argument (pairs of strings), if any.
fn kafka_arguments(code: &SourceCode) -> (TokenStream, TokenStream, TokenStream) {
    let (brokers, topics, config, name) = (&code.args[0], &code.args[1], &code.config, code.name);
    let options = match code.args.get(2) {
        Some(properties) => quote_spanned! {code.span=>
            #config.kafka_options(#name).with_code_properties(#properties)
        },
        None => quote!(#config.kafka_options(#name)),
    };
    let topics = quote_spanned! {code.span=>
        ::std::iter::IntoIterator::into_iter(#topics).map(|topic| ::std::string::ToString::to_string(&topic)).collect()
    };
    (
        quote!(::std::string::ToString::to_string(&#brokers)),
        topics,
        options,
    )
}

fn text_file_stream(code: &SourceCode) -> TokenStream {
    let (dir, p, config) = (&code.args[0], &code.runtime, &code.config);
    let pattern = match code.args.get(1) {
        Some(pattern) => {
            quote!(::core::option::Option::Some(::std::string::ToString::to_string(&#pattern)))
        }
        None => quote!(::core::option::Option::None),
    };
    code.new_source(
        quote!(TextFileSource),
        quote!(::std::string::ToString::to_string(&#dir)),
        &[quote! {
            #p::FileOptions {
                pattern: #pattern,
                max_line_bytes: #config.socket.max_line_bytes,
                remember: #config.files_remember,
                include_existing: #config.files_include_existing,
                storage: ::core::clone::Clone::clone(&#config.storage),
                ..::core::default::Default::default()
            }
        }],
    )
}
