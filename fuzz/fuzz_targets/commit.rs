//! Delta commit files: parsing never panics, and digests are stable.
#![no_main]
use libfuzzer_sys::fuzz_target;
use makoto_core::delta::Commit;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Commit::parse(7, data) {
        let again = Commit::parse(7, data).expect("deterministic");
        assert_eq!(c.actions_digest(), again.actions_digest());
        let _ = c.timestamp();
        let _ = c.action_counts();
        for a in c.adds() {
            let _ = a
                .deletion_vector()
                .map(|d| (d.unique_id(), d.file().map(str::len)));
        }
    }
});
