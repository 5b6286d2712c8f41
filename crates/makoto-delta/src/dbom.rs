//! Data Bill of Materials (DBOM v1) of a table version: the dataset, the origin attestations of
//! every upstream root, the transformations in dependency order across tables, the lineage
//! graph (Mermaid and DOT), the overall Makoto level and a verification summary.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, SecondsFormat, Utc};
use makoto_core::Sha256Digest;
use makoto_core::attestation::{MakotoLevel, ORIGIN_V1, TRANSFORM_V1, attestation_ref};
use makoto_core::dsse::Envelope;
use makoto_core::keys::Signer;
use makoto_core::{canonical, verify::TrustedKeys};
use serde_json::{Value, json};

use crate::Error;
use crate::gate::{self, GateOptions, GateReport, Upstream};
use crate::lineage::{Lineage, UpstreamEntry};
use crate::log::SourceTable;
use crate::store::AttestationStore;
use crate::verify::UnsignedRows;

/// DSSE payload type of a signed DBOM.
pub const DBOM_PAYLOAD_TYPE: &str = "application/vnd.makoto.dbom+json";

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn table_name(uri: &str) -> &str {
    uri.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or(uri)
}

fn subject(e: &UpstreamEntry) -> String {
    format!("{}@v{}", e.table_uri, e.version)
}

/// Orders transform entries so that every input comes before the versions that read it
/// (Kahn's algorithm; ties by commit time, table and version).
fn dependency_order<'a>(entries: &[&'a UpstreamEntry]) -> Vec<&'a UpstreamEntry> {
    let index: HashMap<String, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (subject(e), i))
        .collect();
    let mut pending = vec![0usize; entries.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); entries.len()];
    for (i, e) in entries.iter().enumerate() {
        let Some(node) = &e.node else { continue };
        let deps: HashSet<usize> = node
            .inputs
            .iter()
            .filter_map(|input| index.get(&input.name).copied())
            .collect();
        pending[i] = deps.len();
        for d in deps {
            dependents[d].push(i);
        }
    }
    let key = |i: usize| {
        let e = entries[i];
        (
            e.node.as_ref().map_or(0, |n| n.commit_timestamp_ms),
            e.table_uri.clone(),
            e.version,
            i,
        )
    };
    let mut ready: BTreeSet<_> = (0..entries.len())
        .filter(|&i| pending[i] == 0)
        .map(key)
        .collect();
    let mut out = Vec::with_capacity(entries.len());
    while let Some(k) = ready.pop_first() {
        let i = k.3;
        out.push(entries[i]);
        for &d in &dependents[i] {
            pending[d] -= 1;
            if pending[d] == 0 {
                ready.insert(key(d));
            }
        }
    }
    out
}

fn node_id(i: usize) -> String {
    format!("n{i}")
}

fn graphs(entries: &[UpstreamEntry]) -> (String, String) {
    let ids: HashMap<String, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (subject(e), i))
        .collect();
    let mut mermaid = String::from("graph LR\n");
    let mut dot = String::from("digraph lineage {\n  rankdir=LR;\n");
    for (i, e) in entries.iter().enumerate() {
        let label = format!(
            "{}@v{}{}",
            table_name(&e.table_uri),
            e.version,
            e.node
                .as_ref()
                .map(|n| format!(" {}", n.level))
                .unwrap_or_else(|| " unattested".into())
        );
        mermaid.push_str(&format!(
            "  {}[\"{}\"]\n",
            node_id(i),
            label.replace('"', "'")
        ));
        dot.push_str(&format!(
            "  {} [label=\"{}\"];\n",
            node_id(i),
            label.replace('\\', "\\\\").replace('"', "\\\"")
        ));
    }
    for (i, e) in entries.iter().enumerate() {
        let Some(node) = &e.node else { continue };
        for input in &node.inputs {
            if let Some(&j) = ids.get(&input.name) {
                mermaid.push_str(&format!("  {} --> {}\n", node_id(j), node_id(i)));
                dot.push_str(&format!("  {} -> {};\n", node_id(j), node_id(i)));
            }
        }
    }
    dot.push_str("}\n");
    (mermaid, dot)
}

/// Whether the DBOM's verification summary could check signatures.
#[derive(Debug, Clone)]
pub enum DbomVerification<'a> {
    /// Verify the version and its lineage against these keys.
    Trusted(&'a TrustedKeys, GateOptions),
    /// No trusted key: the summary says the chain was not verified.
    NotVerified,
}

