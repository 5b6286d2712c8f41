//! Lineage in SQL: the `system.makoto.lineage` edge table and the `makoto_lineage(table
//! [, version])` table function, both derived from the statements in
//! `system.makoto.attestations` when the session opens.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    BooleanBuilder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
    UInt32Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::Expr;
use makoto_core::attested::parse_subject_name;
use makoto_delta::Location;
use makoto_delta::lineage::Lineage;

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn edge_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("table_uri", DataType::Utf8, false),
        Field::new("version", DataType::Int64, false),
        Field::new("subject", DataType::Utf8, false),
        Field::new("edge", DataType::Utf8, false),
        Field::new("input_name", DataType::Utf8, false),
        Field::new("input_table_uri", DataType::Utf8, true),
        Field::new("input_version", DataType::Int64, true),
        Field::new("input_digest", DataType::Utf8, false),
        Field::new("input_attestation_digest", DataType::Utf8, true),
        Field::new("input_level", DataType::Utf8, true),
        Field::new("input_check", DataType::Utf8, true),
    ]))
}

fn err(e: impl std::fmt::Display) -> DataFusionError {
    DataFusionError::Execution(e.to_string())
}

/// `system.makoto.lineage`: one row per input of every attested statement.
pub fn edge_table(lineage: &Lineage) -> DfResult<MemTable> {
    let mut nodes: Vec<_> = lineage.nodes().collect();
    nodes.sort_by(|a, b| (&a.table_uri, a.version).cmp(&(&b.table_uri, b.version)));
    let mut table_uri = StringBuilder::new();
    let mut version = Int64Builder::new();
    let mut subject = StringBuilder::new();
    let mut edge = StringBuilder::new();
    let mut input_name = StringBuilder::new();
    let mut input_table = StringBuilder::new();
    let mut input_version = Int64Builder::new();
    let mut input_digest = StringBuilder::new();
    let mut input_att = StringBuilder::new();
    let mut input_level = StringBuilder::new();
    let mut input_check = StringBuilder::new();
    for n in nodes {
        for i in &n.inputs {
            table_uri.append_value(&n.table_uri);
            version.append_value(i64::try_from(n.version).unwrap_or(i64::MAX));
            subject.append_value(&n.subject);
            edge.append_value(if i.check.is_some() {
                "input"
            } else {
                "previous_version"
            });
            input_name.append_value(&i.name);
            input_table.append_option(i.table_version.as_ref().map(|(u, _)| u.as_str()));
            input_version.append_option(
                i.table_version
                    .as_ref()
                    .map(|(_, v)| i64::try_from(*v).unwrap_or(i64::MAX)),
            );
            input_digest.append_value(i.digest.to_hex());
            input_att.append_option(i.attestation.map(|d| d.to_hex()));
            input_level.append_option(i.level.map(|l| l.as_str()));
            input_check.append_option(i.check.map(|c| c.as_str()));
        }
    }
    let schema = edge_schema();
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(table_uri.finish()),
            Arc::new(version.finish()),
            Arc::new(subject.finish()),
            Arc::new(edge.finish()),
            Arc::new(input_name.finish()),
            Arc::new(input_table.finish()),
            Arc::new(input_version.finish()),
            Arc::new(input_digest.finish()),
            Arc::new(input_att.finish()),
            Arc::new(input_level.finish()),
            Arc::new(input_check.finish()),
        ],
    )?;
    MemTable::try_new(schema, vec![vec![batch]])
}

/// `makoto_lineage(table [, version])`.
#[derive(Debug)]
pub struct LineageFunction {
    lineage: Arc<Lineage>,
    /// Names registered with `--table NAME=URI`, to their canonical URIs.
    aliases: HashMap<String, String>,
}

impl LineageFunction {
    pub fn new(lineage: Arc<Lineage>, aliases: HashMap<String, String>) -> Self {
        LineageFunction { lineage, aliases }
    }

    fn resolve(&self, table: &str) -> DfResult<String> {
        if let Some(uri) = self.aliases.get(table) {
            return Ok(uri.clone());
        }
        if self.lineage.latest_version(table).is_some() {
            return Ok(table.to_owned());
        }
        Location::existing(table)
            .map(|l| l.as_uri())
            .map_err(|e| err(format!("makoto_lineage: unknown table {table:?}: {e}")))
    }
}

fn literal_str(e: &Expr) -> Option<String> {
    match e {
        Expr::Literal(ScalarValue::Utf8(Some(s)), _)
        | Expr::Literal(ScalarValue::Utf8View(Some(s)), _)
        | Expr::Literal(ScalarValue::LargeUtf8(Some(s)), _) => Some(s.clone()),
        _ => None,
    }
}

