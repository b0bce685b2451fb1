//! `socket_stream`: records of any protocol read from a TCP server by a converter the app gives
//! (Spark's `socketStream(host, port, converter)`), for protocols that are not lines of text.
//!
//! Built on the public [`Receiver`] trait, as an app's own receiver would be: a thread connects and
//! calls the converter on a buffered reader of the connection, storing each record it returns. A
//! refused connection, a read error, a converter error (a malformed frame: nothing after it can be
//! trusted) or the end of the stream restarts the receiver, which reconnects after a delay that
//! doubles from `reconnect_min` up to `reconnect_max` while connecting keeps failing.

use super::custom::{Receiver, ReceiverContext};
use super::SocketOptions;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::BufRead;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Reads the next record from the connection: `Ok(None)` at the end of the stream, an error for
/// data it cannot read (the connection is then dropped and made again).
pub type Converter<T> = fn(&mut dyn BufRead) -> std::io::Result<Option<T>>;

/// A receiver of records read from `host:port` by a [`Converter`].
pub struct SocketRecords<T> {
    address: String,
    converter: Converter<T>,
    options: SocketOptions,
    /// Failed connection attempts in a row, for the backoff.
    failures: Arc<AtomicU32>,
    /// The connection being read, so that a stop can shut it down under a blocked read.
    connection: Arc<Mutex<Option<TcpStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl<T> SocketRecords<T> {
    /// A receiver for `address` (`host:port`) reading records with `converter`.
    pub fn new(address: String, converter: Converter<T>, options: SocketOptions) -> Self {
        Self {
            address,
            converter,
            options,
            failures: Arc::default(),
            connection: Arc::default(),
            thread: None,
        }
    }

    /// The address the receiver connects to.
    pub fn address(&self) -> &str {
        &self.address
    }
}

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

impl<T: Serialize + DeserializeOwned + Send + 'static> Receiver for SocketRecords<T> {
    type Record = T;

    fn on_start(&mut self, ctx: &ReceiverContext<T>) -> Result<(), String> {
        let (ctx, address, converter) = (ctx.clone(), self.address.clone(), self.converter);
        let (failures, connection) = (self.failures.clone(), self.connection.clone());
        let (first, longest) = (self.options.reconnect_min, self.options.reconnect_max);
        let thread = std::thread::Builder::new()
            .name(format!("streamc-socket-{}", ctx.name()))
            .spawn(move || {
                let stream = match connect(&address) {
                    Ok(stream) => stream,
                    Err(e) => {
                        let failed = failures.fetch_add(1, Ordering::Relaxed);
                        let delay = first.saturating_mul(1 << failed.min(16)).min(longest);
                        ctx.restart(format!("cannot connect to {address}: {e}"), delay);
                        return;
                    }
                };
                failures.store(0, Ordering::Relaxed);
                ctx.report_connected();
                tracing::info!(source = %ctx.name(), %address, "receiver connected");
                match stream.try_clone() {
                    Ok(clone) => {
                        *connection.lock().unwrap_or_else(|p| p.into_inner()) = Some(clone)
                    }
                    Err(e) => {
                        ctx.restart(
                            format!("cannot use the connection to {address}: {e}"),
                            first,
                        );
                        return;
                    }
                }
                let mut reader = std::io::BufReader::with_capacity(256 * 1024, stream);
                while !ctx.is_stopped() {
                    match converter(&mut reader) {
                        Ok(Some(record)) => {
                            if ctx.store(record).is_err() {
                                return;
                            }
                        }
                        Ok(None) => {
                            ctx.restart(format!("{address} closed the connection"), first);
                            return;
                        }
                        Err(_) if ctx.is_stopped() => return,
                        Err(e) => {
                            ctx.restart(format!("cannot read a record from {address}: {e}"), first);
                            return;
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot start the reading thread: {e}"))?;
        self.thread = Some(thread);
        Ok(())
    }

    fn on_stop(&mut self) {
        if let Some(stream) = self
            .connection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            // Ends a read blocked on a quiet peer.
            let _ = stream.shutdown(Shutdown::Both);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn connect(address: &str) -> std::io::Result<TcpStream> {
    let mut last = None;
    for addr in address.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{address} resolves to no address"),
        )
    }))
}
