//! Checks of the attestation rows themselves: each row against its signed statement and the
//! trusted keys, then the chain of versions.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use makoto_core::Sha256Digest;
use makoto_core::attestation::MakotoLevel;
use makoto_core::attested::{AttestedChange, AttestedCommit, check_commit_statement};
use makoto_core::dsse::Envelope;
use makoto_core::keys::KeyId;
use makoto_core::statement::Statement;
use makoto_core::verify::{Binding, TrustedKeys, verify_statement};

use super::findings::{Finding, FindingKind, RowRef};
use crate::store::AttestationRow;

/// A row after its individual checks.
#[derive(Debug, Clone)]
pub(crate) struct CheckedRow {
    /// The row as read, but for its envelope text (empty once checked).
    pub row: AttestationRow,
    pub row_ref: RowRef,
    /// The statement, without its listed file changes (moved to `listed`).
    pub attested: Option<Arc<AttestedCommit>>,
    /// The file changes the statement lists, until the verifier takes them for its walk.
    pub listed: Option<Vec<AttestedChange>>,
    pub payload_digest: Option<Sha256Digest>,
    /// The signature verified under a trusted key valid at the signing time (or the row is
    /// unsigned and `--allow-unsigned` accepts it).
    pub trusted: bool,
    /// The trusted key is bound to an identity and the statement names it.
    pub identity_bound: bool,
    /// The RFC 3161 token the envelope carries and the signature bytes beside it (only the
    /// last row of each time-stamped batch has one), read with the envelope here so that the
    /// time-stamp check does not parse envelopes again.
    pub timestamp: Option<(Vec<u8>, Vec<u8>)>,
}

impl CheckedRow {
    /// The version this row attests: its statement's, else its column's.
    pub fn version(&self) -> u64 {
        self.attested
            .as_deref()
            .map_or(self.row.version, AttestedCommit::version)
    }
}

pub(crate) fn row_ref(row: &AttestationRow) -> RowRef {
    RowRef {
        version: row.version,
        attestation_digest: row.attestation_digest.to_hex(),
        run_id: row.run_id.clone(),
        attested_at: DateTime::<Utc>::from_timestamp_micros(row.attested_at_us)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
            .unwrap_or_default(),
    }
}

/// Rows below this count are checked on the calling thread.
const PARALLEL_ROWS: usize = 256;

