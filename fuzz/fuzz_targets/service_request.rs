//! Bodies of `POST /v1/attest`, the tenant request `makoto serve` parses from the network.
#![no_main]
use libfuzzer_sys::fuzz_target;
use makoto_core::service::{AttestRequest, MAX_REQUEST_BYTES};

fuzz_target!(|data: &[u8]| {
    match AttestRequest::from_json(data) {
        Ok(r) => {
            assert!(data.len() <= MAX_REQUEST_BYTES);
            assert!(!r.table.trim().is_empty());
            // What the client would send for it parses to the same request.
            let again = AttestRequest::from_json(r.to_json().as_bytes()).expect("printed request parses");
            assert_eq!(again, r);
        }
        Err(e) => {
            // A one-line error that never repeats more than a bounded part of the body.
            let text = e.to_string();
            assert!(!text.contains('\n'), "{text}");
            assert!(text.len() < 512, "{}", text.len());
        }
    }
});
