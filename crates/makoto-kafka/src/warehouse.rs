//! Kafka windows kept in a warehouse's `system.makoto.windows`, beside Delta stream windows,
//! so SQL sees both. Each partition and window size is one stream (`kafka://<topic>/<p>`,
//! spec `records=<N>`) appended exactly once through the windows table's `txn`; a window's
//! `first_version`/`last_version` columns hold its first and last offset, `*_index` 0
//! (docs/attestation-table.md).

use std::collections::BTreeMap;

use makoto_core::Sha256Digest;
use makoto_core::dsse::Envelope;
use makoto_core::keys::Signer;
use makoto_delta::store::{AppendOutcome, windows_app_id};
use makoto_delta::{AttestationStore, WindowRow};

use crate::{Error, KafkaWindow, Topic, own_windows, subject};

/// One row run's identity and clock.
#[derive(Debug, Clone)]
pub(crate) struct RowRun {
    pub run_id: String,
    pub attested_at_us: i64,
}

/// Appends the windows of `topic` published to `makoto.dbom` (only those signed by `signer`'s
/// key, or unsigned ones without a signer) that the warehouse does not hold yet. A run that
/// published but failed to record catches up. Returns the rows written.
pub async fn record_windows(
    topic: &Topic,
    store: &AttestationStore,
    signer: Option<&dyn Signer>,
) -> Result<u64, Error> {
    let windows = own_windows(topic, signer).await?;
    let run = RowRun {
        run_id: uuid::Uuid::new_v4().to_string(),
        attested_at_us: chrono::Utc::now().timestamp_micros(),
    };
    let mut streams: BTreeMap<(i32, u64), Vec<(&KafkaWindow, &String)>> = BTreeMap::new();
    for ((p, _), (w, env)) in &windows {
        streams
            .entry((*p, w.window_records))
            .or_default()
            .push((w, env));
    }
    let mut written = 0;
    for ((p, n), list) in streams {
        let (uri, spec) = (
            format!("kafka://{}/{p}", topic.name()),
            format!("records={n}"),
        );
        let table = store.load_windows().await?;
        let done = AttestationStore::txn_version(&table, &windows_app_id(&uri, &spec))
            .await?
            .unwrap_or(0);
        let rows = list
            .into_iter()
            .filter(|(w, _)| w.window + 1 > done)
            .map(|(w, env)| window_row(topic.name(), w, env, &run))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(last) = rows.last().map(|r| r.sequence) else {
            continue;
        };
        match store
            .append_windows(table, &rows, &uri, &spec, last, &run.run_id)
            .await?
        {
            AppendOutcome::Committed { .. } => written += rows.len() as u64,
            AppendOutcome::Conflict => return Err(Error::RecordConflict { stream: uri }),
        }
    }
    Ok(written)
}

/// The `system.makoto.windows` row of a published window. The attestation digest and key id
/// come from the envelope itself; a window without offsets is refused, never written with
/// zeros.
pub(crate) fn window_row(
    topic: &str,
    w: &KafkaWindow,
    envelope_json: &str,
    run: &RowRun,
) -> Result<WindowRow, Error> {
    let uri = format!("kafka://{topic}/{}", w.partition);
    let bad = |reason: String| Error::WindowRow {
        stream: uri.clone(),
        window: w.window,
        reason,
    };
    let envelope = Envelope::from_json(envelope_json.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let offset = |o: Option<i64>, which: &str| {
        o.and_then(|o| u64::try_from(o).ok())
            .ok_or_else(|| bad(format!("no valid {which} offset")))
    };
    Ok(WindowRow {
        table_uri: uri.clone(),
        table_id: topic.to_owned(),
        spec: format!("records={}", w.window_records),
        sequence: w.window + 1,
        window_id: w.id.clone(),
        first_version: offset(w.first_offset, "first")?,
        first_index: 0,
        last_version: offset(w.last_offset, "last")?,
        last_index: 0,
        first_timestamp_ms: w.min_timestamp_ms.unwrap_or(0),
        last_timestamp_ms: w.max_timestamp_ms.unwrap_or(0),
        leaf_count: w.leaves.len() as u64,
        merkle_root: w.root,
        previous_window_id: w
            .previous
            .map(|(k, _)| subject(topic, w.partition, w.window_records, k)),
        previous_merkle_root: w.previous.map(|(_, r)| r),
        attestation_digest: Sha256Digest::of(envelope.payload()),
        keyid: envelope
            .signatures()
            .first()
            .and_then(|s| s.keyid())
            .map(str::parse)
            .transpose()
            .map_err(|e: makoto_core::Error| bad(e.to_string()))?,
        envelope: envelope_json.to_owned(),
        attested_at_us: run.attested_at_us,
        run_id: run.run_id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use makoto_core::keys::SigningKeyPair;

    fn window(first: Option<i64>) -> KafkaWindow {
        KafkaWindow {
            id: subject("ticks", 1, 5, 2),
            topic: "ticks".into(),
            partition: 1,
            window_records: 5,
            window: 2,
            first_offset: first,
            last_offset: Some(14),
            root: Sha256Digest::of(b"root"),
            leaves: vec![Sha256Digest::of(b"a"), Sha256Digest::of(b"b")],
            previous: Some((1, Sha256Digest::of(b"prev"))),
            min_timestamp_ms: Some(1),
            max_timestamp_ms: Some(2),
            encoding: crate::RecordEncoding::Record2,
            headers: crate::HeaderPolicy::Optional,
        }
    }

    fn run() -> RowRun {
        RowRun {
            run_id: "r".into(),
            attested_at_us: 7,
        }
    }

    #[test]
    fn the_row_takes_digest_and_keyid_from_the_envelope() {
        let key = SigningKeyPair::generate().unwrap();
        let env = Envelope::sign("application/vnd.in-toto+json", b"{\"x\":1}".to_vec(), &key)
            .unwrap()
            .to_json();
        let row = window_row("ticks", &window(Some(10)), &env, &run()).unwrap();
        assert_eq!(row.attestation_digest, Sha256Digest::of(b"{\"x\":1}"));
        assert_eq!(
            row.keyid.as_ref().map(|k| k.as_str()),
            Some(key.keyid().as_str())
        );
        assert_eq!((row.first_version, row.last_version), (10, 14));
        assert_eq!(row.sequence, 3);
        assert_eq!(row.table_uri, "kafka://ticks/1");
        assert_eq!(row.spec, "records=5");
        assert_eq!(
            row.previous_window_id.as_deref(),
            Some("kafka://ticks/1#window/records=5/1")
        );
    }

    #[test]
    fn an_unreadable_envelope_or_a_missing_offset_is_refused() {
        let e = window_row("ticks", &window(Some(10)), "not json", &run()).unwrap_err();
        assert!(e.to_string().contains("kafka://ticks/1 window 2"), "{e}");
        let env = Envelope::unsigned("application/vnd.in-toto+json", b"{}".to_vec()).to_json();
        let e = window_row("ticks", &window(None), &env, &run()).unwrap_err();
        assert!(e.to_string().contains("first offset"), "{e}");
        let e = window_row("ticks", &window(Some(-1)), &env, &run()).unwrap_err();
        assert!(e.to_string().contains("first offset"), "{e}");
    }
}
