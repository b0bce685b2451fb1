//! The monitoring server (`--ui ADDR`, loopback by default; `0.0.0.0:PORT` in a container): `/metrics`
//! in Prometheus text format, `/api/v1/...` JSON, `/healthz` (liveness) and `/readyz` (readiness)
//! for supervisors, and `/`, a self-contained live dashboard.
//!
//! It runs on the receivers' runtime, apart from the batch workers; handlers copy what they need under
//! a short lock and render outside it, so a slow or stuck client holds only its own connection. The
//! write-ahead logs' size is measured on the blocking pool, at most once a second.

use super::metrics::Metrics;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DASHBOARD: &str = include_str!("dashboard.html");

#[derive(Clone)]
struct Ui {
    metrics: Arc<Metrics>,
    /// Where write-ahead logs live, to report their size.
    wal_dir: Option<PathBuf>,
    /// The last size measured and when, so that frequent scrapes do not each walk the directory.
    wal_bytes: Arc<tokio::sync::Mutex<Option<(Instant, u64)>>>,
}

/// How long a measured write-ahead log size is served again.
const WAL_SIZE_FRESH: Duration = Duration::from_secs(1);

/// Binds `address` now (so a taken port fails the start) and serves on `runtime`. Returns the bound
/// address (useful with port 0).
pub(crate) fn start(
    runtime: &tokio::runtime::Runtime,
    address: SocketAddr,
    metrics: Arc<Metrics>,
    wal_dir: Option<PathBuf>,
) -> Result<SocketAddr, String> {
    let listener = std::net::TcpListener::bind(address)
        .map_err(|e| format!("cannot serve the UI on {address}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot read the UI address: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot serve the UI on {address}: {e}"))?;
    let app = Router::new()
        .route("/", get(dashboard))
        .route("/metrics", get(prometheus))
        .route("/api/v1/app", get(app_info))
        .route("/api/v1/receivers", get(receivers))
        .route("/api/v1/batches", get(batches))
        .route("/api/v1/batches/{time}", get(batch))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(Ui {
            metrics,
            wal_dir,
            wal_bytes: Arc::new(tokio::sync::Mutex::new(None)),
        });
    runtime.spawn(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("the UI server cannot start: {e}");
                return;
            }
        };
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("the UI server stopped: {e}");
        }
    });
    tracing::info!(address = %bound, "UI and metrics at http://{bound}/");
    Ok(bound)
}

async fn dashboard() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        DASHBOARD,
    )
        .into_response()
}

async fn prometheus(State(ui): State<Ui>) -> Response {
    let wal = wal_bytes(&ui).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::secret::redact(&ui.metrics.prometheus(wal)).into_owned(),
    )
        .into_response()
}

/// A JSON answer with every registered secret masked: error messages (a receiver's last error, a
/// failed batch) may quote a driver or broker that quoted a password.
fn answer(status: StatusCode, value: &serde_json::Value) -> Response {
    let text = value.to_string();
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        crate::secret::redact(&text).into_owned(),
    )
        .into_response()
}

fn verdict(verdict: super::metrics::Verdict) -> Response {
    let status = if verdict.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    answer(status, &verdict.body)
}

async fn healthz(State(ui): State<Ui>) -> Response {
    verdict(ui.metrics.health())
}

async fn readyz(State(ui): State<Ui>) -> Response {
    verdict(ui.metrics.readiness())
}

async fn app_info(State(ui): State<Ui>) -> Response {
    answer(StatusCode::OK, &ui.metrics.app_json())
}

async fn receivers(State(ui): State<Ui>) -> Response {
    answer(StatusCode::OK, &ui.metrics.receivers_json())
}

#[derive(serde::Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn batches(State(ui): State<Ui>, Query(limit): Query<Limit>) -> Response {
    answer(
        StatusCode::OK,
        &ui.metrics.batches_json(limit.limit.unwrap_or(100)),
    )
}

async fn batch(State(ui): State<Ui>, Path(time): Path<String>) -> Response {
    let Ok(time) = time.parse::<u64>() else {
        return (
            StatusCode::BAD_REQUEST,
            "a batch is named by its time in ms\n",
        )
            .into_response();
    };
    match ui.metrics.batch_json(time) {
        Some(detail) => answer(StatusCode::OK, &detail),
        None => (StatusCode::NOT_FOUND, "no such batch in the history\n").into_response(),
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found: try /, /metrics, /healthz, /readyz or /api/v1/app, /api/v1/receivers, /api/v1/batches\n",
    )
        .into_response()
}

/// The write-ahead logs' size, if the app keeps them.
async fn wal_bytes(ui: &Ui) -> Option<u64> {
    let dir = ui.wal_dir.clone()?;
    // Held across the walk, so that concurrent scrapes wait for one walk rather than start their own.
    let mut cached = ui.wal_bytes.lock().await;
    if let Some((at, bytes)) = *cached {
        if at.elapsed() < WAL_SIZE_FRESH {
            return Some(bytes);
        }
    }
    // Blocking filesystem calls: off the async workers, which the receivers share.
    match tokio::task::spawn_blocking(move || dir_bytes(&dir)).await {
        Ok(bytes) => {
            *cached = Some((Instant::now(), bytes));
            Some(bytes)
        }
        Err(e) => {
            tracing::warn!("cannot measure the write-ahead logs: {e}");
            (*cached).map(|(_, bytes)| bytes)
        }
    }
}

/// Bytes of the files under `dir` (two levels: `wal/<source>/<segment>`).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
