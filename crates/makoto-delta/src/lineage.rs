//! Lineage across tables: the graph whose nodes are attested table versions and whose edges are
//! the `inputs` of their statements — the previous version of the same table, and the table
//! versions a cross-table transform read.
//!
//! The graph is decoded from the envelopes in `system.makoto.attestations` without checking
//! signatures; callers that must trust it (the gate, DBOMs) verify the tables it names.

use std::collections::{HashMap, HashSet, VecDeque};

use makoto_core::Sha256Digest;
use makoto_core::attestation::MakotoLevel;
use makoto_core::attested::{AttestedCommit, AttestedInput};
use makoto_core::dsse::Envelope;
use makoto_core::keys::KeyId;
use makoto_core::statement::Statement;
use serde_json::Value;

use crate::store::AttestationRow;

/// One attested table version.
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

fn decode(row: &AttestationRow) -> Result<(AttestedCommit, Statement), String> {
    let envelope = Envelope::from_json(row.envelope.as_bytes()).map_err(|e| e.to_string())?;
    let statement = Statement::from_payload(envelope.payload()).map_err(|e| e.to_string())?;
    let commit = AttestedCommit::from_statement(&statement).map_err(|e| e.to_string())?;
    Ok((commit, statement))
}

impl Lineage {
    /// Builds the graph from attestation rows. Rows whose envelope cannot be decoded become
    /// nodes without inputs and are listed in [`Lineage::problems`].
    pub fn from_rows(rows: &[AttestationRow]) -> Self {
        let mut lineage = Lineage::default();
        for row in rows {
            let (inputs, transform) = match decode(row) {
                Ok((commit, statement)) => {
                    let t = statement.predicate().get("transform");
                    let field = |k: &str| t.and_then(|t| t.get(k)).and_then(Value::as_str);
                    (
                        commit.inputs().to_vec(),
                        (
                            field("name").map(str::to_owned),
                            field("type").map(str::to_owned),
                        ),
                    )
                }
                Err(e) => {
                    lineage.problems.push(format!("{}: {e}", row.subject));
                    (Vec::new(), (None, None))
                }
            };
            lineage.nodes.insert(
                (row.table_uri.clone(), row.version),
                LineageNode {
                    table_uri: row.table_uri.clone(),
                    version: row.version,
                    subject: row.subject.clone(),
                    predicate_type: row.predicate_type.clone(),
                    operation: row.operation.clone(),
                    transform_name: transform.0,
                    transform_type: transform.1,
                    level: row.level,
                    keyid: row.keyid.clone(),
                    state_digest: row.state_digest,
                    attestation_digest: row.attestation_digest,
                    commit_timestamp_ms: row.commit_timestamp_ms,
                    inputs,
                },
            );
        }
        lineage
    }

    pub fn node(&self, table_uri: &str, version: u64) -> Option<&LineageNode> {
        self.nodes.get(&(table_uri.to_owned(), version))
    }

    /// Every node, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = &LineageNode> {
        self.nodes.values()
    }

    /// Envelopes that could not be decoded.
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
