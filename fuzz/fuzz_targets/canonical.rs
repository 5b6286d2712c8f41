//! Canonical JSON: idempotent, and a faithful re-encoding of the parsed value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use makoto_core::canonical;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let c = canonical::to_vec(&v);
        let back: serde_json::Value = serde_json::from_slice(&c).expect("canonical output is JSON");
        assert_eq!(canonical::to_vec(&back), c);
    }
});
