//! RFC 3161 time-stamp tokens: the request sent to a time-stamp authority (TSA), the reply it
//! sends back, and the check of a token against TSA certificates the verifier was given. No I/O.
//!
//! A token is the TSA's CMS `SignedData` over a `TSTInfo` that names a SHA-256 message imprint
//! and the time (`genTime`) at which the TSA saw it. What makoto time-stamps, and why one token
//! covers a whole batch of attestations, is in `docs/verification.md` ("Time-stamps").
//!
//! [`TimestampToken::verify`] accepts a token only if
//! - it is `SignedData` with exactly one signer over `id-ct-TSTInfo` content, whose signed
//!   attributes carry that content type and the SHA-256 (or SHA-384/512) digest of the content;
//! - the signer's certificate (from the token, or given to the verifier) is a trusted TSA
//!   certificate, or is issued directly by one (its signature checked with the issuer's key);
//! - that certificate allows time-stamping (extended key usage `id-kp-timeStamping`) and was
//!   valid at `genTime`;
//! - the signature over the signed attributes verifies with its key (RSA PKCS #1 v1.5 with
//!   SHA-256/384/512, or ECDSA P-256 with SHA-256).
//!
//! Parsing is bounded: tokens larger than [`MAX_TOKEN_BYTES`] are refused before decoding.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use der::asn1::{Any, Int, ObjectIdentifier, OctetString};
use der::{Decode, DecodePem, Encode, Sequence, Tag, Tagged};
use sha2::Digest as _;
use x509_cert::Certificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectKeyIdentifier};
use x509_cert::spki::{AlgorithmIdentifierOwned, DecodePublicKey};

use crate::{Error, Sha256Digest};

/// Tokens (and replies) larger than this are refused unread.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_KP_TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

#[derive(Clone, Debug, Sequence)]
struct MessageImprint {
    hash_algorithm: AlgorithmIdentifierOwned,
    hashed_message: OctetString,
}

#[derive(Clone, Debug, Sequence)]
struct TimeStampReq {
    version: u8,
    message_imprint: MessageImprint,
    #[asn1(optional = "true")]
    req_policy: Option<ObjectIdentifier>,
    #[asn1(optional = "true")]
    nonce: Option<Int>,
    #[asn1(optional = "true")]
    cert_req: Option<bool>,
}

#[derive(Clone, Debug, Sequence)]
struct PkiStatusInfo {
    status: u8,
    #[asn1(optional = "true")]
    status_string: Option<Vec<String>>,
    #[asn1(optional = "true")]
    fail_info: Option<der::asn1::BitString>,
}

#[derive(Clone, Debug, Sequence)]
struct TimeStampResp {
    status: PkiStatusInfo,
    #[asn1(optional = "true")]
    time_stamp_token: Option<ContentInfo>,
}

#[derive(Clone, Debug, Sequence)]
struct Accuracy {
    #[asn1(optional = "true")]
    seconds: Option<Int>,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    millis: Option<Int>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    micros: Option<Int>,
}

#[derive(Clone, Debug, Sequence)]
struct TstInfo {
    version: u8,
    policy: ObjectIdentifier,
    message_imprint: MessageImprint,
    serial_number: Int,
    /// Read as the raw element: DER `GeneralizedTime` in the `der` crate has no fractional
    /// seconds, which RFC 3161 allows and real TSAs send.
    gen_time: Any,
    #[asn1(optional = "true")]
    accuracy: Option<Accuracy>,
    #[asn1(optional = "true")]
    ordering: Option<bool>,
    #[asn1(optional = "true")]
    nonce: Option<Int>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    tsa: Option<GeneralName>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    extensions: Option<x509_cert::ext::Extensions>,
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidTimestamp {
        reason: reason.into(),
    }
}

fn untrusted(reason: impl Into<String>) -> Error {
    Error::UntrustedTimestamp {
        reason: reason.into(),
    }
}

fn der_error(what: &str) -> impl Fn(der::Error) -> Error + '_ {
    move |e| invalid(format!("{what}: {e}"))
}

/// A time-stamp request over the SHA-256 `imprint`, asking for the TSA's certificate.
#[derive(Debug, Clone)]
pub struct TimestampRequest {
    imprint: Sha256Digest,
    nonce: u64,
}

impl TimestampRequest {
    /// `nonce` ties the reply to this request; a random 63-bit value.
    pub fn new(imprint: Sha256Digest, nonce: u64) -> Self {
        TimestampRequest {
            imprint,
            nonce: nonce & (u64::MAX >> 1),
        }
    }

    pub fn imprint(&self) -> Sha256Digest {
        self.imprint
    }

