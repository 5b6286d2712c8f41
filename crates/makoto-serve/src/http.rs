//! The service's HTTP endpoints: `GET /metrics` (Prometheus text), `GET /healthz` (the loop is
//! turning), `GET /readyz` (the warehouse is open and the table set loaded) and
//! `GET /v1/tables` (every table's state, JSON). Plain HTTP/1.1 on the `--listen` address;
//! put it behind the platform's ingress or keep it on localhost.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::service::Shared;

/// A loop that has not gone round for this long is reported unhealthy.
pub const STALL: Duration = Duration::from_secs(60);

/// Serves the endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(&req, &shared)) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn route(req: &Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let text = "text/plain; charset=utf-8";
    if req.method() != Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, text, "GET only\n".into());
    }
    let now = Instant::now();
    match req.uri().path() {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.metrics.render(&shared.snapshot(), now),
        ),
        "/healthz" => {
            let beat = shared.heartbeat.lock().ok().and_then(|h| *h);
            match beat {
                Some(b) if now.saturating_duration_since(b) > STALL => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    text,
                    "stalled: the watch loop has not run for a minute\n".into(),
                ),
                _ => reply(StatusCode::OK, text, "ok\n".into()),
            }
        }
        "/readyz" => {
            if shared.ready.load(Ordering::SeqCst) {
                reply(StatusCode::OK, text, "ready\n".into())
            } else {
                reply(StatusCode::SERVICE_UNAVAILABLE, text, "not ready\n".into())
            }
        }
        "/v1/tables" => {
            let tables: Vec<serde_json::Value> = shared
                .snapshot()
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "table": t.uri,
                        "attestedVersion": t.attested,
                        "running": t.running,
                        "failures": t.failures,
                        "lastError": t.last_error.as_ref().map(|(kind, message)| serde_json::json!({
                            "kind": kind, "message": message,
                        })),
                        "lagSeconds": t.pending_since.map_or(0.0, |s| now.saturating_duration_since(s).as_secs_f64()),
                    })
                })
                .collect();
            reply(
                StatusCode::OK,
                "application/json",
                serde_json::Value::Array(tables).to_string(),
            )
        }
        _ => reply(StatusCode::NOT_FOUND, text, "not found\n".into()),
    }
}
