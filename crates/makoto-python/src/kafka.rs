//! What the Python Kafka wrappers (`makoto.kafka`) take from the Rust producer, so that their
//! headers are byte-identical to it: the header values, and the next offset of a partition as
//! the Rust producer finds it (some brokers answer ListOffsets with less than the real end).

use makoto_kafka::{MakotoProducer, Topic};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::kafka_error;
use crate::runtime;

/// The makoto headers of a record with this value at this offset, as `(name, value)` pairs.
#[pyfunction]
pub(crate) fn kafka_headers<'py>(
    py: Python<'py>,
    value: &[u8],
    offset: i64,
    window_records: u64,
) -> Vec<(String, Bound<'py, PyBytes>)> {
    MakotoProducer::headers(value, offset, window_records)
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
