//! An MQTT receiver written only against streamc's public `Receiver` trait: it subscribes at QoS 1
//! with a persistent session and acknowledges each message only once the block holding it is
//! stored (under `--wal`: written and fsynced to the write-ahead log), so a crash or a broker outage
//! makes the broker send again what was not stored — a reliable receiver.

use rumqttc::{Client, Connection, Event, MqttOptions, Packet, Publish, QoS, RecvTimeoutError};
use serde::{Deserialize, Serialize};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use streamc::source::{Receiver, ReceiverContext};

/// One MQTT message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MqttMessage {
    pub topic: String,
    pub payload: Vec<u8>,
}

impl MqttMessage {
    /// The payload as text; `""` if it is not UTF-8.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.payload).unwrap_or("")
    }
}

/// Subscribes to `topic` on the broker at `host:port` as client `client_id`. The session outlives
/// the connection (clean session off), so messages published while the receiver is away wait on
/// the broker; keep the client id the same across restarts.
pub struct MqttReceiver {
    broker: String,
    topic: String,
    client_id: String,
    running: Option<(Client, JoinHandle<()>)>,
}

impl MqttReceiver {
    pub fn new(
        broker: impl Into<String>,
        topic: impl Into<String>,
        client_id: impl Into<String>,
    ) -> Self {
        Self {
            broker: broker.into(),
            topic: topic.into(),
            client_id: client_id.into(),
            running: None,
        }
    }
}

/// Messages are stored once this many have arrived, or when none arrived for a poll, or when the
/// oldest has waited this long: whichever comes first.
const BLOCK_MESSAGES: usize = 1000;
const BLOCK_WAIT: Duration = Duration::from_millis(50);
const POLL: Duration = Duration::from_millis(20);

impl Receiver for MqttReceiver {
    type Record = MqttMessage;

    fn on_start(&mut self, ctx: &ReceiverContext<MqttMessage>) -> Result<(), String> {
        let (host, port) = self
            .broker
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host.to_string(), port.parse::<u16>().ok()?)))
            .ok_or_else(|| format!("broker address `{}` is not HOST:PORT", self.broker))?;
        let mut options = MqttOptions::new(self.client_id.clone(), host, port);
        options
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(5));
        // Room for a whole block's acknowledgements without waiting on the event loop, which is
        // driven by the same thread that queues them.
        let (client, connection) = Client::new(options, 4 * BLOCK_MESSAGES);
        let receiving = Receiving {
            ctx: ctx.clone(),
            client: client.clone(),
            topic: self.topic.clone(),
            broker: self.broker.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("mqtt-{}", ctx.name()))
            .spawn(move || receiving.run(connection))
            .map_err(|e| format!("cannot start the MQTT thread: {e}"))?;
        self.running = Some((client, thread));
        Ok(())
    }

    fn on_stop(&mut self) {
        if let Some((client, thread)) = self.running.take() {
            // The thread sees the context stopped within a poll; what it holds unacknowledged the
            // broker sends again to the next session.
            let _ = thread.join();
            let _ = client.try_disconnect();
        }
    }
}

struct Receiving {
    ctx: ReceiverContext<MqttMessage>,
    client: Client,
    topic: String,
    broker: String,
}

impl Receiving {
    fn run(self, mut connection: Connection) {
        let mut pending: Vec<Publish> = Vec::new();
        let mut oldest = Instant::now();
        let mut backoff = Duration::from_millis(100);
        while !self.ctx.is_stopped() {
            let idle = match connection.recv_timeout(POLL) {
                Ok(Ok(Event::Incoming(Packet::Publish(message)))) => {
                    if pending.is_empty() {
                        oldest = Instant::now();
                    }
                    pending.push(message);
                    false
                }
                Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                    self.ctx.report_connected();
                    backoff = Duration::from_millis(100);
                    // A new session (first start, or a broker that lost its state) has no
                    // subscription yet.
                    if !ack.session_present {
                        if let Err(e) = self
                            .client
                            .try_subscribe(self.topic.as_str(), QoS::AtLeastOnce)
                        {
                            self.ctx
                                .report_error(format!("cannot subscribe to {}: {e}", self.topic));
                        }
                    }
                    false
                }
                Ok(Ok(_)) => false,
                Ok(Err(e)) => {
                    // Not acknowledged, so the broker sends these again on the next connection.
                    pending.clear();
                    self.ctx
                        .report_error(format!("MQTT connection to {} failed: {e}", self.broker));
                    if !self.ctx.sleep(backoff) {
                        return;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => true,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let due = idle || pending.len() >= BLOCK_MESSAGES || oldest.elapsed() >= BLOCK_WAIT;
            if !pending.is_empty() && due {
                let records = pending
                    .iter()
                    .map(|p| MqttMessage {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                    })
                    .collect();
                if self.ctx.store_block(records).is_err() {
                    // Not stored, so not acknowledged.
                    return;
                }
                for message in pending.drain(..) {
                    if let Err(e) = self.client.try_ack(&message) {
                        self.ctx
                            .report_error(format!("cannot acknowledge a message: {e}"));
                    }
                }
            }
        }
    }
}
