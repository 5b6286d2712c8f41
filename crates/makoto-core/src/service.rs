//! The wire shapes of `makoto serve`'s tenant endpoint (`POST /v1/attest`): one type for each
//! message, used by the client that builds it and the service that parses it.
//!
//! ```
//! use makoto_core::service::AttestRequest;
//!
//! let request = AttestRequest::new("s3://lake/sales", 12, Some(30));
//! let parsed = AttestRequest::from_json(request.to_json().as_bytes()).unwrap();
//! assert_eq!(parsed, request);
//! ```

use serde::{Deserialize, Serialize};

use crate::Error;

/// Largest request body the service accepts.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// "Attest `table` through `version` and answer when it is signed, waiting at most
/// `timeout_seconds`": what a tenant asks. It names no digest; the service decides what is
/// hashed and signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttestRequest {
    pub table: String,
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

impl AttestRequest {
    pub fn new(table: impl Into<String>, version: u64, timeout_seconds: Option<u64>) -> Self {
        AttestRequest {
            table: table.into(),
            version,
            timeout_seconds,
        }
    }

    /// Parses a request body: JSON of at most [`MAX_REQUEST_BYTES`], no unknown members, a
    /// non-empty table name without control characters.
    pub fn from_json(body: &[u8]) -> Result<Self, Error> {
        let bad = |reason: String| Error::InvalidRequest { reason };
        if body.len() > MAX_REQUEST_BYTES {
            return Err(bad(format!(
                "the body is {} bytes, more than {MAX_REQUEST_BYTES}",
                body.len()
            )));
        }
        let request: AttestRequest =
            serde_json::from_slice(body).map_err(|e| bad(clip(e.to_string())))?;
        if request.table.trim().is_empty() {
            return Err(bad("table is empty".into()));
        }
        if request.table.chars().any(char::is_control) {
            return Err(bad("table contains a control character".into()));
        }
        Ok(request)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `reason` on one line and at most [`MAX_REASON`] bytes: a parse error may quote the body
/// (an unknown member's name verbatim, newlines included).
fn clip(raw: String) -> String {
    let mut reason = String::with_capacity(raw.len().min(MAX_REASON + 8));
    for c in raw.chars() {
        if c.is_control() {
            reason.extend(c.escape_default());
        } else {
            reason.push(c);
        }
        if reason.len() > MAX_REASON {
            break;
        }
    }
    if reason.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    reason
}

const MAX_REASON: usize = 200;

/// What the service answers once the table is attested through the version asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub table: String,
    pub version: u64,
    pub attested_version: u64,
    pub tenant: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn a_request_round_trips() {
        let r = AttestRequest::new("file:///data/sales", 7, None);
        assert_eq!(r.to_json(), r#"{"table":"file:///data/sales","version":7}"#);
        assert_eq!(AttestRequest::from_json(r.to_json().as_bytes()).unwrap(), r);
    }

    #[rstest]
    #[case::not_json(b"table=x".as_slice(), "line 1 column 2")]
    #[case::unknown_member(br#"{"table":"t","version":1,"digest":"00"}"#.as_slice(), "unknown field `digest`")]
    #[case::negative(br#"{"table":"t","version":-1}"#.as_slice(), "invalid value")]
    #[case::no_version(br#"{"table":"t"}"#.as_slice(), "missing field `version`")]
    #[case::empty_table(br#"{"table":" ","version":1}"#.as_slice(), "table is empty")]
    #[case::control(br#"{"table":"t\n","version":1}"#.as_slice(), "control character")]
    fn bad_requests_are_refused_saying_why(#[case] body: &[u8], #[case] why: &str) {
        let e = AttestRequest::from_json(body).unwrap_err().to_string();
        assert!(e.starts_with("invalid request: "), "{e}");
        assert!(e.contains(why), "{e}");
    }

    #[test]
    fn an_error_quotes_at_most_a_little_of_the_body() {
        let body = format!(r#"{{"table":"t","version":"{}"}}"#, "é".repeat(4000));
        let e = AttestRequest::from_json(body.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.len() < 260 && e.ends_with('…'), "{}", e.len());
    }

    #[test]
    fn an_error_stays_on_one_line() {
        // Found by the service_request fuzz target: serde names an unknown member verbatim.
        let e = AttestRequest::from_json(b" {\"(\\n% {\"(\\n%\":1}")
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains(r"(\n% {"), "{e}");
    }

    #[test]
    fn an_oversized_body_is_refused_before_it_is_parsed() {
        let body = vec![b' '; MAX_REQUEST_BYTES + 1];
        let e = AttestRequest::from_json(&body).unwrap_err().to_string();
        assert!(e.contains("more than 16384"), "{e}");
    }
}
