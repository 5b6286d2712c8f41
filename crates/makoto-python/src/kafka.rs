//! What the Python Kafka wrappers (`makoto.kafka`) take from the Rust library, so that their
//! headers and checks are the Rust ones: the header values, the next offset of a partition as
//! the Rust producer finds it (some brokers answer ListOffsets with less than the real end),
//! and the consumer-side check of records against their signed windows.

use std::collections::BTreeMap;

use makoto_kafka::{MakotoProducer, RecordStatus, Topic, WindowIndex};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::kafka_error;
use crate::{load_trust, runtime};

/// The makoto headers of a record with this value at this offset of `topic`'s `partition`,
/// as `(name, value)` pairs.
#[pyfunction]
pub(crate) fn kafka_headers<'py>(
    py: Python<'py>,
    topic: &str,
    partition: i32,
    value: &[u8],
    offset: i64,
    window_records: u64,
) -> Vec<(String, Bound<'py, PyBytes>)> {
    MakotoProducer::headers(topic, partition, value, offset, window_records)
        .into_iter()
        .map(|(name, bytes)| (name, PyBytes::new(py, &bytes)))
        .collect()
}

/// The offset the next record written to `partition` of `topic` gets.
#[pyfunction]
pub(crate) fn kafka_next_offset(
    py: Python<'_>,
    brokers: String,
    topic: String,
    partition: i32,
) -> PyResult<i64> {
    runtime::run(py, async move {
        Topic::connect(&brokers, &topic)
            .await?
            .next_offset(partition)
            .await
    })?
    .map_err(kafka_error)
}

/// One record's check as Python receives it: `(status, kind, window, headered, detail)`.
type CheckTuple = (String, Option<String>, Option<u64>, bool, String);

/// The signed windows of a topic, loaded from its cluster's `makoto.dbom` (those that verify
/// with the trusted keys), for checking records as they are consumed.
#[pyclass(module = "makoto._native", frozen)]
pub(crate) struct KafkaWindows {
    brokers: String,
    attested_as: String,
    trust: makoto_core::verify::TrustedKeys,
    index: std::sync::RwLock<WindowIndex>,
}

async fn load_index(
    brokers: String,
    topic: String,
    trust: makoto_core::verify::TrustedKeys,
) -> Result<WindowIndex, makoto_kafka::Error> {
    let topic = Topic::connect(&brokers, &topic).await?;
    WindowIndex::load(&topic, &trust).await
}

#[pymethods]
impl KafkaWindows {
    #[new]
    fn new(
        py: Python<'_>,
        brokers: String,
        attested_as: String,
        trust: std::path::PathBuf,
    ) -> PyResult<Self> {
        let trust = load_trust(&trust)?;
        let (b, t, k) = (brokers.clone(), attested_as.clone(), trust.clone());
        let index = runtime::run(py, load_index(b, t, k))?.map_err(kafka_error)?;
        Ok(KafkaWindows {
            brokers,
            attested_as,
            trust,
            index: std::sync::RwLock::new(index),
        })
    }

    /// Reads the windows published since; returns how many verified windows are known.
    fn reload(&self, py: Python<'_>) -> PyResult<usize> {
        let (b, t, k) = (
            self.brokers.clone(),
            self.attested_as.clone(),
            self.trust.clone(),
        );
        let index = runtime::run(py, load_index(b, t, k))?.map_err(kafka_error)?;
        let n = index.len();
        if let Ok(mut held) = self.index.write() {
            *held = index;
        }
        Ok(n)
    }

    /// Checks one consumed record: `(status, kind, window, headered, detail)` with status
    /// `verified`, `pending` or `failed`, and for `failed` the finding kind. Of a header
    /// name given more than once the last value counts, as the Rust client reads it.
    #[allow(clippy::too_many_arguments)]
    fn check(
        &self,
        partition: i32,
        offset: i64,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        timestamp_ms: i64,
        headers: Vec<(String, Option<Vec<u8>>)>,
    ) -> PyResult<CheckTuple> {
        let record = makoto_kafka::Record {
            key,
            value,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect::<BTreeMap<_, _>>(),
            timestamp: chrono::DateTime::from_timestamp_millis(timestamp_ms).ok_or_else(|| {
                pyo3::exceptions::PyValueError::new_err(format!(
                    "timestamp {timestamp_ms} ms is out of range"
                ))
            })?,
        };
        let index = self
            .index
            .read()
            .map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("window index poisoned"))?;
        let c = index.check(partition, offset, &record);
        let (status, kind) = match c.status {
            RecordStatus::Verified => ("verified", None),
            RecordStatus::Pending => ("pending", None),
            RecordStatus::Failed(k) => ("failed", Some(k.code().to_owned())),
            _ => ("failed", None),
        };
        Ok((status.to_owned(), kind, c.window, c.headered, c.detail))
    }
}
