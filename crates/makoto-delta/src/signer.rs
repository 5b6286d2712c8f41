//! Opens the signer a [`KeySource`] names: a PKCS#8 key file, or a private key in a PKCS#11
//! token (an HSM, a cloud HSM's PKCS#11 library, SoftHSM2).
//!
//! A PKCS#11 key never leaves its token: makoto reads the public key, and asks the token to
//! sign. The module is `module-path` of the URI or `MAKOTO_PKCS11_MODULE`; the user PIN is read
//! from the `pin-source` file of the URI or from `MAKOTO_PKCS11_PIN`, held zeroized, and never
//! written anywhere. Every signature the token returns is checked against the public key
//! before it is used.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use makoto_core::Sha256Digest;
use makoto_core::key_source::{KeySource, Pkcs11Uri};
use makoto_core::keys::{Algorithm, PublicKey, Signer, es256_der_from_fixed};
use zeroize::Zeroizing;

use crate::{Error, keyfile};

/// The environment variable naming the PKCS#11 module when the URI has no `module-path`.
pub const MODULE_ENV: &str = "MAKOTO_PKCS11_MODULE";
/// The environment variable holding the user PIN when the URI has no `pin-source`.
pub const PIN_ENV: &str = "MAKOTO_PKCS11_PIN";

/// Where the signing key is kept, as far as the signer can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Custody {
    /// A private key file on the file system.
    File,
    /// A PKCS#11 token that lets the key out (`CKA_SENSITIVE` false or `CKA_EXTRACTABLE` true).
    ExtractableToken,
    /// A PKCS#11 token that marks the key sensitive and never extractable.
    HardwareToken,
}

/// A signer and where its key is kept.
pub struct OpenedSigner {
    pub signer: Arc<dyn Signer>,
    pub custody: Custody,
}

impl std::fmt::Debug for OpenedSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OpenedSigner({} {:?})",
            self.signer.keyid(),
            self.custody
        )
    }
}

/// Opens the signer `source` names.
pub fn open(source: &KeySource) -> Result<OpenedSigner, Error> {
    match source {
        KeySource::File(path) => Ok(OpenedSigner {
            signer: Arc::new(keyfile::load_signing_key(path)?),
            custody: Custody::File,
        }),
        KeySource::Pkcs11(uri) => {
            let signer = Pkcs11Signer::open(uri)?;
            let custody = signer.custody;
            Ok(OpenedSigner {
                signer: Arc::new(signer),
                custody,
            })
        }
    }
}

fn key_error(uri: &Pkcs11Uri, reason: impl Into<String>) -> Error {
    Error::Pkcs11 {
        key: uri.to_string(),
        reason: reason.into(),
    }
}

fn p11(e: cryptoki::error::Error) -> String {
    match e {
        cryptoki::error::Error::Pkcs11(rv, function) => format!("{function} failed: {rv:?}"),
        cryptoki::error::Error::LibraryLoading(e) => format!("cannot load the module: {e}"),
        other => other.to_string(),
    }
}

/// One context per module for the life of the process: `C_Initialize` may be called only once,
/// and finalizing under another signer of the same module would close its sessions.
fn context(uri: &Pkcs11Uri) -> Result<Pkcs11, Error> {
    static MODULES: OnceLock<Mutex<Vec<(PathBuf, Pkcs11)>>> = OnceLock::new();
    let module = match &uri.module_path {
        Some(p) => p.clone(),
        None => std::env::var_os(MODULE_ENV)
            .map(PathBuf::from)
            .ok_or_else(|| {
                key_error(
                    uri,
                    format!("no PKCS#11 module: add ?module-path=<library> or set {MODULE_ENV}"),
                )
            })?,
    };
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| key_error(uri, "PKCS#11 module table poisoned"))?;
    if let Some((_, ctx)) = modules.iter().find(|(p, _)| *p == module) {
        return Ok(ctx.clone());
    }
    let with_module = |e| key_error(uri, format!("module {}: {}", module.display(), p11(e)));
    let ctx = Pkcs11::new(&module).map_err(with_module)?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => {}
        Err(cryptoki::error::Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(with_module(e)),
    }
    modules.push((module, ctx.clone()));
    Ok(ctx)
}

fn read_pin(uri: &Pkcs11Uri) -> Result<Option<AuthPin>, Error> {
    let pin = match &uri.pin_source {
        Some(path) => Some(read_pin_file(uri, path)?),
        None => std::env::var(PIN_ENV).ok().map(Zeroizing::new),
    };
    Ok(pin.map(|p| AuthPin::from(p.as_str())))
}

