//! The service's HTTP endpoints: `GET /metrics` (Prometheus text), `GET /healthz` (the loop is
//! turning), `GET /readyz` (the warehouse is open and the table set loaded), `GET /v1/tables`
//! (every table's state, JSON) and `POST /v1/attest` (a tenant asks for a table to be attested
//! through a version and waits for it). Plain HTTP/1.1 on the `--listen` address; put it behind
//! the platform's ingress (TLS) or keep it on localhost.

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
use makoto_core::service::AttestRequest;
use tokio::net::TcpListener;

use crate::service::Shared;

/// A loop that has not gone round for this long is reported unhealthy.
pub const STALL: Duration = Duration::from_secs(60);

/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 256;

/// Serves the endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move {
                    let r = if req.method() == Method::POST && req.uri().path() == "/v1/attest" {
                        attest_request(req, &shared).await
                    } else {
                        route(&req, &shared)
                    };
                    Ok::<_, Infallible>(r)
                }
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
            shared
                .metrics
                .render(&shared.snapshot(), makoto_memory::resident_bytes(), now),
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

pub use makoto_core::service::MAX_REQUEST_BYTES;
/// Longest a request may wait for its version (`timeoutSeconds`, default 60).
pub const MAX_WAIT: Duration = Duration::from_secs(600);

fn json_reply(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    reply(status, "application/json", body.to_string())
}

fn refuse(status: StatusCode, error: &str) -> Response<Full<Bytes>> {
    json_reply(status, serde_json::json!({ "error": error }))
}

/// `POST /v1/attest` with `Authorization: Bearer <token>` and
/// `{"table": URI, "version": N, "timeoutSeconds": S}`: marks the table due now and answers
/// once it is attested through `N` (200, `{"table", "version", "attestedVersion", "tenant"}`),
/// or 504 when `S` seconds pass first. 401: no or unknown token; 403: the tenant may not ask
/// about that table, or requests are off; 404: this replica does not watch the table; 400: a
/// malformed request. The service decides what is hashed and signed; a request only says when.
async fn attest_request(req: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let Some(tenants) = &shared.tenants else {
        return refuse(
            StatusCode::FORBIDDEN,
            "tenant requests are off: start makoto serve with --tenants FILE",
        );
    };
    let token = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(tenant) = token.and_then(|t| tenants.authenticate(t.trim())) else {
        return refuse(StatusCode::UNAUTHORIZED, "missing or unknown bearer token");
    };
    let body = match http_body_util::Limited::new(req.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "the body is unreadable or too large",
            );
        }
    };
    let request = match AttestRequest::from_json(&body) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let uri = match makoto_delta::Location::named(&request.table) {
        Ok(l) => l.as_uri(),
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if !tenant.allows(&uri) {
        return refuse(
            StatusCode::FORBIDDEN,
            &format!("tenant {} may not ask about {uri}", tenant.name),
        );
    }
    let wait = Duration::from_secs(request.timeout_seconds.unwrap_or(60)).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    if shared.hurry(&uri).is_none() {
        return refuse(
            StatusCode::NOT_FOUND,
            &format!("{uri} is not watched by this replica (tables file, discovery or shard)"),
        );
    }
    loop {
        let changed = shared.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let attested = shared.attested(&uri).flatten();
        if attested.is_some_and(|a| a >= request.version) {
            return json_reply(
                StatusCode::OK,
                serde_json::json!({
                    "table": uri,
                    "version": request.version,
                    "attestedVersion": attested,
                    "tenant": tenant.name,
                }),
            );
        }
        tokio::select! {
            () = &mut changed => {}
            () = tokio::time::sleep_until(deadline) => {
                return json_reply(
                    StatusCode::GATEWAY_TIMEOUT,
                    serde_json::json!({
                        "error": format!("{uri} is attested through {attested:?}, not yet {}", request.version),
                        "attestedVersion": attested,
                    }),
                );
            }
        }
    }
}
