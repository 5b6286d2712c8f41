//! RFC 3161 time-stamps of attestations. `attest --tsa` time-stamps the last signature of each
//! batch; a version is covered by the first time-stamped attestation at or after it that the
//! chain of trusted statements reaches (each statement names the payload digest of the one
//! before, so the token over a later signature proves every earlier statement existed by its
//! `genTime`). Only tokens that verify under the trust file's `timestampAuthorities` count.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use makoto_core::dsse::Envelope;
use makoto_core::timestamp::{TimestampToken, VerifiedTimestamp};
use makoto_core::verify::TrustedKeys;
use serde::Serialize;

use super::chain::CheckedRow;
use super::findings::{Finding, FindingKind};

/// Commit timestamps come from writers' clocks: a `genTime` this much before a commit's
/// timestamp is still accepted (a token cannot really precede what it covers by more).
pub const CLOCK_SKEW: Duration = Duration::minutes(5);

/// What the time-stamps showed for the verified version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimestampCoverage {
    /// Time-stamp authorities the verifier trusted (0: tokens were not checked).
    pub authorities: usize,
    /// The verified version's attestation is covered by a valid token.
    pub covered: bool,
    /// The version of the time-stamped attestation that covers it.
    pub anchor_version: Option<u64>,
    /// The token's `genTime` (RFC 3339): the attestation existed no later than this.
    pub gen_time: Option<String>,
    /// The trusted authority that vouched for the token.
    pub authority: Option<String>,
}

/// A finding's kind and detail, before it is placed at a version and row.
type Problem = (FindingKind, String);

/// One trusted attestation per version, with what a token needs.
struct Link<'a> {
    row: &'a CheckedRow,
    version: u64,
}

/// Checks every token of `rows` and which versions they cover; pushes findings for versions
/// in `from..=target` and returns the coverage of `target`.
pub(crate) fn check(
    rows: &[(CheckedRow, Vec<Finding>)],
    trust: &TrustedKeys,
    from: u64,
    target: u64,
    findings: &mut Vec<Finding>,
) -> TimestampCoverage {
    let authorities = trust.timestamp_authorities();
    let mut coverage = TimestampCoverage {
        authorities: authorities.authorities().len(),
        ..TimestampCoverage::default()
    };
    if authorities.is_empty() {
        return coverage;
    }
    let mut links: BTreeMap<u64, Link<'_>> = BTreeMap::new();
    for (c, _) in rows {
        if let (true, Some(a)) = (c.trusted, &c.attested)
            && a.version() == c.row.version
        {
            links.entry(a.version()).or_insert(Link {
                row: c,
                version: a.version(),
            });
        }
    }
    let in_scope = |v: u64| (from..=target).contains(&v);
    // From the newest version down: the nearest valid token above, while the chain holds.
    let mut current: Option<(u64, VerifiedTimestamp)> = None;
    let mut above: Option<&Link<'_>> = None;
    let mut covered: BTreeMap<u64, (u64, VerifiedTimestamp)> = BTreeMap::new();
    for link in links.values().rev() {
        let chained = above.is_some_and(|a| {
            a.row.attested.as_ref().and_then(|s| s.previous())
                == link.row.payload_digest.map(|d| (link.version, d))
        });
        if !chained {
            current = None;
        }
        if let Some(token) = token_of(link.row) {
            match verify_token(&token, trust) {
                Ok(v) => current = Some((link.version, v)),
                Err((kind, detail)) => {
                    current = None;
                    if in_scope(link.version) || link.version > target {
                        findings.push(
                            Finding::new(kind, detail)
                                .at(link.version)
                                .row(link.row.row_ref.clone()),
                        );
                    }
                }
            }
        }
        if let Some((anchor, v)) = &current {
            match check_covered(link, v, trust) {
                Ok(()) => {
                    covered.insert(link.version, (*anchor, v.clone()));
                }
                Err((kind, detail)) => {
                    if in_scope(link.version) {
                        findings.push(
                            Finding::new(kind, detail)
                                .at(link.version)
                                .row(link.row.row_ref.clone()),
                        );
                    }
                }
            }
        }
        above = Some(link);
    }
    let missing: Vec<u64> = links
        .keys()
        .copied()
        .filter(|v| in_scope(*v) && !covered.contains_key(v))
        .collect();
    // A revoked key's signature counts only where a token proves it predates the revocation:
    // without one, anyone holding the key now could have made it with an earlier claimed time.
    for v in &missing {
        let Some(link) = links.get(v) else { continue };
        if let Some(revoked) = link
            .row
            .row
            .keyid
            .as_ref()
            .and_then(|k| trust.key(k))
            .and_then(|k| k.revoked_at())
        {
            findings.push(
                Finding::new(
                    FindingKind::KeyNotValid,
                    format!(
                        "signed by key {} revoked at {revoked}, and no valid time-stamp shows the signature predates the revocation",
                        link.row.row.keyid.as_ref().map(ToString::to_string).unwrap_or_default()
                    ),
                )
                .at(*v)
                .row(link.row.row_ref.clone()),
            );
        }
    }
    for run in runs(&missing) {
        findings.push(
            Finding::new(
                FindingKind::TimestampMissing,
                if run.0 == run.1 {
                    format!(
                        "no valid time-stamp covers the attestation of version {}",
                        run.0
                    )
                } else {
                    format!(
                        "no valid time-stamp covers the attestations of versions {}..={}",
                        run.0, run.1
                    )
                },
            )
            .at(run.0),
        );
    }
    if let Some((anchor, v)) = covered.get(&target) {
        coverage.covered = true;
        coverage.anchor_version = Some(*anchor);
        coverage.gen_time = Some(v.gen_time().to_rfc3339_opts(SecondsFormat::Secs, true));
        coverage.authority = Some(v.authority().to_owned());
    }
    coverage
}