fn read_pin_file(uri: &Pkcs11Uri, path: &Path) -> Result<Zeroizing<String>, Error> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        key_error(
            uri,
            format!("pin-source {}: cannot read: {e}", path.display()),
        )
    })?);
    let pin = text.trim_end_matches(['\r', '\n']);
    if pin.is_empty() {
        return Err(key_error(
            uri,
            format!("pin-source {} is empty", path.display()),
        ));
    }
    Ok(Zeroizing::new(pin.to_owned()))
}

fn token_matches(
    ctx: &Pkcs11,
    slot: Slot,
    uri: &Pkcs11Uri,
) -> Result<bool, cryptoki::error::Error> {
    if uri.slot_id.is_some_and(|id| id != slot.id()) {
        return Ok(false);
    }
    let info = ctx.get_token_info(slot)?;
    let wanted = [
        (&uri.token, info.label()),
        (&uri.manufacturer, info.manufacturer_id()),
        (&uri.model, info.model()),
        (&uri.serial, info.serial_number()),
    ];
    Ok(wanted
        .iter()
        .all(|(want, have)| want.as_deref().is_none_or(|w| w == have.trim_end())))
}

fn find_slot(ctx: &Pkcs11, uri: &Pkcs11Uri) -> Result<Slot, Error> {
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| key_error(uri, p11(e)))?;
    let mut found = Vec::new();
    for slot in slots {
        if token_matches(ctx, slot, uri).map_err(|e| key_error(uri, p11(e)))? {
            found.push(slot);
        }
    }
    match found.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(key_error(uri, "no token matches")),
        more => Err(key_error(
            uri,
            format!(
                "{} tokens match; name one with token=, serial= or slot-id=",
                more.len()
            ),
        )),
    }
}

fn selector(uri: &Pkcs11Uri, class: ObjectClass) -> Vec<Attribute> {
    let mut template = vec![Attribute::Class(class)];
    if let Some(label) = &uri.object {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
    template
}

fn only_one(uri: &Pkcs11Uri, what: &str, found: Vec<ObjectHandle>) -> Result<ObjectHandle, Error> {
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(key_error(uri, format!("no {what} matches"))),
        more => Err(key_error(
            uri,
            format!(
                "{} {what}s match; name one with object= and id=",
                more.len()
            ),
        )),
    }
}

/// A signer whose private key is an object in a PKCS#11 token.
pub struct Pkcs11Signer {
    session: Mutex<Session>,
    key: ObjectHandle,
    public: PublicKey,
    custody: Custody,
    name: String,
}

impl std::fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pkcs11Signer({} {:?})", self.name, self.public)
    }
}

