//! The column model of the system tables. A row type is declared once with [`system_row!`];
//! that one declaration gives the Delta schema, the Arrow schema, the batch writer and the
//! typed reader, so adding a column is one edit.
//!
//! Each field names how it is stored: its Rust type picks a [`Codec`] (`String`, `u64`,
//! digests, key ids and the domain enums are stored as themselves; `Option<T>` makes the
//! column nullable), and timestamps say their unit (`as Millis`, `as Micros`). Reading resolves
//! every column once per batch and rejects a column of the wrong type instead of reading it
//! as null.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Int64Array, Int64Builder, LargeStringArray,
    RecordBatch, StringArray, StringBuilder, StringViewArray, TimestampMicrosecondArray,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::kernel::{DataType, StructField};
use makoto_core::Sha256Digest;
use makoto_core::attestation::{AvailabilityStatus, ChangeKind, MakotoLevel};
use makoto_core::delta::TimestampSource;
use makoto_core::keys::KeyId;

use crate::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Long,
    Bool,
    /// Microseconds since the epoch, UTC.
    Ts,
}

impl Kind {
    pub(crate) fn sql_type(self) -> &'static str {
        match self {
            Kind::Str => "STRING",
            Kind::Long => "BIGINT",
            Kind::Bool => "BOOLEAN",
            Kind::Ts => "TIMESTAMP (UTC, µs)",
        }
    }

    fn delta_type(self) -> DataType {
        match self {
            Kind::Str => DataType::STRING,
            Kind::Long => DataType::LONG,
            Kind::Bool => DataType::BOOLEAN,
            Kind::Ts => DataType::TIMESTAMP,
        }
    }

    fn arrow_type(self) -> ArrowType {
        match self {
            Kind::Str => ArrowType::Utf8,
            Kind::Long => ArrowType::Int64,
            Kind::Bool => ArrowType::Boolean,
            Kind::Ts => ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }
}

/// One column of a system table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Col {
    pub name: &'static str,
    pub kind: Kind,
    pub nullable: bool,
    pub doc: &'static str,
}

pub(crate) fn delta_fields(cols: &[Col]) -> Vec<StructField> {
    cols.iter()
        .map(|c| StructField::new(c.name, c.kind.delta_type(), c.nullable))
        .collect()
}

pub(crate) fn arrow_schema(cols: &[Col]) -> SchemaRef {
    Arc::new(Schema::new(
        cols.iter()
            .map(|c| Field::new(c.name, c.kind.arrow_type(), c.nullable))
            .collect::<Vec<_>>(),
    ))
}

/// A column being written.
pub(crate) enum Builder {
    Str(StringBuilder),
    Long(Int64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMicrosecondBuilder),
}

impl Builder {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::Str => Builder::Str(StringBuilder::new()),
            Kind::Long => Builder::Long(Int64Builder::new()),
            Kind::Bool => Builder::Bool(BooleanBuilder::new()),
            Kind::Ts => Builder::Ts(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Builder::Str(mut b) => Arc::new(b.finish()),
            Builder::Long(mut b) => Arc::new(b.finish()),
            Builder::Bool(mut b) => Arc::new(b.finish()),
            Builder::Ts(mut b) => Arc::new(b.finish()),
        }
    }

    /// Appends a null; the caller's codec decides which columns may hold one.
    fn null(&mut self) {
        match self {
            Builder::Str(b) => b.append_null(),
            Builder::Long(b) => b.append_null(),
            Builder::Bool(b) => b.append_null(),
            Builder::Ts(b) => b.append_null(),
        }
    }
}

