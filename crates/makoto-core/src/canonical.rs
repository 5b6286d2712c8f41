//! Canonical JSON: RFC 8785 (JCS) serialization, with integers written exactly.
//!
//! Used for every byte string that is hashed or signed: Delta actions (commit digest), state-tree
//! leaf values, change lists and in-toto statements. Objects are written with members sorted by
//! the UTF-16 code units of their names, no insignificant whitespace, strings with only the
//! escapes JCS allows. Integer literals within the 64-bit range (`-2^63 ..= 2^64-1`) are
//! written exactly (strict JCS would round those beyond ±2^53 through a double); every other
//! number is read as the nearest IEEE-754 double (serde_json's `float_roundtrip` parser) and
//! written in ECMAScript shortest form. For every value Makoto itself produces this is
//! identical to Python's `json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`.

use serde_json::Value;

/// [`to_vec`] as a `String`: canonical JSON is UTF-8 (strings are written from `str`s).
pub fn to_string(value: &Value) -> String {
    match String::from_utf8(to_vec(value)) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Serializes `value` canonically.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out);
    out
}

/// Serializes `value` canonically into `out`.
pub fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else if let Some(f) = n.as_f64() {
                let mut buf = ryu_js::Buffer::new();
                out.extend_from_slice(buf.format(f).as_bytes());
            } else {
                // serde_json without `arbitrary_precision` always has one of the three.
                out.extend_from_slice(n.to_string().as_bytes());
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| utf16_order(a.0, b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write_value(v, out);
            }
            out.push(b'}');
        }
    }
}

/// Writes `s` as a canonical JSON string literal into `out`.
pub fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    // Runs of bytes that need no escape are copied at once. Every byte of a multi-byte UTF-8
    // sequence is >= 0x80, so only ASCII bytes are ever escaped.
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        if escape.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(escape);
        }
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// Writes `value` canonically into `out`: the same bytes as
/// `write_value(&serde_json::to_value(value)?, out)`, without building the `Value`. Each object's members are written
/// as they come; only an object whose members came out of key order (or with a key twice) is
/// rewritten in order when it ends.
pub fn write_serialize<T: serde::Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    value.serialize(Canonical { out })
}

