use std::io::Write;

use anyhow::Context;
use chrono::{DateTime, Utc};
use makoto_core::head::verify_head_timestamped;
use makoto_core::timestamp::EnvelopeTimestamp;
use makoto_delta::keyfile;
use makoto_delta::verify::{RecordSigner, UnsignedRows};
use makoto_delta::{Severity, Verifier, VerifyMode, VerifyOptions, VerifyReport, VersionSpec};

use super::{EXIT_FINDINGS, EXIT_OK, human_bytes};
use crate::args::VerifyArgs;

fn parse_time(s: &str) -> anyhow::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| {
            format!("--timestamp {s:?} is not an RFC 3339 time such as 2026-11-21T12:00:00Z")
        })
}

pub fn print_report(r: &VerifyReport, out: &mut dyn Write) -> std::io::Result<()> {
    let mode = match r.mode {
        VerifyMode::Deep => "deep",
        VerifyMode::LogOnly => "log only",
    };
    let since = r
        .since
        .map(|s| format!(", versions after {s} (since the last verification)"))
        .unwrap_or_default();
    let copy = r
        .copy
        .as_ref()
        .map(|c| format!(" (read from the copy {c})"))
        .unwrap_or_default();
    if r.verified {
        writeln!(
            out,
            "VERIFIED {}{copy} at version {} ({mode}{since}): {} attestation rows, {} commits, {} checkpoints, {} files rehashed ({})",
            r.table,
            r.version,
            r.attestation_rows,
            r.commits_checked,
            r.checkpoints_checked,
            r.files_hashed,
            human_bytes(r.bytes_hashed)
        )?;
    } else if r.outcome == makoto_delta::Outcome::Unverifiable {
        let unchecked: Vec<&str> = r
            .findings
            .iter()
            .filter(|f| f.kind.leaves_unchecked())
            .map(|f| f.kind.code())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        writeln!(
            out,
            "UNVERIFIABLE {}{copy} at version {} ({mode}{since}): no tampering found, but part of this version could not be checked ({}; {} files rehashed)",
            r.table,
            r.version,
            if unchecked.is_empty() {
                "its reader view was not established".to_owned()
            } else {
                unchecked.join(", ")
            },
            r.files_hashed
        )?;
    } else {
        writeln!(
            out,
            "NOT VERIFIED {}{copy} at version {} ({mode}{since}): {} errors, {} warnings",
            r.table,
            r.version,
            r.errors(),
            r.warnings()
        )?;
    }
    let c = &r.coverage;
    writeln!(
        out,
        "covered: version {} {}, reader view {}, {} commits ({} expired), {} checkpoints, {} checksum files, {} log compactions, delta-rs cross-check {}",
        r.version,
        if c.version_checked {
            "rebuilt and compared"
        } else {
            "NOT rebuilt"
        },
        match c.reader_view {
            makoto_delta::ReaderViewCoverage::Signed => "matches its signed digest",
            makoto_delta::ReaderViewCoverage::Derived =>
                "bound by the signed commits (attested before reader views were signed)",
            makoto_delta::ReaderViewCoverage::None => "not established",
        },
        c.commits,
        c.commits_expired,
        c.checkpoints,
        c.checksums,
        c.compactions,
        match (c.delta_rs_cross_check, c.reader_check) {
            (true, _) => "agrees",
            (false, makoto_delta::ReaderCheck::Skip) => "skipped (--reader-check skip)",
            (false, _) => "not done",
        }
    )?;
    if let Some(level) = r.level {
        writeln!(
            out,
            "level earned: {level}{}",
            if level == makoto_core::attestation::MakotoLevel::L1 {
                " (L2 needs a trusted key, a trusted time-stamp and the key's bound identity; docs/levels.md)"
            } else {
                " (trusted key, trusted time-stamp, bound identity)"
            }
        )?;
    }
    let t = &c.timestamps;
    match (t.authorities, &t.gen_time, &t.authority, t.anchor_version) {
        (0, ..) => writeln!(
            out,
            "time-stamps: not checked (the trust file lists no timestampAuthorities)"
        )?,
        (_, Some(at), Some(by), Some(anchor)) => writeln!(
            out,
            "time-stamps: the attestation existed by {at} (token of {by} over the signature at version {anchor})"
        )?,
        _ => writeln!(
            out,
            "time-stamps: NONE covers version {} (its signing time is only claimed)",
            r.version
        )?,
    }
    if let Some(d) = &r.state_digest {
        writeln!(out, "attested state digest {d}")?;
    }
    if r.findings.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "{:<8} {:<24} {:>8}  {:<40} detail",
        "severity", "finding", "version", "file / attestation row"
    )?;
    for f in &r.findings {
        let place = match (&f.path, &f.row) {
            (Some(p), _) => p.clone(),
            (None, Some(row)) => format!(
                "row v{} {} run {}",
                row.version,
                &row.attestation_digest[..12.min(row.attestation_digest.len())],
                row.run_id
            ),
            (None, None) => "-".into(),
        };
        writeln!(
            out,
            "{:<8} {:<24} {:>8}  {:<40} {}",
            match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            },
            f.kind.code(),
            f.version.map_or("-".to_owned(), |v| v.to_string()),
            place,
            f.detail
        )?;
    }
    Ok(())
}

