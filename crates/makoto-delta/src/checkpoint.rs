//! Reading checkpoints as a Delta reader does: classic, multi-part and v2 (Parquet or JSON
//! top-level file with sidecars), every field of every action a reader uses.
//!
//! Parquet rows are converted to JSON action objects (`{"add": {…}}`) and parsed by the same
//! code as commit files, so a checkpoint and the JSON log are compared through one model
//! ([`makoto_core::reader_view`]). `stats_parsed` and `partitionValues_parsed`, which some
//! readers use instead of the JSON strings, are kept beside each `add` for comparison.

use std::collections::BTreeMap;

use bytes::Bytes;
use deltalake::arrow::array::{Array, ArrayRef, RecordBatch, StructArray};
use deltalake::arrow::datatypes::{DataType, Field, Fields, Schema};
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use makoto_core::Sha256Digest;
use makoto_core::delta::{Action, AddFile};
pub use makoto_core::reader_view::ParsedColumns;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde_json::Value;

use crate::log::SourceTable;

/// The shape of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CheckpointKind {
    /// `N.checkpoint.parquet` (may hold v2 sidecar references).
    Classic,
    /// `N.checkpoint.<part>.<parts>.parquet`.
    MultiPart { parts: u32 },
    /// `N.checkpoint.<uuid>.parquet|json`.
    V2,
}

/// One checkpoint a reader could pick for its version: the files that make it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRef {
    pub version: u64,
    pub kind: CheckpointKind,
    /// Names inside `_delta_log/`, in part order.
    pub files: Vec<String>,
}

impl CheckpointRef {
    /// `_delta_log/<first file>`, for findings.
    pub fn display_path(&self) -> String {
        format!(
            "_delta_log/{}",
            self.files.first().map(String::as_str).unwrap_or_default()
        )
    }
}

/// Groups the checkpoint file names of one version into the checkpoints readers can use.
/// Incomplete multi-part sets are returned separately (readers ignore them).
pub fn group(version: u64, names: &[String]) -> (Vec<CheckpointRef>, Vec<String>) {
    let mut out = Vec::new();
    let mut multi: BTreeMap<u32, BTreeMap<u32, String>> = BTreeMap::new();
    let mut incomplete = Vec::new();
    for name in names {
        let Some(rest) = name.get(20..).and_then(|r| r.strip_prefix(".checkpoint.")) else {
            continue;
        };
        if rest == "parquet" {
            out.push(CheckpointRef {
                version,
                kind: CheckpointKind::Classic,
                files: vec![name.clone()],
            });
        } else if let Some((part, parts)) = multi_part(rest) {
            multi.entry(parts).or_default().insert(part, name.clone());
        } else if rest.ends_with(".parquet") || rest.ends_with(".json") {
            out.push(CheckpointRef {
                version,
                kind: CheckpointKind::V2,
                files: vec![name.clone()],
            });
        }
    }
    for (parts, found) in multi {
        if found.len() == parts as usize && (1..=parts).all(|p| found.contains_key(&p)) {
            out.push(CheckpointRef {
                version,
                kind: CheckpointKind::MultiPart { parts },
                files: found.into_values().collect(),
            });
        } else {
            incomplete.extend(found.into_values());
        }
    }
    out.sort_by(|a, b| (a.kind, &a.files).cmp(&(b.kind, &b.files)));
    (out, incomplete)
}

/// `0000000001.0000000003.parquet` → (1, 3).
fn multi_part(rest: &str) -> Option<(u32, u32)> {
    let stem = rest.strip_suffix(".parquet")?;
    let (a, b) = stem.split_once('.')?;
    let ok = |s: &str| s.len() == 10 && s.bytes().all(|c| c.is_ascii_digit());
    (ok(a) && ok(b)).then(|| Some((a.parse().ok()?, b.parse().ok()?)))?
}

/// What a checkpoint holds that readers use.
#[derive(Debug, Clone, Default)]
pub struct CheckpointContent {
    /// `add`, `metaData`, `protocol`, `txn` and `domainMetadata` actions, in file order
    /// (sidecars after the file that names them).
    pub actions: Vec<Action>,
    /// `stats_parsed` / `partitionValues_parsed` by decoded path and DV unique id.
    pub parsed: BTreeMap<(String, Option<String>), ParsedColumns>,
    /// Every file read (top level and sidecars) with its size and SHA-256.
    pub files: Vec<(String, u64, Sha256Digest)>,
    /// Set when the `_parsed` columns could not be converted (they are then not compared).
    pub parsed_unreadable: Option<String>,
}