    /// The DER `TimeStampReq` (media type `application/timestamp-query`).
    pub fn to_der(&self) -> Result<Vec<u8>, Error> {
        let req = TimeStampReq {
            version: 1,
            message_imprint: sha256_imprint(&self.imprint)?,
            req_policy: None,
            nonce: Some(int_of(self.nonce)?),
            cert_req: Some(true),
        };
        req.to_der()
            .map_err(der_error("encoding the time-stamp request"))
    }
}

fn sha256_imprint(imprint: &Sha256Digest) -> Result<MessageImprint, Error> {
    Ok(MessageImprint {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: ID_SHA256,
            parameters: Some(Any::null()),
        },
        hashed_message: OctetString::new(imprint.as_bytes().to_vec())
            .map_err(der_error("imprint"))?,
    })
}

fn int_of(n: u64) -> Result<Int, Error> {
    let bytes = n.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(7);
    let mut v = bytes[first..].to_vec();
    if v.first().is_some_and(|b| b & 0x80 != 0) {
        v.insert(0, 0);
    }
    Int::new(&v).map_err(der_error("nonce"))
}

/// A parsed time-stamp token (a DER CMS `ContentInfo`). Its contents are unchecked until
/// [`TimestampToken::verify`].
#[derive(Clone)]
pub struct TimestampToken {
    der: Vec<u8>,
    signed: SignedData,
    info: TstInfo,
    gen_time: DateTime<Utc>,
    imprint: Sha256Digest,
}

impl fmt::Debug for TimestampToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TimestampToken(genTime {}, imprint {}, serial {})",
            self.gen_time,
            self.imprint,
            self.serial()
        )
    }
}

impl TimestampToken {
    /// Reads a TSA reply to `request`: the status must be granted (0) or granted with mods (1),
    /// and the token must answer this request (same imprint and nonce).
    pub fn from_reply(request: &TimestampRequest, reply: &[u8]) -> Result<Self, Error> {
        if reply.len() > MAX_TOKEN_BYTES {
            return Err(invalid(format!(
                "the reply is {} bytes, more than the {MAX_TOKEN_BYTES} accepted",
                reply.len()
            )));
        }
        let resp = TimeStampResp::from_der(reply).map_err(der_error("time-stamp reply"))?;
        if resp.status.status > 1 {
            let text = resp.status.status_string.unwrap_or_default().join("; ");
            return Err(invalid(format!(
                "the TSA refused the request (status {}{})",
                resp.status.status,
                if text.is_empty() {
                    String::new()
                } else {
                    format!(": {text}")
                }
            )));
        }
        let token = resp
            .time_stamp_token
            .ok_or_else(|| invalid("the reply grants the request but holds no token"))?;
        let token = Self::from_der(&token.to_der().map_err(der_error("token"))?)?;
        if token.imprint != request.imprint {
            return Err(invalid(format!(
                "the token's imprint {} is not the requested {}",
                token.imprint, request.imprint
            )));
        }
        let nonce = int_of(request.nonce)?;
        if token.info.nonce.as_ref() != Some(&nonce) {
            return Err(invalid("the token does not repeat the request's nonce"));
        }
        Ok(token)
    }

