//! Lineage across tables: the graph whose nodes are attested table versions and whose edges are
//! the `inputs` of their statements — the previous version of the same table, and the table
//! versions a cross-table transform read.
//!
//! [`Lineage::verified`] builds the graph from the statements in `system.makoto.attestations`
//! that verify with the caller's keys; the gate and signed DBOMs take only that
//! ([`VerifiedLineage`]). [`Lineage::from_rows`] decodes without checking signatures, for
//! browsing.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use makoto_core::Sha256Digest;
use makoto_core::attestation::{LevelEvidence, MakotoLevel};
use makoto_core::attested::{AttestedCommit, AttestedInput};
use makoto_core::dsse::Envelope;
use makoto_core::keys::KeyId;
use makoto_core::statement::Statement;
use makoto_core::timestamp::{ChainLink, walk_coverage};
use makoto_core::verify::{Binding, TrustedKeys, Verified};

use crate::Error;
use crate::store::AttestationRow;
use crate::verify::UnsignedRows;

/// One attested table version.
#[derive(Debug, Clone)]
pub struct LineageNode {
    pub table_uri: String,
    pub version: u64,
    pub subject: String,
    pub predicate_type: String,
    pub operation: Option<String>,
    /// `transform.name` of the statement (the operation, or a cross-table transform's name).
    pub transform_name: Option<String>,
    /// `transform.type` of the statement.
    pub transform_type: Option<String>,
    pub level: MakotoLevel,
    pub keyid: Option<KeyId>,
    pub state_digest: Sha256Digest,
    pub attestation_digest: Sha256Digest,
    pub commit_timestamp_ms: i64,
    pub inputs: Vec<AttestedInput>,
    /// How its attestation was checked.
    pub check: NodeCheck,
}

/// How an upstream entry was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EdgeKind {
    /// The version the walk started from.
    Start,
    /// The previous version of the same table.
    PreviousVersion,
    /// A table version read by a cross-table transform.
    Input,
}

impl EdgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeKind::Start => "start",
            EdgeKind::PreviousVersion => "previous_version",
            EdgeKind::Input => "input",
        }
    }
}

/// A table version upstream of the start of a walk.
#[derive(Debug, Clone)]
pub struct UpstreamEntry {
    /// Edges from the start (0 for the start itself).
    pub depth: u32,
    pub table_uri: String,
    pub version: u64,
    /// Subject of the version that named this one as an input.
    pub downstream: Option<String>,
    pub edge: EdgeKind,
    /// The digest the downstream statement recorded for this input.
    pub recorded_digest: Option<Sha256Digest>,
    /// The input's attestation as the downstream statement referenced it.
    pub recorded_attestation: Option<Sha256Digest>,
    /// The attestation of this version; `None` when the warehouse has none.
    pub node: Option<LineageNode>,
}

/// The lineage graph of a warehouse.
#[derive(Debug, Clone, Default)]
pub struct Lineage {
    nodes: HashMap<(String, u64), LineageNode>,
    problems: Vec<String>,
    /// Why a row of `(table, version)` is not a node.
    rejected: HashMap<(String, u64), String>,
}

/// How a node's attestation was checked.
#[derive(Debug, Clone)]
pub enum NodeCheck {
    /// Decoded without checking its signature ([`Lineage::from_rows`]).
    Unchecked,
    /// An unsigned (L1) statement, admitted by [`Lineage::verified`] because the caller accepts
    /// unsigned rows.
    Unsigned,
    /// Signed by a key the caller trusts, valid when it signed.
    Verified(Box<Verified<AttestedCommit>>),
}

/// A lineage graph built by [`Lineage::verified`]: every node's attestation was checked with
/// the caller's keys, and its facts come from the signed statement, not from the row's columns.
#[derive(Debug, Clone, Default)]
pub struct VerifiedLineage(Lineage);

impl std::ops::Deref for VerifiedLineage {
    type Target = Lineage;
    fn deref(&self) -> &Lineage {
        &self.0
    }
}

/// What the level of a verified node depends on beyond its signature.
struct Evidence {
    version: u64,
    payload_digest: Sha256Digest,
    previous: Option<(u64, Sha256Digest)>,
    token: Option<(Vec<u8>, Vec<u8>)>,
    keyid: KeyId,
    commit_time_ms: i64,
    claimed_at_ms: Option<i64>,
    identity_bound: bool,
}

/// The versions of one table's verified nodes that a trusted time-stamp covers.
fn covered_versions(found: &[Evidence], trust: &TrustedKeys) -> std::collections::BTreeSet<u64> {
    let at =
        |ms: i64| chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let links: Vec<ChainLink<'_>> = found
        .iter()
        .map(|e| ChainLink {
            version: e.version,
            payload_digest: e.payload_digest,
            previous: e.previous,
            token: e.token.as_ref().map(|(t, s)| (t.as_slice(), s.as_slice())),
            key: trust.key(&e.keyid),
            commit_time: at(e.commit_time_ms),
            claimed_at: e.claimed_at_ms.map(at),
        })
        .collect();
    walk_coverage(&links, trust.timestamp_authorities())
        .covered
        .into_keys()
        .collect()
}

