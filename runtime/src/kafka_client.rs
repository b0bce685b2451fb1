//! What every Kafka client of an app shares: the user's librdkafka properties (security, timeouts,
//! compression...), the keys the engine keeps for itself, and librdkafka's own log, routed through
//! `tracing` with the client named.
//!
//! A source or sink builds each of its clients (group consumer, assign-only readers, producers, the
//! progress reader) with [`client_config`]: its defaults, then the user's properties, then the keys it
//! owns. Those owned keys are refused in the user's properties (see [`KafkaProperties::check`]), each
//! with the streamc setting that does the job, so a property can never silently break offsets,
//! transactions or assignment.

use crate::secret;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Keys the engine sets itself, with what to use instead.
pub const ENGINE_OWNED: &[(&str, &str)] = &[
    ("bootstrap.servers", "the brokers are the source's or sink's address: write them in the pipeline or move them with --source NAME=BROKERS or --sink NAME=BROKERS"),
    ("metadata.broker.list", "the brokers are the source's or sink's address: write them in the pipeline or move them with --source NAME=BROKERS or --sink NAME=BROKERS"),
    ("group.id", "set the consumer group with --kafka-group or `group` in [kafka]"),
    ("enable.auto.commit", "streamc commits offsets only once their batch is complete: use --kafka-commit or `commit` in [kafka]"),
    ("enable.auto.offset.store", "streamc commits offsets only once their batch is complete: use --kafka-commit or `commit` in [kafka]"),
    ("auto.offset.reset", "choose where partitions start with --kafka-start (committed, earliest, latest) or --kafka-start-offset"),
    ("isolation.level", "a direct source reads exactly the offset ranges its batches name, and the sink reads its progress read_committed; for exactly-once output use KafkaTopic::transactional() in the pipeline"),
    ("transactional.id", "use KafkaTopic::transactional() in the pipeline: streamc names each producer's transactional id after the app, the output and the partition"),
    ("enable.idempotence", "streamc's Kafka producers are always idempotent"),
    ("partition.assignment.strategy", "the direct source assigns every partition itself, one offset range per batch; the receiver's group uses librdkafka's default"),
    ("group.protocol", "the direct source assigns every partition itself, one offset range per batch; the receiver's group uses librdkafka's default"),
    ("enable.partition.eof", "the sources read up to offsets they computed and do not use end-of-partition events"),
];

/// Whether a property's value is a secret, to be registered for redaction and never shown:
/// `sasl.password`, `ssl.key.password`, `ssl.keystore.password`, `sasl.oauthbearer.client.secret`,
/// a PEM private key, the OAUTHBEARER configuration.
pub fn is_secret(key: &str) -> bool {
    key.contains("password")
        || key.contains("secret")
        || matches!(key, "ssl.key.pem" | "sasl.oauthbearer.config")
}

/// librdkafka properties as the user gave them (values unexpanded: `${NAME}` and `@/path` are
/// read when a client is made). Later layers override earlier ones with [`KafkaProperties::overridden_by`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties {
    entries: BTreeMap<String, String>,
}

impl KafkaProperties {
    /// No properties.
    pub fn new() -> Self {
        Self::default()
    }

    /// The table named `name` of per-source or per-sink tables (`[sources.NAME.properties]`); none
    /// when there is no such table.
    pub fn of(tables: &BTreeMap<String, BTreeMap<String, String>>, name: &str) -> Self {
        tables
            .get(name)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// With `key = value` added (replacing an earlier value).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set(key, value);
        self
    }