impl CheckpointContent {
    pub fn adds(&self) -> impl Iterator<Item = &AddFile> {
        self.actions.iter().filter_map(|a| match a {
            Action::Add(x) => Some(x),
            _ => None,
        })
    }
}

/// Reads one checkpoint. `Err` is a one-line reason (the caller reports it as a finding).
pub async fn read(
    source: &SourceTable,
    checkpoint: &CheckpointRef,
) -> Result<CheckpointContent, String> {
    read_bounded(source, checkpoint, u64::MAX).await
}

/// Reads one checkpoint whose files (parts and sidecars together) may hold at most
/// `max_bytes`: a planted giant file is refused before it is read, so memory stays bounded on
/// hostile input.
pub async fn read_bounded(
    source: &SourceTable,
    checkpoint: &CheckpointRef,
    max_bytes: u64,
) -> Result<CheckpointContent, String> {
    let mut budget = max_bytes;
    let mut content = CheckpointContent::default();
    let mut sidecars: Vec<String> = Vec::new();
    for name in &checkpoint.files {
        let path = format!("_delta_log/{name}");
        let bytes = fetch(source, &path, &mut budget).await?;
        let rows = if name.ends_with(".json") {
            json_rows(&bytes).map_err(|e| format!("{path}: {e}"))?
        } else {
            parquet_rows(bytes.clone(), &mut content.parsed_unreadable)
                .map_err(|e| format!("{path}: {e}"))?
        };
        content
            .files
            .push((path.clone(), bytes.len() as u64, Sha256Digest::of(&bytes)));
        absorb(source, rows, &mut content, &mut sidecars).map_err(|e| format!("{path}: {e}"))?;
    }
    for sidecar in sidecars {
        if sidecar.contains("..") || sidecar.starts_with('/') || sidecar.contains("://") {
            return Err(format!(
                "sidecar path {sidecar:?} is not inside _delta_log/_sidecars/"
            ));
        }
        let path = format!("_delta_log/_sidecars/{sidecar}");
        let bytes = fetch(source, &path, &mut budget).await?;
        let rows = parquet_rows(bytes.clone(), &mut content.parsed_unreadable)
            .map_err(|e| format!("{path}: {e}"))?;
        content
            .files
            .push((path.clone(), bytes.len() as u64, Sha256Digest::of(&bytes)));
        let mut nested = Vec::new();
        absorb(source, rows, &mut content, &mut nested).map_err(|e| format!("{path}: {e}"))?;
        if !nested.is_empty() {
            return Err(format!("{path}: a sidecar names further sidecars"));
        }
    }
    Ok(content)
}

async fn fetch(source: &SourceTable, path: &str, budget: &mut u64) -> Result<Bytes, String> {
    let p = Path::from(path);
    if *budget != u64::MAX {
        let size = match source.store().head(&p).await {
            Ok(m) => m.size,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(format!("{path} does not exist"));
            }
            Err(e) => return Err(format!("{path}: {e}")),
        };
        if size > *budget {
            return Err(format!(
                "{path} has {size} bytes, more than a checkpoint of the attested files can hold; not read"
            ));
        }
        *budget -= size;
    }
    match source.store().get(&p).await {
        Ok(r) => r.bytes().await.map_err(|e| format!("{path}: {e}")),
        Err(object_store::Error::NotFound { .. }) => Err(format!("{path} does not exist")),
        Err(e) => Err(format!("{path}: {e}")),
    }
}

