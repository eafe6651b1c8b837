//! `vsn` negotiation (spec §1.3) with Elixir `Version` semantics.
//!
//! Phoenix matches the requested version against `~> 1.0.0` (V1) and `~> 2.0.0` (V2). For a
//! requirement `~> M.0.0` Elixir builds `>= M.0.0 and < M.1.0-0`, and `Version.match?` allows
//! pre-releases by default. So a version matches exactly when its major is M, its minor is 0, and
//! it is not a pre-release of `M.0.0` itself (`2.0.0-rc.1` sorts below `2.0.0`, while `2.0.1-rc.1`
//! is inside the range). Build metadata (`+…`) never affects matching. A string Elixir cannot
//! parse as a full `MAJOR.MINOR.PATCH` version is refused, as Phoenix refuses it.

use super::{Serializer, VsnError};

/// The default Phoenix assumes when the parameter is absent.
const DEFAULT_VSN: &str = "1.0.0";

pub(super) fn negotiate(vsn: Option<&str>) -> Result<Serializer, VsnError> {
    let text = vsn.unwrap_or(DEFAULT_VSN);
    let refuse = || VsnError(text.to_owned());
    let v = parse(text).ok_or_else(refuse)?;
    let in_range = v.minor == 0 && (v.patch > 0 || !v.pre_release);
    match v.major {
        1 if in_range => Ok(Serializer::V1),
        2 if in_range => Ok(Serializer::V2),
        _ => Err(refuse()),
    }
}

/// The parts of a version that matching needs.
struct Version {
    major: u64,
    minor: u64,
    patch: u64,
    pre_release: bool,
}

/// Parses like Elixir's `Version.parse/1`: `MAJOR.MINOR.PATCH[-PRE][+BUILD]`, numbers without
/// leading zeros, PRE and BUILD made of non-empty dot-separated `[0-9A-Za-z-]` identifiers, and
/// numeric PRE identifiers without leading zeros.
fn parse(s: &str) -> Option<Version> {
    let (rest, build) = match s.split_once('+') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (rest, None),
    };
    let mut parts = core.split('.');
    let major = number(parts.next()?)?;
    let minor = number(parts.next()?)?;
    let patch = number(parts.next()?)?;
    if parts.next().is_some() {
        return None;
    }
    if let Some(pre) = pre {
        for ident in identifiers(pre)? {
            if ident.bytes().all(|b| b.is_ascii_digit()) && has_leading_zero(ident) {
                return None;
            }
        }
    }
    if let Some(build) = build {
        identifiers(build)?;
    }
    Some(Version {
        major,
        minor,
        patch,
        pre_release: pre.is_some(),
    })
}

fn has_leading_zero(s: &str) -> bool {
    s.len() > 1 && s.starts_with('0')
}

/// A non-empty run of ASCII digits without a leading zero. Values too large for u64 cannot be 1
/// or 2 anyway, so they are refused here rather than carried as big integers.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || has_leading_zero(s) {
        return None;
    }
    s.parse().ok()
}

fn identifiers(s: &str) -> Option<Vec<&str>> {
    let idents: Vec<&str> = s.split('.').collect();
    let valid = idents
        .iter()
        .all(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    valid.then_some(idents)
}