    /// Parses a token (DER `ContentInfo` holding `SignedData` over a `TSTInfo`).
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        if der.len() > MAX_TOKEN_BYTES {
            return Err(invalid(format!(
                "the token is {} bytes, more than the {MAX_TOKEN_BYTES} accepted",
                der.len()
            )));
        }
        let ci = ContentInfo::from_der(der).map_err(der_error("token"))?;
        if ci.content_type != ID_SIGNED_DATA {
            return Err(invalid(format!(
                "the token is {} content, not SignedData",
                ci.content_type
            )));
        }
        let signed: SignedData = ci.content.decode_as().map_err(der_error("SignedData"))?;
        let eci = &signed.encap_content_info;
        if eci.econtent_type != ID_CT_TST_INFO {
            return Err(invalid(format!(
                "the signed content is {}, not a TSTInfo",
                eci.econtent_type
            )));
        }
        let content = econtent_bytes(&signed)?;
        let info = TstInfo::from_der(&content).map_err(der_error("TSTInfo"))?;
        if info.message_imprint.hash_algorithm.oid != ID_SHA256 {
            return Err(invalid(format!(
                "the imprint is hashed with {}, not SHA-256",
                info.message_imprint.hash_algorithm.oid
            )));
        }
        let imprint = <[u8; 32]>::try_from(info.message_imprint.hashed_message.as_bytes())
            .map(Sha256Digest::from_bytes)
            .map_err(|_| invalid("the SHA-256 imprint is not 32 bytes"))?;
        let gen_time = parse_generalized_time(&info.gen_time)?;
        Ok(TimestampToken {
            der: der.to_vec(),
            signed,
            info,
            gen_time,
            imprint,
        })
    }

    pub fn to_der(&self) -> &[u8] {
        &self.der
    }

    /// The token wrapped in a granted `TimeStampResp` (what Sigstore bundles keep as
    /// `signedTimestamp`).
    pub fn to_reply_der(&self) -> Result<Vec<u8>, Error> {
        let token = ContentInfo::from_der(&self.der).map_err(der_error("token"))?;
        TimeStampResp {
            status: PkiStatusInfo {
                status: 0,
                status_string: None,
                fail_info: None,
            },
            time_stamp_token: Some(token),
        }
        .to_der()
        .map_err(der_error("time-stamp reply"))
    }
    /// The time the TSA says it saw the imprint (unchecked until verified).
    pub fn gen_time(&self) -> DateTime<Utc> {
        self.gen_time
    }
    pub fn imprint(&self) -> Sha256Digest {
        self.imprint
    }
    /// The token's serial number, hex.
    pub fn serial(&self) -> String {
        hex::encode(self.info.serial_number.as_bytes())
    }
    /// The TSA policy OID of the token.
    pub fn policy(&self) -> String {
        self.info.policy.to_string()
    }

    /// Checks the token's signature and certificate against `authorities` (see the module
    /// docs for every rule).
    pub fn verify(&self, authorities: &TimestampAuthorities) -> Result<VerifiedTimestamp, Error> {
        if authorities.is_empty() {
            return Err(untrusted("no time-stamp authority is trusted"));
        }
        let [signer] = self.signed.signer_infos.0.as_slice() else {
            return Err(invalid(format!(
                "the token has {} signers, RFC 3161 requires exactly one",
                self.signed.signer_infos.0.len()
            )));
        };
        let content = econtent_bytes(&self.signed)?;
        let signed_attrs = check_signed_attributes(signer, &content)?;
        let cert = self.signer_certificate(signer, authorities)?;
        let authority = authorities.admit(&cert, self.gen_time)?;
        verify_with(
            cert.tbs_certificate().subject_public_key_info(),
            &signer.signature_algorithm,
            Some(&signer.digest_alg),
            &signed_attrs,
            signer.signature.as_bytes(),
        )
        .map_err(|e| invalid(format!("the token's signature does not verify: {e}")))?;
        Ok(VerifiedTimestamp {
            gen_time: self.gen_time,
            imprint: self.imprint,
            authority,
            serial: self.serial(),
        })
    }

    /// The certificate whose key signed: carried in the token or given to the verifier, and
    /// named by the signer's identifier.
    fn signer_certificate(
        &self,
        signer: &SignerInfo,
        authorities: &TimestampAuthorities,
    ) -> Result<Certificate, Error> {
        let carried = self
            .signed
            .certificates
            .iter()
            .flat_map(|set| set.0.iter())
            .filter_map(|c| match c {
                CertificateChoices::Certificate(c) => Some(c),
                CertificateChoices::Other(_) => None,
            });
        let given = authorities.certs.iter().map(|a| &a.cert);
        carried
            .chain(given)
            .find(|c| identifies(&signer.sid, c))
            .cloned()
            .ok_or_else(|| {
                untrusted("the token's signer certificate is neither in the token nor trusted")
            })
    }
}

fn econtent_bytes(signed: &SignedData) -> Result<Vec<u8>, Error> {
    let any = signed
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or_else(|| invalid("the token has no TSTInfo content"))?;
    if any.tag() != Tag::OctetString {
        return Err(invalid("the TSTInfo content is not an OCTET STRING"));
    }
    Ok(any.value().to_vec())
}

fn identifies(sid: &SignerIdentifier, cert: &Certificate) -> bool {
    let tbs = cert.tbs_certificate();
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(ias) => {
            ias.issuer == *tbs.issuer() && ias.serial_number == *tbs.serial_number()
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => {
            matches!(tbs.get_extension::<SubjectKeyIdentifier>(), Ok(Some((_, own))) if own == *ski)
        }
    }
}

fn hash_of(alg: &ObjectIdentifier, data: &[u8]) -> Option<Vec<u8>> {
    match *alg {
        ID_SHA256 => Some(sha2::Sha256::digest(data).to_vec()),
        ID_SHA384 => Some(sha2::Sha384::digest(data).to_vec()),
        ID_SHA512 => Some(sha2::Sha512::digest(data).to_vec()),
        _ => None,
    }
}