/// A column of a batch read back, resolved once per batch.
pub(crate) enum Column<'a> {
    Str(&'a StringArray),
    StrView(&'a StringViewArray),
    LargeStr(&'a LargeStringArray),
    Long(&'a Int64Array),
    Bool(&'a BooleanArray),
    Ts(&'a TimestampMicrosecondArray),
    /// A nullable column the table does not have: every value is null.
    Absent,
}

impl<'a> Column<'a> {
    /// The column `col` of `batch`, checked against its declared type.
    fn resolve(batch: &'a RecordBatch, col: &Col) -> Result<Self, String> {
        let Some(array) = batch.column_by_name(col.name) else {
            return if col.nullable {
                Ok(Column::Absent)
            } else {
                Err(format!("column {} is missing", col.name))
            };
        };
        let any = array.as_any();
        let resolved = match col.kind {
            Kind::Str => any
                .downcast_ref::<StringArray>()
                .map(Column::Str)
                .or_else(|| any.downcast_ref::<StringViewArray>().map(Column::StrView))
                .or_else(|| any.downcast_ref::<LargeStringArray>().map(Column::LargeStr)),
            Kind::Long => any.downcast_ref::<Int64Array>().map(Column::Long),
            Kind::Bool => any.downcast_ref::<BooleanArray>().map(Column::Bool),
            Kind::Ts => any
                .downcast_ref::<TimestampMicrosecondArray>()
                .map(Column::Ts),
        };
        resolved.ok_or_else(|| {
            format!(
                "column {} is {}, not {}",
                col.name,
                array.data_type(),
                col.kind.sql_type()
            )
        })
    }

    fn is_null(&self, row: usize) -> bool {
        match self {
            Column::Str(a) => a.is_null(row),
            Column::StrView(a) => a.is_null(row),
            Column::LargeStr(a) => a.is_null(row),
            Column::Long(a) => a.is_null(row),
            Column::Bool(a) => a.is_null(row),
            Column::Ts(a) => a.is_null(row),
            Column::Absent => true,
        }
    }

    fn str(&self, row: usize) -> Option<&'a str> {
        if self.is_null(row) {
            return None;
        }
        match self {
            Column::Str(a) => Some(a.value(row)),
            Column::StrView(a) => Some(a.value(row)),
            Column::LargeStr(a) => Some(a.value(row)),
            _ => None,
        }
    }

    fn long(&self, row: usize) -> Option<i64> {
        match self {
            Column::Long(a) if !a.is_null(row) => Some(a.value(row)),
            Column::Ts(a) if !a.is_null(row) => Some(a.value(row)),
            _ => None,
        }
    }

    fn bool(&self, row: usize) -> Option<bool> {
        match self {
            Column::Bool(a) if !a.is_null(row) => Some(a.value(row)),
            _ => None,
        }
    }
}

/// What is wrong with one stored value.
pub(crate) type Problem = &'static str;

/// A non-null value of one column kind.
pub(crate) trait Scalar: Sized {
    const KIND: Kind;
    fn put(&self, to: &mut Builder);
    /// `None` when the value is null.
    fn take(from: &Column<'_>, row: usize) -> Option<Result<Self, Problem>>;
}

/// A value stored as a string column.
pub(crate) trait Text: Sized {
    fn text(&self) -> Cow<'_, str>;
    fn parse_text(s: &str) -> Result<Self, Problem>;
}

impl<T: Text> Scalar for T {
    const KIND: Kind = Kind::Str;
    fn put(&self, to: &mut Builder) {
        if let Builder::Str(b) = to {
            b.append_value(self.text());
        }
    }
    fn take(from: &Column<'_>, row: usize) -> Option<Result<Self, Problem>> {
        from.str(row).map(T::parse_text)
    }
}

impl Text for String {
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
    fn parse_text(s: &str) -> Result<Self, Problem> {
        Ok(s.to_owned())
    }
}

impl Text for Sha256Digest {
    fn text(&self) -> Cow<'_, str> {
        Cow::Owned(self.to_hex())
    }
    fn parse_text(s: &str) -> Result<Self, Problem> {
        s.parse().map_err(|_| "is not a SHA-256 hex digest")
    }
}

impl Text for KeyId {
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.as_str())
    }
    fn parse_text(s: &str) -> Result<Self, Problem> {
        s.parse()
            .map_err(|_| "is not a key id (64 lowercase hex digits)")
    }
}

impl Text for MakotoLevel {
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.as_str())
    }
    fn parse_text(s: &str) -> Result<Self, Problem> {
        MakotoLevel::parse(s).ok_or("is not L1, L2 or L3")
    }
}

impl Text for ChangeKind {
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.as_str())
    }
    fn parse_text(s: &str) -> Result<Self, Problem> {
        ChangeKind::parse(s).ok_or("is not add, remove or cdc")
    }
}