/// Builds the DBOM of `source` at `options.at` (the version in the gate options).
pub async fn build(
    store: &AttestationStore,
    source: &SourceTable,
    version: Option<u64>,
    verification: DbomVerification<'_>,
) -> Result<Value, Error> {
    let uri = source.uri().to_owned();
    let rows = store.all_attestation_rows().await?;
    // With trusted keys, everything the DBOM says comes from statements that verify with them.
    let verified = match &verification {
        DbomVerification::Trusted(trust, _) => {
            Some(Lineage::verified(&rows, trust, UnsignedRows::Warn))
        }
        DbomVerification::NotVerified => None,
    };
    let unchecked;
    let lineage: &Lineage = match &verified {
        Some(v) => v,
        None => {
            unchecked = Lineage::from_rows(&rows);
            &unchecked
        }
    };
    let head = lineage.require(&uri, version)?.clone();
    let version = head.version;
    let entries = lineage.upstream(&uri, version);
    let now = Utc::now();

    let mut sources = Vec::new();
    for e in &entries {
        match &e.node {
            Some(n) if n.predicate_type == ORIGIN_V1 => sources.push(json!({
                "name": n.subject,
                "description": format!("origin of {}", e.table_uri),
                "attestationRef": attestation_ref(&n.attestation_digest),
                "attestationType": ORIGIN_V1,
                "makotoLevel": n.level.as_str(),
                "digest": {"sha256": n.state_digest.to_hex()},
            })),
            None => sources.push(json!({
                "name": subject(e),
                "description": if verified.is_some() {
                    "not attested, or its attestation does not verify with the trusted keys"
                } else {
                    "not attested: read by a transform under allow-unattested"
                },
                "attestationRef": format!("urn:makoto:unattested:{}", subject(e)),
                "digest": e.recorded_digest.map(|d| json!({"sha256": d.to_hex()})),
            })),
            Some(_) => {}
        }
    }

    let transforms: Vec<&UpstreamEntry> = entries
        .iter()
        .filter(|e| {
            e.node
                .as_ref()
                .is_some_and(|n| n.predicate_type == TRANSFORM_V1)
        })
        .collect();
    let transformations: Vec<Value> = dependency_order(&transforms)
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let n = e.node.as_ref()?;
            let name = n
                .transform_name
                .clone()
                .or_else(|| n.operation.clone())
                .unwrap_or_else(|| "UNKNOWN".into());
            let mut t = json!({
                "order": i + 1,
                "name": name,
                "description": format!("{} wrote {}", name, n.subject),
                "attestationRef": attestation_ref(&n.attestation_digest),
                "attestationType": TRANSFORM_V1,
                "makotoLevel": n.level.as_str(),
                "inputs": n.inputs.iter().map(|i| i.name.clone()).collect::<Vec<_>>(),
                "outputs": [n.subject],
                "digest": {"sha256": n.state_digest.to_hex()},
            });
            if let (Some(ty), Some(m)) = (&n.transform_type, t.as_object_mut()) {
                m.insert("transformType".into(), json!(ty));
            }
            Some(t)
        })
        .collect();

    let attested: Vec<_> = entries.iter().filter_map(|e| e.node.as_ref()).collect();
    let unattested = entries.len() - attested.len();
    let min_level = attested
        .iter()
        .map(|n| n.level)
        .min()
        .unwrap_or(MakotoLevel::L1);
    let overall = if unattested > 0 {
        MakotoLevel::L1
    } else {
        min_level
    };
    let justification = if unattested > 0 {
        format!(
            "{unattested} upstream table version(s) are not attested; the lowest level along the chain is L1"
        )
    } else {
        format!(
            "minimum Makoto level over the {} attestations of the lineage",
            attested.len()
        )
    };

    let verification_json = match (verification, &verified) {
        (DbomVerification::Trusted(trust, mut options), Some(lineage)) => {
            options.at = crate::verify::VersionSpec::Version(version);
            options.upstream = Upstream::Check;
            options.min_level = MakotoLevel::L1;
            let report: GateReport =
                gate::check_with_lineage(store, trust, source, &options, lineage).await?;
            json!({
                "chainVerified": report.passed,
                "allSignaturesValid": report.passed
                    && unattested == 0
                    && attested
                        .iter()
                        .all(|n| matches!(n.check, crate::lineage::NodeCheck::Verified(_))),
                "attestationCount": attested.len(),
                "verificationTimestamp": now.to_rfc3339_opts(SecondsFormat::Millis, true),
                "verifier": {"tool": "makoto", "version": env!("CARGO_PKG_VERSION")},
                "mode": match options.mode {
                    crate::VerifyMode::Deep => "deep",
                    crate::VerifyMode::LogOnly => "log-only",
                },
                "trustedKeyids": trust.keyids().iter().map(|k| k.to_string()).collect::<Vec<_>>(),
                "tablesVerified": report.checked.len(),
                "reasons": report.reasons,
            })
        }
        _ => json!({
            "chainVerified": false,
            "allSignaturesValid": false,
            "attestationCount": attested.len(),
            "verificationTimestamp": now.to_rfc3339_opts(SecondsFormat::Millis, true),
            "verifier": {"tool": "makoto", "version": env!("CARGO_PKG_VERSION")},
            "reasons": ["no trusted key was given: signatures and chains were not verified"],
        }),
    };

    let (mermaid, dot) = graphs(&entries);
    Ok(json!({
        "dbomVersion": "1.0.0",
        "dbomId": format!("urn:makoto:dbom:sha256:{}", Sha256Digest::of(
            format!("{}\n{}", head.subject, head.attestation_digest).as_bytes()
        )),
        "dataset": {
            "name": table_name(&uri),
            "version": version.to_string(),
            "description": format!("Delta table {uri} at version {version}"),
            "created": rfc3339(head.commit_timestamp_ms),
            "digest": {"sha256": head.state_digest.to_hex(), "format": "delta"},
            "makotoLevel": head.level.as_str(),
            "uri": uri,
            "subject": head.subject,
            "attestationRef": attestation_ref(&head.attestation_digest),
        },
        "sources": sources,
        "transformations": transformations,
        "lineageGraph": {"format": "mermaid", "content": mermaid},
        "lineageGraphs": [
            {"format": "mermaid", "content": mermaid},
            {"format": "graphviz-dot", "content": dot},
        ],
        "compliance": {
            "overallMakotoLevel": overall.as_str(),
            "levelJustification": justification,
        },
        "verification": verification_json,
        "metadata": {
            "generator": {"tool": "makoto", "version": env!("CARGO_PKG_VERSION")},
            "created": now.to_rfc3339_opts(SecondsFormat::Millis, true),
        },
    }))
}

/// Signs a DBOM as a DSSE envelope over its canonical JSON.
pub fn sign(dbom: &Value, signer: &dyn Signer) -> Result<Envelope, Error> {
    Envelope::sign(DBOM_PAYLOAD_TYPE, canonical::to_vec(dbom), signer)
        .map_err(|e| Error::core("signing the DBOM".to_owned(), e))
}
