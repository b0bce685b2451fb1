//! Word count over MQTT with an app-written receiver (`examples/mqtt/receiver.rs`, built only on the
//! public `streamc::source::Receiver` trait): QoS 1 messages on topic `words` of the broker at
//! `MQTT_BROKER` (default 127.0.0.1:1883), acknowledged once stored. With `--wal` nothing the broker
//! delivered is lost in a crash.
//!
//!     cargo run --release --example mqtt_word_count -- --wal
//!     mosquitto_pub -h 127.0.0.1 -t words -q 1 -m "to be or not to be"

#[path = "mqtt/receiver.rs"]
mod receiver;

use receiver::{MqttMessage, MqttReceiver};
use streamc::prelude::*;

/// The broker's address, the topic and the client id (the broker keeps the session under it).
fn broker() -> (String, String, String) {
    let var =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_string());
    (
        var("MQTT_BROKER", "127.0.0.1:1883"),
        var("MQTT_TOPIC", "words"),
        var("MQTT_CLIENT_ID", "streamc-mqtt-word-count"),
    )
}

fn mqtt() -> MqttReceiver {
    let (broker, topic, client_id) = broker();
    MqttReceiver::new(broker, topic, client_id)
}

stream! {
    app mqtt_word_count { batch: 1s, workers: 2, checkpoint: "checkpoints/mqtt_word_count" }

    let messages = receiver_stream::<MqttReceiver>(crate::mqtt());
    let counts = messages
        .flat_map(|message: &MqttMessage| message.text().split_whitespace())
        .map(|word| (word.to_string(), 1u64))
        .reduce_by_key(|a, b| a + b);
    counts.print();
}

fn main() -> std::process::ExitCode {
    mqtt_word_count::app().main()
}