fn literal_u64(e: &Expr) -> Option<u64> {
    match e {
        Expr::Literal(ScalarValue::Int64(Some(v)), _) => u64::try_from(*v).ok(),
        Expr::Literal(ScalarValue::Int32(Some(v)), _) => u64::try_from(*v).ok(),
        Expr::Literal(ScalarValue::UInt64(Some(v)), _) => Some(*v),
        _ => None,
    }
}

impl TableFunctionImpl for LineageFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let usage = "makoto_lineage(table [, version]): table is a registered name, a table URI or a subject 'uri@vN'; version a non-negative integer literal";
        let first = exprs
            .first()
            .and_then(literal_str)
            .ok_or_else(|| DataFusionError::Plan(usage.into()))?;
        let (uri, version) = match (exprs.get(1), parse_subject_name(&first)) {
            (None, Some((uri, v))) => (self.resolve(&uri)?, v),
            (None, None) => {
                let uri = self.resolve(&first)?;
                let v = self
                    .lineage
                    .latest_version(&uri)
                    .ok_or_else(|| err(format!("makoto_lineage: {uri} has no attestation")))?;
                (uri, v)
            }
            (Some(v), _) => (
                self.resolve(&first)?,
                literal_u64(v).ok_or_else(|| DataFusionError::Plan(usage.into()))?,
            ),
        };
        let entries = self.lineage.upstream(&uri, version);
        let schema = Arc::new(Schema::new(vec![
            Field::new("depth", DataType::UInt32, false),
            Field::new("table_uri", DataType::Utf8, false),
            Field::new("version", DataType::Int64, false),
            Field::new("subject", DataType::Utf8, false),
            Field::new("edge", DataType::Utf8, false),
            Field::new("downstream", DataType::Utf8, true),
            Field::new("attested", DataType::Boolean, false),
            Field::new("predicate_type", DataType::Utf8, true),
            Field::new("operation", DataType::Utf8, true),
            Field::new("transform_name", DataType::Utf8, true),
            Field::new("level", DataType::Utf8, true),
            Field::new("state_digest", DataType::Utf8, true),
            Field::new("recorded_digest", DataType::Utf8, true),
            Field::new("attestation_digest", DataType::Utf8, true),
            Field::new("commit_timestamp", utc_micros(), true),
        ]));
        let mut depth = UInt32Builder::new();
        let mut table = StringBuilder::new();
        let mut ver = Int64Builder::new();
        let mut subject = StringBuilder::new();
        let mut edge = StringBuilder::new();
        let mut downstream = StringBuilder::new();
        let mut attested = BooleanBuilder::new();
        let mut ptype = StringBuilder::new();
        let mut op = StringBuilder::new();
        let mut tname = StringBuilder::new();
        let mut level = StringBuilder::new();
        let mut state = StringBuilder::new();
        let mut recorded = StringBuilder::new();
        let mut att = StringBuilder::new();
        let mut ts = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        for e in &entries {
            let n = e.node.as_ref();
            depth.append_value(e.depth);
            table.append_value(&e.table_uri);
            ver.append_value(i64::try_from(e.version).unwrap_or(i64::MAX));
            subject.append_value(format!("{}@v{}", e.table_uri, e.version));
            edge.append_value(e.edge.as_str());
            downstream.append_option(e.downstream.as_deref());
            attested.append_value(n.is_some());
            ptype.append_option(n.map(|n| n.predicate_type.as_str()));
            op.append_option(n.and_then(|n| n.operation.as_deref()));
            tname.append_option(n.and_then(|n| n.transform_name.as_deref()));
            level.append_option(n.map(|n| n.level.as_str()));
            state.append_option(n.map(|n| n.state_digest.to_hex()));
            recorded.append_option(e.recorded_digest.map(|d| d.to_hex()));
            att.append_option(n.map(|n| n.attestation_digest.to_hex()));
            ts.append_option(n.map(|n| n.commit_timestamp_ms.saturating_mul(1000)));
        }
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(depth.finish()),
                Arc::new(table.finish()),
                Arc::new(ver.finish()),
                Arc::new(subject.finish()),
                Arc::new(edge.finish()),
                Arc::new(downstream.finish()),
                Arc::new(attested.finish()),
                Arc::new(ptype.finish()),
                Arc::new(op.finish()),
                Arc::new(tname.finish()),
                Arc::new(level.finish()),
                Arc::new(state.finish()),
                Arc::new(recorded.finish()),
                Arc::new(att.finish()),
                Arc::new(ts.finish()),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}
