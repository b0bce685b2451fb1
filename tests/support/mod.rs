//! Shared by the crash tests: temporary directories, an idempotent file sink that child apps publish
//! to, child processes that re-run one ignored test of the current test binary, and graceful stops.

#![allow(dead_code)] // each test file uses a subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Where a child app publishes its results.
pub const OUT: &str = "STREAMC_TEST_OUT";
/// A child app's checkpoint directory.
pub const CHECKPOINTS: &str = "STREAMC_TEST_CHECKPOINTS";
/// A child app's source address (a socket, a directory, brokers).
pub const PEER: &str = "STREAMC_TEST_PEER";

/// A fresh directory for this process.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("streamc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

/// A setting passed to a child app.
pub fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the parent test"))
}

/// Writes `lines`, sorted, to `file` in the child's output directory: to a temporary name, then renamed,
/// so a batch replayed after a crash rewrites the same file and readers never see half of it.
pub fn publish(file: &str, lines: impl IntoIterator<Item = String>) {
    let Ok(out) = std::env::var(OUT) else { return };
    let mut lines: Vec<String> = lines.into_iter().collect();
    lines.sort();
    let path = Path::new(&out).join(file);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, lines.join("\n")).expect("write output");
    std::fs::rename(&tmp, &path).expect("publish output");
}

/// The lines of a published file (none yet: empty).
pub fn published(dir: &Path, file: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `word count` lines as a map.
pub fn counts(lines: &[String]) -> BTreeMap<String, u64> {
    lines
        .iter()
        .filter_map(|l| {
            l.rsplit_once(' ')
                .map(|(w, n)| (w.to_string(), n.parse().unwrap_or(0)))
        })
        .collect()
}

/// Runs the ignored test `test` of this test binary in a child process, with its output directory,
/// checkpoint directory and peer address.
pub fn child(
    test: &str,
    out: &Path,
    checkpoints: impl AsRef<std::ffi::OsStr>,
    peer: &str,
) -> Child {
    child_with(test, out, checkpoints, peer, &[])
}

/// [`child`] with more environment variables (a sink URL, a failpoint).
pub fn child_with(
    test: &str,
    out: &Path,
    checkpoints: impl AsRef<std::ffi::OsStr>,
    peer: &str,
    env: &[(&str, String)],
) -> Child {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .args([test, "--exact", "--ignored", "--test-threads=1"])
        .env(OUT, out)
        .env(CHECKPOINTS, checkpoints)
        .env(PEER, peer)
        .env("STREAMC_LOG", "error")
        .stdout(Stdio::null());
    // STREAMC_TEST_CHILD_LOGS=1 shows the child apps' errors, to see why one stopped.
    if std::env::var_os("STREAMC_TEST_CHILD_LOGS").is_some() {
        command.arg("--nocapture");
    } else {
        command.stderr(Stdio::null());
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.spawn().expect("start the child app")
}

/// Writes `lines` as file `name` into the watched directory `dir`: under a hidden name, then renamed,
/// as the directory source expects.
pub fn drop_lines(dir: &Path, name: &str, lines: &[String]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, lines.join("\n")).expect("write input");
    std::fs::rename(&tmp, dir.join(name)).expect("publish input");
}

/// Asks a child app to stop gracefully (SIGTERM) and checks it exits 0. A child that has only just
/// started may not have installed its handler yet, and SIGTERM would then kill it: wait until it has.
pub fn terminate(mut child: Child) {
    ask_to_stop(&mut child);
    assert!(
        child.wait().expect("wait").success(),
        "a graceful stop exits 0"
    );
}

/// Sends SIGTERM to a child app once it has installed its handler (see [`terminate`]), without
/// waiting for it to exit, so that the caller can read its output first.
pub fn ask_to_stop(child: &mut Child) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !catches_sigterm(child.id()) && std::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the child app exited before it was asked to stop: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        catches_sigterm(child.id()),
        "the child app never installed its SIGTERM handler"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Whether process `pid` has a handler for SIGTERM (Linux: the `SigCgt` mask in /proc/PID/status).
fn catches_sigterm(pid: u32) -> bool {
    const SIGTERM_BIT: u64 = 1 << (15 - 1);
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("SigCgt:"))
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        })
        .is_some_and(|mask| mask & SIGTERM_BIT != 0)
}

/// Bytes in the files of `dir` (0 if it does not exist yet).
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// An example binary built by `cargo test` next to the test binaries.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary");
    exe.parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/deps")
        .join("examples")
        .join(name)
}

