//! Where a signing key lives, as `--key` names it: a PKCS#8 key file, or an object in a
//! PKCS#11 token named by an RFC 7512 URI (`pkcs11:token=…;object=…?module-path=…`).
//!
//! Parsing only; opening the key (reading the file, loading the PKCS#11 module, logging in) is
//! the job of `makoto_delta::signer`. A PIN is never part of a [`KeySource`]: `pin-value` is
//! refused, and `pin-source` names a file the PIN is read from.

use std::fmt;
use std::path::PathBuf;

use percent_encoding::percent_decode_str;

use crate::Error;

/// A signing key as given on the command line or in a Python call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A PKCS#8 PEM private key file.
    File(PathBuf),
    /// A private key object in a PKCS#11 token.
    Pkcs11(Box<Pkcs11Uri>),
}

impl std::str::FromStr for KeySource {
    type Err = Error;

    /// `pkcs11:…` is an RFC 7512 URI; anything else is a file path.
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.starts_with("pkcs11:") {
            Pkcs11Uri::parse(s).map(|u| KeySource::Pkcs11(Box::new(u)))
        } else if s.is_empty() {
            Err(invalid(s, "empty key path".into()))
        } else {
            Ok(KeySource::File(PathBuf::from(s)))
        }
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::File(p) => write!(f, "{}", p.display()),
            KeySource::Pkcs11(u) => u.fmt(f),
        }
    }
}

/// The attributes of an RFC 7512 PKCS#11 URI that select a private key and say how to reach
/// it. Every attribute is optional; together they must match exactly one private key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// `token`: the token label.
    pub token: Option<String>,
    /// `manufacturer`: the token's manufacturer id.
    pub manufacturer: Option<String>,
    /// `model`: the token's model.
    pub model: Option<String>,
    /// `serial`: the token's serial number.
    pub serial: Option<String>,
    /// `slot-id`: the slot number.
    pub slot_id: Option<u64>,
    /// `object`: the key's label (`CKA_LABEL`).
    pub object: Option<String>,
    /// `id`: the key's `CKA_ID` bytes.
    pub id: Option<Vec<u8>>,
    /// `module-path` (query): the PKCS#11 module (shared library) to load.
    pub module_path: Option<PathBuf>,
    /// `pin-source` (query): a file (`file:` URI or path) holding the user PIN.
    pub pin_source: Option<PathBuf>,
}

fn invalid(uri: &str, reason: String) -> Error {
    Error::InvalidKey {
        what: format!("PKCS#11 URI {}", redact(uri).escape_debug()),
        reason,
    }
}

/// The URI without its query, which is where a PIN could be, and without anything from a
/// `pin-value` on (misplaced in the path).
fn redact(uri: &str) -> &str {
    let path = uri.split_once('?').map_or(uri, |(path, _)| path);
    path.find("pin-value").map_or(path, |i| &path[..i])
}

fn decode(uri: &str, name: &str, raw: &str) -> Result<Vec<u8>, Error> {
    if raw
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(invalid(
            uri,
            format!("attribute {name} has unencoded whitespace"),
        ));
    }
    let mut rest = raw;
    while let Some(i) = rest.find('%') {
        let hex = rest.get(i + 1..i + 3).unwrap_or("");
        if hex.len() != 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(
                uri,
                format!("attribute {name}: bad percent-encoding"),
            ));
        }
        rest = &rest[i + 3..];
    }
    Ok(percent_decode_str(raw).collect())
}

fn text(uri: &str, name: &str, raw: &str) -> Result<String, Error> {
    String::from_utf8(decode(uri, name, raw)?)
        .map_err(|_| invalid(uri, format!("attribute {name} is not UTF-8")))
}

fn set<T>(uri: &str, name: &str, slot: &mut Option<T>, value: T) -> Result<(), Error> {
    if slot.replace(value).is_some() {
        return Err(invalid(uri, format!("attribute {name} given twice")));
    }
    Ok(())
}

