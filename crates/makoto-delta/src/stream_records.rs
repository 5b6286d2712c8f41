//! The records an append-only commit adds, in order, and their canonical encoding
//! (`makoto-record-json/1`, documented in docs/streams.md).
//!
//! A commit is append-only when it adds data (`add` with `dataChange: true`, no deletion
//! vector) and removes nothing with `dataChange: true`. Its records are the rows of its added
//! files in log order, each file's rows in file order; record `i` of commit `v` is at
//! [`RecordPos`] `(v, i)`.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use makoto_core::delta::Commit;
use makoto_core::window::RecordPos;
use makoto_core::{Sha256Digest, canonical, merkle};
use object_store::ObjectStoreExt;
use serde_json::{Map, Number, Value};

use crate::Error;
use crate::location::object_path;
use crate::log::SourceTable;

/// Whether a commit's new rows form part of the stream.
pub fn is_append_only(commit: &Commit) -> bool {
    commit.adds().any(|a| a.data_change())
        && commit.adds().all(|a| a.deletion_vector().is_none())
        && !commit.removes().any(|r| r.data_change())
}

/// One record of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub pos: RecordPos,
    /// The canonical bytes (`makoto-record-json/1`).
    pub bytes: Vec<u8>,
}

impl Record {
    pub fn leaf(&self) -> Sha256Digest {
        merkle::leaf_hash(&self.bytes)
    }
}

/// The records of an append-only commit (none for any other commit).
pub async fn commit_records(source: &SourceTable, commit: &Commit) -> Result<Vec<Record>, Error> {
    if !is_append_only(commit) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for add in commit.adds().filter(|a| a.data_change()) {
        let path = add.path().as_str();
        let location = format!("{}/{path}", source.uri());
        let bytes = source
            .store()
            .get(&object_path(path))
            .await
            .map_err(|e| Error::storage(location.clone(), e))?
            .bytes()
            .await
            .map_err(|e| Error::storage(location.clone(), e))?;
        let bad = |e: String| Error::InvalidLog {
            table: source.uri().to_owned(),
            version: commit.version(),
            reason: format!("cannot read the records of {path}: {e}"),
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| bad(e.to_string()))?;
        for batch in reader {
            let batch = batch.map_err(|e| bad(e.to_string()))?;
            for row in 0..batch.num_rows() {
                let mut object = encode_row(&batch, row).map_err(bad)?;
                for (k, v) in add.partition_values() {
                    if batch.schema().field_with_name(k).is_err() {
                        object.insert(
                            k.clone(),
                            v.as_ref().map_or(Value::Null, |s| Value::String(s.clone())),
                        );
                    }
                }
                out.push(Record {
                    pos: RecordPos {
                        version: commit.version(),
                        index: out.len() as u64,
                    },
                    bytes: canonical::to_vec(&Value::Object(object)),
                });
            }
        }
    }
    Ok(out)
}

/// One row as a JSON object keyed by column name.
pub fn encode_row(batch: &RecordBatch, row: usize) -> Result<Map<String, Value>, String> {
    let mut m = Map::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        m.insert(field.name().clone(), encode_value(column, row)?);
    }
    Ok(m)
}

fn float(v: f64) -> Value {
    if v.is_nan() {
        Value::String("NaN".into())
    } else if v.is_infinite() {
        Value::String(if v > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else {
        Number::from_f64(v).map_or(Value::Null, Value::Number)
    }
}

fn encode_value(a: &ArrayRef, i: usize) -> Result<Value, String> {
    if a.is_null(i) {
        return Ok(Value::Null);
    }
    Ok(match a.data_type() {
        DataType::Boolean => Value::Bool(a.as_boolean().value(i)),
        DataType::Int8 => Value::from(a.as_primitive::<Int8Type>().value(i)),
        DataType::Int16 => Value::from(a.as_primitive::<Int16Type>().value(i)),
        DataType::Int32 => Value::from(a.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => Value::from(a.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => Value::from(a.as_primitive::<UInt8Type>().value(i)),
        DataType::UInt16 => Value::from(a.as_primitive::<UInt16Type>().value(i)),
        DataType::UInt32 => Value::from(a.as_primitive::<UInt32Type>().value(i)),
        DataType::UInt64 => Value::from(a.as_primitive::<UInt64Type>().value(i)),
        DataType::Float32 => float(f64::from(a.as_primitive::<Float32Type>().value(i))),
        DataType::Float64 => float(a.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => Value::String(a.as_string::<i32>().value(i).to_owned()),
        DataType::LargeUtf8 => Value::String(a.as_string::<i64>().value(i).to_owned()),
        DataType::Utf8View => Value::String(a.as_string_view().value(i).to_owned()),
        DataType::Binary => Value::String(hex::encode(a.as_binary::<i32>().value(i))),
        DataType::LargeBinary => Value::String(hex::encode(a.as_binary::<i64>().value(i))),
        DataType::BinaryView => Value::String(hex::encode(a.as_binary_view().value(i))),
        // Dates, timestamps, decimals and nested values: Arrow's display form of the value.
        _ => {
            let formatter = arrow::util::display::ArrayFormatter::try_new(
                a.as_ref(),
                &arrow::util::display::FormatOptions::default(),
            )
            .map_err(|e| e.to_string())?;
            Value::String(formatter.value(i).to_string())
        }
    })
}
