//! The tenant side of `POST /v1/attest` (`makoto attest --via`): ask a running service to
//! attest a table through a version and wait for the answer.

use std::time::Duration;

use makoto_core::service::AttestRequest;

use crate::Error;

pub use makoto_core::service::Receipt;

/// Asks the service at `base` (e.g. `http://makoto-serve:9464`) to attest `table` through
/// `version`, waiting up to `wait`. The token goes in the `Authorization` header only.
pub async fn request_attestation(
    base: &str,
    token: &str,
    table: &str,
    version: u64,
    wait: Duration,
) -> Result<Receipt, Error> {
    let fail = |reason: String| Error::Request {
        service: base.to_owned(),
        reason,
    };
    let url = format!("{}/v1/attest", base.trim_end_matches('/'));
    let http = reqwest::Client::builder()
        .timeout(wait + Duration::from_secs(30))
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let response = http
        .post(&url)
        .bearer_auth(token)
        .header("Content-Type", "application/json")
        .body(AttestRequest::new(table, version, Some(wait.as_secs())).to_json())
        .send()
        .await
        .map_err(|e| fail(format!("request failed: {e}")))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| fail(format!("HTTP {status}, unreadable answer: {e}")))?;
    let body: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| fail(format!("HTTP {status}, answer is not JSON: {e}")))?;
    if !status.is_success() {
        let why = body["error"].as_str().unwrap_or("no reason given");
        return Err(fail(format!("HTTP {status}: {why}")));
    }
    serde_json::from_value(body).map_err(|e| fail(format!("unexpected answer: {e}")))
}