impl Text for TimestampSource {
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.as_str())
    }
    fn parse_text(s: &str) -> Result<Self, Problem> {
        TimestampSource::parse(s)
            .ok_or("is not inCommitTimestamp, commitInfo or fileModificationTime")
    }
}

impl Text for AvailabilityStatus {
    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.as_str())
    }
    fn parse_text(s: &str) -> Result<Self, Problem> {
        AvailabilityStatus::parse(s).ok_or("is not complete or unavailable")
    }
}

impl Scalar for u64 {
    const KIND: Kind = Kind::Long;
    fn put(&self, to: &mut Builder) {
        if let Builder::Long(b) = to {
            b.append_value(i64::try_from(*self).unwrap_or(i64::MAX));
        }
    }
    fn take(from: &Column<'_>, row: usize) -> Option<Result<Self, Problem>> {
        from.long(row)
            .map(|v| u64::try_from(v).map_err(|_| "is negative"))
    }
}

impl Scalar for bool {
    const KIND: Kind = Kind::Bool;
    fn put(&self, to: &mut Builder) {
        if let Builder::Bool(b) = to {
            b.append_value(*self);
        }
    }
    fn take(from: &Column<'_>, row: usize) -> Option<Result<Self, Problem>> {
        from.bool(row).map(Ok)
    }
}