/// Member names in UTF-16 code-unit order, which is byte order for ASCII names (all of
/// Makoto's own).
fn utf16_order(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.cmp(b)
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

fn write_display(n: impl std::fmt::Display, out: &mut Vec<u8>) {
    use std::io::Write;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{n}");
}

fn write_f64(f: f64, out: &mut Vec<u8>) {
    // serde_json::to_value makes a non-finite float `null`.
    if f.is_finite() {
        let mut buf = ryu_js::Buffer::new();
        out.extend_from_slice(buf.format(f).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

fn unsupported(what: &str) -> serde_json::Error {
    <serde_json::Error as serde::ser::Error>::custom(format!("{what} has no canonical JSON form"))
}

struct Canonical<'a> {
    out: &'a mut Vec<u8>,
}

/// An array's elements, written as they come.
struct Elements<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    /// `Some(name)`: the array is the value of `{"name": [...]}` (a tuple variant).
    variant: Option<&'static str>,
}

/// An object's members, written straight into the output as they come; when it ends, they are
/// put in order only if they came out of order (or a key came twice).
struct Members<'a> {
    out: &'a mut Vec<u8>,
    /// Where the first member starts (just after `{`).
    body: usize,
    spans: Vec<Span>,
    key: Option<String>,
    /// `Some(name)`: the object is the value of `{"name": {...}}` (a struct variant).
    variant: Option<&'static str>,
}

/// One written member, `"key":value`, at `start..end` of the output.
struct Span {
    key: std::borrow::Cow<'static, str>,
    start: usize,
    end: usize,
}

impl<'a> Canonical<'a> {
    fn open_variant(out: &mut Vec<u8>, variant: Option<&'static str>) {
        if let Some(name) = variant {
            out.push(b'{');
            write_string(name, out);
            out.push(b':');
        }
    }

    fn elements(self, variant: Option<&'static str>) -> Elements<'a> {
        Self::open_variant(self.out, variant);
        self.out.push(b'[');
        Elements {
            out: self.out,
            first: true,
            variant,
        }
    }

    fn members(self, variant: Option<&'static str>, len: usize) -> Members<'a> {
        Self::open_variant(self.out, variant);
        self.out.push(b'{');
        Members {
            body: self.out.len(),
            out: self.out,
            spans: Vec::with_capacity(len),
            key: None,
            variant,
        }
    }
}

impl Elements<'_> {
    fn element<T: serde::Serialize + ?Sized>(
        &mut self,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        value.serialize(Canonical { out: self.out })
    }

    fn close(self) {
        self.out.push(b']');
        if self.variant.is_some() {
            self.out.push(b'}');
        }
    }
}

impl Members<'_> {
    fn member<T: serde::Serialize + ?Sized>(
        &mut self,
        key: std::borrow::Cow<'static, str>,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        if !self.spans.is_empty() {
            self.out.push(b',');
        }
        let start = self.out.len();
        write_string(&key, self.out);
        self.out.push(b':');
        value.serialize(Canonical { out: self.out })?;
        self.spans.push(Span {
            key,
            start,
            end: self.out.len(),
        });
        Ok(())
    }

    fn close(mut self) {
        let in_order = self
            .spans
            .windows(2)
            .all(|w| utf16_order(&w[0].key, &w[1].key).is_lt());
        if !in_order {
            self.reorder();
        }
        self.out.push(b'}');
        if self.variant.is_some() {
            self.out.push(b'}');
        }
    }

    /// Rewrites the members in key order; a key given twice keeps its last value, as in a
    /// `serde_json::Map`.
    fn reorder(&mut self) {
        let mut order: Vec<usize> = (0..self.spans.len()).collect();
        order.sort_by(|&a, &b| utf16_order(&self.spans[a].key, &self.spans[b].key).then(b.cmp(&a)));
        order.dedup_by(|later, earlier| self.spans[*later].key == self.spans[*earlier].key);
        let written = self.out.split_off(self.body);
        for (i, &m) in order.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            let span = &self.spans[m];
            self.out
                .extend_from_slice(&written[span.start - self.body..span.end - self.body]);
        }
    }
}

