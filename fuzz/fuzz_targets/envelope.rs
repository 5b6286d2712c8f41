//! DSSE envelopes and in-toto statements read back from the attestation table.
#![no_main]
use libfuzzer_sys::fuzz_target;
use makoto_core::dsse::Envelope;
use makoto_core::keys::{Signer, SigningKeyPair};
use makoto_core::statement::Statement;
use makoto_core::verify::{TrustedKeys, verify_statement};

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::from_json(data) {
        if let Ok(statement) = Statement::from_payload(env.payload()) {
            // The Delta block and the transform inputs (lineage) read back from a statement.
            if let Ok(commit) = makoto_core::attested::AttestedCommit::from_statement(&statement) {
                for input in commit.inputs() {
                    let _ = makoto_core::attested::parse_subject_name(&input.name);
                }
            }
            let _ = makoto_core::attested::check_commit_statement(&statement);
            // Stream-window statements (Delta windows, record proofs).
            if let Ok(w) = makoto_core::window::AttestedWindow::from_statement(&statement) {
                assert_eq!(w.id, statement.subject()[0].name());
            }
        }
        let key = SigningKeyPair::from_seed(&[1; 32]);
        let trusted = TrustedKeys::new(vec![key.public_key().clone()]);
        // An envelope the key never signed does not verify.
        assert!(verify_statement(&env, &trusted).is_err());
        let round = Envelope::from_json(env.to_json().as_bytes()).expect("own output parses");
        assert_eq!(round.payload(), env.payload());
    }
});
