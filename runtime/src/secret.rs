//! Secrets in settings: references expanded at start, and every secret kept out of what the app
//! prints or serves.
//!
//! A sink URL or a Kafka property may say `${NAME}` (an environment variable) or start with `@`
//! (`@/run/secrets/kafka-password`: a file's contents, without its trailing newline), so a password
//! never has to be on the command line, in the config file or in the process list. `$${` and a
//! leading `@@` stand for a literal `${` and `@`.
//!
//! Every value that is a secret (a URL's password, a Kafka property such as `sasl.password`,
//! whatever a reference expanded to in those places) is registered here; [`redact`] replaces each
//! registered secret by `***`, and the log writer, the error printer, `/metrics` and `/api/v1` pass
//! their text through it. A redaction list rather than careful formatting everywhere: a secret
//! reaching a librdkafka log line or a driver's error message is caught too.

use std::borrow::Cow;
use std::sync::{OnceLock, RwLock};

/// Secrets shorter than this are not registered: replacing every `ab` in the logs would hide more
/// than it protects, and a two-character password is not a secret anyway.
pub const MIN_REDACTED_LEN: usize = 4;

/// What replaces a secret.
pub const MASK: &str = "***";

fn registry() -> &'static RwLock<Vec<String>> {
    static SECRETS: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| RwLock::new(Vec::new()))
}

/// Expands `${NAME}` references and a leading `@path` in `value`; `what` names the setting in errors
/// (`` sink `counts` URL ``, `` Kafka property `sasl.password` ``). The error never contains the value.
pub fn expand(value: &str, what: &str) -> Result<String, String> {
    if let Some(literal) = value.strip_prefix("@@") {
        return Ok(format!("@{literal}"));
    }
    if let Some(path) = value.strip_prefix('@') {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{what}: cannot read the secret file `{path}`: {e}"))?;
        return Ok(text.strip_suffix('\n').unwrap_or(&text).to_string());
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| format!("{what}: `${{` without a closing `}}`"))?;
            let name = &tail[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "{what}: `${{{name}}}` is not an environment variable name (letters, digits, _)"
                ));
            }
            let expanded = std::env::var(name).map_err(|_| {
                format!("{what}: the environment variable `{name}` is not set (or not UTF-8)")
            })?;
            out.push_str(&expanded);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A URL with its references expanded ([`expand`]) and its password registered for redaction.
pub fn expand_url(url: &str, what: &str) -> Result<String, String> {
    let expanded = expand(url, what)?;
    register_url_password(&expanded);
    Ok(expanded)
}

/// Remembers `secret` so that [`redact`] hides it from now on.
pub fn register(secret: &str) {
    if secret.len() < MIN_REDACTED_LEN {
        return;
    }
    let mut secrets = registry().write().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_string());
        // The longest first, so that a secret containing another is hidden whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Registers the password of a `scheme://user:password@host/...` URL, if it has one; URL-encoded
/// and decoded forms both, since drivers may print either.
pub fn register_url_password(url: &str) {
    if let Some((start, end)) = password_span(url) {
        let password = &url[start..end];
        register(password);
        register(&percent_decode(password));
    }
}

/// `text` with every registered secret, and any URL password, replaced by `***`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let secrets = registry().read().unwrap_or_else(|e| e.into_inner());
    let mut out = Cow::Borrowed(text);
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), MASK));
        }
    }
    drop(secrets);
    if out.contains("://") {
        out = Cow::Owned(redact_urls(&out));
    }
    out
}

/// A URL with its password, if any, replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match password_span(url) {
        Some((start, end)) => format!("{}{MASK}{}", &url[..start], &url[end..]),
        None => url.to_string(),
    }
}

/// Every `scheme://user:password@` in free text, with the password hidden.
fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, url) = rest.split_at(at);
        out.push_str(before);
        let end = url
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '`')
            .unwrap_or(url.len());
        out.push_str(&redact_url(&format!("x{}", &url[..end]))[1..]);
        rest = &url[end..];
    }
    out.push_str(rest);
    out
}

/// Where the password of `scheme://user:password@host` is, as a byte range.
fn password_span(url: &str) -> Option<(usize, usize)> {
    let authority_start = url.find("://")? + 3;
    let authority_end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| authority_start + i);
    let authority = &url[authority_start..authority_end];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    let (start, end) = (authority_start + colon + 1, authority_start + at);
    (start < end).then_some((start, end))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' {
            if let (Some(high), Some(low)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_references_expand_and_missing_ones_name_the_variable() {
        std::env::set_var("STREAMC_SECRET_TEST_A", "s3cr3t");
        assert_eq!(
            expand("pw=${STREAMC_SECRET_TEST_A}!", "x").unwrap(),
            "pw=s3cr3t!"
        );
        assert_eq!(
            expand("cost $5 and $${HOME}", "x").unwrap(),
            "cost $5 and ${HOME}"
        );
        let missing = expand("${STREAMC_SECRET_TEST_MISSING}", "sink `t` URL").unwrap_err();
        assert!(missing.contains("sink `t` URL"), "{missing}");
        assert!(missing.contains("STREAMC_SECRET_TEST_MISSING"), "{missing}");
        assert!(expand("${unclosed", "x").unwrap_err().contains("closing"));
        assert!(expand("${a-b}", "x")
            .unwrap_err()
            .contains("not an environment"));
    }

    #[test]
    fn file_references_read_the_file_without_its_newline() {
        let dir = std::env::temp_dir().join(format!("streamc-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "from-a-file\n").unwrap();
        assert_eq!(
            expand(&format!("@{}", file.display()), "x").unwrap(),
            "from-a-file"
        );
        assert_eq!(expand("@@literal", "x").unwrap(), "@literal");
        let unreadable = expand("@/nonexistent/streamc/secret", "Kafka property `p`").unwrap_err();
        assert!(
            unreadable.contains("/nonexistent/streamc/secret"),
            "{unreadable}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn registered_secrets_and_url_passwords_are_masked() {
        register("hunter2-registered");
        register("ab");
        let text = "login failed for hunter2-registered at ab";
        assert_eq!(redact(text), "login failed for *** at ab");
        assert_eq!(
            redact("cannot reach postgres://app:pa%40ss@db:5432/test now"),
            "cannot reach postgres://app:***@db:5432/test now"
        );
        assert_eq!(
            redact_url("mysql://root@127.0.0.1/test"),
            "mysql://root@127.0.0.1/test"
        );
        register_url_password("postgres://u:p%40ssw0rd@h/db");
        assert_eq!(
            redact("the password p@ssw0rd was wrong"),
            "the password *** was wrong"
        );
        assert!(matches!(redact("nothing to hide"), Cow::Borrowed(_)));
    }
}
