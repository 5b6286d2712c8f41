//! Key files on the local file system: `<prefix>.key` (PKCS#8 PEM, mode 0600) and
//! `<prefix>.pub` (SubjectPublicKeyInfo PEM).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use makoto_core::keys::{Algorithm, KeyId, PublicKey, Signer, SigningKeyPair};

use crate::Error;

/// The files written by [`generate`].
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    pub private_key: PathBuf,
    pub public_key: PathBuf,
    pub keyid: KeyId,
}

fn key_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::KeyFile {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn create_new(path: &Path, mode: u32, contents: &[u8]) -> Result<(), Error> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            key_error(path, "already exists; refusing to overwrite a key")
        }
        _ => key_error(path, format!("cannot create: {e}")),
    })?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(|e| key_error(path, format!("cannot write: {e}")))
}

/// Generates a new key pair of `algorithm` and writes `<prefix>.key` (0600) and `<prefix>.pub`.
pub fn generate(prefix: &Path, algorithm: Algorithm) -> Result<GeneratedKey, Error> {
    let private_key = with_suffix(prefix, ".key");
    let public_key = with_suffix(prefix, ".pub");
    for p in [&private_key, &public_key] {
        if p.exists() {
            return Err(key_error(p, "already exists; refusing to overwrite a key"));
        }
    }
    if let Some(dir) = prefix.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| key_error(dir, format!("cannot create directory: {e}")))?;
    }
    let pair = SigningKeyPair::generate_with(algorithm)
        .map_err(|e| key_error(&private_key, e.to_string()))?;
    let pem = pair
        .to_pkcs8_pem()
        .map_err(|e| key_error(&private_key, e.to_string()))?;
    let pub_pem = pair
        .public_key()
        .to_spki_pem()
        .map_err(|e| key_error(&public_key, e.to_string()))?;
    create_new(&private_key, 0o600, pem.as_bytes())?;
    if let Err(e) = create_new(&public_key, 0o644, pub_pem.as_bytes()) {
        let _ = std::fs::remove_file(&private_key);
        return Err(e);
    }
    Ok(GeneratedKey {
        private_key,
        public_key,
        keyid: pair.keyid().clone(),
    })
}

/// Writes `key` as SubjectPublicKeyInfo PEM to a new file `path` (never overwritten).
pub fn write_public_key(path: &Path, key: &PublicKey) -> Result<(), Error> {
    let pem = key
        .to_spki_pem()
        .map_err(|e| key_error(path, e.to_string()))?;
    create_new(path, 0o644, pem.as_bytes())
}

/// Loads a private key. Warns when the file is readable by group or others.
pub fn load_signing_key(path: &Path) -> Result<SigningKeyPair, Error> {
    let meta = std::fs::metadata(path).map_err(|e| key_error(path, format!("cannot read: {e}")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "private key file is readable by group or others; run chmod 600"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| key_error(path, format!("cannot read: {e}")))?,
    );
    SigningKeyPair::from_pkcs8_pem(&text).map_err(|e| key_error(path, e.to_string()))
}

/// Loads a public key (`.pub`), or the public half of a private key file.
pub fn load_public_key(path: &Path) -> Result<PublicKey, Error> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| key_error(path, format!("cannot read: {e}")))?,
    );
    if text.contains("PRIVATE KEY") {
        return Ok(load_signing_key(path)?.public_key().clone());
    }
    PublicKey::from_spki_pem(&text).map_err(|e| key_error(path, e.to_string()))
}

/// Loads the keys a verifier trusts: a public key PEM, or a trust file (JSON) listing keys
/// with their validity windows.
pub fn load_trust(path: &Path) -> Result<makoto_core::verify::TrustedKeys, Error> {
    let bad = |reason: String| Error::TrustFile {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    makoto_core::verify::TrustedKeys::parse(&text).map_err(|e| bad(e.to_string()))
}

/// The keys to trust: the trust file when given, else the signing key's own public key, else
/// none.
pub fn trust_or_own(
    trust: Option<&Path>,
    key: Option<&PublicKey>,
) -> Result<Option<makoto_core::verify::TrustedKeys>, Error> {
    Ok(match (trust, key) {
        (Some(p), _) => Some(load_trust(p)?),
        (None, Some(k)) => Some(makoto_core::verify::TrustedKeys::new(vec![k.clone()])),
        (None, None) => None,
    })
}
