//! PEM key files.
#![no_main]
use libfuzzer_sys::fuzz_target;
use makoto_core::keys::{PublicKey, SigningKeyPair};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Err(e) = SigningKeyPair::from_pkcs8_pem(s) {
            // The error is fixed text: it never echoes (possibly secret) input.
            assert_eq!(
                e.to_string(),
                "invalid key private key: not an unencrypted Ed25519 or ECDSA P-256 PKCS#8 PEM private key"
            );
        }
        let _ = PublicKey::from_spki_pem(s);
    }
});