fn statement_of(row: &AttestationRow) -> Result<(Envelope, Statement), String> {
    let envelope = Envelope::from_json(row.envelope.as_bytes()).map_err(|e| e.to_string())?;
    let statement = Statement::from_payload(envelope.payload()).map_err(|e| e.to_string())?;
    Ok((envelope, statement))
}

impl LineageNode {
    /// The node of an attested commit: every fact from the statement, except the operation,
    /// which is the row's `operation` column (for display).
    fn of(
        row: &AttestationRow,
        commit: &AttestedCommit,
        attestation_digest: Sha256Digest,
        level: MakotoLevel,
        check: NodeCheck,
    ) -> Self {
        let keyid = match &check {
            NodeCheck::Verified(v) => Some(v.keyid().clone()),
            NodeCheck::Unsigned => None,
            NodeCheck::Unchecked => row.keyid.clone(),
        };
        LineageNode {
            table_uri: commit.table_uri().to_owned(),
            version: commit.version(),
            subject: commit.subject_name().to_owned(),
            predicate_type: commit.predicate_type().to_owned(),
            operation: row.operation.clone(),
            transform_name: commit.transform_name().map(str::to_owned),
            transform_type: commit.transform_type().map(str::to_owned),
            level,
            keyid,
            state_digest: commit.state_root(),
            attestation_digest,
            commit_timestamp_ms: commit.timestamp_ms(),
            inputs: commit.inputs().to_vec(),
            check,
        }
    }
}

impl Lineage {
    /// Builds the graph from attestation rows without checking signatures: for browsing (the
    /// SQL `lineage` table) and for DBOMs made without trusted keys, which say so. Rows whose
    /// statement cannot be decoded are listed in [`Lineage::problems`] and are not nodes.
    pub fn from_rows(rows: &[AttestationRow]) -> Self {
        let mut lineage = Lineage::default();
        for row in rows {
            let decoded = statement_of(row).and_then(|(e, s)| {
                let commit = AttestedCommit::from_statement(&s).map_err(|e| e.to_string())?;
                Ok((commit, Sha256Digest::of(e.payload())))
            });
            match decoded {
                Ok((commit, digest)) => lineage.insert(LineageNode::of(
                    row,
                    &commit,
                    digest,
                    row.level,
                    NodeCheck::Unchecked,
                )),
                Err(e) => {
                    lineage.problems.push(format!("{}: {e}", row.subject));
                    lineage
                        .rejected
                        .insert((row.table_uri.clone(), row.version), e);
                }
            }
        }
        lineage
    }

    /// Builds the graph from the rows whose statements verify with `trust` (and, with
    /// [`UnsignedRows::Warn`], unsigned ones, as L1). Every other row is listed in
    /// [`Lineage::problems`] and is not a node, so what the gate and DBOMs read of a node was
    /// signed by a trusted key.
    pub fn verified(
        rows: &[AttestationRow],
        trust: &TrustedKeys,
        unsigned: UnsignedRows,
    ) -> VerifiedLineage {
        let mut lineage = Lineage::default();
        let mut evidence: BTreeMap<String, Vec<Evidence>> = BTreeMap::new();
        for row in rows {
            match Self::check(row, trust, unsigned) {
                Ok((node, e)) => {
                    if let Some(e) = e {
                        evidence.entry(node.table_uri.clone()).or_default().push(e);
                    }
                    lineage.insert(node);
                }
                Err(e) => {
                    lineage.problems.push(format!("{}: {e}", row.subject));
                    lineage
                        .rejected
                        .insert((row.table_uri.clone(), row.version), e);
                }
            }
        }
        for (table, mut found) in evidence {
            found.sort_by_key(|e| e.version);
            found.dedup_by_key(|e| e.version);
            let stamped = covered_versions(&found, trust);
            for e in &found {
                if let Some(node) = lineage.nodes.get_mut(&(table.clone(), e.version)) {
                    node.level = MakotoLevel::earned(LevelEvidence {
                        signed: true,
                        timestamped: stamped.contains(&e.version),
                        identity_bound: e.identity_bound,
                    });
                }
            }
        }
        VerifiedLineage(lineage)
    }