/// The DER of the signed attributes as signed (an explicit SET OF), after checking that they
/// name the TSTInfo content type and its digest.
fn check_signed_attributes(signer: &SignerInfo, content: &[u8]) -> Result<Vec<u8>, Error> {
    let attrs = signer
        .signed_attrs
        .as_ref()
        .ok_or_else(|| invalid("the token's signer has no signed attributes"))?;
    let single = |oid: ObjectIdentifier, name: &str| -> Result<&Any, Error> {
        let mut found = attrs.iter().filter(|a| a.oid == oid);
        match (found.next(), found.next()) {
            (Some(a), None) if a.values.len() == 1 => a
                .values
                .iter()
                .next()
                .ok_or_else(|| invalid(format!("the {name} attribute is empty"))),
            _ => Err(invalid(format!(
                "the signed attributes must hold exactly one {name} value"
            ))),
        }
    };
    let ct: ObjectIdentifier = single(ID_CONTENT_TYPE, "content-type")?
        .decode_as()
        .map_err(der_error("content-type attribute"))?;
    if ct != ID_CT_TST_INFO {
        return Err(invalid(format!(
            "the signed content type is {ct}, not TSTInfo"
        )));
    }
    let md: OctetString = single(ID_MESSAGE_DIGEST, "message-digest")?
        .decode_as()
        .map_err(der_error("message-digest attribute"))?;
    let want = hash_of(&signer.digest_alg.oid, content).ok_or_else(|| {
        invalid(format!(
            "the signer's digest algorithm {} is not supported (SHA-256, SHA-384, SHA-512)",
            signer.digest_alg.oid
        ))
    })?;
    if md.as_bytes() != want.as_slice() {
        return Err(invalid(
            "the signed message digest is not the digest of the TSTInfo (the content was changed)",
        ));
    }
    attrs.to_der().map_err(der_error("signed attributes"))
}

/// Verifies `signature` over `message` with the key of `spki`, for the signature algorithm
/// `alg` (`digest` gives the hash where `alg` is plain rsaEncryption, as CMS allows).
fn verify_with(
    spki: &x509_cert::spki::SubjectPublicKeyInfoOwned,
    alg: &AlgorithmIdentifierOwned,
    digest: Option<&AlgorithmIdentifierOwned>,
    message: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    let spki_der = spki.to_der().map_err(|e| e.to_string())?;
    let rsa_hash = match alg.oid {
        SHA256_WITH_RSA => Some(ID_SHA256),
        SHA384_WITH_RSA => Some(ID_SHA384),
        SHA512_WITH_RSA => Some(ID_SHA512),
        RSA_ENCRYPTION => digest.map(|d| d.oid),
        _ => None,
    };
    if let Some(hash) = rsa_hash {
        let key = rsa::PublicKey::from_public_key_der(&spki_der)
            .map_err(|e| format!("not an RSA key: {e}"))?;
        let digest = hash_of(&hash, message).ok_or(format!("hash {hash} is not supported"))?;
        let scheme = match hash {
            ID_SHA256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
            ID_SHA384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
            _ => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
        };
        return key
            .verify(scheme, &digest, signature)
            .map_err(|e| format!("RSA: {e}"));
    }
    if alg.oid == ECDSA_WITH_SHA256 {
        if spki.algorithm.oid != ID_EC_PUBLIC_KEY {
            return Err("ECDSA signature from a key that is not an EC key".into());
        }
        let key = p256::ecdsa::VerifyingKey::from_public_key_der(&spki_der)
            .map_err(|e| format!("not a P-256 key: {e}"))?;
        let sig = p256::ecdsa::Signature::from_der(signature)
            .map_err(|e| format!("ECDSA signature: {e}"))?;
        use p256::ecdsa::signature::Verifier as _;
        return key.verify(message, &sig).map_err(|e| format!("ECDSA: {e}"));
    }
    Err(format!(
        "signature algorithm {} is not supported (RSA PKCS #1 v1.5 with SHA-2, ECDSA P-256 with SHA-256)",
        alg.oid
    ))
}

