//! PEM key files, PKCS#11 URIs, and raw public keys and signatures from tokens.
#![no_main]
use libfuzzer_sys::fuzz_target;
use makoto_core::key_source::{KeySource, Pkcs11Uri};
use makoto_core::keys::{Algorithm, PublicKey, SigningKeyPair, es256_der_from_fixed};

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
        let uri = format!("pkcs11:{s}");
        if let Ok(u) = Pkcs11Uri::parse(&uri) {
            // What a parsed URI prints parses to the same selection.
            let again = Pkcs11Uri::parse(&u.to_string()).expect("printed URI parses");
            assert_eq!((again.token, again.object, again.id), (u.token, u.object, u.id));
        }
        let _ = s.parse::<KeySource>();
    }
    // A PIN given with pin-value, in the query or misplaced in the path, is never echoed.
    if let (Some((&sep, secret)), Ok(rest)) = (
        data.split_first().and_then(|(s, d)| d.get(..12).map(|sec| (s, sec))),
        std::str::from_utf8(data.get(13..).unwrap_or_default()),
    ) {
        let pin: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let sep = [';', '?', '&'][usize::from(sep) % 3];
        let uri = format!("pkcs11:{rest}{sep}pin-value={pin}");
        if let Err(e) = Pkcs11Uri::parse(&uri) {
            let shown = rest.escape_debug().to_string();
            assert!(shown.contains(&pin) || !e.to_string().contains(&pin), "{e}");
        }
    }
    let _ = PublicKey::from_raw_parts(Algorithm::Ed25519, data);
    let _ = PublicKey::from_raw_parts(Algorithm::EcdsaP256Sha256, data);
    let _ = es256_der_from_fixed(data);
});