impl<'a> serde::Serializer for Canonical<'a> {
    type Ok = ();
    type Error = serde_json::Error;
    type SerializeSeq = Elements<'a>;
    type SerializeTuple = Elements<'a>;
    type SerializeTupleStruct = Elements<'a>;
    type SerializeTupleVariant = Elements<'a>;
    type SerializeMap = Members<'a>;
    type SerializeStruct = Members<'a>;
    type SerializeStructVariant = Members<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Self::Error> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Self::Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Self::Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Self::Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), Self::Error> {
        write_display(v, self.out);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), Self::Error> {
        match (i64::try_from(v), u64::try_from(v)) {
            (Ok(i), _) => self.serialize_i64(i),
            (_, Ok(u)) => self.serialize_u64(u),
            _ => Err(unsupported("an integer beyond 64 bits")),
        }
    }
    fn serialize_u8(self, v: u8) -> Result<(), Self::Error> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Self::Error> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Self::Error> {
        self.serialize_u64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Self::Error> {
        write_display(v, self.out);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), Self::Error> {
        match u64::try_from(v) {
            Ok(u) => self.serialize_u64(u),
            Err(_) => Err(unsupported("an integer beyond 64 bits")),
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), Self::Error> {
        write_f64(v.into(), self.out);
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Self::Error> {
        write_f64(v, self.out);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Self::Error> {
        write_string(v.encode_utf8(&mut [0; 4]), self.out);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Self::Error> {
        write_string(v, self.out);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Self::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = self.serialize_seq(Some(v.len()))?;
        for b in v {
            seq.serialize_element(b)?;
        }
        seq.end()
    }
    fn serialize_none(self) -> Result<(), Self::Error> {
        self.serialize_unit()
    }
    fn serialize_some<T: serde::Serialize + ?Sized>(self, value: &T) -> Result<(), Self::Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Self::Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Self::Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Self::Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: serde::Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Self::Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: serde::Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Self::Error> {
        Canonical::open_variant(self.out, Some(variant));
        value.serialize(Canonical { out: self.out })?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Elements<'a>, Self::Error> {
        Ok(self.elements(None))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Elements<'a>, Self::Error> {
        Ok(self.elements(None))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Elements<'a>, Self::Error> {
        Ok(self.elements(None))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Elements<'a>, Self::Error> {
        Ok(self.elements(Some(variant)))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Members<'a>, Self::Error> {
        Ok(self.members(None, len.unwrap_or(0)))
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Members<'a>, Self::Error> {
        Ok(self.members(None, len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Members<'a>, Self::Error> {
        Ok(self.members(Some(variant), len))
    }
}

/// serde asks for each sequence-like trait separately; all of them are [`Elements`].
macro_rules! elements {
    ($($trait:ident::$method:ident),*) => {$(
        impl serde::ser::$trait for Elements<'_> {
            type Ok = ();
            type Error = serde_json::Error;
            fn $method<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Self::Error> {
                self.element(v)
            }
            fn end(self) -> Result<(), Self::Error> {
                self.close();
                Ok(())
            }
        }
    )*};
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl serde::ser::SerializeMap for Members<'_> {
    type Ok = ();
    type Error = serde_json::Error;
    fn serialize_key<T: serde::Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Self::Error> {
        self.key = Some(key.serialize(MemberName)?);
        Ok(())
    }
    fn serialize_value<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Self::Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| unsupported("a map value without a key"))?;
        self.member(key.into(), v)
    }
    fn end(self) -> Result<(), Self::Error> {
        self.close();
        Ok(())
    }
}

/// A struct and a struct variant are both [`Members`] with static names.
macro_rules! struct_members {
    ($($trait:ident),*) => {$(
        impl serde::ser::$trait for Members<'_> {
            type Ok = ();
            type Error = serde_json::Error;
            fn serialize_field<T: serde::Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                v: &T,
            ) -> Result<(), Self::Error> {
                self.member(key.into(), v)
            }
            fn end(self) -> Result<(), Self::Error> {
                self.close();
                Ok(())
            }
        }
    )*};
}

struct_members!(SerializeStruct, SerializeStructVariant);

/// A map key as `serde_json::to_value` takes it: a string, or a number, character or bool
/// written as a string.
struct MemberName;

impl serde::Serializer for MemberName {
    type Ok = String;
    type Error = serde_json::Error;
    type SerializeSeq = serde::ser::Impossible<String, serde_json::Error>;
    type SerializeTuple = serde::ser::Impossible<String, serde_json::Error>;
    type SerializeTupleStruct = serde::ser::Impossible<String, serde_json::Error>;
    type SerializeTupleVariant = serde::ser::Impossible<String, serde_json::Error>;
    type SerializeMap = serde::ser::Impossible<String, serde_json::Error>;
    type SerializeStruct = serde::ser::Impossible<String, serde_json::Error>;
    type SerializeStructVariant = serde::ser::Impossible<String, serde_json::Error>;

    fn serialize_bool(self, v: bool) -> Result<String, Self::Error> {
        Ok(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<String, Self::Error> {
        Ok(v.to_string())
    }
    fn serialize_i16(self, v: i16) -> Result<String, Self::Error> {
        Ok(v.to_string())
    }
    fn serialize_i32(self, v: i32) -> Result<String, Self::Error> {
        Ok(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<String, Self::Error> {
        Ok(v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<String, Self::Error> {
        Ok(v.to_string())
    }
    fn serialize_u16(self, v: u16) -> Result<String, Self::Error> {
        Ok(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<String, Self::Error> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String, Self::Error> {
        Ok(v.to_string())
    }
    fn serialize_f32(self, _v: f32) -> Result<String, Self::Error> {
        Err(unsupported("a float map key"))
    }
    fn serialize_f64(self, _v: f64) -> Result<String, Self::Error> {
        Err(unsupported("a float map key"))
    }
    fn serialize_char(self, v: char) -> Result<String, Self::Error> {
        Ok(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<String, Self::Error> {
        Ok(v.to_owned())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<String, Self::Error> {
        Err(unsupported("a bytes map key"))
    }
    fn serialize_none(self) -> Result<String, Self::Error> {
        Err(unsupported("a null map key"))
    }
    fn serialize_some<T: serde::Serialize + ?Sized>(self, v: &T) -> Result<String, Self::Error> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<String, Self::Error> {
        Err(unsupported("a null map key"))
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<String, Self::Error> {
        Err(unsupported("a null map key"))
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<String, Self::Error> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: serde::Serialize + ?Sized>(
        self,
        _name: &'static str,
        v: &T,
    ) -> Result<String, Self::Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: serde::Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _v: &T,
    ) -> Result<String, Self::Error> {
        Err(unsupported("a compound map key"))
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
        Err(unsupported("a compound map key"))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Self::Error> {
        Err(unsupported("a compound map key"))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Self::Error> {
        Err(unsupported("a compound map key"))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Self::Error> {
        Err(unsupported("a compound map key"))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
        Err(unsupported("a compound map key"))
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Self::Error> {
        Err(unsupported("a compound map key"))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Self::Error> {
        Err(unsupported("a compound map key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    #[derive(serde::Serialize)]
    enum Shape {
        Unit,
        New(u8),
        Pair(i32, String),
        Named { z: Option<f64>, a: bool },
    }

    #[derive(serde::Serialize)]
    struct Typed {
        zeta: u64,
        #[serde(rename = "\u{e9}t\u{e9}")]
        summer: String,
        alpha: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        shapes: Vec<Shape>,
        by_number: BTreeMap<u32, f32>,
        #[serde(flatten)]
        extra: BTreeMap<String, Value>,
        raw: Value,
        bytes: serde_bytes_like::Bytes,
        c: char,
        unit: (),
        big: i128,
    }

    mod serde_bytes_like {
        pub struct Bytes(pub Vec<u8>);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
    }

    use std::collections::BTreeMap;

    #[test]
    fn typed_values_write_as_their_json_values_do() {
        let typed = Typed {
            zeta: u64::MAX,
            summer: "tab\t \u{1} \"q\" \\ \u{1F608}".into(),
            alpha: Some(i64::MIN),
            skipped: None,
            shapes: vec![
                Shape::Unit,
                Shape::New(7),
                Shape::Pair(-3, "x".into()),
                Shape::Named {
                    z: Some(f64::NAN),
                    a: true,
                },
                Shape::Named {
                    z: Some(1e21),
                    a: false,
                },
                Shape::Named {
                    z: Some(2.0),
                    a: false,
                },
                Shape::Named { z: None, a: false },
            ],
            by_number: BTreeMap::from([(10, 0.1), (9, -0.0), (100, f32::INFINITY)]),
            extra: BTreeMap::from([
                (
                    "zeta".to_owned(),
                    json!("shadowed by the flattened key, last wins"),
                ),
                ("\u{FFFD}".to_owned(), json!({"b": [1.5, null], "a": {}})),
                ("\u{1F600}".to_owned(), json!(9007199254740993u64)),
            ]),
            raw: json!({"operation": "WRITE", "n": -1, "f": 0.5, "nested": [{"y": 1, "x": 2}]}),
            bytes: serde_bytes_like::Bytes(vec![0, 255]),
            c: '\u{e9}',
            unit: (),
            big: -5,
        };
        assert_written_as_via_value(&typed);
    }

    /// `write_serialize` gives the bytes of `write_value(to_value(..))`.
    fn assert_written_as_via_value<T: serde::Serialize>(typed: &T) {
        let mut direct = Vec::new();
        write_serialize(typed, &mut direct).unwrap();
        let via_value = to_vec(&serde_json::to_value(typed).unwrap());
        assert_eq!(
            String::from_utf8_lossy(&direct),
            String::from_utf8_lossy(&via_value)
        );
    }

    /// Members that come in order but with a key twice (a field and a flattened entry of the
    /// same name) still keep only the last value; in order without repeats, and out of order,
    /// nested, give the bytes `write_value` gives.
    #[rstest]
    #[case::repeated_in_order(BTreeMap::from([("a".to_owned(), json!(2)), ("b".to_owned(), json!(3))]))]
    #[case::in_order(BTreeMap::from([("b".to_owned(), json!({"d": 1, "c": [{"f": 0, "e": 1}]}))]))]
    #[case::out_of_order(BTreeMap::from([("0".to_owned(), json!(null))]))]
    fn members_in_order_are_left_and_repeated_keys_keep_the_last(
        #[case] extra: BTreeMap<String, Value>,
    ) {
        #[derive(serde::Serialize)]
        struct Flat {
            a: u8,
            #[serde(flatten)]
            extra: BTreeMap<String, Value>,
        }
        let typed = Flat { a: 1, extra };
        assert_written_as_via_value(&typed);
    }

    #[test]
    fn integers_beyond_64_bits_are_refused_as_to_value_refuses_them() {
        assert!(write_serialize(&(u128::from(u64::MAX) + 1), &mut Vec::new()).is_err());
        assert!(serde_json::to_value(u128::from(u64::MAX) + 1).is_err());
        assert!(write_serialize(&i128::MIN, &mut Vec::new()).is_err());
    }

    fn canon(v: Value) -> String {
        String::from_utf8(to_vec(&v)).unwrap_or_default()
    }

    #[rstest]
    #[case(json!({"b": 1, "a": [true, null, "x"]}), r#"{"a":[true,null,"x"],"b":1}"#)]
    #[case(json!({"k": "tab\there \u{1} \"q\" \\ é 😈"}), "{\"k\":\"tab\\there \\u0001 \\\"q\\\" \\\\ é 😈\"}")]
    #[case(json!(9007199254740993u64), "9007199254740993")]
    #[case(json!(-5), "-5")]
    #[case(json!(1.5), "1.5")]
    #[case(json!(1e21), "1e+21")]
    #[case(json!(0.000001), "0.000001")]
    #[case(json!(1e-7), "1e-7")]
    fn canonical_forms(#[case] input: Value, #[case] expected: &str) {
        assert_eq!(canon(input), expected);
    }

    /// The escaping rule written the obvious way, one character at a time.
    fn reference(s: &str) -> Vec<u8> {
        let mut out = vec![b'"'];
        for ch in s.chars() {
            match ch {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\u{08}' => out.extend_from_slice(b"\\b"),
                '\u{0c}' => out.extend_from_slice(b"\\f"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 => {
                    out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
                }
                c => out.extend_from_slice(c.to_string().as_bytes()),
            }
        }
        out.push(b'"');
        out
    }

    #[test]
    fn strings_are_escaped_as_the_character_rule_says() {
        let mut cases: Vec<String> = (0u32..0x80)
            .filter_map(char::from_u32)
            .map(|c| format!("a{c}b{c}{c}"))
            .collect();
        cases.extend(
            [
                "",
                "plain",
                "é\u{1}😈\"",
                "\u{7f}\u{80}\u{ffff}\u{10ffff}",
                "\\\\\n\t",
            ]
            .map(str::to_owned),
        );
        for s in cases {
            let mut out = Vec::new();
            write_string(&s, &mut out);
            assert_eq!(out, reference(&s), "{s:?}");
        }
    }

    #[test]
    fn integers_beyond_64_bits_go_through_a_correctly_rounded_double() {
        // Found by the canonical fuzz target: without correctly rounded parsing the output
        // parsed back to a neighboring double.
        let v: Value = serde_json::from_str("198888884444488888888").unwrap();
        let c = to_vec(&v);
        assert_eq!(c, b"198888884444488900000");
        let back: Value = serde_json::from_slice(&c).unwrap();
        assert_eq!(to_vec(&back), c);
    }

    #[test]
    fn keys_sort_by_utf16_code_units() {
        // U+FFFD sorts after U+1F600 in UTF-16 (0xFFFD > 0xD83D) but before it by code point.
        let v = json!({"\u{1F600}": 1, "\u{FFFD}": 2, "b": 3, "a": 4});
        assert_eq!(canon(v), "{\"a\":4,\"b\":3,\"\u{1F600}\":1,\"\u{FFFD}\":2}");
    }

    #[test]
    fn reordered_input_gives_same_bytes() {
        let a: Value =
            serde_json::from_str(r#"{"x": {"q": 1, "p": 2}, "a": "z"}"#).unwrap_or_default();
        let b: Value = serde_json::from_str(r#"{"a":"z","x":{"p":2,"q":1}}"#).unwrap_or_default();
        assert_eq!(to_vec(&a), to_vec(&b));
    }
}