    /// The node of a row whose statement verifies (level L1 until [`Lineage::verified`] has
    /// seen the time-stamps), with what its level depends on.
    fn check(
        row: &AttestationRow,
        trust: &TrustedKeys,
        unsigned: UnsignedRows,
    ) -> Result<(LineageNode, Option<Evidence>), String> {
        let (envelope, statement) = statement_of(row)?;
        match makoto_core::verify::verify_statement(&envelope, trust) {
            Ok(verified) => {
                let key = trust.key(verified.keyid());
                let identity_bound = match key
                    .and_then(|k| k.binding_problem(verified.value(), &row.table_uri))
                {
                    Some(Binding::IdentityMismatch(d) | Binding::OutOfScope(d)) => return Err(d),
                    None => key.is_some_and(|k| k.identity().is_some()),
                };
                let verified = verified
                    .try_map(|s| AttestedCommit::from_statement(&s))
                    .map_err(|e| e.to_string())?;
                let commit = verified.value().clone();
                let evidence = Evidence {
                    version: commit.version(),
                    payload_digest: verified.payload_digest(),
                    previous: commit.previous(),
                    token: envelope
                        .signatures()
                        .iter()
                        .find_map(|s| s.timestamp().map(|t| (t.to_vec(), s.sig().to_vec()))),
                    keyid: verified.keyid().clone(),
                    commit_time_ms: commit.timestamp_ms(),
                    claimed_at_ms: commit.attested_at_ms(),
                    identity_bound,
                };
                Ok((
                    LineageNode::of(
                        row,
                        &commit,
                        verified.payload_digest(),
                        MakotoLevel::L1,
                        NodeCheck::Verified(Box::new(verified)),
                    ),
                    Some(evidence),
                ))
            }
            Err(makoto_core::Error::Unsigned) if unsigned == UnsignedRows::Warn => {
                let commit =
                    AttestedCommit::from_statement(&statement).map_err(|e| e.to_string())?;
                let digest = Sha256Digest::of(envelope.payload());
                Ok((
                    LineageNode::of(row, &commit, digest, MakotoLevel::L1, NodeCheck::Unsigned),
                    None,
                ))
            }
            Err(e) => Err(format!(
                "the attestation does not verify with the trusted keys ({e})"
            )),
        }
    }

    fn insert(&mut self, node: LineageNode) {
        self.nodes
            .insert((node.table_uri.clone(), node.version), node);
    }

    pub fn node(&self, table_uri: &str, version: u64) -> Option<&LineageNode> {
        self.nodes.get(&(table_uri.to_owned(), version))
    }

    /// Why the row of `table_uri@version` is not a node (its statement does not decode or,
    /// for a [`VerifiedLineage`], does not verify); `None` when there is no such row.
    pub fn rejected(&self, table_uri: &str, version: u64) -> Option<&str> {
        self.rejected
            .get(&(table_uri.to_owned(), version))
            .map(String::as_str)
    }

    /// The latest version of a table that has a row, node or not.
    fn latest_row(&self, table_uri: &str) -> Option<u64> {
        self.nodes
            .keys()
            .chain(self.rejected.keys())
            .filter(|(u, _)| u == table_uri)
            .map(|(_, v)| *v)
            .max()
    }

    /// The node of `table_uri` at `version` (default: its latest), or why there is none.
    pub fn require(&self, table_uri: &str, version: Option<u64>) -> Result<&LineageNode, Error> {
        let Some(v) = version.or_else(|| self.latest_row(table_uri)) else {
            return Err(Error::NotAttested {
                table: table_uri.to_owned(),
                version,
            });
        };
        if let Some(node) = self.node(table_uri, v) {
            return Ok(node);
        }
        Err(match self.rejected(table_uri, v) {
            Some(reason) => Error::AttestationUntrusted {
                table: table_uri.to_owned(),
                version: Some(v),
                reason: reason.to_owned(),
            },
            None => Error::NotAttested {
                table: table_uri.to_owned(),
                version: Some(v),
            },
        })
    }

    /// Every node, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = &LineageNode> {
        self.nodes.values()
    }

    /// Rows that are not nodes: their statement could not be decoded or, for a
    /// [`VerifiedLineage`], did not verify.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// The latest attested version of a table.
    pub fn latest_version(&self, table_uri: &str) -> Option<u64> {
        self.nodes
            .keys()
            .filter(|(u, _)| u == table_uri)
            .map(|(_, v)| *v)
            .max()
    }

    /// Every table version upstream of `table_uri@version` (itself included, at depth 0),
    /// breadth first, each once.
    pub fn upstream(&self, table_uri: &str, version: u64) -> Vec<UpstreamEntry> {
        let mut out = Vec::new();
        let mut seen: HashSet<(String, u64)> = HashSet::new();
        let mut queue = VecDeque::new();
        seen.insert((table_uri.to_owned(), version));
        queue.push_back(UpstreamEntry {
            depth: 0,
            table_uri: table_uri.to_owned(),
            version,
            downstream: None,
            edge: EdgeKind::Start,
            recorded_digest: None,
            recorded_attestation: None,
            node: self.node(table_uri, version).cloned(),
        });
        while let Some(entry) = queue.pop_front() {
            if let Some(node) = &entry.node {
                for input in &node.inputs {
                    let Some((uri, v)) = &input.table_version else {
                        continue;
                    };
                    if !seen.insert((uri.clone(), *v)) {
                        continue;
                    }
                    queue.push_back(UpstreamEntry {
                        depth: entry.depth + 1,
                        table_uri: uri.clone(),
                        version: *v,
                        downstream: Some(node.subject.clone()),
                        edge: if input.check.is_some() {
                            EdgeKind::Input
                        } else {
                            EdgeKind::PreviousVersion
                        },
                        recorded_digest: Some(input.digest),
                        recorded_attestation: input.attestation,
                        node: self.node(uri, *v).cloned(),
                    });
                }
            }
            out.push(entry);
        }
        out
    }
}