pub async fn run(
    ctx: &crate::context::Context,
    args: VerifyArgs,
    out: &mut dyn Write,
) -> anyhow::Result<u8> {
    let trust = keyfile::load_trust(&args.trust)?;
    let store = ctx.existing_warehouse(&args.warehouse).await?;
    let source = ctx.attested_table(&args.target, &store).await?;
    let storage = ctx.storage().clone();
    let at = match (args.version, &args.timestamp) {
        (Some(v), _) => VersionSpec::Version(v),
        (None, Some(t)) => VersionSpec::Timestamp(parse_time(t)?),
        (None, None) => VersionSpec::Latest,
    };
    let mut options = VerifyOptions {
        at,
        mode: crate::args::verify_mode(args.log_only),
        unsigned: if args.allow_unsigned {
            UnsignedRows::Warn
        } else {
            UnsignedRows::Fail
        },
        storage,
        reader_check: args.reader_check.into(),
        ..VerifyOptions::default()
    };
    if let Some(p) = args.parallelism {
        options.parallelism = p.max(1);
    }
    if let Some(files) = args.evict_above {
        options.eviction = makoto_delta::Eviction::above(files);
    }
    if let Some(anchor) = &args.anchor {
        let bytes = std::fs::read(anchor)
            .with_context(|| format!("anchor {}: cannot read", anchor.display()))?;
        let (head, time) = verify_head_timestamped(&bytes, &trust)
            .with_context(|| format!("anchor {}", anchor.display()))?;
        match time {
            EnvelopeTimestamp::Problem(p) => anyhow::bail!("anchor {}: {p}", anchor.display()),
            EnvelopeTimestamp::Verified(v) => eprintln!(
                "note: anchor {} time-stamped at {} by {}",
                anchor.display(),
                v.gen_time(),
                v.authority()
            ),
            EnvelopeTimestamp::Unchecked => eprintln!(
                "note: anchor {} carries a time-stamp, not checked: the trust file lists no timestampAuthorities",
                anchor.display()
            ),
            EnvelopeTimestamp::Missing => {}
        }
        let entry = makoto_core::head::head_entry(head, source.uri()).with_context(|| {
            format!(
                "anchor {} has no entry for {}",
                anchor.display(),
                source.uri()
            )
        })?;
        options.anchor = Some(entry);
    }
    options.since_last = args.since_last;
    options.record = if args.no_record {
        None
    } else {
        Some(match &args.key {
            Some(k) => RecordSigner::Signed(makoto_delta::signer::open(k)?.signer),
            None => RecordSigner::Unsigned,
        })
    };
    let report = Verifier::new(&source, &store, &trust, options)
        .run()
        .await?;
    if args.since_last && report.since.is_none() && !args.json {
        eprintln!(
            "note: no signed, successful verification recorded for this table; verified from version 0"
        );
    }
    if let Some(e) = &report.record_error {
        eprintln!("warning: the verification was not recorded: {e}");
    }
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        print_report(&report, out)?;
    }
    Ok(if report.verified {
        EXIT_OK
    } else {
        EXIT_FINDINGS
    })
}
