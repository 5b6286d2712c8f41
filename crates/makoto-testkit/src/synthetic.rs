//! Synthetic Delta tables written directly (log JSON and data bytes), for benchmarks that need
//! sizes delta-rs would take long to produce: gigabytes of data or tens of thousands of
//! commits. The logs follow the Delta protocol (protocol, metaData, commitInfo, add, remove);
//! data files are pseudo-random bytes named `.parquet` (attestation hashes bytes, it does not
//! decode them).

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use serde_json::json;

const SCHEMA: &str = r#"{"type":"struct","fields":[{"name":"payload","type":"binary","nullable":true,"metadata":{}}]}"#;

fn write_commit(dir: &Path, version: u64, actions: &[serde_json::Value]) -> Result<()> {
    let mut text = String::new();
    for a in actions {
        text.push_str(&serde_json::to_string(a)?);
        text.push('\n');
    }
    std::fs::write(dir.join(format!("_delta_log/{version:020}.json")), text)?;
    Ok(())
}

fn header(ts: i64) -> Vec<serde_json::Value> {
    vec![
        json!({"commitInfo": {"timestamp": ts, "operation": "CREATE TABLE", "engineInfo": "makoto-testkit/synthetic"}}),
        json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}),
        json!({"metaData": {"id": "00000000-0000-4000-8000-000000000001", "format": {"provider": "parquet", "options": {}},
            "schemaString": SCHEMA, "partitionColumns": [], "configuration": {}, "createdTime": ts}}),
    ]
}

fn add(path: &str, size: u64, ts: i64) -> serde_json::Value {
    json!({"add": {"path": path, "partitionValues": {}, "size": size, "modificationTime": ts, "dataChange": true,
        "stats": "{\"numRecords\":1}"}})
}

/// xorshift64* bytes: fast, deterministic, incompressible enough.
fn fill(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        let v = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// A table whose versions 1..=`files` each add one file of `file_size` bytes.
pub fn large_files_table(dir: &Path, files: usize, file_size: u64) -> Result<()> {
    std::fs::create_dir_all(dir.join("_delta_log"))?;
    let ts = 1_700_000_000_000i64;
    write_commit(dir, 0, &header(ts))?;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut buf = vec![0u8; 8 << 20];
    for i in 0..files {
        let name = format!("part-{i:05}.parquet");
        let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join(&name))?);
        let mut left = file_size;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            fill(&mut buf[..n], &mut state);
            f.write_all(&buf[..n])?;
            left -= n as u64;
        }
        f.flush()?;
        let t = ts + i as i64 + 1;
        write_commit(
            dir,
            i as u64 + 1,
            &[
                json!({"commitInfo": {"timestamp": t, "operation": "WRITE", "engineInfo": "makoto-testkit/synthetic"}}),
                add(&name, file_size, t),
            ],
        )?;
    }
    Ok(())
}

/// A table of `commits` small commits after version 0: each adds one file of `file_size`
/// bytes, and every tenth also removes the file added ten versions earlier.
pub fn many_commits_table(dir: &Path, commits: u64, file_size: usize) -> Result<()> {
    std::fs::create_dir_all(dir.join("_delta_log"))?;
    let ts = 1_700_000_000_000i64;
    write_commit(dir, 0, &header(ts))?;
    let mut state = 0xD1B5_4A32_D192_ED03u64;
    let mut buf = vec![0u8; file_size];
    for v in 1..=commits {
        let name = format!("part-{v:06}.parquet");
        fill(&mut buf, &mut state);
        std::fs::write(dir.join(&name), &buf)?;
        let t = ts + v as i64;
        let mut actions = vec![
            json!({"commitInfo": {"timestamp": t, "operation": "WRITE", "engineInfo": "makoto-testkit/synthetic"}}),
            add(&name, file_size as u64, t),
        ];
        if v % 10 == 0 && v > 10 {
            actions.push(json!({"remove": {"path": format!("part-{:06}.parquet", v - 10), "deletionTimestamp": t,
                "dataChange": true, "size": file_size}}));
        }
        write_commit(dir, v, &actions)?;
    }
    Ok(())
}

/// A table of `commits` commits after version 0, each adding `files` files of `file_size`
/// bytes and removing every seventh file of the commit before it.
pub fn many_files_table(dir: &Path, commits: u64, files: u64, file_size: usize) -> Result<()> {
    std::fs::create_dir_all(dir.join("_delta_log"))?;
    let ts = 1_700_000_000_000i64;
    write_commit(dir, 0, &header(ts))?;
    let mut state = 0x6A09_E667_F3BC_C908u64;
    let mut buf = vec![0u8; file_size];
    for v in 1..=commits {
        let t = ts + v as i64;
        let mut actions = vec![
            json!({"commitInfo": {"timestamp": t, "operation": "WRITE", "engineInfo": "makoto-testkit/synthetic"}}),
        ];
        for i in 0..files {
            let name = format!("part-{v:05}-{i:07}.parquet");
            fill(&mut buf, &mut state);
            std::fs::write(dir.join(&name), &buf)?;
            actions.push(add(&name, file_size as u64, t));
        }
        if v > 1 {
            for i in (0..files).step_by(7) {
                actions.push(
                    json!({"remove": {"path": format!("part-{:05}-{i:07}.parquet", v - 1),
                    "deletionTimestamp": t, "dataChange": true, "size": file_size}}),
                );
            }
        }
        write_commit(dir, v, &actions)?;
    }
    Ok(())
}
