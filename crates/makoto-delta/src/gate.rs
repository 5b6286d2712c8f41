//! The gate (`makoto check`): a table version passes only if it is attested at or above a level,
//! its attestation chain verifies against trusted keys, and — when asked — so does every table
//! version in its lineage.

use std::collections::BTreeMap;

use makoto_core::attestation::{InputCheck, MakotoLevel};
use makoto_core::verify::TrustedKeys;
use serde::Serialize;

use crate::Error;
use crate::lineage::{EdgeKind, Lineage, VerifiedLineage};
use crate::location::{Location, StorageOptions};
use crate::log::SourceTable;
use crate::store::AttestationStore;
use crate::verify::{Severity, UnsignedRows, Verifier, VerifyMode, VerifyOptions, VersionSpec};

/// Whether the gate also checks the table versions upstream of the checked one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    Ignore,
    Check,
}

/// Options of a gate check.
#[derive(Debug, Clone)]
pub struct GateOptions {
    pub at: VersionSpec,
    pub min_level: MakotoLevel,
    pub upstream: Upstream,
    pub mode: VerifyMode,
    pub parallelism: usize,
    pub storage: StorageOptions,
}

impl GateOptions {
    /// Unsigned (L1) rows are accepted only when L1 is enough.
    pub fn unsigned_rows(&self) -> UnsignedRows {
        if self.min_level == MakotoLevel::L1 {
            UnsignedRows::Warn
        } else {
            UnsignedRows::Fail
        }
    }
}

impl Default for GateOptions {
    fn default() -> Self {
        GateOptions {
            at: VersionSpec::Latest,
            min_level: MakotoLevel::L2,
            upstream: Upstream::Ignore,
            mode: VerifyMode::Deep,
            parallelism: std::thread::available_parallelism().map_or(2, |n| n.get() * 2),
            storage: StorageOptions::default(),
        }
    }
}

/// One table the gate verified.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckedTable {
    pub table: String,
    pub version: u64,
    pub verified: bool,
    pub errors: usize,
    pub level: Option<String>,
}

/// The outcome of a gate check.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateReport {
    pub table: String,
    pub version: u64,
    pub min_level: String,
    pub passed: bool,
    /// Why the gate failed, one line each; empty when it passed.
    pub reasons: Vec<String>,
    pub checked: Vec<CheckedTable>,
    /// Table versions upstream of the checked one (its own earlier versions excluded).
    pub upstream_versions: usize,
}

async fn verify_table(
    store: &AttestationStore,
    trust: &TrustedKeys,
    source: &SourceTable,
    at: VersionSpec,
    options: &GateOptions,
    reasons: &mut Vec<String>,
) -> Result<(u64, CheckedTable), Error> {
    let verify = VerifyOptions {
        at,
        mode: options.mode,
        unsigned: options.unsigned_rows(),
        parallelism: options.parallelism,
        storage: options.storage.clone(),
        ..VerifyOptions::default()
    };
    let report = Verifier::new(source, store, trust, verify).run().await?;
    for f in report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
    {
        let at = f.version.map(|v| format!("@v{v}")).unwrap_or_default();
        reasons.push(format!(
            "{}{at}: {}: {}",
            report.table,
            f.kind.code(),
            f.detail
        ));
    }
    let errors = report.errors();
    Ok((
        report.version,
        CheckedTable {
            table: report.table.clone(),
            version: report.version,
            verified: report.verified,
            errors,
            level: None,
        },
    ))
}

/// Runs the gate on `source`. `Err` means the check could not run (exit 2); a failed gate is
/// a report with `passed == false`.
pub async fn check(
    store: &AttestationStore,
    trust: &TrustedKeys,
    source: &SourceTable,
    options: &GateOptions,
) -> Result<GateReport, Error> {
    let rows = store.all_attestation_rows().await?;
    let lineage = Lineage::verified(&rows, trust, options.unsigned_rows());
    check_with_lineage(store, trust, source, options, &lineage).await
}

/// [`check`] with the lineage graph the caller already read from `store` (a DBOM builds it
/// too): the attestations table is scanned once.
pub async fn check_with_lineage(
    store: &AttestationStore,
    trust: &TrustedKeys,
    source: &SourceTable,
    options: &GateOptions,
    lineage: &VerifiedLineage,
) -> Result<GateReport, Error> {
    let mut reasons = Vec::new();
    let uri = source.uri().to_owned();
    let (version, mut first) =
        verify_table(store, trust, source, options.at, options, &mut reasons).await?;
    match lineage.node(&uri, version) {
        None => reasons.push(format!("{uri}@v{version} is not attested")),
        Some(node) => {
            first.level = Some(node.level.to_string());
            if node.level < options.min_level {
                reasons.push(format!(
                    "{} is attested at {}, below the required {}",
                    node.subject, node.level, options.min_level
                ));
            }
        }
    }
    let mut checked = vec![first];
    let mut upstream_versions = 0;

    if options.upstream == Upstream::Check {
        let entries = lineage.upstream(&uri, version);
        let mut tables: BTreeMap<String, u64> = BTreeMap::new();
        for e in entries.iter().filter(|e| e.table_uri != uri) {
            upstream_versions += 1;
            let subject = format!("{}@v{}", e.table_uri, e.version);
            let via = e.downstream.clone().unwrap_or_default();
            let slot = tables.entry(e.table_uri.clone()).or_insert(e.version);
            *slot = (*slot).max(e.version);
            let Some(node) = &e.node else {
                reasons.push(format!(
                    "upstream {subject} (read by {via}) is not attested"
                ));
                continue;
            };
            if node.level < options.min_level {
                reasons.push(format!(
                    "upstream {subject} is attested at {}, below the required {}",
                    node.level, options.min_level
                ));
            }
            if e.edge == EdgeKind::Input {
                if e.recorded_digest != Some(node.state_digest) {
                    reasons.push(format!(
                        "{via} recorded input {subject} with a digest that is not its attested state digest"
                    ));
                }
                if e.recorded_attestation
                    .is_some_and(|a| a != node.attestation_digest)
                {
                    reasons.push(format!(
                        "{via} references an attestation of {subject} that is not the one in the warehouse"
                    ));
                }
            }
        }
        for node in entries.iter().filter_map(|e| e.node.as_ref()) {
            for input in node
                .inputs
                .iter()
                .filter(|i| i.check == Some(InputCheck::Unverified))
            {
                reasons.push(format!(
                    "{} read {} without verifying it (allow-unattested)",
                    node.subject, input.name
                ));
            }
        }
        for (table, v) in tables {
            let opened =
                Location::existing(&table).and_then(|l| SourceTable::open(l, &options.storage));
            let outcome = match opened {
                Ok(src) => {
                    verify_table(
                        store,
                        trust,
                        &src,
                        VersionSpec::Version(v),
                        options,
                        &mut reasons,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok((_, mut c)) => {
                    c.level = lineage.node(&table, v).map(|n| n.level.to_string());
                    checked.push(c);
                }
                Err(e) => {
                    reasons.push(format!("upstream {table}@v{v} cannot be verified: {e}"));
                    checked.push(CheckedTable {
                        table,
                        version: v,
                        verified: false,
                        errors: 1,
                        level: None,
                    });
                }
            }
        }
    }
    Ok(GateReport {
        table: uri,
        version,
        min_level: options.min_level.to_string(),
        passed: reasons.is_empty(),
        reasons,
        checked,
        upstream_versions,
    })
}
