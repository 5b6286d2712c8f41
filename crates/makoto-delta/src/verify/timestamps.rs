//! RFC 3161 time-stamps of attestations. `attest --tsa` time-stamps the last signature of each
//! batch; a version is covered by the first time-stamped attestation at or after it that the
//! chain of trusted statements reaches (each statement names the payload digest of the one
//! before, so the token over a later signature proves every earlier statement existed by its
//! `genTime`). Only tokens that verify under the trust file's `timestampAuthorities` count.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use makoto_core::timestamp::{ChainLink, LinkProblem, TimestampToken, walk_coverage};
use makoto_core::verify::TrustedKeys;
use serde::Serialize;

use super::chain::CheckedRow;
use super::findings::{Finding, FindingKind};

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

/// The links of the trusted rows (one per version, ascending).
fn links<'a>(
    rows: &'a [(CheckedRow, Vec<Finding>)],
    trust: &'a TrustedKeys,
) -> Vec<(ChainLink<'a>, &'a CheckedRow)> {
    let mut by_version: BTreeMap<u64, &CheckedRow> = BTreeMap::new();
    for (c, _) in rows {
        if let (true, Some(a)) = (c.trusted, &c.attested)
            && a.version() == c.row.version
        {
            by_version.entry(a.version()).or_insert(c);
        }
    }
    by_version
        .into_iter()
        .filter_map(|(v, c)| {
            let a = c.attested.as_deref()?;
            Some((
                ChainLink {
                    version: v,
                    payload_digest: c.payload_digest?,
                    previous: a.previous(),
                    token: c
                        .timestamp
                        .as_ref()
                        .map(|(t, s)| (t.as_slice(), s.as_slice())),
                    key: c.row.keyid.as_ref().and_then(|k| trust.key(k)),
                    commit_time: at_ms(a.timestamp_ms()),
                    claimed_at: a.attested_at_ms().map(at_ms),
                },
                c,
            ))
        })
        .collect()
}

fn at_ms(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

/// Checks every token of `rows` and which versions they cover; pushes findings for versions
/// in `from..=target` (and for tokens after `target`, which may be the ones that would cover
/// it) and returns the coverage of `target`.
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
    let links = links(rows, trust);
    let chain: Vec<ChainLink<'_>> = links.iter().map(|(l, _)| l.clone()).collect();
    let walk = walk_coverage(&chain, authorities);
    let row_of: BTreeMap<u64, &CheckedRow> = links.iter().map(|(l, c)| (l.version, *c)).collect();
    for (v, problem) in walk.problems {
        let token_problem = matches!(problem, LinkProblem::Invalid(_) | LinkProblem::Untrusted(_));
        if !((from..=target).contains(&v) || (token_problem && v > target)) {
            continue;
        }
        let (kind, detail) = match problem {
            LinkProblem::Invalid(d) => (FindingKind::TimestampInvalid, d),
            LinkProblem::Untrusted(d) => (FindingKind::TimestampUntrusted, d),
            LinkProblem::KeyNotValid(d) => (FindingKind::KeyNotValid, d),
        };
        let mut f = Finding::new(kind, detail).at(v);
        if let Some(c) = row_of.get(&v) {
            f = f.row(c.row_ref.clone());
        }
        findings.push(f);
    }
    let missing: Vec<u64> = chain
        .iter()
        .map(|l| l.version)
        .filter(|v| (from..=target).contains(v) && !walk.covered.contains_key(v))
        .collect();
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
    if let Some((anchor, v)) = walk.covered.get(&target) {
        coverage.covered = true;
        coverage.anchor_version = Some(*anchor);
        coverage.gen_time = Some(v.gen_time().to_rfc3339_opts(SecondsFormat::Secs, true));
        coverage.authority = Some(v.authority().to_owned());
    }
    coverage
}

/// Checks the `timestamp_gen_time` and `timestamp_version` columns of the rows in
/// `from..=target` against the tokens they name: the version named must be this one or a later
/// one, and its envelope must carry a token whose `genTime` is the column's. The columns are
/// the attestor's unsigned summary; whether the token holds is [`check`]'s to say.
pub(crate) fn check_columns(
    rows: &[(CheckedRow, Vec<Finding>)],
    from: u64,
    target: u64,
    findings: &mut Vec<Finding>,
) {
    let mut tokens: BTreeMap<u64, &[u8]> = BTreeMap::new();
    for (c, _) in rows {
        if let Some((token, _)) = &c.timestamp {
            tokens.entry(c.row.version).or_insert(token.as_slice());
        }
    }
    for (c, _) in rows {
        let v = c.row.version;
        if !(from..=target).contains(&v) {
            continue;
        }
        let problem = match (c.row.timestamp_gen_time_us, c.row.timestamp_version) {
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => Some(
                "timestamp_gen_time and timestamp_version are either both set or both null"
                    .to_owned(),
            ),
            (Some(_), Some(carrier)) if carrier < v => Some(format!(
                "timestamp_version {carrier} is before the row's own version: an earlier token cannot cover it"
            )),
            (Some(gen_us), Some(carrier)) => match tokens.get(&carrier) {
                None => Some(format!(
                    "timestamp_version names version {carrier}, whose envelope carries no time-stamp token"
                )),
                Some(der) => match TimestampToken::from_der(der) {
                    Err(e) => Some(format!(
                        "the time-stamp token of version {carrier} that timestamp_version names does not parse ({e})"
                    )),
                    Ok(t) if t.gen_time().timestamp_micros() != gen_us => Some(format!(
                        "timestamp_gen_time is {} but the token of version {carrier} says {}",
                        at_us(gen_us).to_rfc3339_opts(SecondsFormat::Micros, true),
                        t.gen_time().to_rfc3339_opts(SecondsFormat::Micros, true)
                    )),
                    Ok(_) => None,
                },
            },
        };
        if let Some(detail) = problem {
            findings.push(
                Finding::new(FindingKind::AttestationAltered, detail)
                    .at(v)
                    .row(c.row_ref.clone()),
            );
        }
    }
}

fn at_us(us: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(us).unwrap_or_default()
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
