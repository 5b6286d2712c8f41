//! A small column model shared by the system tables: one list of columns gives the Delta
//! schema, the Arrow schema, record batches and typed reads.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Int64Array, Int64Builder, RecordBatch,
    StringArray, StringBuilder, StringViewArray, TimestampMicrosecondArray,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::kernel::{DataType, StructField};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Long,
    Bool,
    /// Microseconds since the epoch, UTC.
    Ts,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Col {
    pub name: &'static str,
    pub kind: Kind,
    pub nullable: bool,
    pub doc: &'static str,
}

pub(crate) const fn col(name: &'static str, kind: Kind, nullable: bool, doc: &'static str) -> Col {
    Col {
        name,
        kind,
        nullable,
        doc,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Str(Option<String>),
    Long(Option<i64>),
    Bool(Option<bool>),
    Ts(Option<i64>),
}

pub(crate) fn delta_fields(cols: &[Col]) -> Vec<StructField> {
    cols.iter()
        .map(|c| {
            let t = match c.kind {
                Kind::Str => DataType::STRING,
                Kind::Long => DataType::LONG,
                Kind::Bool => DataType::BOOLEAN,
                Kind::Ts => DataType::TIMESTAMP,
            };
            StructField::new(c.name, t, c.nullable)
        })
        .collect()
}

pub(crate) fn arrow_schema(cols: &[Col]) -> SchemaRef {
    Arc::new(Schema::new(
        cols.iter()
            .map(|c| {
                let t = match c.kind {
                    Kind::Str => ArrowType::Utf8,
                    Kind::Long => ArrowType::Int64,
                    Kind::Bool => ArrowType::Boolean,
                    Kind::Ts => ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                };
                Field::new(c.name, t, c.nullable)
            })
            .collect::<Vec<_>>(),
    ))
}

/// Builds a batch from rows given as cells in column order.
pub(crate) fn to_batch(
    cols: &[Col],
    rows: &[Vec<Cell>],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(cols.len());
    for (i, c) in cols.iter().enumerate() {
        let cell = |r: &Vec<Cell>| r.get(i).cloned();
        let array: ArrayRef = match c.kind {
            Kind::Str => {
                let mut b = StringBuilder::new();
                for r in rows {
                    match cell(r) {
                        Some(Cell::Str(v)) => b.append_option(v),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            Kind::Long => {
                let mut b = Int64Builder::new();
                for r in rows {
                    match cell(r) {
                        Some(Cell::Long(v)) => b.append_option(v),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            Kind::Bool => {
                let mut b = BooleanBuilder::new();
                for r in rows {
                    match cell(r) {
                        Some(Cell::Bool(v)) => b.append_option(v),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
            Kind::Ts => {
                let mut b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
                for r in rows {
                    match cell(r) {
                        Some(Cell::Ts(v)) => b.append_option(v),
                        _ => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
        };
        arrays.push(array);
    }
    RecordBatch::try_new(arrow_schema(cols), arrays)
}

/// Typed access to one row of a batch read back from a system table.
pub(crate) struct RowReader<'a> {
    batch: &'a RecordBatch,
    row: usize,
}

impl<'a> RowReader<'a> {
    pub fn new(batch: &'a RecordBatch, row: usize) -> Self {
        RowReader { batch, row }
    }

    fn column(&self, name: &str) -> Option<&'a ArrayRef> {
        self.batch.column_by_name(name)
    }

    pub fn str(&self, name: &str) -> Option<String> {
        let c = self.column(name)?;
        if c.is_null(self.row) {
            return None;
        }
        if let Some(a) = c.as_any().downcast_ref::<StringArray>() {
            return Some(a.value(self.row).to_owned());
        }
        if let Some(a) = c.as_any().downcast_ref::<StringViewArray>() {
            return Some(a.value(self.row).to_owned());
        }
        if let Some(a) = c.as_any().downcast_ref::<arrow::array::LargeStringArray>() {
            return Some(a.value(self.row).to_owned());
        }
        None
    }

    pub fn long(&self, name: &str) -> Option<i64> {
        let c = self.column(name)?;
        let a = c.as_any().downcast_ref::<Int64Array>()?;
        (!a.is_null(self.row)).then(|| a.value(self.row))
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        let c = self.column(name)?;
        let a = c.as_any().downcast_ref::<BooleanArray>()?;
        (!a.is_null(self.row)).then(|| a.value(self.row))
    }

    pub fn ts(&self, name: &str) -> Option<i64> {
        let c = self.column(name)?;
        let a = c.as_any().downcast_ref::<TimestampMicrosecondArray>()?;
        (!a.is_null(self.row)).then(|| a.value(self.row))
    }
}
