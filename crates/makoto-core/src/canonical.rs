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
            entries.sort_by(|a, b| {
                // UTF-16 order is byte order for ASCII names (all of Makoto's own).
                if a.0.is_ascii() && b.0.is_ascii() {
                    a.0.cmp(b.0)
                } else {
                    a.0.encode_utf16().cmp(b.0.encode_utf16())
                }
            });
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

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

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