/// `YYYYMMDDHHMMSS[.fff…]Z`, as RFC 3161 allows (UTC, optional fraction, no trailing zeros
/// checked).
fn parse_generalized_time(any: &Any) -> Result<DateTime<Utc>, Error> {
    if any.tag() != Tag::GeneralizedTime {
        return Err(invalid("genTime is not a GeneralizedTime"));
    }
    let text = std::str::from_utf8(any.value()).map_err(|_| invalid("genTime is not ASCII"))?;
    let body = text
        .strip_suffix('Z')
        .ok_or_else(|| invalid(format!("genTime {text:?} is not in UTC (no trailing Z)")))?;
    let (whole, fraction) = match body.split_once('.') {
        Some((w, f)) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            (w, Some(f))
        }
        Some(_) => return Err(invalid(format!("genTime {text:?} has a bad fraction"))),
        None => (body, None),
    };
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!("genTime {text:?} is not YYYYMMDDHHMMSS")));
    }
    let t = NaiveDateTime::parse_from_str(whole, "%Y%m%d%H%M%S")
        .map_err(|e| invalid(format!("genTime {text:?}: {e}")))?;
    let nanos = fraction.map_or(Ok(0), |f| {
        format!("{f:0<9}")
            .parse::<i64>()
            .map_err(|e| invalid(format!("genTime {text:?}: {e}")))
    })?;
    Ok(t.and_utc() + chrono::Duration::nanoseconds(nanos))
}

/// A TSA certificate the verifier trusts: tokens signed with it, or with a certificate it
/// issued directly, are accepted.
#[derive(Debug, Clone)]
pub struct TrustedAuthority {
    name: String,
    cert: Certificate,
}

impl TrustedAuthority {
    /// Parses a PEM certificate; `name` labels it in reports.
    pub fn from_pem(name: Option<String>, pem: &str) -> Result<Self, Error> {
        let cert =
            Certificate::from_pem(pem.trim().as_bytes()).map_err(|e| Error::InvalidTrust {
                reason: format!("time-stamp authority certificate: {e}"),
            })?;
        let name = name.unwrap_or_else(|| cert.tbs_certificate().subject().to_string());
        Ok(TrustedAuthority { name, cert })
    }
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The TSA certificates a verifier trusts (from the trust file's `timestampAuthorities`).
#[derive(Debug, Clone, Default)]
pub struct TimestampAuthorities {
    certs: Vec<TrustedAuthority>,
}

impl TimestampAuthorities {
    pub fn new(certs: Vec<TrustedAuthority>) -> Self {
        TimestampAuthorities { certs }
    }
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }
    pub fn authorities(&self) -> &[TrustedAuthority] {
        &self.certs
    }

    /// The name of the trusted authority that vouches for `cert` at `at`: `cert` itself, or its
    /// direct issuer (signature checked). `cert` must allow time-stamping and be valid at `at`.
    fn admit(&self, cert: &Certificate, at: DateTime<Utc>) -> Result<String, Error> {
        let tbs = cert.tbs_certificate();
        let eku = tbs
            .get_extension::<ExtendedKeyUsage>()
            .map_err(der_error("extended key usage"))?;
        if !eku.is_some_and(|(_, e)| e.0.contains(&ID_KP_TIME_STAMPING)) {
            return Err(untrusted(format!(
                "the signer certificate {} does not allow time-stamping (no id-kp-timeStamping)",
                tbs.subject()
            )));
        }
        valid_at(cert, at)?;
        let der = cert.to_der().map_err(der_error("certificate"))?;
        for a in &self.certs {
            if a.cert.to_der().ok().as_deref() == Some(der.as_slice()) {
                return Ok(a.name.clone());
            }
        }
        for a in &self.certs {
            let issuer = a.cert.tbs_certificate();
            if issuer.subject() != tbs.issuer() {
                continue;
            }
            let tbs_der = tbs.to_der().map_err(der_error("certificate"))?;
            let Some(sig) = cert.signature().as_bytes() else {
                continue;
            };
            if verify_with(
                issuer.subject_public_key_info(),
                cert.signature_algorithm(),
                None,
                &tbs_der,
                sig,
            )
            .is_ok()
            {
                valid_at(&a.cert, at)?;
                return Ok(a.name.clone());
            }
        }
        Err(untrusted(format!(
            "the token was signed by {}, which is not a trusted time-stamp authority nor issued by one",
            tbs.subject()
        )))
    }
}

fn valid_at(cert: &Certificate, at: DateTime<Utc>) -> Result<(), Error> {
    let v = cert.tbs_certificate().validity();
    let secs = |t: &x509_cert::time::Time| t.to_unix_duration().as_secs() as i64;
    let (from, until) = (secs(&v.not_before), secs(&v.not_after));
    let t = at.timestamp();
    if t < from || t > until {
        return Err(untrusted(format!(
            "certificate {} was not valid at genTime {at}",
            cert.tbs_certificate().subject()
        )));
    }
    Ok(())
}

/// A token checked by [`TimestampToken::verify`]: the imprint existed no later than
/// `gen_time`, by the word of `authority`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTimestamp {
    gen_time: DateTime<Utc>,
    imprint: Sha256Digest,
    authority: String,
    serial: String,
}