/// Every line of the finished files in `dir` (hidden, in-progress files left out), sorted.
pub fn finished_lines(dir: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .flat_map(|e| {
                    std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .lines()
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .unwrap_or_default();
    lines.sort();
    lines
}

/// A test's own certificate authority and a server certificate it signed, for `localhost` and
/// `127.0.0.1`, made with `openssl` in `dir`: `ca.pem`, `server.pem`, `server.key`, and `other-ca.pem`,
/// a second authority that signed nothing here (the wrong CA).
pub struct Certificates {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn make_certificates(dir: &Path) -> Certificates {
    std::fs::create_dir_all(dir).expect("certificate directory");
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    for (name, subject) in [
        ("ca", "/CN=streamc test CA"),
        ("other-ca", "/CN=streamc other CA"),
    ] {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-subj",
            subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "server.pem",
        "-extfile",
        "server.ext",
    ]);
    Certificates {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

/// Whether the service-backed tests must run (CI), so that a missing peer fails instead of skipping.
pub fn services_required() -> bool {
    std::env::var("STREAMC_REQUIRE_SERVICES").is_ok()
}

/// Skips (returns `false`, saying why) or, under `STREAMC_REQUIRE_SERVICES`, fails when `program`
/// is not installed.
pub fn have_program(program: &str, why: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            !services_required(),
            "{program} is not installed but STREAMC_REQUIRE_SERVICES asks for {why}"
        );
        eprintln!("{program} is not installed: skipping {why}");
    }
    found
}

/// A free port on loopback (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Reads a child's standard error on a thread, keeping every line, until it ends.
pub struct StderrLines(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl StderrLines {
    pub fn of(child: &mut Child) -> StderrLines {
        use std::io::BufRead;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                kept.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        StderrLines(lines)
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
    }

    /// Waits until a line contains `needle`; `false` after `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.text().contains(needle) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.text().contains(needle)
    }
}

/// A real S3 server on loopback (`moto_server`), killed on drop. Apps reach it through the usual
/// AWS environment variables ([`S3Server::env`]), as a user's would.
pub struct S3Server {
    child: Child,
    pub port: u16,
}

impl S3Server {
    /// Starts one, or `None` (saying why) when moto_server is not installed; under
    /// `STREAMC_REQUIRE_SERVICES` a missing one fails the test.
    pub fn start(why: &str) -> Option<S3Server> {
        if !have_program("moto_server", why) {
            return None;
        }
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let server = S3Server { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while server.request("GET", "/", b"").is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "moto_server did not answer on port {port} within 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Some(server)
    }

    /// The environment an app needs to reach it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test-secret-key".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false".into()),
        ]
    }

    /// The same, as storage options of an app run in this process.
    pub fn options(&self) -> Vec<(String, String)> {
        self.env()
            .into_iter()
            .map(|(key, value)| (key.to_ascii_lowercase(), value))
            .collect()
    }

    /// Creates bucket `name`; returns its `s3://` URL.
    pub fn bucket(&self, name: &str) -> String {
        let status = self
            .request("PUT", &format!("/{name}"), b"")
            .expect("create a bucket");
        assert!(status.0 == 200, "creating bucket {name}: {}", status.1);
        format!("s3://{name}")
    }

    /// Writes object `key` of `bucket` directly, as another program would.
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        let status = self
            .request("PUT", &format!("/{bucket}/{key}"), body)
            .expect("put an object");
        assert!(status.0 == 200, "putting {bucket}/{key}: {}", status.1);
    }

    /// The contents of object `key` of `bucket`, read through streamc's own (signed) client:
    /// moto refuses anonymous reads of objects a signed request wrote.
    pub fn get_object(&self, bucket: &str, key: &str) -> String {
        let options = streamc::store::StorageOptions {
            options: self.options(),
            ..Default::default()
        };
        let location = streamc::store::Location::parse(&format!("s3://{bucket}")).unwrap();
        let store = streamc::store::open(&location, &options).expect("open the bucket");
        let blob = store
            .get(key)
            .unwrap_or_else(|e| panic!("getting {bucket}/{key}: {e}"));
        String::from_utf8_lossy(&blob.bytes).into_owned()
    }

    /// The keys of `bucket` under `prefix`.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        self.objects(bucket, prefix)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// The keys of `bucket` under `prefix` (up to 1,000), with their sizes.
    pub fn objects(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let (_, body) = self
            .request(
                "GET",
                &format!("/{bucket}?list-type=2&prefix={prefix}"),
                b"",
            )
            .expect("list a bucket");
        let field = |object: &str, tag: &str| -> Option<String> {
            let open = format!("<{tag}>");
            let start = object.find(&open)? + open.len();
            let end = object[start..].find('<')? + start;
            Some(object[start..end].to_string())
        };
        body.split("<Contents>")
            .skip(1)
            .filter_map(|object| {
                let size = field(object, "Size")?.parse().ok()?;
                Some((field(object, "Key")?, size))
            })
            .collect()
    }

    /// One unsigned HTTP/1.1 request (moto does not check signatures); its status and body.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        )?;
        stream.write_all(body)?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer)?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {text}")))?;
        Ok((status, text))
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy on loopback in front of `target` that can be cut off: while down it refuses new
/// connections (accepts and closes them) and cuts the open ones, as a network partition or a
/// store outage would; it can also hold every answer back a while, as a slow store would.
pub struct CuttableProxy {
    pub port: u16,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Milliseconds each chunk of an answer is held back.
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl CuttableProxy {
    pub fn start(target: u16) -> CuttableProxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let down = std::sync::Arc::new(AtomicBool::new(false));
        let delay_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let flag = down.clone();
        let delay = delay_ms.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                for (from, to, answers) in [
                    (client.try_clone(), server.try_clone(), false),
                    (server.try_clone(), client.try_clone(), true),
                ] {
                    let (Ok(mut from), Ok(mut to)) = (from, to) else {
                        continue;
                    };
                    let flag = flag.clone();
                    let delay = delay.clone();
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let _ = from.set_read_timeout(Some(std::time::Duration::from_millis(50)));
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            if flag.load(Ordering::SeqCst) {
                                break;
                            }
                            match from.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => {
                                    let held = delay.load(Ordering::SeqCst);
                                    if answers && held > 0 {
                                        std::thread::sleep(std::time::Duration::from_millis(held));
                                    }
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                Err(e)
                                    if e.kind() == std::io::ErrorKind::WouldBlock
                                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                                Err(_) => break,
                            }
                        }
                        let _ = from.shutdown(std::net::Shutdown::Both);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        CuttableProxy {
            port,
            down,
            delay_ms,
        }
    }