impl Pkcs11Uri {
    /// Parses `pkcs11:<path attributes>[?<query attributes>]`. Refuses `pin-value` (a PIN
    /// must not be on a command line), attributes it does not know (a selector it ignored
    /// could pick another key), and `type` other than `private`.
    pub fn parse(uri: &str) -> Result<Self, Error> {
        let body = uri
            .strip_prefix("pkcs11:")
            .ok_or_else(|| invalid(uri, "does not start with pkcs11:".into()))?;
        let (path, query) = body.split_once('?').unwrap_or((body, ""));
        let mut out = Pkcs11Uri::default();
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attr
                .split_once('=')
                .ok_or_else(|| invalid(uri, format!("attribute {attr:?} has no '='")))?;
            out.path_attribute(uri, name, value)?;
        }
        for attr in query.split('&').filter(|a| !a.is_empty()) {
            let (name, value) = attr.split_once('=').unwrap_or((attr, ""));
            out.query_attribute(uri, name, value)?;
        }
        if out.object.is_none() && out.id.is_none() {
            return Err(invalid(
                uri,
                "names no key: give object=<label> or id=<bytes>".into(),
            ));
        }
        Ok(out)
    }

    fn path_attribute(&mut self, uri: &str, name: &str, value: &str) -> Result<(), Error> {
        match name {
            "token" => set(uri, name, &mut self.token, text(uri, name, value)?),
            "manufacturer" => set(uri, name, &mut self.manufacturer, text(uri, name, value)?),
            "model" => set(uri, name, &mut self.model, text(uri, name, value)?),
            "serial" => set(uri, name, &mut self.serial, text(uri, name, value)?),
            "object" => set(uri, name, &mut self.object, text(uri, name, value)?),
            "id" => set(uri, name, &mut self.id, decode(uri, name, value)?),
            "slot-id" => {
                let n = text(uri, name, value)?
                    .parse()
                    .map_err(|_| invalid(uri, "slot-id is not a number".into()))?;
                set(uri, name, &mut self.slot_id, n)
            }
            "pin-value" => Err(invalid(
                uri,
                "pin-value is refused (and belongs in the query): use pin-source=<file> or MAKOTO_PKCS11_PIN".into(),
            )),
            "type" => match text(uri, name, value)?.as_str() {
                "private" => Ok(()),
                _ => Err(invalid(uri, "type is not private: a signing key is type=private".into())),
            },
            other => Err(invalid(
                uri,
                format!(
                    "unsupported path attribute {other:?} (supported: token, manufacturer, model, serial, slot-id, object, id, type)"
                ),
            )),
        }
    }

    fn query_attribute(&mut self, uri: &str, name: &str, value: &str) -> Result<(), Error> {
        match name {
            "pin-value" => Err(invalid(
                uri,
                "pin-value is refused: a PIN on the command line leaks into shell history and process lists; use pin-source=<file> or MAKOTO_PKCS11_PIN".into(),
            )),
            "pin-source" => {
                let v = text(uri, name, value)?;
                let path = v.strip_prefix("file://").or(v.strip_prefix("file:")).unwrap_or(&v);
                if path.is_empty() {
                    return Err(invalid(uri, "pin-source is empty".into()));
                }
                set(uri, name, &mut self.pin_source, PathBuf::from(path))
            }
            "module-path" => {
                let v = text(uri, name, value)?;
                if v.is_empty() {
                    return Err(invalid(uri, "module-path is empty".into()));
                }
                set(uri, name, &mut self.module_path, PathBuf::from(v))
            }
            // Not named: a mistyped PIN attribute would otherwise be echoed.
            _ => Err(invalid(
                uri,
                "unsupported query attribute (supported: module-path, pin-source)".into(),
            )),
        }
    }
}

fn encode(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~:[]@!$'()*+,=&".contains(&b) {
            write!(f, "{}", b as char)?;
        } else {
            write!(f, "%{b:02X}")?;
        }
    }
    Ok(())
}