impl VerifiedTimestamp {
    pub fn gen_time(&self) -> DateTime<Utc> {
        self.gen_time
    }
    pub fn imprint(&self) -> Sha256Digest {
        self.imprint
    }
    /// Name of the trusted authority that vouched for the token.
    pub fn authority(&self) -> &str {
        &self.authority
    }
    pub fn serial(&self) -> &str {
        &self.serial
    }
}

/// Commit timestamps come from writers' clocks: a `genTime` this much before a covered
/// commit's timestamp (or the statement's claimed signing time) is still accepted.
pub const CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// One attestation of a table's chain, as [`walk_coverage`] needs it.
#[derive(Debug, Clone)]
pub struct ChainLink<'a> {
    pub version: u64,
    /// SHA-256 of the statement payload.
    pub payload_digest: Sha256Digest,
    /// The previous version and payload digest the statement names.
    pub previous: Option<(u64, Sha256Digest)>,
    /// The time-stamp token the envelope carries, with the signature bytes it sits beside.
    pub token: Option<(&'a [u8], &'a [u8])>,
    /// The trusted key that verified the statement.
    pub key: Option<&'a crate::verify::TrustedKey>,
    pub commit_time: DateTime<Utc>,
    /// The signing time the statement claims.
    pub claimed_at: Option<DateTime<Utc>>,
}

/// Why a token or a covered link does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkProblem {
    /// The token does not parse or verify, is over another signature, or is dated before
    /// what it covers.
    Invalid(String),
    /// The token's signer is not a trusted authority.
    Untrusted(String),
    /// The signing key was not valid at `genTime`, or is revoked and no token dates it.
    KeyNotValid(String),
}

impl fmt::Display for LinkProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkProblem::Invalid(r) => write!(f, "time-stamp invalid: {r}"),
            LinkProblem::Untrusted(r) => write!(f, "time-stamp untrusted: {r}"),
            LinkProblem::KeyNotValid(r) => write!(f, "key not valid: {r}"),
        }
    }
}

/// What [`walk_coverage`] found.
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    /// Covered versions: the version of the time-stamped link that covers each, and its token.
    pub covered: BTreeMap<u64, (u64, VerifiedTimestamp)>,
    /// Problems by version.
    pub problems: Vec<(u64, LinkProblem)>,
}

/// Which links are covered by a valid token: from the newest down, a link is covered by the
/// nearest time-stamped link at or after it while every link between names its predecessor's
/// payload digest; its key must be valid at the token's `genTime`, and its commit and claimed
/// signing time must not be after it (beyond [`CLOCK_SKEW`]). A link signed by a revoked key
/// that no token covers is a problem too. `links` are in ascending version order, one per
/// version.
pub fn walk_coverage(links: &[ChainLink<'_>], authorities: &TimestampAuthorities) -> Coverage {
    let mut out = Coverage::default();
    if authorities.is_empty() {
        return out;
    }
    let mut current: Option<(u64, VerifiedTimestamp)> = None;
    let mut above: Option<&ChainLink<'_>> = None;
    for link in links.iter().rev() {
        let chained =
            above.is_some_and(|a| a.previous == Some((link.version, link.payload_digest)));
        if !chained {
            current = None;
        }
        if let Some((token, sig)) = link.token {
            match verify_link_token(token, sig, authorities) {
                Ok(v) => current = Some((link.version, v)),
                Err(p) => {
                    current = None;
                    out.problems.push((link.version, p));
                }
            }
        }
        if let Some((anchor, v)) = &current {
            match check_covered(link, v) {
                Ok(()) => {
                    out.covered.insert(link.version, (*anchor, v.clone()));
                }
                Err(p) => out.problems.push((link.version, p)),
            }
        }
        above = Some(link);
    }
    for link in links {
        if out.covered.contains_key(&link.version) {
            continue;
        }
        if let Some((key, revoked)) = link.key.and_then(|k| k.revoked_at().map(|r| (k, r))) {
            out.problems.push((
                link.version,
                LinkProblem::KeyNotValid(format!(
                    "signed by key {} revoked at {revoked}, and no valid time-stamp shows the signature predates the revocation",
                    key.key().keyid()
                )),
            ));
        }
    }
    out.problems.sort_by_key(|(v, _)| *v);
    out
}

/// What the time-stamp of one signed envelope (a head, a DBOM, a stream window) shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeTimestamp {
    /// The envelope carries no token.
    Missing,
    /// It carries one, but the verifier trusts no time-stamp authority, so it was not checked.
    Unchecked,
    /// The token verifies under a trusted authority and is over the envelope's signature.
    Verified(VerifiedTimestamp),
    /// The token does not hold.
    Problem(LinkProblem),
}