impl Pkcs11Signer {
    /// Finds the token and the one private key `uri` names, logs in, and reads the public key
    /// (from the public key object with the same label and id).
    pub fn open(uri: &Pkcs11Uri) -> Result<Self, Error> {
        let ctx = context(uri)?;
        let slot = find_slot(&ctx, uri)?;
        let fail = |e| key_error(uri, p11(e));
        let session = ctx.open_ro_session(slot).map_err(fail)?;
        let pin = read_pin(uri)?;
        let protected = ctx
            .get_token_info(slot)
            .map_err(fail)?
            .protected_authentication_path();
        if pin.is_none() && !protected {
            return Err(key_error(
                uri,
                format!("no PIN: add ?pin-source=<file> or set {PIN_ENV}"),
            ));
        }
        match session.login(UserType::User, pin.as_ref()) {
            Ok(()) => {}
            Err(cryptoki::error::Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(cryptoki::error::Error::Pkcs11(RvError::PinIncorrect, _)) => {
                return Err(key_error(uri, "login refused: the PIN is incorrect"));
            }
            Err(e) => return Err(fail(e)),
        }
        let private = session
            .find_objects(&selector(uri, ObjectClass::PRIVATE_KEY))
            .map_err(fail)?;
        let key = only_one(uri, "private key", private)?;
        let public = public_key(uri, &session, key)?;
        let custody = custody(uri, &session, key)?;
        Ok(Pkcs11Signer {
            session: Mutex::new(session),
            key,
            public,
            custody,
            name: uri.to_string(),
        })
    }

    /// Whether the token keeps the key sensitive and never lets it out.
    pub fn custody(&self) -> Custody {
        self.custody
    }
}

fn attributes(
    uri: &Pkcs11Uri,
    session: &Session,
    object: ObjectHandle,
    types: &[AttributeType],
) -> Result<Vec<Attribute>, Error> {
    session
        .get_attributes(object, types)
        .map_err(|e| key_error(uri, p11(e)))
}

fn algorithm_of(uri: &Pkcs11Uri, attrs: &[Attribute]) -> Result<Algorithm, Error> {
    // DER of OID 1.2.840.10045.3.1.7 (prime256v1) and of the edwards25519 curve, by OID
    // 1.3.101.112 or by the PrintableString name PKCS#11 v3.0 also allows.
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
    const ED25519_NAME: &[u8] = b"\x13\x0cedwards25519";
    let mut key_type = None;
    let mut params = None;
    for a in attrs {
        match a {
            Attribute::KeyType(t) => key_type = Some(*t),
            Attribute::EcParams(p) => params = Some(p.as_slice()),
            _ => {}
        }
    }
    match (key_type, params) {
        (Some(t), Some(p)) if t == KeyType::EC && p == P256 => Ok(Algorithm::EcdsaP256Sha256),
        (Some(t), Some(p))
            if t == KeyType::EC_EDWARDS && (p == ED25519_OID || p == ED25519_NAME) =>
        {
            Ok(Algorithm::Ed25519)
        }
        (t, _) => Err(key_error(
            uri,
            format!(
                "key type {} is not supported: makoto signs with Ed25519 or ECDSA P-256 keys",
                t.map_or("unknown".to_owned(), |t| t.to_string())
            ),
        )),
    }
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the point (some tokens give the bare point).
fn unwrap_octet_string(bytes: &[u8]) -> &[u8] {
    match bytes {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() && *len < 0x80 => rest,
        _ => bytes,
    }
}

fn public_key(
    uri: &Pkcs11Uri,
    session: &Session,
    private: ObjectHandle,
) -> Result<PublicKey, Error> {
    let attrs = attributes(
        uri,
        session,
        private,
        &[
            AttributeType::KeyType,
            AttributeType::EcParams,
            AttributeType::Id,
            AttributeType::Label,
        ],
    )?;
    let algorithm = algorithm_of(uri, &attrs)?;
    let mut template = vec![Attribute::Class(ObjectClass::PUBLIC_KEY)];
    template.extend(
        attrs
            .into_iter()
            .filter(|a| matches!(a, Attribute::Id(_) | Attribute::Label(_))),
    );
    let found = session
        .find_objects(&template)
        .map_err(|e| key_error(uri, p11(e)))?;
    let object = only_one(uri, "public key beside the private key", found)?;
    let point = attributes(uri, session, object, &[AttributeType::EcPoint])?
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(p) => Some(p),
            _ => None,
        })
        .ok_or_else(|| key_error(uri, "the public key has no CKA_EC_POINT"))?;
    PublicKey::from_raw_parts(algorithm, unwrap_octet_string(&point))
        .map_err(|e| key_error(uri, e.to_string()))
}

fn custody(uri: &Pkcs11Uri, session: &Session, key: ObjectHandle) -> Result<Custody, Error> {
    let attrs = attributes(
        uri,
        session,
        key,
        &[AttributeType::Sensitive, AttributeType::Extractable],
    )?;
    let sensitive = attrs
        .iter()
        .any(|a| matches!(a, Attribute::Sensitive(true)));
    let extractable = attrs
        .iter()
        .any(|a| matches!(a, Attribute::Extractable(true)));
    if sensitive && !extractable {
        Ok(Custody::HardwareToken)
    } else {
        tracing::warn!(
            key = %uri,
            sensitive,
            extractable,
            "the token lets this private key out (CKA_SENSITIVE false or CKA_EXTRACTABLE true)"
        );
        Ok(Custody::ExtractableToken)
    }
}

impl Signer for Pkcs11Signer {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, makoto_core::Error> {
        let fail = |reason: String| makoto_core::Error::Signing {
            keyid: self.public.keyid().to_string(),
            reason: format!("{}: {reason}", self.name),
        };
        let session = self
            .session
            .lock()
            .map_err(|_| fail("session lock poisoned".into()))?;
        let signature = match self.public.algorithm() {
            Algorithm::Ed25519 => {
                let mechanism = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
                session
                    .sign(&mechanism, self.key, message)
                    .map_err(|e| fail(p11(e)))?
            }
            Algorithm::EcdsaP256Sha256 => {
                let digest = Sha256Digest::of(message);
                let fixed = session
                    .sign(&Mechanism::Ecdsa, self.key, digest.as_bytes())
                    .map_err(|e| fail(p11(e)))?;
                es256_der_from_fixed(&fixed)?
            }
        };
        drop(session);
        self.public
            .verify(message, &signature)
            .map_err(|e| fail(format!("the token returned a bad signature ({e})")))?;
        Ok(signature)
    }
}
