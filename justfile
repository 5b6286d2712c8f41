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

# The Python package alone: build the wheel (debug, shared dependency build), test it.
test-python *ARGS:
    scripts/test-python {{ARGS}}

# Python API overhead against the CLI on the 10,001-commit table (docs/performance.md (g)):
# release binary and release wheel of this checkout, PYTHON with deltalake.
bench-python-overhead ROUNDS="5" DIR="target/bench-python-overhead":
    cargo build --release --locked -p makoto-cli
    ${PYTHON:-python3} -m maturin build --release --locked --strip --compatibility linux -m crates/makoto-python/Cargo.toml --out target/wheels-release
    ${PYTHON:-python3} -m pip install --force-reinstall --no-deps target/wheels-release/makoto_delta-*.whl
    ${PYTHON:-python3} benches/python-overhead/run.py target/release/makoto ${PYTHON:-python3} {{DIR}} {{ROUNDS}}

# End-to-end throughput (docs/performance.md) and micro-benchmarks.
bench:
    cargo bench --locked --bench attest
    cargo bench --locked --bench core

# Scripted benchmarks against a release build (docs/performance.md (c) – (f)); PYTHON must
# have deltalake and pyarrow, the S3 one needs garage (scripts/garage-server).
bench-verify-10k DIR="target/bench-verify-10k":
    cargo build --release --locked -p makoto-cli
    benches/verify-10k/run.sh {{DIR}} 3 new={{justfile_directory()}}/target/release/makoto skip={{justfile_directory()}}/target/release/makoto:--reader-check=skip

bench-per-mutation RUNS="300" DIR="target/bench-per-mutation":
    cargo build --release --locked -p makoto-cli
    ${PYTHON:-python3} benches/per-mutation/run.py target/release/makoto {{DIR}} {{RUNS}} 25

bench-s3-requests COMMITS="200" DIR="target/bench-s3-requests":
    cargo build --release --locked -p makoto-cli
    benches/s3-requests/run.sh target/release/makoto {{DIR}} {{COMMITS}}

bench-many-files COMMITS="100" FILES="1000" DIR="target/bench-many-files":
    cargo build --release --locked -p makoto-cli
    benches/many-files/run.sh {{DIR}} {{COMMITS}} {{FILES}} 2 new={{justfile_directory()}}/target/release/makoto

# Stream windows (docs/performance.md (j)): PYTHON with deltalake, pyarrow and confluent-kafka
# (scripts/test's venv); starts Tansu through scripts/kafka-server.
bench-windows RECORDS="1000000" WINDOW="100000" DIR="target/bench-windows":
    cargo build --release --locked -p makoto-cli
    ${PYTHON:-python3} benches/windows/run.py target/release/makoto {{DIR}} --records {{RECORDS}} --appends 100 --window {{WINDOW}} --rounds 3

# The README's run command: attest the bundled sample table.
demo:
    cargo run --locked -- demo

ci:
    .ci/run

# Regenerates data/sample/sales with the committed generator.
regen-sample:
    rm -rf data/sample/sales
    cargo run --locked -p makoto-testkit --bin gen-sample -- data/sample/sales

# Fuzzes one parser (commit, envelope, state_page, keys, canonical, reader_view, timestamp,
# service_request) for SECONDS.
fuzz TARGET SECONDS="60":
    cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {{TARGET}} -- -max_total_time={{SECONDS}}