    /// Sets `key = value`.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.entries.insert(key.into(), value.into());
    }

    /// These properties with `other`'s on top.
    pub fn overridden_by(&self, other: &KafkaProperties) -> KafkaProperties {
        let mut merged = self.clone();
        merged
            .entries
            .extend(other.entries.iter().map(|(k, v)| (k.clone(), v.clone())));
        merged
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The keys and their values as given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Refuses keys the engine owns; `whose` names where they were given (`[kafka.properties]`).
    pub fn check(&self, whose: &str) -> Result<(), String> {
        for key in self.entries.keys() {
            if let Some((_, instead)) = ENGINE_OWNED.iter().find(|(owned, _)| owned == key) {
                return Err(format!(
                    "{whose}: the Kafka property `{key}` is set by streamc itself: {instead}"
                ));
            }
        }
        Ok(())
    }

    /// The properties ready for a client: owned keys refused, `${NAME}` and `@/path` expanded, secret
    /// values registered for redaction, and every key and value checked by librdkafka (an error names
    /// the key and librdkafka's reason).
    pub fn resolved(&self, whose: &str) -> Result<Vec<(String, String)>, String> {
        self.check(whose)?;
        let mut resolved = Vec::with_capacity(self.entries.len());
        for (key, value) in &self.entries {
            let expanded = secret::expand(value, &format!("{whose}: Kafka property `{key}`"))?;
            if is_secret(key) || expanded != *value {
                secret::register(&expanded);
            }
            resolved.push((key.clone(), expanded));
        }
        let mut config = ClientConfig::new();
        for (key, value) in &resolved {
            config.set(key, value);
        }
        config
            .create_native_config()
            .map_err(|e| format!("{whose}: {}", describe(&e)))?;
        Ok(resolved)
    }
}

impl std::fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| {
                let shown = if is_secret(k) {
                    secret::MASK
                } else {
                    v.as_str()
                };
                (k, shown)
            }))
            .finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for KafkaProperties {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut properties = KafkaProperties::new();
        for (key, value) in iter {
            properties.set(key, value);
        }
        properties
    }
}

/// A Kafka error in words for the app's errors: a configuration error names its property (without
/// its value, which may be a secret).
pub fn describe(error: &KafkaError) -> String {
    match error {
        KafkaError::ClientConfig(_, reason, key, _) => {
            format!(
                "the Kafka property `{key}` is refused by librdkafka: {}",
                secret::redact(reason)
            )
        }
        other => secret::redact(&other.to_string()).into_owned(),
    }
}

/// A client's configuration: `bootstrap.servers`, the client's `defaults`, the user's resolved
/// `properties` over them, then the keys the client `owns` over everything. librdkafka's log level
/// follows what `tracing` lets through for the `librdkafka` target.
pub fn client_config(
    brokers: &str,
    defaults: &[(&str, &str)],
    properties: &[(String, String)],
    owns: &[(&str, &str)],
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in defaults {
        config.set(*key, *value);
    }
    for (key, value) in properties {
        config.set(key, value);
    }
    for (key, value) in owns {
        config.set(*key, *value);
    }
    let level = if tracing::enabled!(target: "librdkafka", tracing::Level::DEBUG) {
        RDKafkaLogLevel::Debug
    } else if tracing::enabled!(target: "librdkafka", tracing::Level::INFO) {
        RDKafkaLogLevel::Info
    } else {
        RDKafkaLogLevel::Warning
    };
    config.set_log_level(level);
    config
}

/// A client's context: librdkafka's log lines and errors become `tracing` events (target
/// `librdkafka`, fields `client` and `broker`), and the last TLS or authentication failure is kept so
/// that a source or sink can report why it cannot connect.
#[derive(Clone)]
pub struct ClientLog {
    client: Arc<str>,
    security_failure: Arc<Mutex<Option<String>>>,
}

impl ClientLog {
    /// The context of the client named `client` (`source words`, `sink counts producer 0`).
    pub fn new(client: impl Into<String>) -> Self {
        Self {
            client: Arc::from(client.into()),
            security_failure: Arc::default(),
        }
    }

    /// The client's name.
    pub fn client(&self) -> &str {
        &self.client
    }