/// How a field of type `T` is stored in its column.
pub(crate) trait Codec<T> {
    const KIND: Kind;
    const NULLABLE: bool;
    fn put(value: &T, to: &mut Builder);
    fn take(from: &Column<'_>, row: usize) -> Result<T, Problem>;
}

/// The field's own type decides: a [`Scalar`], or an optional one in a nullable column.
pub(crate) struct Plain;

impl<T: Scalar> Codec<T> for Plain {
    const KIND: Kind = T::KIND;
    const NULLABLE: bool = false;
    fn put(value: &T, to: &mut Builder) {
        value.put(to);
    }
    fn take(from: &Column<'_>, row: usize) -> Result<T, Problem> {
        T::take(from, row).unwrap_or(Err("is null"))
    }
}

impl<T: Scalar> Codec<Option<T>> for Plain {
    const KIND: Kind = T::KIND;
    const NULLABLE: bool = true;
    fn put(value: &Option<T>, to: &mut Builder) {
        match value {
            Some(v) => v.put(to),
            None => to.null(),
        }
    }
    fn take(from: &Column<'_>, row: usize) -> Result<Option<T>, Problem> {
        T::take(from, row).transpose()
    }
}

/// Milliseconds since the epoch in the field, a timestamp column (µs) in the table.
pub(crate) struct Millis;

impl Codec<i64> for Millis {
    const KIND: Kind = Kind::Ts;
    const NULLABLE: bool = false;
    fn put(value: &i64, to: &mut Builder) {
        if let Builder::Ts(b) = to {
            b.append_value(value.saturating_mul(1000));
        }
    }
    fn take(from: &Column<'_>, row: usize) -> Result<i64, Problem> {
        from.long(row)
            .map(|us| us.div_euclid(1000))
            .ok_or("is null")
    }
}

/// Microseconds since the epoch in the field and in the table.
pub(crate) struct Micros;

impl Codec<i64> for Micros {
    const KIND: Kind = Kind::Ts;
    const NULLABLE: bool = false;
    fn put(value: &i64, to: &mut Builder) {
        if let Builder::Ts(b) = to {
            b.append_value(*value);
        }
    }
    fn take(from: &Column<'_>, row: usize) -> Result<i64, Problem> {
        from.long(row).ok_or("is null")
    }
}

impl Codec<Option<i64>> for Micros {
    const KIND: Kind = Kind::Ts;
    const NULLABLE: bool = true;
    fn put(value: &Option<i64>, to: &mut Builder) {
        match (value, to) {
            (Some(v), Builder::Ts(b)) => b.append_value(*v),
            (None, to) => to.null(),
            _ => {}
        }
    }
    fn take(from: &Column<'_>, row: usize) -> Result<Option<i64>, Problem> {
        Ok(from.long(row))
    }
}

/// A row type of a system table, declared by [`system_row!`].
pub(crate) trait SystemRow: Sized {
    const COLUMNS: &'static [Col];
    /// What a row is called in errors (`file row`, `window row`, …).
    const WHAT: &'static str;
    fn put(&self, columns: &mut [Builder]);
    /// Reads one row; an error names the column.
    fn take(columns: &[Column<'_>], row: usize) -> Result<Self, (&'static str, Problem)>;
}

/// The rows as one batch with the table's schema.
pub(crate) fn to_batch<R: SystemRow>(rows: &[R]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut builders: Vec<Builder> = R::COLUMNS.iter().map(|c| Builder::new(c.kind)).collect();
    for r in rows {
        r.put(&mut builders);
    }
    let arrays = builders.into_iter().map(Builder::finish).collect();
    RecordBatch::try_new(arrow_schema(R::COLUMNS), arrays)
}

/// Every row of a batch read back from the system table `store`.
pub(crate) fn from_batch<R: SystemRow>(batch: &RecordBatch, store: &str) -> Result<Vec<R>, Error> {
    let corrupt = |reason: String| Error::StoreCorrupt {
        store: store.to_owned(),
        reason,
    };
    let columns = R::COLUMNS
        .iter()
        .map(|c| Column::resolve(batch, c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(corrupt)?;
    (0..batch.num_rows())
        .map(|row| {
            R::take(&columns, row).map_err(|(column, problem)| {
                corrupt(format!(
                    "{} {}: column {column} {problem}",
                    R::WHAT,
                    label(R::COLUMNS, &columns, row)
                ))
            })
        })
        .collect()
}

/// Whether batches of `schema` are read by [`from_batch`] as they are: each declared column
/// they hold is stored as a type of its kind (absent columns are read as null, or rejected
/// when required).
pub(crate) fn reads_as_is(schema: &Schema, cols: &[Col]) -> bool {
    cols.iter().all(|c| match schema.field_with_name(c.name) {
        Err(_) => true,
        Ok(field) => matches!(
            (c.kind, field.data_type()),
            (
                Kind::Str,
                ArrowType::Utf8 | ArrowType::Utf8View | ArrowType::LargeUtf8
            ) | (Kind::Long, ArrowType::Int64)
                | (Kind::Bool, ArrowType::Boolean)
                | (Kind::Ts, ArrowType::Timestamp(TimeUnit::Microsecond, _))
        ),
    })
}

/// Which rows of `batch` (holding the `table_uri` column, and `version` when `key` names
/// versions) belong to `key`: the row filter of [`super::lookup`].
pub(crate) fn key_mask(
    batch: &RecordBatch,
    key: &super::lookup::RowKey,
) -> Result<BooleanArray, String> {
    let column = |name: &'static str, kind: Kind| {
        Column::resolve(
            batch,
            &Col {
                name,
                kind,
                nullable: false,
                doc: "",
            },
        )
    };
    let uri = column("table_uri", Kind::Str)?;
    let version = match &key.versions {
        Some(versions) => Some((column("version", Kind::Long)?, versions)),
        None => None,
    };
    Ok((0..batch.num_rows())
        .map(|row| {
            let in_range = version.as_ref().is_none_or(|(column, versions)| {
                column.long(row).is_some_and(|v| versions.contains(&v))
            });
            Some(uri.str(row) == Some(key.table_uri.as_str()) && in_range)
        })
        .collect())
}

/// `<table_uri>@v<version>`, a window id or a path: whichever the row has, for errors.
fn label(cols: &[Col], columns: &[Column<'_>], row: usize) -> String {
    let get = |name: &str| {
        cols.iter()
            .position(|c| c.name == name)
            .and_then(|i| columns.get(i))
    };
    if let Some(id) = get("window_id").and_then(|c| c.str(row)) {
        return id.to_owned();
    }
    let mut label = get("table_uri")
        .and_then(|c| c.str(row))
        .unwrap_or_default()
        .to_owned();
    if let Some(v) = get("version").and_then(|c| c.long(row)) {
        label.push_str(&format!("@v{v}"));
    }
    if let Some(p) = get("path").and_then(|c| c.str(row)) {
        label.push(' ');
        label.push_str(p);
    }
    label
}

/// Picks a field's codec: the one it names, else [`Plain`].
macro_rules! codec {
    () => {
        $crate::store::columns::Plain
    };
    ($codec:ident) => {
        $crate::store::columns::$codec
    };
}
pub(crate) use codec;

/// Declares a system-table row: the struct, its column list (name, type, nullability, doc, in
/// table order) and its writer and reader.
///
/// ```text
/// system_row! {
///     /// One row of `system.makoto.example`.
///     pub struct ExampleRow: EXAMPLE_COLUMNS, "example row" {
///         table_uri: String => "Canonical URI of the table.",
///         #[column = "commit_timestamp"]
///         at_ms: i64 as Millis => "Commit time.",
///     }
/// }
/// ```
macro_rules! system_row {
    (
        $(#[$meta:meta])*
        pub struct $name:ident : $columns:ident, $what:literal {
            $( $(#[column = $column:literal])? $field:ident : $ty:ty $(as $codec:ident)? => $doc:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            $( #[doc = $doc] pub $field: $ty, )*
        }

        pub(crate) const $columns: &[$crate::store::columns::Col] = &[
            $( $crate::store::columns::Col {
                name: $crate::store::columns::column_name!($field $(, $column)?),
                kind: <$crate::store::columns::codec!($($codec)?) as $crate::store::columns::Codec<$ty>>::KIND,
                nullable: <$crate::store::columns::codec!($($codec)?) as $crate::store::columns::Codec<$ty>>::NULLABLE,
                doc: $doc,
            }, )*
        ];

        impl $name {
            /// Every row of a batch read back from this system table; `store` names the table
            /// in errors.
            pub fn read_batch(
                batch: &arrow::array::RecordBatch,
                store: &str,
            ) -> Result<Vec<Self>, $crate::Error> {
                $crate::store::columns::from_batch(batch, store)
            }
        }

        impl $crate::store::columns::SystemRow for $name {
            const COLUMNS: &'static [$crate::store::columns::Col] = $columns;
            const WHAT: &'static str = $what;

            fn put(&self, columns: &mut [$crate::store::columns::Builder]) {
                let mut columns = columns.iter_mut();
                $(
                    if let Some(c) = columns.next() {
                        <$crate::store::columns::codec!($($codec)?) as $crate::store::columns::Codec<$ty>>::put(&self.$field, c);
                    }
                )*
            }

            fn take(
                columns: &[$crate::store::columns::Column<'_>],
                row: usize,
            ) -> Result<Self, (&'static str, $crate::store::columns::Problem)> {
                let mut columns = columns.iter();
                Ok($name {
                    $( $field: {
                        let name = $crate::store::columns::column_name!($field $(, $column)?);
                        let c = columns.next().ok_or((name, "is missing"))?;
                        <$crate::store::columns::codec!($($codec)?) as $crate::store::columns::Codec<$ty>>::take(c, row)
                            .map_err(|p| (name, p))?
                    }, )*
                })
            }
        }
    };
}
pub(crate) use system_row;

/// A column's name: the one given, else the field's.
macro_rules! column_name {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident, $column:literal) => {
        $column
    };
}
pub(crate) use column_name;

#[cfg(test)]
mod tests {
    use super::*;

    system_row! {
        /// A row with one column of each codec.
        pub struct TestRow: TEST_COLUMNS, "test row" {
            table_uri: String => "uri",
            version: u64 => "version",
            #[column = "at"]
            at_ms: i64 as Millis => "time",
            #[column = "seen"]
            seen_us: i64 as Micros => "time",
            flag: bool => "flag",
            digest: Option<Sha256Digest> => "digest",
            level: MakotoLevel => "level",
            kind: ChangeKind => "kind",
            count: Option<u64> => "count",
        }
    }

    fn row() -> TestRow {
        TestRow {
            table_uri: "file:///t".into(),
            version: 7,
            at_ms: -1_500,
            seen_us: 1_700_000_000_000_123,
            flag: true,
            digest: Some(Sha256Digest::of(b"x")),
            level: MakotoLevel::L2,
            kind: ChangeKind::Cdc,
            count: None,
        }
    }

    /// Batches of the declared schema, or with columns missing, are read as they are; a column
    /// stored as another type (timestamps in nanoseconds, a number as text) is not.
    #[test]
    fn only_declared_types_are_read_as_they_are() {
        let declared = arrow_schema(TEST_COLUMNS);
        assert!(reads_as_is(&declared, TEST_COLUMNS));
        let with = |name: &str, data_type: ArrowType| {
            let fields: Vec<Field> = declared
                .fields()
                .iter()
                .map(|f| match f.name() == name {
                    true => Field::new(name, data_type.clone(), f.is_nullable()),
                    false => f.as_ref().clone(),
                })
                .collect();
            Schema::new(fields)
        };
        let fewer = Schema::new(
            declared
                .fields()
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>(),
        );
        assert!(reads_as_is(&fewer, TEST_COLUMNS));
        assert!(reads_as_is(
            &with("table_uri", ArrowType::Utf8View),
            TEST_COLUMNS
        ));
        assert!(reads_as_is(
            &with("seen", ArrowType::Timestamp(TimeUnit::Microsecond, None)),
            TEST_COLUMNS
        ));
        let nanos = ArrowType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
        assert!(!reads_as_is(&with("seen", nanos), TEST_COLUMNS));
        assert!(!reads_as_is(
            &with("version", ArrowType::Utf8),
            TEST_COLUMNS
        ));
        assert!(!reads_as_is(&with("flag", ArrowType::Int32), TEST_COLUMNS));
    }

    #[test]
    fn declared_columns_follow_the_fields() {
        let names: Vec<_> = TEST_COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "table_uri",
                "version",
                "at",
                "seen",
                "flag",
                "digest",
                "level",
                "kind",
                "count"
            ]
        );
        let kinds: Vec<_> = TEST_COLUMNS.iter().map(|c| (c.kind, c.nullable)).collect();
        assert_eq!(kinds[2], (Kind::Ts, false));
        assert_eq!(kinds[5], (Kind::Str, true));
        assert_eq!(kinds[8], (Kind::Long, true));
    }

    #[test]
    fn a_row_survives_the_batch_round_trip() {
        let batch = to_batch(&[row()]).unwrap();
        let ts = batch
            .column_by_name("at")
            .unwrap()
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(ts.value(0), -1_500_000);
        assert!(batch.column_by_name("count").unwrap().is_null(0));
        assert_eq!(TestRow::read_batch(&batch, "s").unwrap(), vec![row()]);
    }

    #[test]
    fn bad_cells_are_errors_naming_row_and_column() {
        let mut r = row();
        r.version = u64::MAX;
        let batch = to_batch(&[r]).unwrap();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns[6] = Arc::new(StringArray::from(vec!["L9"]));
        let bad = RecordBatch::try_new(batch.schema(), columns).unwrap();
        let err = from_batch::<TestRow>(&bad, "s").unwrap_err().to_string();
        assert!(err.contains("test row file:///t@v"), "{err}");
        assert!(err.contains("column level is not L1, L2 or L3"), "{err}");
    }

    #[test]
    fn a_column_of_the_wrong_type_is_not_read_as_null() {
        let batch = to_batch(&[row()]).unwrap();
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields[8] = Field::new("count", ArrowType::Utf8, true);
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns[8] = Arc::new(StringArray::from(vec![Some("3")]));
        let bad = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let err = from_batch::<TestRow>(&bad, "s").unwrap_err().to_string();
        assert!(err.contains("column count is Utf8, not BIGINT"), "{err}");
    }

    #[test]
    fn a_missing_nullable_column_reads_as_null_and_a_required_one_fails() {
        let batch = to_batch(&[row()]).unwrap();
        let without = |name: &str| {
            let i = batch.schema().index_of(name).unwrap();
            let mut b = batch.clone();
            b.remove_column(i);
            b
        };
        let back: Vec<TestRow> = from_batch(&without("digest"), "s").unwrap();
        assert_eq!(back[0].digest, None);
        let err = from_batch::<TestRow>(&without("version"), "s")
            .unwrap_err()
            .to_string();
        assert!(err.contains("column version is missing"), "{err}");
    }
}
