# Developer recipes; CI (.ci/run) runs fmt-check, test, clippy and demo.

default: fmt clippy test

fmt:
    cargo fmt --all

fmt-check:
    cargo fmt --all -- --check

clippy:
    cargo clippy --workspace --all-targets --locked -- -D warnings

# The README's test command: installs the Python cross-check tools, runs every test.
test *ARGS:
    scripts/test {{ARGS}}

# End-to-end throughput (docs/performance.md) and micro-benchmarks.
bench:
    cargo bench --locked --bench attest
    cargo bench --locked --bench core

# The README's run command: attest the bundled sample table.
demo:
    cargo run --locked -- demo

ci:
    .ci/run

# Regenerates data/sample/sales with the committed generator.
regen-sample:
    rm -rf data/sample/sales
    cargo run --locked -p makoto-testkit --bin gen-sample -- data/sample/sales

# Fuzzes one parser (commit, envelope, state_page, keys, canonical) for SECONDS.
fuzz TARGET SECONDS="60":
    cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {{TARGET}} -- -max_total_time={{SECONDS}}