    /// The last TLS or SASL failure librdkafka reported, if any.
    pub fn security_failure(&self) -> Option<String> {
        self.security_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn note_security(&self, message: &str) {
        *self
            .security_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(message.to_string());
    }
}

/// Whether a librdkafka message reports a failed TLS handshake, certificate check or authentication.
fn is_security_failure(facility: &str, message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    matches!(facility, "SSL" | "SASL" | "SASLAUTH" | "AUTH")
        || lower.contains("ssl handshake failed")
        || lower.contains("certificate verify failed")
        || lower.contains("authentication failed")
        || lower.contains("sasl authentication error")
}

/// librdkafka prefixes a line with the thread that logged it, `[thrd:127.0.0.1:9093/bootstrap]: `
/// (`ssl://` before the host when the connection is TLS): a broker thread's name is the broker. The
/// broker, if any, and the message without the prefix.
fn split_broker(message: &str) -> (&str, &str) {
    let Some(rest) = message.strip_prefix("[thrd:") else {
        return ("", message);
    };
    let Some((thread, text)) = rest.split_once("]: ") else {
        return ("", message);
    };
    let broker = if thread.contains('/') { thread } else { "" };
    (broker, text)
}

impl ClientContext for ClientLog {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let message = secret::redact(message);
        let (broker, message) = split_broker(&message);
        let client = &*self.client;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", client, broker, facility, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", client, broker, facility, "{message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", client, broker, facility, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", client, broker, facility, "{message}")
            }
        }
        let serious = matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
                | RDKafkaLogLevel::Warning
        );
        if serious && is_security_failure(facility, message) {
            self.note_security(message);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let reason = secret::redact(reason);
        let (broker, reason) = split_broker(&reason);
        let client = &*self.client;
        tracing::error!(target: "librdkafka", client, broker, "{error}: {reason}");
        let security = matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::SSL) | Some(RDKafkaErrorCode::Authentication)
        );
        if security || is_security_failure("", reason) {
            self.note_security(reason);
        }
    }
}

impl ConsumerContext for ClientLog {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_keys_are_refused_with_the_setting_to_use() {
        let properties = KafkaProperties::new()
            .with("security.protocol", "ssl")
            .with("enable.auto.commit", "true");
        let refused = properties.check("[kafka.properties]").unwrap_err();
        assert!(refused.contains("[kafka.properties]"), "{refused}");
        assert!(refused.contains("`enable.auto.commit`"), "{refused}");
        assert!(refused.contains("--kafka-commit"), "{refused}");
    }

    #[test]
    fn librdkafka_checks_keys_and_values_and_the_error_names_the_key() {
        let unknown = KafkaProperties::new()
            .with("no.such.property", "1")
            .resolved("source `s`")
            .unwrap_err();
        assert!(unknown.contains("`no.such.property`"), "{unknown}");
        assert!(unknown.contains("source `s`"), "{unknown}");
        let bad_value = KafkaProperties::new()
            .with("security.protocol", "carrier-pigeon")
            .resolved("x")
            .unwrap_err();
        assert!(bad_value.contains("`security.protocol`"), "{bad_value}");
        let fine = KafkaProperties::new()
            .with("security.protocol", "sasl_ssl")
            .with("sasl.mechanism", "SCRAM-SHA-512")
            .with("compression.type", "zstd")
            .resolved("x")
            .unwrap();
        assert_eq!(fine.len(), 3);
    }

    #[test]
    fn secret_values_are_expanded_registered_and_never_debug_printed() {
        std::env::set_var("STREAMC_KAFKA_CLIENT_TEST_PASSWORD", "scram-pass-1234");
        let properties = KafkaProperties::new()
            .with("sasl.username", "app")
            .with("sasl.password", "${STREAMC_KAFKA_CLIENT_TEST_PASSWORD}");
        let resolved = properties.resolved("x").unwrap();
        assert!(resolved
            .iter()
            .any(|(k, v)| k == "sasl.password" && v == "scram-pass-1234"));
        assert_eq!(
            secret::redact("auth as app with scram-pass-1234"),
            "auth as app with ***"
        );
        let shown = format!(
            "{:?}",
            KafkaProperties::new().with("sasl.password", "literal-pw-9")
        );
        assert!(!shown.contains("literal-pw-9"), "{shown}");
    }

    #[test]
    fn later_layers_win() {
        let base = KafkaProperties::new().with("a", "1").with("b", "1");
        let top = KafkaProperties::new().with("b", "2");
        let merged: Vec<_> = base
            .overridden_by(&top)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(merged, ["a=1", "b=2"]);
    }

    #[test]
    fn security_failures_are_recognised() {
        assert!(is_security_failure(
            "FAIL",
            "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed"
        ));
        assert!(!is_security_failure(
            "FAIL",
            "Connect to ipv4#127.0.0.1:1 failed: Connection refused"
        ));
        assert_eq!(
            split_broker("[thrd:ssl://127.0.0.1:9093/bootstrap]: ssl://127.0.0.1:9093/bootstrap: SSL handshake failed"),
            ("ssl://127.0.0.1:9093/bootstrap", "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed")
        );
        assert_eq!(split_broker("[thrd:main]: Starting"), ("", "Starting"));
        assert_eq!(split_broker("plain"), ("", "plain"));
    }
}
