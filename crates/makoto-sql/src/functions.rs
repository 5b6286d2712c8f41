//! Scalar functions for provenance work:
//!
//! - `makoto_verify(envelope [, trusted])`: checks a DSSE envelope's signature against the
//!   session's trusted keys, or against `trusted` (a public key PEM or a trust file's JSON).
//!   Returns `verified`, `unsigned`, `untrusted` (no trusted key signed it, or outside its
//!   validity window), `invalid` (not a DSSE envelope or statement) or `no-trusted-keys`.
//! - `makoto_statement(envelope)`: the in-toto statement inside an envelope, as JSON text
//!   (decoded only; use `makoto_verify` to check it).
//! - `makoto_json(json, path)`: the value at a dotted path (`predicate.delta.version`,
//!   `subject.0.name`) of a JSON text: strings unquoted, other values as JSON; NULL if absent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, StringArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use makoto_core::dsse::Envelope;
use makoto_core::statement::Statement;
use makoto_core::verify::{TrustedKeys, verify_statement};
use serde_json::Value;

fn strings(args: &ScalarFunctionArgs) -> DfResult<Vec<StringArray>> {
    let arrays = ColumnarValue::values_to_arrays(&args.args)?;
    arrays
        .iter()
        .map(|a| {
            let utf8: ArrayRef = cast(a, &DataType::Utf8)?;
            utf8.as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .ok_or_else(|| DataFusionError::Internal("expected a string argument".into()))
        })
        .collect()
}

fn string_signature(arities: &[usize]) -> Signature {
    Signature::one_of(
        arities.iter().map(|&n| TypeSignature::String(n)).collect(),
        Volatility::Immutable,
    )
}

/// Status of an envelope checked by `makoto_verify`.
pub fn verify_status(envelope: &str, trusted: &TrustedKeys) -> &'static str {
    let Ok(env) = Envelope::from_json(envelope.as_bytes()) else {
        return "invalid";
    };
    if Statement::from_payload(env.payload()).is_err() {
        return "invalid";
    }
    if !env.is_signed() {
        return "unsigned";
    }
    if trusted.is_empty() {
        return "no-trusted-keys";
    }
    match verify_statement(&env, trusted) {
        Ok(_) => "verified",
        Err(_) => "untrusted",
    }
}

#[derive(Debug)]
struct VerifyUdf {
    signature: Signature,
    trusted: Arc<TrustedKeys>,
    /// Trust arguments parsed once per distinct text.
    parsed: Mutex<HashMap<String, Option<Arc<TrustedKeys>>>>,
}

impl PartialEq for VerifyUdf {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.trusted, &other.trusted)
    }
}
impl Eq for VerifyUdf {}
impl std::hash::Hash for VerifyUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "makoto_verify".hash(state);
    }
}

impl VerifyUdf {
    fn trust_from(&self, text: &str) -> Option<Arc<TrustedKeys>> {
        let mut cache = match self.parsed.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        cache
            .entry(text.to_owned())
            .or_insert_with(|| TrustedKeys::parse(text).ok().map(Arc::new))
            .clone()
    }
}