/// Checks every row (see [`check_row`]), on as many threads as there are cores, in order.
pub(crate) fn check_rows(
    rows: Vec<AttestationRow>,
    table_uri: &str,
    trust: &TrustedKeys,
    allow_unsigned: bool,
) -> Vec<(CheckedRow, Vec<Finding>)> {
    let one = |r: AttestationRow| {
        let mut f = Vec::new();
        let c = check_row(r, table_uri, trust, allow_unsigned, &mut f);
        (c, f)
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || rows.len() < PARALLEL_ROWS {
        return rows.into_iter().map(one).collect();
    }
    let per = rows.len().div_ceil(threads);
    let mut chunks: Vec<Vec<AttestationRow>> = Vec::with_capacity(threads);
    let mut rest = rows.into_iter();
    loop {
        let chunk: Vec<AttestationRow> = rest.by_ref().take(per).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|c| scope.spawn(move || c.into_iter().map(one).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(checked) => checked,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// Checks one row: envelope, payload digest, signature and key validity, statement shape, and
/// every column against the signed statement.
pub(crate) fn check_row(
    row: AttestationRow,
    table_uri: &str,
    trust: &TrustedKeys,
    allow_unsigned: bool,
    findings: &mut Vec<Finding>,
) -> CheckedRow {
    let r = row_ref(&row);
    let at = row.version;
    let mut push = |f: Finding| findings.push(f.at(at).row(r.clone()));
    let mut checked = CheckedRow {
        row_ref: r.clone(),
        attested: None,
        listed: None,
        payload_digest: None,
        trusted: false,
        identity_bound: false,
        timestamp: None,
        row,
    };
    // Read once, here: what later checks need of it is kept beside the row (payload digest,
    // time-stamp token), and the text, most of a row's size, is dropped.
    let text = std::mem::take(&mut checked.row.envelope);
    let env = match Envelope::from_json(text.as_bytes()) {
        Ok(e) => e,
        Err(e) => {
            push(Finding::new(
                FindingKind::AttestationAltered,
                format!("the envelope column is not a DSSE envelope ({e})"),
            ));
            return checked;
        }
    };
    checked.timestamp = env
        .signatures()
        .iter()
        .find_map(|s| s.timestamp().map(|t| (t.to_vec(), s.sig().to_vec())));
    let payload_digest = Sha256Digest::of(env.payload());
    checked.payload_digest = Some(payload_digest);
    if payload_digest != checked.row.attestation_digest {
        push(Finding::new(
            FindingKind::AttestationAltered,
            format!(
                "attestation_digest column is {} but the signed payload hashes to {payload_digest}",
                checked.row.attestation_digest
            ),
        ));
    }
    let statement = match Statement::from_payload(env.payload()) {
        Ok(s) => s,
        Err(e) => {
            push(Finding::new(FindingKind::StatementInvalid, e.to_string()));
            return checked;
        }
    };
    match verify_statement(&env, trust) {
        Ok(verified) => {
            checked.trusted = true;
            let key = trust.key(verified.keyid());
            match key.and_then(|k| k.binding_problem(verified.value(), table_uri)) {
                Some(Binding::IdentityMismatch(d)) => {
                    push(Finding::new(FindingKind::IdentityMismatch, d));
                }
                Some(Binding::OutOfScope(d)) => push(Finding::new(FindingKind::KeyOutOfScope, d)),
                None => checked.identity_bound = key.is_some_and(|k| k.identity().is_some()),
            }
        }
        Err(makoto_core::Error::Unsigned) => {
            let f = Finding::new(
                FindingKind::AttestationUnsigned,
                "the envelope has no signature (Makoto L1)",
            );
            // `--allow-unsigned`: the verifier accepts L1 rows as they are.
            checked.trusted = allow_unsigned;
            push(if allow_unsigned { f.warning() } else { f });
        }
        Err(makoto_core::Error::UntrustedSignature { keyids }) => {
            let names_trusted = keyids
                .iter()
                .any(|k| trust.keyids().iter().any(|t| t.as_str() == k));
            if names_trusted {
                push(Finding::new(
                    FindingKind::SignatureInvalid,
                    format!(
                        "the signature names trusted key {} but does not verify",
                        keyids.join(", ")
                    ),
                ));
            } else {
                push(Finding::new(
                    FindingKind::SignatureUntrusted,
                    format!(
                        "signed by {}, which is not a trusted key",
                        if keyids.is_empty() {
                            "an unnamed key".to_owned()
                        } else {
                            keyids.join(", ")
                        }
                    ),
                ));
            }
        }
        Err(makoto_core::Error::KeyNotValid { keyid, reason }) => {
            push(Finding::new(
                FindingKind::KeyNotValid,
                format!("key {keyid}: {reason}"),
            ));
        }
        Err(e) => push(Finding::new(FindingKind::StatementInvalid, e.to_string())),
    }
    let problems = check_commit_statement(&statement);
    if let Some(first) = problems.first() {
        push(Finding::new(
            FindingKind::StatementInvalid,
            if problems.len() > 1 {
                format!("{first} (and {} more)", problems.len() - 1)
            } else {
                first.clone()
            },
        ));
    }
    let Ok(mut attested) = AttestedCommit::from_statement(&statement) else {
        return checked;
    };

    let row = &checked.row;
    let mut differ: Vec<String> = Vec::new();
    if attested.table_uri() != table_uri {
        push(Finding::new(
            FindingKind::AttestationAltered,
            format!(
                "the signed statement is about table {}, not {table_uri}",
                attested.table_uri()
            ),
        ));
        // A row of another table says nothing about this one: it is not used.
        checked.trusted = false;
        return checked;
    }
    if attested.version() != row.version {
        push(Finding::new(
            FindingKind::AttestationAltered,
            format!(
                "the row says version {} but its signed statement attests version {}",
                row.version,
                attested.version()
            ),
        ));
    }
    let mut cmp = |name: &str, ok: bool| {
        if !ok {
            differ.push(name.to_owned());
        }
    };
    cmp("state_digest", row.state_digest == attested.state_root());
    cmp(
        "commit_digest",
        row.commit_digest == attested.commit_actions_digest(),
    );
    cmp(
        "commit_file_digest",
        row.commit_file_digest == attested.commit_file_digest(),
    );
    cmp(
        "changes_digest",
        row.changes_digest == attested.changes_digest(),
    );
    cmp(
        "previous_attestation_digest",
        row.previous_attestation_digest == attested.previous().map(|p| p.1),
    );
    cmp("live_files", row.live_files == attested.live_files());
    cmp("live_bytes", row.live_bytes == attested.live_bytes());
    cmp("table_id", row.table_id == attested.table_id());
    cmp("subject", row.subject == attested.subject_name());
    cmp(
        "predicate_type",
        row.predicate_type == attested.predicate_type(),
    );
    cmp(
        "commit_timestamp",
        row.commit_timestamp_ms == attested.timestamp_ms(),
    );
    let signed = env.is_signed();
    // The column is the attestor's claim; only a signed row may claim L2 (what a row earns is
    // the verifier's to say: VerifyReport::level).
    cmp("level", row.level != MakotoLevel::L2 || signed);
    cmp(
        "keyid",
        row.keyid.as_ref().map(KeyId::as_str) == env.signatures().first().and_then(|s| s.keyid()),
    );
    if !differ.is_empty() {
        push(Finding::new(
            FindingKind::AttestationAltered,
            format!(
                "column{} {} disagree{} with the signed statement",
                if differ.len() > 1 { "s" } else { "" },
                differ.join(", "),
                if differ.len() > 1 { "" } else { "s" }
            ),
        ));
    }
    checked.listed = attested.take_changes();
    checked.attested = Some(Arc::new(attested));
    checked
}

/// Chooses one row per version `from..=to` and checks the links between them. `base` is the
/// attestation digest at `from - 1` when verification starts after a recorded one.
pub(crate) fn select_chain(
    rows: impl IntoIterator<Item = CheckedRow>,
    from: u64,
    to: u64,
    base: Option<Sha256Digest>,
    baseline: Option<u64>,
    findings: &mut Vec<Finding>,
) -> BTreeMap<u64, CheckedRow> {
    let mut by_version: BTreeMap<u64, Vec<CheckedRow>> = BTreeMap::new();
    for r in rows {
        // Most versions have one row: a `Vec` grown by `push` would reserve four.
        match by_version.entry(r.version()) {
            Entry::Vacant(e) => {
                e.insert(vec![r]);
            }
            Entry::Occupied(mut e) => e.get_mut().push(r),
        }
    }
    let mut chain: BTreeMap<u64, CheckedRow> = BTreeMap::new();
    let mut expected_prev = base;
    // Versions are visited as the rows give them: a gap is one finding whatever its length.
    if from > to {
        return chain;
    }
    let present: Vec<u64> = by_version.range(from..=to).map(|(v, _)| *v).collect();
    let mut next = from;
    let missing = |a: u64, b: u64, findings: &mut Vec<Finding>| {
        let detail = if a == b {
            format!("no attestation row for version {a}")
        } else {
            format!("no attestation rows for versions {a}..={b}")
        };
        findings.push(Finding::new(FindingKind::AttestationMissing, detail).at(a));
    };
    for v in present
        .into_iter()
        .chain(std::iter::once(to.saturating_add(1)))
    {
        if v > next {
            missing(next, v - 1, findings);
            expected_prev = None;
        }
        if v > to {
            break;
        }
        next = v + 1;
        let Some(mut cands) = by_version.remove(&v) else {
            continue;
        };
        let links = |c: &CheckedRow| match (
            c.attested.as_deref().and_then(AttestedCommit::previous),
            expected_prev,
        ) {
            (Some((pv, pd)), Some(e)) => pv + 1 == v && pd == e,
            (None, None) => {
                v == 0
                    || (Some(v) == baseline
                        && c.attested
                            .as_deref()
                            .and_then(AttestedCommit::baseline)
                            .is_some())
            }
            _ => false,
        };
        if cands.len() > 1 {
            let mut trusted_payloads: Vec<Sha256Digest> = cands
                .iter()
                .filter(|c| c.trusted)
                .filter_map(|c| c.payload_digest)
                .collect();
            trusted_payloads.sort();
            trusted_payloads.dedup();
            let refs: Vec<String> = cands
                .iter()
                .map(|c| {
                    format!(
                        "{} (run {})",
                        c.row_ref.attestation_digest, c.row_ref.run_id
                    )
                })
                .collect();
            if trusted_payloads.len() > 1 {
                findings.push(
                    Finding::new(
                        FindingKind::ChainFork,
                        format!(
                            "{} different signed statements for version {v}: {}",
                            trusted_payloads.len(),
                            refs.join(", ")
                        ),
                    )
                    .at(v),
                );
            } else {
                findings.push(
                    Finding::new(
                        FindingKind::AttestationDuplicated,
                        format!("{} rows for version {v}: {}", cands.len(), refs.join(", ")),
                    )
                    .at(v),
                );
            }
        }
        let best = cands
            .iter()
            .position(|c| c.trusted && links(c))
            .or_else(|| cands.iter().position(|c| c.trusted))
            .or_else(|| cands.iter().position(|c| c.attested.is_some()))
            .unwrap_or(0);
        let chosen = cands.swap_remove(best);
        let link_known = v == 0
            || Some(v) == baseline
            || expected_prev.is_some()
            || (v == from && base.is_some());
        if chosen.attested.is_some() && link_known && !links(&chosen) {
            let points_to = chosen
                .attested
                .as_deref()
                .and_then(AttestedCommit::previous)
                .map_or("nothing".to_owned(), |(pv, pd)| {
                    format!("version {pv} attestation {pd}")
                });
            let expected = expected_prev.map_or("no previous attestation".to_owned(), |e| {
                format!("version {} attestation {e}", v.saturating_sub(1))
            });
            findings.push(
                Finding::new(
                    FindingKind::ChainBroken,
                    format!(
                        "the attestation of version {v} points to {points_to}, expected {expected}"
                    ),
                )
                .at(v)
                .row(chosen.row_ref.clone()),
            );
        }
        expected_prev = chosen.payload_digest;
        chain.insert(v, chosen);
    }
    chain
}
