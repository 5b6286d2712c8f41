//! A client of an RFC 3161 time-stamp authority over HTTP (`application/timestamp-query` in,
//! `application/timestamp-reply` out).
//!
//! ```no_run
//! # async fn f() -> Result<(), makoto_delta::Error> {
//! use makoto_core::Sha256Digest;
//! let tsa = makoto_delta::tsa::TsaClient::new("http://127.0.0.1:8318/")?;
//! let token = tsa.timestamp(Sha256Digest::of(b"signature bytes")).await?;
//! println!("seen at {}", token.gen_time());
//! # Ok(()) }
//! ```

use std::time::Duration;

use makoto_core::Sha256Digest;
use makoto_core::timestamp::{MAX_TOKEN_BYTES, TimestampRequest, TimestampToken};

use crate::Error;

/// How long one request may take, connection included.
pub const TSA_TIMEOUT: Duration = Duration::from_secs(30);

/// An RFC 3161 time-stamp authority reached over HTTP(S).
#[derive(Debug, Clone)]
pub struct TsaClient {
    url: url::Url,
    http: reqwest::Client,
}

impl TsaClient {
    /// A client of the TSA at `url` (http or https).
    pub fn new(url: &str) -> Result<Self, Error> {
        let bad = |reason: String| Error::Tsa {
            url: url.to_owned(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("the URL must be http or https".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(TSA_TIMEOUT)
            .build()
            .map_err(|e| bad(format!("cannot build an HTTP client: {e}")))?;
        Ok(TsaClient { url: parsed, http })
    }

    /// A client of the TSA at `url`, checked now with one request, so that a run that needs
    /// time-stamps fails before it writes anything when the TSA is down.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let client = Self::new(url)?;
        client
            .timestamp(Sha256Digest::of(b"makoto: time-stamp authority check"))
            .await?;
        Ok(client)
    }

    /// The TSA a run asked for (`url`), connected: `None` without one. A time-stamp covers a
    /// signature, so asking for one without a signing key (`signed` false) is an error.
    pub async fn for_run(url: Option<&str>, signed: bool) -> Result<Option<Self>, Error> {
        match (url, signed) {
            (None, _) => Ok(None),
            (Some(url), true) => Self::connect(url).await.map(Some),
            (Some(url), false) => Err(Error::Tsa {
                url: url.to_owned(),
                reason: "a time-stamp covers a signature: give a signing key (--key)".into(),
            }),
        }
    }

    /// Time-stamps the first signature of `envelope` (named `what` in errors), attaches the
    /// token beside it and returns it.
    pub async fn stamp(
        &self,
        envelope: &mut makoto_core::dsse::Envelope,
        what: &str,
    ) -> Result<TimestampToken, Error> {
        let imprint = envelope.timestamp_imprint().ok_or_else(|| {
            self.error(format!(
                "{what}: only a signed envelope can be time-stamped"
            ))
        })?;
        let token = self.timestamp(imprint).await?;
        envelope
            .attach_timestamp(token.to_der().to_vec())
            .map_err(|e| Error::core(what.to_owned(), e))?;
        Ok(token)
    }

    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    fn error(&self, reason: impl Into<String>) -> Error {
        Error::Tsa {
            url: self.url.to_string(),
            reason: reason.into(),
        }
    }

    /// A token over `imprint` (the SHA-256 of what is time-stamped), checked to answer this
    /// request. Its signature is checked by verifiers, against the authorities they trust.
    pub async fn timestamp(&self, imprint: Sha256Digest) -> Result<TimestampToken, Error> {
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| self.error(format!("no randomness: {e}")))?;
        let request = TimestampRequest::new(imprint, u64::from_be_bytes(nonce));
        let body = request
            .to_der()
            .map_err(|e| self.error(format!("cannot build the request: {e}")))?;
        let response = self
            .http
            .post(self.url.clone())
            .header("Content-Type", "application/timestamp-query")
            .header("Accept", "application/timestamp-reply")
            .body(body)
            .send()
            .await
            .map_err(|e| self.error(format!("request failed: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.error(format!("answered HTTP {status}")));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_TOKEN_BYTES as u64)
        {
            return Err(self.error(format!("the reply is larger than {MAX_TOKEN_BYTES} bytes")));
        }
        let mut reply = Vec::new();
        let mut response = response;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.error(format!("reading the reply: {e}")))?
        {
            if reply.len() + chunk.len() > MAX_TOKEN_BYTES {
                return Err(self.error(format!("the reply is larger than {MAX_TOKEN_BYTES} bytes")));
            }
            reply.extend_from_slice(&chunk);
        }
        TimestampToken::from_reply(&request, &reply).map_err(|e| self.error(e.to_string()))
    }
}