impl fmt::Display for Pkcs11Uri {
    /// The path part (which token and object), as errors and logs name the key. The query
    /// (module and PIN file) is left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pkcs11:")?;
        let mut first = true;
        let mut attr = |f: &mut fmt::Formatter<'_>, name: &str, v: &[u8]| {
            if !std::mem::take(&mut first) {
                f.write_str(";")?;
            }
            write!(f, "{name}=")?;
            encode(f, v)
        };
        let texts = [
            ("token", &self.token),
            ("manufacturer", &self.manufacturer),
            ("model", &self.model),
            ("serial", &self.serial),
        ];
        for (name, v) in texts {
            if let Some(v) = v {
                attr(f, name, v.as_bytes())?;
            }
        }
        if let Some(n) = self.slot_id {
            attr(f, "slot-id", n.to_string().as_bytes())?;
        }
        if let Some(v) = &self.object {
            attr(f, "object", v.as_bytes())?;
        }
        if let Some(v) = &self.id {
            attr(f, "id", v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn a_full_uri_parses() {
        let u = Pkcs11Uri::parse(
            "pkcs11:token=My%20Token;object=signer;id=%01%02;slot-id=7;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/secrets/pin",
        )
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("My Token"));
        assert_eq!(u.object.as_deref(), Some("signer"));
        assert_eq!(u.id.as_deref(), Some(&[1u8, 2][..]));
        assert_eq!(u.slot_id, Some(7));
        assert_eq!(
            u.module_path.as_deref(),
            Some(std::path::Path::new("/usr/lib/softhsm/libsofthsm2.so"))
        );
        assert_eq!(
            u.pin_source.as_deref(),
            Some(std::path::Path::new("/run/secrets/pin"))
        );
        assert_eq!(
            u.to_string(),
            "pkcs11:token=My%20Token;slot-id=7;object=signer;id=%01%02"
        );
        assert_eq!(Pkcs11Uri::parse(&u.to_string()).unwrap().object, u.object);
    }

    #[test]
    fn anything_else_is_a_file() {
        assert_eq!(
            "keys/prod.key".parse::<KeySource>().unwrap(),
            KeySource::File("keys/prod.key".into())
        );
        assert!(matches!(
            "pkcs11:object=k".parse::<KeySource>().unwrap(),
            KeySource::Pkcs11(_)
        ));
    }

    #[rstest]
    #[case::pin_value("pkcs11:object=k?pin-value=123456", "pin-value is refused")]
    #[case::no_key("pkcs11:token=t", "names no key")]
    #[case::unknown_path("pkcs11:object=k;x-vendor=1", "unsupported path attribute")]
    #[case::unknown_query("pkcs11:object=k?module-name=softhsm2", "unsupported query")]
    #[case::public_type("pkcs11:object=k;type=public", "type=private")]
    #[case::twice("pkcs11:object=k;object=j", "given twice")]
    #[case::bad_percent("pkcs11:object=k%2", "percent-encoding")]
    #[case::bad_percent_hex("pkcs11:object=k%zz", "percent-encoding")]
    #[case::no_equals("pkcs11:object", "has no '='")]
    #[case::slot("pkcs11:object=k;slot-id=x", "not a number")]
    #[case::space("pkcs11:object=a b", "whitespace")]
    #[case::utf8("pkcs11:object=%ff", "not UTF-8")]
    fn bad_uris_are_refused(#[case] uri: &str, #[case] reason: &str) {
        let e = Pkcs11Uri::parse(uri).unwrap_err().to_string();
        assert!(e.contains(reason), "{uri}: {e}");
    }

    #[test]
    fn a_refused_pin_is_not_echoed() {
        for uri in [
            "pkcs11:object=k?s3cr3t-pin",
            "pkcs11:object=k?pinvalue=s3cr3t-pin",
        ] {
            let e = Pkcs11Uri::parse(uri).unwrap_err().to_string();
            assert!(!e.contains("s3cr3t-pin"), "{e}");
        }
        let e = Pkcs11Uri::parse("pkcs11:object=k?pin-value=s3cr3t-pin")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cr3t-pin"), "{e}");
        for uri in [
            "pkcs11:object=k;pin-value=s3cr3t-pin",
            "pkcs11:pin-value=s3cr3t-pin;x",
        ] {
            let e = Pkcs11Uri::parse(uri).unwrap_err().to_string();
            assert!(!e.contains("s3cr3t-pin") && e.contains("refused"), "{e}");
        }
        let e = Pkcs11Uri::parse("pkcs11:object=k;bogus=1?pin-value=s3cr3t-pin")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cr3t-pin"), "{e}");
    }
}