/// Checks the token on the first signature of `envelope`, whose signature the caller has
/// verified: under `authorities`, over SHA-256 of that signature, and, when `key` is given,
/// dated inside the key's validity window.
pub fn envelope_timestamp(
    envelope: &crate::dsse::Envelope,
    authorities: &TimestampAuthorities,
    key: Option<&crate::verify::TrustedKey>,
) -> EnvelopeTimestamp {
    let Some(sig) = envelope.signatures().first() else {
        return EnvelopeTimestamp::Missing;
    };
    let Some(token) = sig.timestamp() else {
        return EnvelopeTimestamp::Missing;
    };
    if authorities.is_empty() {
        return EnvelopeTimestamp::Unchecked;
    }
    match verify_link_token(token, sig.sig(), authorities) {
        Err(p) => EnvelopeTimestamp::Problem(p),
        Ok(v) => match key.and_then(|k| k.outside_window(Some(v.gen_time()))) {
            Some(reason) => EnvelopeTimestamp::Problem(LinkProblem::KeyNotValid(format!(
                "time-stamped at {} by {}: {reason}",
                v.gen_time(),
                v.authority()
            ))),
            None => EnvelopeTimestamp::Verified(v),
        },
    }
}

fn verify_link_token(
    token: &[u8],
    sig: &[u8],
    authorities: &TimestampAuthorities,
) -> Result<VerifiedTimestamp, LinkProblem> {
    let token = TimestampToken::from_der(token).map_err(|e| LinkProblem::Invalid(e.to_string()))?;
    let verified = token.verify(authorities).map_err(|e| match e {
        Error::UntrustedTimestamp { .. } => LinkProblem::Untrusted(e.to_string()),
        _ => LinkProblem::Invalid(e.to_string()),
    })?;
    let imprint = Sha256Digest::of(sig);
    if verified.imprint() != imprint {
        return Err(LinkProblem::Invalid(format!(
            "the time-stamp token is over {}, not over this attestation's signature ({imprint})",
            verified.imprint()
        )));
    }
    Ok(verified)
}

