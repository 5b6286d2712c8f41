//! in-toto Statement v1.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Error, canonical};

/// `_type` of in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";

/// One subject: a name and its digests (algorithm → lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    name: String,
    digest: BTreeMap<String, String>,
}

impl Subject {
    pub fn new(name: impl Into<String>, digest: BTreeMap<String, String>) -> Self {
        Subject {
            name: name.into(),
            digest,
        }
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn digest(&self) -> &BTreeMap<String, String> {
        &self.digest
    }
    pub fn sha256(&self) -> Option<&str> {
        self.digest.get("sha256").map(String::as_str)
    }
}

/// An in-toto Statement v1: subjects, a predicate type and the predicate.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    subject: Vec<Subject>,
    predicate_type: String,
    predicate: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStatement {
    #[serde(rename = "_type")]
    type_: String,
    subject: Vec<RawSubject>,
    predicate_type: String,
    predicate: Value,
}

#[derive(Deserialize)]
struct RawSubject {
    name: String,
    digest: BTreeMap<String, String>,
}

impl Statement {
    pub fn new(subject: Vec<Subject>, predicate_type: impl Into<String>, predicate: Value) -> Self {
        Statement {
            subject,
            predicate_type: predicate_type.into(),
            predicate,
        }
    }

    pub fn subject(&self) -> &[Subject] {
        &self.subject
    }
    pub fn predicate_type(&self) -> &str {
        &self.predicate_type
    }
    pub fn predicate(&self) -> &Value {
        &self.predicate
    }

    pub fn to_json(&self) -> Value {
        json!({
            "_type": STATEMENT_TYPE,
            "subject": self.subject.iter().map(|s| json!({"name": s.name, "digest": s.digest})).collect::<Vec<_>>(),
            "predicateType": self.predicate_type,
            "predicate": self.predicate,
        })
    }

    /// The payload bytes that get signed: the canonical JSON of the statement.
    pub fn to_payload(&self) -> Vec<u8> {
        canonical::to_vec(&self.to_json())
    }

    /// Parses a statement from payload bytes.
    pub fn from_payload(bytes: &[u8]) -> Result<Self, Error> {
        let raw: RawStatement =
            serde_json::from_slice(bytes).map_err(|e| Error::InvalidStatement {
                reason: e.to_string(),
            })?;
        if raw.type_ != STATEMENT_TYPE {
            return Err(Error::InvalidStatement {
                reason: format!("_type is {:?}, expected {STATEMENT_TYPE}", raw.type_),
            });
        }
        if raw.subject.is_empty() {
            return Err(Error::InvalidStatement {
                reason: "no subject".into(),
            });
        }
        if !raw.predicate.is_object() {
            return Err(Error::InvalidStatement {
                reason: "predicate is not an object".into(),
            });
        }
        Ok(Statement {
            subject: raw
                .subject
                .into_iter()
                .map(|s| Subject::new(s.name, s.digest))
                .collect(),
            predicate_type: raw.predicate_type,
            predicate: raw.predicate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip_is_canonical() {
        let s = Statement::new(
            vec![Subject::new(
                "t@v0",
                BTreeMap::from([("sha256".into(), "ab".repeat(32))]),
            )],
            "https://makoto.dev/origin/v1",
            json!({"z": 1, "a": {"y": [1, 2]}}),
        );
        let p = s.to_payload();
        assert!(
            p.starts_with(b"{\"_type\":\"https://in-toto.io/Statement/v1\",\"predicate\":{\"a\"")
        );
        assert_eq!(Statement::from_payload(&p).unwrap(), s);
        assert!(
            Statement::from_payload(
                b"{\"_type\":\"x\",\"subject\":[],\"predicateType\":\"p\",\"predicate\":{}}"
            )
            .is_err()
        );
    }
}
