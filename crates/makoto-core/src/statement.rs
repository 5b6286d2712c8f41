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

    /// The payload bytes that get signed: the canonical JSON of the statement
    /// (`canonical::to_vec(&self.to_json())`, written without copying the predicate).
    pub fn to_payload(&self) -> Vec<u8> {
        let written: Result<_, std::convert::Infallible> =
            payload_with(&self.subject, &self.predicate_type, |out| {
                canonical::write_value(&self.predicate, out);
                Ok(())
            });
        match written {
            Ok(payload) => payload,
            Err(never) => match never {},
        }
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

/// The canonical payload of a statement of `subject` and `predicate_type` whose predicate
/// `write_predicate` writes canonically: the members of [`Statement::to_json`] in canonical
/// order are `_type`, `predicate`, `predicateType`, `subject`.
pub fn payload_with<E>(
    subject: &[Subject],
    predicate_type: &str,
    write_predicate: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<Vec<u8>, E> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"{\"_type\":");
    canonical::write_string(STATEMENT_TYPE, &mut out);
    out.extend_from_slice(b",\"predicate\":");
    write_predicate(&mut out)?;
    out.extend_from_slice(b",\"predicateType\":");
    canonical::write_string(predicate_type, &mut out);
    out.extend_from_slice(b",\"subject\":[");
    for (i, s) in subject.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        canonical::write_value(&json!({"name": s.name, "digest": s.digest}), &mut out);
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_is_the_canonical_statement() {
        let s = Statement::new(
            vec![
                Subject::new(
                    "b\u{e9}\"\n@v1",
                    BTreeMap::from([("sha256".into(), "cd".repeat(32)), ("a".into(), "x".into())]),
                ),
                Subject::new("a@v0", BTreeMap::new()),
            ],
            "https://makoto.dev/transform/v1\u{1F600}",
            json!({"\u{e9}": [1.5, -2, null, true], "\u{1F600}": {}, "\u{FFFD}": "\u{0}"}),
        );
        assert_eq!(s.to_payload(), canonical::to_vec(&s.to_json()));
    }

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
        assert_eq!(p, canonical::to_vec(&s.to_json()));
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