fn check_covered(link: &ChainLink<'_>, v: &VerifiedTimestamp) -> Result<(), LinkProblem> {
    let stamped = v.gen_time();
    if let Some(reason) = link.key.and_then(|k| k.outside_window(Some(stamped))) {
        return Err(LinkProblem::KeyNotValid(format!(
            "time-stamped at {stamped} by {}: {reason}",
            v.authority()
        )));
    }
    if link.commit_time > stamped + CLOCK_SKEW {
        return Err(LinkProblem::Invalid(format!(
            "the time-stamp ({stamped}) is before the commit it covers ({})",
            link.commit_time
        )));
    }
    if let Some(signed) = link.claimed_at.filter(|s| *s > stamped + CLOCK_SKEW) {
        return Err(LinkProblem::Invalid(format!(
            "the statement claims it was signed at {signed}, after its time-stamp ({stamped})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any_time(s: &str) -> Any {
        Any::new(Tag::GeneralizedTime, s.as_bytes()).unwrap()
    }

    #[test]
    fn generalized_times_with_and_without_fractions() {
        let t = parse_generalized_time(&any_time("20261204134845Z")).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-04T13:48:45+00:00");
        let t = parse_generalized_time(&any_time("20261204134845.25Z")).unwrap();
        assert_eq!(t.timestamp_millis() % 1000, 250);
        for bad in [
            "20261204134845",
            "20261204134845.Z",
            "2026120413484Z",
            "20261304134845Z",
        ] {
            assert!(parse_generalized_time(&any_time(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_der_is_a_sha256_query_with_nonce_and_cert_request() {
        let d = Sha256Digest::of(b"sig");
        let der = TimestampRequest::new(d, u64::MAX).to_der().unwrap();
        let req = TimeStampReq::from_der(&der).unwrap();
        assert_eq!(req.version, 1);
        assert_eq!(req.message_imprint.hash_algorithm.oid, ID_SHA256);
        assert_eq!(req.message_imprint.hashed_message.as_bytes(), d.as_bytes());
        assert_eq!(req.cert_req, Some(true));
        // The nonce is positive (top bit cleared, no sign byte needed).
        assert_eq!(req.nonce.unwrap(), int_of(u64::MAX >> 1).unwrap());
        assert_eq!(int_of(0x80).unwrap().as_bytes(), &[0, 0x80]);
    }

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/timestamp");

    fn file(name: &str) -> Vec<u8> {
        std::fs::read(format!("{DIR}/{name}")).unwrap()
    }

    fn authority(name: &str) -> TimestampAuthorities {
        let pem = String::from_utf8(file(name)).unwrap();
        TimestampAuthorities::new(vec![
            TrustedAuthority::from_pem(Some(name.into()), &pem).unwrap(),
        ])
    }

    /// Tokens made by OpenSSL's TSA (testdata/timestamp/regenerate) verify under their root or
    /// their TSA certificate, and not under another authority.
    #[rstest::rstest]
    #[case::ecdsa_p256("ec")]
    #[case::rsa("rsa")]
    fn openssl_tokens_verify_under_their_authority_only(#[case] key: &str) {
        let token = TimestampToken::from_der(&file(&format!("{key}-token.der"))).unwrap();
        assert_eq!(token.imprint(), Sha256Digest::of(b"makoto test signature"));
        for trusted in [format!("{key}-ca.pem"), format!("{key}-tsa.pem")] {
            let v = token.verify(&authority(&trusted)).unwrap();
            assert_eq!(v.authority(), trusted);
            assert_eq!(v.gen_time(), token.gen_time());
            assert_eq!(v.imprint(), token.imprint());
        }
        let other = if key == "ec" {
            "rsa-ca.pem"
        } else {
            "ec-ca.pem"
        };
        assert!(matches!(
            token.verify(&authority(other)),
            Err(Error::UntrustedTimestamp { .. })
        ));
        assert!(matches!(
            token.verify(&TimestampAuthorities::default()),
            Err(Error::UntrustedTimestamp { .. })
        ));
    }

    /// Any changed byte of a token either fails to parse or fails verification: the TSTInfo
    /// (genTime, imprint) is bound by the message digest, the attributes by the signature.
    #[rstest::rstest]
    #[case::ecdsa_p256("ec")]
    #[case::rsa("rsa")]
    fn every_changed_byte_of_a_token_is_caught(#[case] key: &str) {
        let der = file(&format!("{key}-token.der"));
        let trusted = authority(&format!("{key}-ca.pem"));
        let good = TimestampToken::from_der(&der).unwrap();
        // The imprint and genTime inside the TSTInfo: changing them parses, and must not verify.
        let imprint = good.imprint();
        let at = der
            .windows(32)
            .position(|w| w == imprint.as_bytes())
            .unwrap();
        let time = good.info.gen_time.value().to_vec();
        let time_at = der.windows(time.len()).position(|w| w == time).unwrap();
        for i in [at, at + 31, time_at + 3, time_at + 13] {
            let mut bad = der.clone();
            bad[i] ^= 0x01;
            let token = TimestampToken::from_der(&bad).unwrap();
            assert!(
                matches!(token.verify(&trusted), Err(Error::InvalidTimestamp { reason }) if reason.contains("message digest")),
                "byte {i}"
            );
        }
        for i in 0..der.len() {
            let mut bad = der.clone();
            bad[i] ^= 0x01;
            let Ok(token) = TimestampToken::from_der(&bad) else {
                continue;
            };
            // Bytes outside what is signed (the carried certificates' own signatures, unsigned
            // parts) may change without changing what the token says; then it must say the same.
            if let Ok(v) = token.verify(&trusted) {
                assert_eq!(v.gen_time(), good.gen_time(), "byte {i}");
                assert_eq!(v.imprint(), good.imprint(), "byte {i}");
                assert_eq!(token.serial(), good.serial(), "byte {i}");
            }
        }
    }

    #[test]
    fn a_reply_is_unwrapped_to_its_token() {
        let reply = file("ec-reply.der");
        let token = TimestampToken::from_der(&file("ec-token.der")).unwrap();
        assert_eq!(
            token.to_reply_der().unwrap(),
            reply,
            "wrapping gives OpenSSL's reply back"
        );
        let resp = TimeStampResp::from_der(&reply).unwrap();
        assert_eq!(resp.status.status, 0);
        let token = resp.time_stamp_token.unwrap().to_der().unwrap();
        assert_eq!(token, file("ec-token.der"));
        // A request for another imprint is not answered by this reply.
        let other = TimestampRequest::new(Sha256Digest::of(b"other"), 1);
        assert!(matches!(
            TimestampToken::from_reply(&other, &reply),
            Err(Error::InvalidTimestamp { reason }) if reason.contains("imprint")
        ));
    }

    #[test]
    fn oversized_and_garbage_tokens_are_refused() {
        assert!(matches!(
            TimestampToken::from_der(&vec![0x30; MAX_TOKEN_BYTES + 1]),
            Err(Error::InvalidTimestamp { .. })
        ));
        assert!(matches!(
            TimestampToken::from_der(b"not der"),
            Err(Error::InvalidTimestamp { .. })
        ));
    }
}