impl ScalarUDFImpl for VerifyUdf {
    fn name(&self) -> &str {
        "makoto_verify"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let cols = strings(&args)?;
        let mut out = StringBuilder::new();
        let Some(envelopes) = cols.first() else {
            return Err(DataFusionError::Plan(
                "makoto_verify(envelope [, trusted]) needs an envelope".into(),
            ));
        };
        for i in 0..envelopes.len() {
            if envelopes.is_null(i) {
                out.append_null();
                continue;
            }
            let trusted = match cols.get(1) {
                Some(t) if t.is_null(i) => None,
                Some(t) => match self.trust_from(t.value(i)) {
                    Some(k) => Some(k),
                    None => {
                        out.append_value("invalid-trust");
                        continue;
                    }
                },
                None => Some(Arc::clone(&self.trusted)),
            };
            match trusted {
                Some(k) => out.append_value(verify_status(envelopes.value(i), &k)),
                None => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct StatementUdf {
    signature: Signature,
}

impl ScalarUDFImpl for StatementUdf {
    fn name(&self) -> &str {
        "makoto_statement"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let cols = strings(&args)?;
        let mut out = StringBuilder::new();
        if let Some(envelopes) = cols.first() {
            for i in 0..envelopes.len() {
                let decoded = (!envelopes.is_null(i))
                    .then(|| Envelope::from_json(envelopes.value(i).as_bytes()).ok())
                    .flatten()
                    .and_then(|e| Statement::from_payload(e.payload()).ok())
                    .map(|s| s.to_json().to_string());
                out.append_option(decoded);
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// The value at a dotted path; array elements by index.
pub fn json_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        cur = match cur {
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            Value::Object(m) => m.get(part)?,
            _ => return None,
        };
    }
    Some(cur)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonUdf {
    signature: Signature,
}

impl ScalarUDFImpl for JsonUdf {
    fn name(&self) -> &str {
        "makoto_json"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let cols = strings(&args)?;
        let (Some(docs), Some(paths)) = (cols.first(), cols.get(1)) else {
            return Err(DataFusionError::Plan(
                "makoto_json(json, path) needs two arguments".into(),
            ));
        };
        let mut out = StringBuilder::new();
        for i in 0..docs.len() {
            if docs.is_null(i) || paths.is_null(i) {
                out.append_null();
                continue;
            }
            let doc = serde_json::from_str::<Value>(docs.value(i)).ok();
            let value = doc.as_ref().and_then(|d| json_path(d, paths.value(i)));
            out.append_option(value.and_then(|v| match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            }));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// What the RFC 3161 time-stamp of an envelope shows under `trusted` (its keys and
/// `timestampAuthorities`): `makoto_timestamp` gives the `genTime` of a token that holds,
/// `makoto_timestamp_status` the reason when none does.
pub fn timestamp_of(envelope: &str, trusted: &TrustedKeys) -> (&'static str, Option<String>) {
    use makoto_core::timestamp::{EnvelopeTimestamp, LinkProblem, envelope_timestamp};
    let Ok(env) = Envelope::from_json(envelope.as_bytes()) else {
        return ("invalid", None);
    };
    let key = verify_statement(&env, trusted)
        .ok()
        .map(|v| v.keyid().clone());
    if env.is_signed() && key.is_none() {
        return ("untrusted-signature", None);
    }
    let key = key.as_ref().and_then(|k| trusted.key(k));
    match envelope_timestamp(&env, trusted.timestamp_authorities(), key) {
        EnvelopeTimestamp::Missing => ("missing", None),
        EnvelopeTimestamp::Unchecked => ("unchecked", None),
        EnvelopeTimestamp::Verified(v) => (
            "verified",
            Some(
                v.gen_time()
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            ),
        ),
        EnvelopeTimestamp::Problem(LinkProblem::Invalid(_)) => ("invalid", None),
        EnvelopeTimestamp::Problem(LinkProblem::Untrusted(_)) => ("untrusted", None),
        EnvelopeTimestamp::Problem(LinkProblem::KeyNotValid(_)) => ("key-not-valid", None),
    }
}

#[derive(Debug)]
struct TimestampUdf {
    signature: Signature,
    trusted: Arc<TrustedKeys>,
    /// `makoto_timestamp` (the time) or `makoto_timestamp_status` (the status).
    status: bool,
}

impl PartialEq for TimestampUdf {
    fn eq(&self, other: &Self) -> bool {
        self.status == other.status && Arc::ptr_eq(&self.trusted, &other.trusted)
    }
}
impl Eq for TimestampUdf {}
impl std::hash::Hash for TimestampUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl ScalarUDFImpl for TimestampUdf {
    fn name(&self) -> &str {
        if self.status {
            "makoto_timestamp_status"
        } else {
            "makoto_timestamp"
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let cols = strings(&args)?;
        let mut out = StringBuilder::new();
        if let Some(envelopes) = cols.first() {
            for i in 0..envelopes.len() {
                if envelopes.is_null(i) {
                    out.append_null();
                    continue;
                }
                let (status, time) = timestamp_of(envelopes.value(i), &self.trusted);
                if self.status {
                    out.append_value(status);
                } else {
                    out.append_option(time);
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// The scalar functions, with `trusted` as `makoto_verify`'s default keys.
pub fn scalar_functions(trusted: Arc<TrustedKeys>) -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(TimestampUdf {
            signature: string_signature(&[1]),
            trusted: Arc::clone(&trusted),
            status: false,
        }),
        ScalarUDF::from(TimestampUdf {
            signature: string_signature(&[1]),
            trusted: Arc::clone(&trusted),
            status: true,
        }),
        ScalarUDF::from(VerifyUdf {
            signature: string_signature(&[1, 2]),
            trusted,
            parsed: Mutex::new(HashMap::new()),
        }),
        ScalarUDF::from(StatementUdf {
            signature: string_signature(&[1]),
        }),
        ScalarUDF::from(JsonUdf {
            signature: string_signature(&[2]),
        }),
        ScalarUDF::from(TablePathUdf {
            signature: string_signature(&[2]),
        }),
    ]
}

/// `url` as `system.makoto.files.path` names it: relative to `root` (a table URI), percent-
/// decoded once; `None` when `url` is not under `root`.
pub fn table_path(url: &str, root: &str) -> Option<String> {
    let rest = url
        .strip_prefix(root.trim_end_matches('/'))?
        .strip_prefix('/')?;
    percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .ok()
        .map(|p| p.into_owned())
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct TablePathUdf {
    signature: Signature,
}

impl ScalarUDFImpl for TablePathUdf {
    fn name(&self) -> &str {
        "makoto_table_path"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let cols = strings(&args)?;
        let (Some(urls), Some(roots)) = (cols.first(), cols.get(1)) else {
            return Err(DataFusionError::Plan(
                "makoto_table_path(url, root) needs two arguments".into(),
            ));
        };
        let mut out = StringBuilder::new();
        for i in 0..urls.len() {
            let path = (!urls.is_null(i) && !roots.is_null(i))
                .then(|| table_path(urls.value(i), roots.value(i)))
                .flatten();
            out.append_option(path);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_url_becomes_the_path_the_files_table_names() {
        let root = "file:///lake/t%20x";
        assert_eq!(
            table_path("file:///lake/t%20x/d=a%3Ab/part-0.parquet", root).as_deref(),
            Some("d=a:b/part-0.parquet")
        );
        assert_eq!(table_path("file:///lake/other/p.parquet", root), None);
        assert_eq!(table_path("file:///lake/t%20xy/p.parquet", root), None);
    }
}