fn absorb(
    source: &SourceTable,
    rows: Vec<Value>,
    content: &mut CheckpointContent,
    sidecars: &mut Vec<String>,
) -> Result<(), String> {
    for row in rows {
        let Some(obj) = row.as_object() else {
            return Err("a row is not a JSON object".into());
        };
        for (name, body) in obj {
            if body.is_null() {
                continue;
            }
            match name.as_str() {
                "add" | "metaData" | "protocol" | "txn" | "domainMetadata" => {
                    let single = Value::Object(
                        std::iter::once((name.clone(), strip_parsed(body))).collect(),
                    );
                    let mut action =
                        Action::from_json(&single).map_err(|e| format!("{name} action: {e}"))?;
                    action.map_path(|p| source.relative(p));
                    if let Action::Add(add) = &action {
                        let parsed = ParsedColumns {
                            stats: body.get("stats_parsed").filter(|v| !v.is_null()).cloned(),
                            partition_values: body
                                .get("partitionValues_parsed")
                                .filter(|v| !v.is_null())
                                .cloned(),
                        };
                        if parsed != ParsedColumns::default() {
                            content.parsed.insert(
                                (
                                    add.path().as_str().to_owned(),
                                    add.deletion_vector().map(|d| d.unique_id()),
                                ),
                                parsed,
                            );
                        }
                    }
                    content.actions.push(action);
                }
                "sidecar" => {
                    let p = body
                        .get("path")
                        .and_then(Value::as_str)
                        .ok_or("sidecar action without a path")?;
                    sidecars.push(p.to_owned());
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn strip_parsed(body: &Value) -> Value {
    match body {
        Value::Object(m)
            if m.contains_key("stats_parsed") || m.contains_key("partitionValues_parsed") =>
        {
            Value::Object(
                m.iter()
                    .filter(|(k, _)| *k != "stats_parsed" && *k != "partitionValues_parsed")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

fn json_rows(bytes: &[u8]) -> Result<Vec<Value>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 ({e})"))?;
    text.split('\n')
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

/// Top-level columns readers use; the others (`remove`, `commitInfo`, `cdc`,
/// `checkpointMetadata`) are not read.
const COLUMNS: &[&str] = &[
    "add",
    "metaData",
    "protocol",
    "txn",
    "domainMetadata",
    "sidecar",
];

fn parquet_rows(
    bytes: Bytes,
    parsed_unreadable: &mut Option<String>,
) -> Result<Vec<Value>, String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| format!("not a Parquet checkpoint ({e})"))?
        .build()
        .map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let projected = project(&batch, true)?;
        let text = match to_json_lines(&projected) {
            Ok(t) => t,
            Err(e) => {
                // A type the JSON writer cannot render in a `_parsed` column: compare without.
                parsed_unreadable.get_or_insert(e);
                to_json_lines(&project(&batch, false)?)?
            }
        };
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            rows.push(serde_json::from_slice(line).map_err(|e| e.to_string())?);
        }
    }
    Ok(rows)
}

/// The reader columns of a batch; without `_parsed` children of `add` when `keep_parsed` is
/// false.
fn project(batch: &RecordBatch, keep_parsed: bool) -> Result<RecordBatch, String> {
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for name in COLUMNS {
        let Some((idx, field)) = batch
            .schema()
            .column_with_name(name)
            .map(|(i, f)| (i, f.clone()))
        else {
            continue;
        };
        let column = batch.column(idx).clone();
        if *name == "add"
            && !keep_parsed
            && let DataType::Struct(children) = field.data_type()
        {
            let add = column
                .as_any()
                .downcast_ref::<StructArray>()
                .ok_or("add column is not a struct")?;
            let keep: Vec<usize> = children
                .iter()
                .enumerate()
                .filter(|(_, f)| !f.name().ends_with("_parsed"))
                .map(|(i, _)| i)
                .collect();
            let new_fields: Fields = keep.iter().map(|i| children[*i].clone()).collect();
            let arrays: Vec<ArrayRef> = keep.iter().map(|i| add.column(*i).clone()).collect();
            let s = StructArray::try_new(new_fields.clone(), arrays, add.nulls().cloned())
                .map_err(|e| e.to_string())?;
            fields.push(Field::new("add", DataType::Struct(new_fields), true));
            columns.push(std::sync::Arc::new(s));
            continue;
        }
        fields.push(field);
        columns.push(column);
    }
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)
        .map_err(|e| e.to_string())
}

fn to_json_lines(batch: &RecordBatch) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let mut w = deltalake::arrow::json::LineDelimitedWriter::new(&mut buf);
    w.write(batch).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    drop(w);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_checkpoint_names() {
        let n = |s: &str| format!("00000000000000000010.checkpoint.{s}");
        let names = vec![
            n("parquet"),
            n("0000000001.0000000002.parquet"),
            n("0000000002.0000000002.parquet"),
            n("0000000001.0000000003.parquet"),
            n("80a083e8-7026-4e79-81be-64bd76c43a11.json"),
        ];
        let (groups, incomplete) = group(10, &names);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].kind, CheckpointKind::Classic);
        assert_eq!(groups[1].kind, CheckpointKind::MultiPart { parts: 2 });
        assert_eq!(groups[1].files.len(), 2);
        assert_eq!(groups[2].kind, CheckpointKind::V2);
        assert_eq!(incomplete, vec![n("0000000001.0000000003.parquet")]);
    }
}
