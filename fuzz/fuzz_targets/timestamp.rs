//! RFC 3161 time-stamp tokens and TSA replies (untrusted: they come from the warehouse, the
//! network and exported bundles). Parsing and verification never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use makoto_core::Sha256Digest;
use makoto_core::timestamp::{TimestampAuthorities, TimestampRequest, TimestampToken};

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = TimestampToken::from_der(data) {
        let _ = token.gen_time();
        let _ = token.serial();
        let _ = token.to_reply_der();
        assert!(token.verify(&TimestampAuthorities::default()).is_err());
    }
    let request = TimestampRequest::new(Sha256Digest::of(b"sig"), 7);
    let _ = TimestampToken::from_reply(&request, data);
});
