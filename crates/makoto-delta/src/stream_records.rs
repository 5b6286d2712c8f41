//! The records an append-only commit adds, in order, and their canonical encoding
//! (`makoto-record-json/1`, documented in docs/streams.md).
//!
//! A commit is append-only when it adds data (`add` with `dataChange: true`, no deletion
//! vector) and removes nothing with `dataChange: true`. Its records are the rows of its added
//! files in log order, each file's rows in file order; record `i` of commit `v` is at
//! [`RecordPos`] `(v, i)`.

use std::collections::BTreeMap;

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

/// The records of an append-only commit (none for any other commit), bytes kept: for the few
/// windows a proof or a verdict needs whole. [`commit_leaves`] is the one to stream with.
pub async fn commit_records(source: &SourceTable, commit: &Commit) -> Result<Vec<Record>, Error> {
    let mut out = Vec::new();
    for_each_batch(source, commit, |batch, partition_values| {
        for row in 0..batch.num_rows() {
            out.push(Record {
                pos: RecordPos {
                    version: commit.version(),
                    index: out.len() as u64,
                },
                bytes: encode_record(batch, row, partition_values)?,
            });
        }
        Ok(())
    })
    .await?;
    Ok(out)
}

/// The leaf of every record of an append-only commit (none for any other commit), in record
/// order: record `i` has leaf `i`. Each batch of rows is encoded and hashed on all cores, and
/// no record's bytes outlive their batch.
pub async fn commit_leaves(
    source: &SourceTable,
    commit: &Commit,
) -> Result<Vec<Sha256Digest>, Error> {
    let mut out = Vec::new();
    for_each_batch(source, commit, |batch, partition_values| {
        out.extend(batch_leaves(batch, partition_values)?);
        Ok(())
    })
    .await?;
    Ok(out)
}

/// Rows per thread below which a batch is hashed on one thread (a thread costs about as much
/// as encoding and hashing a few dozen rows).
const MIN_ROWS_PER_THREAD: usize = 256;

/// Rows decoded at a time: large enough that splitting a batch over the cores pays.
const BATCH_ROWS: usize = 8192;

fn batch_leaves(
    batch: &RecordBatch,
    partition_values: &BTreeMap<String, Option<String>>,
) -> Result<Vec<Sha256Digest>, String> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let threads = cores.min(batch.num_rows() / MIN_ROWS_PER_THREAD);
    leaves_on(batch, partition_values, threads)
}

/// [`batch_leaves`] on `threads` threads (at least one), each hashing one run of rows.
fn leaves_on(
    batch: &RecordBatch,
    partition_values: &BTreeMap<String, Option<String>>,
    threads: usize,
) -> Result<Vec<Sha256Digest>, String> {
    let rows = batch.num_rows();
    let leaf = |row| encode_record(batch, row, partition_values).map(|b| merkle::leaf_hash(&b));
    let threads = threads.clamp(1, rows.max(1));
    if threads == 1 {
        return (0..rows).map(leaf).collect();
    }
    let per = rows.div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = (0..threads)
            .map(|t| {
                let rows = t * per..((t + 1) * per).min(rows);
                scope.spawn(move || rows.map(leaf).collect::<Result<Vec<_>, String>>())
            })
            .collect();
        let mut out = Vec::with_capacity(rows);
        for part in parts {
            out.extend(
                part.join()
                    .map_err(|_| "a hashing thread failed".to_owned())??,
            );
        }
        Ok(out)
    })
}

/// Calls `each` with every batch of rows of an append-only commit's added files, in record
/// order, with the file's partition values; nothing for any other commit.
async fn for_each_batch(
    source: &SourceTable,
    commit: &Commit,
    mut each: impl FnMut(&RecordBatch, &BTreeMap<String, Option<String>>) -> Result<(), String>,
) -> Result<(), Error> {
    if !is_append_only(commit) {
        return Ok(());
    }
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
            .map(|b| b.with_batch_size(BATCH_ROWS))
            .and_then(|b| b.build())
            .map_err(|e| bad(e.to_string()))?;
        for batch in reader {
            let batch = batch.map_err(|e| bad(e.to_string()))?;
            each(&batch, add.partition_values()).map_err(bad)?;
        }
    }
    Ok(())
}

/// The canonical bytes (`makoto-record-json/1`) of one row: its columns, and the file's
/// partition values for partition columns the data file does not hold.
fn encode_record(
    batch: &RecordBatch,
    row: usize,
    partition_values: &BTreeMap<String, Option<String>>,
) -> Result<Vec<u8>, String> {
    let mut object = encode_row(batch, row)?;
    for (k, v) in partition_values {
        if batch.schema_ref().field_with_name(k).is_err() {
            object.insert(
                k.clone(),
                v.as_ref().map_or(Value::Null, |s| Value::String(s.clone())),
            );
        }
    }
    Ok(canonical::to_vec(&Value::Object(object)))
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use rstest::rstest;
    use sha2::{Digest, Sha256};

    use super::*;

    fn batch(rows: i64) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("payload", DataType::Utf8, true),
            Field::new("score", DataType::Float64, true),
        ]);
        let payload: StringArray = (0..rows)
            .map(|i| (i % 5 != 0).then(|| format!("{{\"q\":\"row {i}\"}}")))
            .collect();
        let score: Float64Array = (0..rows).map(|i| Some(i as f64 / 4.0)).collect();
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows)),
                Arc::new(payload),
                Arc::new(score),
            ],
        )
        .unwrap()
    }

    fn partition() -> BTreeMap<String, Option<String>> {
        BTreeMap::from([("region".to_owned(), Some("emea".to_owned()))])
    }

    #[test]
    fn a_record_is_its_canonical_row_with_partition_values() {
        let b = batch(2);
        let bytes = encode_record(&b, 1, &partition()).unwrap();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"id":1,"payload":"{\"q\":\"row 1\"}","region":"emea","score":0.25}"#
        );
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(&bytes);
        let expected: [u8; 32] = h.finalize().into();
        assert_eq!(
            leaves_on(&b, &partition(), 1).unwrap()[1].as_bytes(),
            &expected
        );
    }

    #[rstest]
    #[case(2)]
    #[case(3)]
    #[case(7)]
    #[case(5000)]
    fn threads_do_not_change_the_leaves_or_their_order(#[case] threads: usize) {
        let b = batch(1001);
        let one = leaves_on(&b, &partition(), 1).unwrap();
        assert_eq!(one.len(), 1001);
        assert_eq!(leaves_on(&b, &partition(), threads).unwrap(), one);
        assert_eq!(batch_leaves(&b, &partition()).unwrap(), one);
    }

    #[test]
    fn an_empty_batch_has_no_leaves() {
        assert!(leaves_on(&batch(0), &partition(), 4).unwrap().is_empty());
    }
}