fn runs(versions: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &v in versions {
        match out.last_mut() {
            Some(last) if last.1 + 1 == v => last.1 = v,
            _ => out.push((v, v)),
        }
    }
    out
}

/// The token a row's envelope carries, with the signature it is over.
fn token_of(row: &CheckedRow) -> Option<(Vec<u8>, Vec<u8>)> {
    let env = Envelope::from_json(row.row.envelope.as_bytes()).ok()?;
    env.signatures()
        .iter()
        .find_map(|s| s.timestamp().map(|t| (t.to_vec(), s.sig().to_vec())))
}

/// The token is valid, trusted, and over this row's signature; the signing key was valid at
/// its `genTime`.
fn verify_token(
    (token, sig): &(Vec<u8>, Vec<u8>),
    trust: &TrustedKeys,
) -> Result<VerifiedTimestamp, Problem> {
    let token = TimestampToken::from_der(token)
        .map_err(|e| (FindingKind::TimestampInvalid, e.to_string()))?;
    let verified = token.verify(trust.timestamp_authorities()).map_err(|e| {
        let kind = match e {
            makoto_core::Error::UntrustedTimestamp { .. } => FindingKind::TimestampUntrusted,
            _ => FindingKind::TimestampInvalid,
        };
        (kind, e.to_string())
    })?;
    let imprint = makoto_core::Sha256Digest::of(sig);
    if verified.imprint() != imprint {
        return Err((
            FindingKind::TimestampInvalid,
            format!(
                "the time-stamp token is over {}, not over this attestation's signature ({imprint})",
                verified.imprint()
            ),
        ));
    }
    Ok(verified)
}

fn at_ms(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

/// A version covered by `v`: its key was valid at `genTime`, its commit is not after it, and
/// the statement does not claim to have been signed after it.
fn check_covered(
    link: &Link<'_>,
    v: &VerifiedTimestamp,
    trust: &TrustedKeys,
) -> Result<(), Problem> {
    let stamped = v.gen_time();
    let Some(statement) = &link.row.attested else {
        return Ok(());
    };
    if let Some(key) = link.row.row.keyid.as_ref().and_then(|k| trust.key(k))
        && let Some(reason) = key.outside_window(Some(stamped))
    {
        return Err((
            FindingKind::KeyNotValid,
            format!("time-stamped at {stamped} by {}: {reason}", v.authority()),
        ));
    }
    let commit = at_ms(statement.timestamp_ms());
    if commit > stamped + CLOCK_SKEW {
        return Err((
            FindingKind::TimestampInvalid,
            format!("the time-stamp ({stamped}) is before the commit it covers ({commit})"),
        ));
    }
    if let Some(signed) = statement.attested_at_ms().map(at_ms)
        && signed > stamped + CLOCK_SKEW
    {
        return Err((
            FindingKind::TimestampInvalid,
            format!(
                "the statement claims it was signed at {signed}, after its time-stamp ({stamped})"
            ),
        ));
    }
    Ok(())
}
