//! Regenerates the sample table in `data/sample/sales`.
//!
//! ```text
//! rm -rf data/sample/sales && cargo run -p makoto-testkit --bin gen-sample -- data/sample/sales
//! ```

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let path: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("data/sample/sales"));
    if path.join("_delta_log").exists() {
        anyhow::bail!(
            "{} already holds a Delta table; remove it first",
            path.display()
        );
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let table = runtime.block_on(makoto_testkit::build_sample(&path))?;
    println!(
        "wrote {} (latest version {:?})",
        path.display(),
        table.version()
    );
    Ok(())
}
