//! The SQL sink over TLS to real servers, each with a certificate the test's own CA signed: with the
//! CA given (`sslmode=verify-full` for PostgreSQL, `ssl-mode=VERIFY_IDENTITY` for MariaDB) the rows
//! are written; with another CA the app stops at its first write, saying the certificate could not
//! be verified. PostgreSQL here runs with `ssl = on`; MariaDB's TLS is turned on by `.ci/mariadb-tls`.
//! The servers come from `STREAMC_TEST_POSTGRES_URL` and `STREAMC_TEST_MYSQL_URL`; without them the
//! tests say they skip, and under `STREAMC_REQUIRE_SERVICES` they fail instead.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::{have_program, make_certificates, services_required, temp_dir, Certificates};

mod apps {
    use streamc::prelude::*;

    stream! {
        app tls_words { batch: 100ms, workers: 2 }
        let lines = queue_stream::<String>(vec![
            vec!["alpha beta".to_string(), "beta gamma".to_string()],
            vec!["gamma delta".to_string()],
        ]);
        let counts = lines
            .flat_map(|line: &String| line.split(' ').map(str::to_string).collect::<Vec<_>>())
            .map(|w| (w, 1u64))
            .reduce_by_key(|a, b| a + b);
        counts.save_to_sql(
            "sqlite://unused.db",
            SqlTable::new("tls_words")
                .column("word", SqlType::Text(64))
                .column("count", SqlType::BigInt)
                .key(["word"])
                .accumulate(["count"]),
        );
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn execute(url: &str, sql: &str) {
    sqlx::any::install_default_drivers();
    block_on(async {
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
}

fn scalar(url: &str, sql: &str) -> Option<String> {
    sqlx::any::install_default_drivers();
    block_on(async {
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        let row: (Option<String>,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        row.0
    })
}

fn words(url: &str) -> Vec<(String, i64)> {
    sqlx::any::install_default_drivers();
    block_on(async {
        let pool = sqlx::AnyPool::connect(url).await.unwrap();
        let mut rows: Vec<(String, i64)> = sqlx::query_as("SELECT word, count FROM tls_words")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        rows.sort();
        rows
    })
}

/// The server's URL, or `None` (saying so) when it is not given.
fn server(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if services_required() => {
            panic!("{var} is unset but STREAMC_REQUIRE_SERVICES asks for it")
        }
        _ => {
            eprintln!("{var} is unset: skipping this TLS test");
            None
        }
    }
}

fn with_params(url: &str, params: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{params}")
}

/// Runs the app writing to `url`; the error, if the run failed.
fn run_to(url: &str) -> Result<(), String> {
    apps::tls_words::app()
        .with_args(["--sink", &format!("tls_words={url}"), "--sink-retries", "2"])
        .unwrap()
        .configure(|c| c.stop_when_drained = true)
        .run()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn expected() -> Vec<(String, i64)> {
    [("alpha", 1), ("beta", 2), ("delta", 1), ("gamma", 2)]
        .iter()
        .map(|(w, n)| (w.to_string(), *n))
        .collect()
}

/// The right CA writes; the wrong one stops the app, naming certificate verification.
fn check_both_cases(plain: &str, verified: impl Fn(&Path) -> String, certs: &Certificates) {
    execute(plain, "DROP TABLE IF EXISTS tls_words");
    run_to(&verified(&certs.ca)).expect("TLS with the right CA writes");
    assert_eq!(words(plain), expected());

    let failure = run_to(&verified(&certs.other_ca)).expect_err("another CA must be refused");
    eprintln!("with another CA: {failure}");
    let lower = failure.to_lowercase();
    assert!(
        lower.contains("certificate") && lower.contains("verif"),
        "the error names certificate verification: {failure}"
    );
    execute(plain, "DROP TABLE IF EXISTS tls_words");
}

fn chown(path: &Path, owner: &str) {
    let status = Command::new("chown")
        .args(["-R", owner])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "chown {owner} {}", path.display());
}

/// Puts PostgreSQL's own certificate back, whatever the test did.
struct PostgresCertificate {
    url: String,
}

impl Drop for PostgresCertificate {
    fn drop(&mut self) {
        execute(&self.url, "ALTER SYSTEM RESET ssl_cert_file");
        execute(&self.url, "ALTER SYSTEM RESET ssl_key_file");
        execute(&self.url, "SELECT pg_reload_conf()");
    }
}

#[test]
fn postgres_verify_full_against_the_tests_ca() {
    let Some(url) = server("STREAMC_TEST_POSTGRES_URL") else {
        return;
    };
    if !have_program("openssl", "the PostgreSQL TLS test") {
        return;
    }
    let dir = temp_dir("pg-tls");
    let certs = make_certificates(&dir.join("certs"));
    // The server's copies, readable by the server only, as PostgreSQL demands of a key.
    let served = dir.join("served");
    std::fs::create_dir_all(&served).unwrap();
    let (cert, key) = (served.join("server.pem"), served.join("server.key"));
    std::fs::copy(&certs.cert, &cert).unwrap();
    std::fs::copy(&certs.key, &key).unwrap();
    chown(&served, "postgres");
    Command::new("chmod").arg("600").arg(&key).status().unwrap();
    let _restore = PostgresCertificate { url: url.clone() };
    execute(
        &url,
        &format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()),
    );
    execute(
        &url,
        &format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
    );
    execute(&url, "SELECT pg_reload_conf()");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        scalar(&url, "SELECT current_setting('ssl_cert_file')").as_deref(),
        Some(cert.to_str().unwrap()),
        "PostgreSQL must take the test's certificate"
    );
    check_both_cases(
        &url,
        |ca| {
            with_params(
                &url,
                &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
            )
        },
        &certs,
    );
}

/// Puts MariaDB's certificate files back and reloads them, whatever the test did.
struct MariaDbCertificate {
    url: String,
    saved: Vec<(PathBuf, Vec<u8>)>,
}

impl Drop for MariaDbCertificate {
    fn drop(&mut self) {
        for (path, bytes) in &self.saved {
            let _ = std::fs::write(path, bytes);
        }
        execute(&self.url, "FLUSH SSL");
    }
}

#[test]
fn mariadb_verify_identity_against_the_tests_ca() {
    let Some(url) = server("STREAMC_TEST_MYSQL_URL") else {
        return;
    };
    if !have_program("openssl", "the MariaDB TLS test") {
        return;
    }
    if scalar(&url, "SELECT @@have_ssl").as_deref() != Some("YES") {
        assert!(
            !services_required(),
            "MariaDB has TLS off: run .ci/mariadb-tls (CI does) to turn it on"
        );
        eprintln!("MariaDB has TLS off (.ci/mariadb-tls turns it on): skipping");
        return;
    }
    let dir = temp_dir("mariadb-tls");
    let certs = make_certificates(&dir.join("certs"));
    let cert = PathBuf::from(scalar(&url, "SELECT @@ssl_cert").expect("ssl_cert is set"));
    let key = PathBuf::from(scalar(&url, "SELECT @@ssl_key").expect("ssl_key is set"));
    let _restore = MariaDbCertificate {
        url: url.clone(),
        saved: vec![
            (cert.clone(), std::fs::read(&cert).unwrap()),
            (key.clone(), std::fs::read(&key).unwrap()),
        ],
    };
    std::fs::copy(&certs.cert, &cert).unwrap();
    std::fs::copy(&certs.key, &key).unwrap();
    execute(&url, "FLUSH SSL");
    check_both_cases(
        &url,
        |ca| {
            with_params(
                &url,
                &format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={}", ca.display()),
            )
        },
        &certs,
    );
}