    /// Holds each chunk of every answer back by `delay` (zero: none).
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.delay_ms.store(
            delay.as_millis() as u64,
            std::sync::atomic::Ordering::SeqCst,
        );
    }

    /// Cuts the connections (`true`) or lets them through again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }
}

impl S3Server {
    /// [`S3Server::env`] with the endpoint at `port` (a proxy in front of the server).
    pub fn env_through(&self, port: u16) -> Vec<(&'static str, String)> {
        let mut env = self.env();
        for (key, value) in &mut env {
            if *key == "AWS_ENDPOINT" {
                *value = format!("http://127.0.0.1:{port}");
            }
        }
        env
    }
}

/// Azure Blob Storage's emulator (Azurite, npm `azurite`) on loopback, killed on drop.
pub struct AzureServer {
    child: Child,
    pub port: u16,
    _dir: PathBuf,
}

/// The emulator's well-known account and key (public, documented by Microsoft).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl AzureServer {
    /// Starts one, or `None` (saying why) when Azurite is not installed; under
    /// `STREAMC_REQUIRE_SERVICES` a missing one fails the test.
    pub fn start(why: &str) -> Option<AzureServer> {
        if !have_program("azurite-blob", why) {
            return None;
        }
        let port = free_port();
        let dir = temp_dir(&format!("azurite-{port}"));
        let child = Command::new("azurite-blob")
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--silent", "--skipApiVersionCheck", "--location"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start azurite-blob");
        let server = AzureServer {
            child,
            port,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "azurite did not listen on port {port} within 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Some(server)
    }

    /// The environment an app needs to reach it, as a user's would set it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AZURE_STORAGE_USE_EMULATOR", "true".into()),
            (
                "AZURITE_BLOB_STORAGE_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
        ]
    }

    /// Creates container `name` (a shared-key signed request); returns its `az://` URL.
    pub fn container(&self, name: &str) -> String {
        use base64::Engine as _;
        use std::io::{Read, Write};
        let date = httpdate_now();
        let version = "2021-08-06";
        let resource = format!("/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{name}\nrestype:container");
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n{resource}"
        );
        let key = base64::engine::general_purpose::STANDARD
            .decode(AZURITE_KEY)
            .expect("the emulator's key");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
        let signature = base64::engine::general_purpose::STANDARD
            .encode(ring::hmac::sign(&key, to_sign.as_bytes()).as_ref());
        let mut stream =
            std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("reach azurite");
        write!(
            stream,
            "PUT /{AZURITE_ACCOUNT}/{name}?restype=container HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
             x-ms-date: {date}\r\nx-ms-version: {version}\r\n\
             Authorization: SharedKey {AZURITE_ACCOUNT}:{signature}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("send the request");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 201"),
            "creating container {name}: {answer}"
        );
        format!("az://{name}")
    }
}

impl Drop for AzureServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Now as an HTTP date (`Fri, 04 Dec 2026 03:12:20 GMT`), from the SQL sink's UTC timestamp.
fn httpdate_now() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64;
    let weekday =
        ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(millis / 86_400_000 % 7) as usize];
    // `YYYY-MM-DD HH:MM:SS.mmm`
    let stamp = streamc::sink::sql::format_timestamp(millis);
    let month: usize = stamp[5..7].parse().expect("a month");
    let name = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][month - 1];
    format!(
        "{weekday}, {} {name} {} {} GMT",
        &stamp[8..10],
        &stamp[0..4],
        &stamp[11..19]
    )
}
