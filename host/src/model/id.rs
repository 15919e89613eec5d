//! Ids as newtypes: a [`RunId`] is never confused with a workflow name or an event id.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

/// Longest client-chosen run id.
pub const MAX_RUN_ID: usize = 128;

/// A run's id: a ULID the host chose, or the client's own (`"id"` in a start's body), or one
/// derived from the event that triggered the run. Stored ids are trusted; ids from outside
/// go through [`RunId::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(String);

/// A client-chosen run id that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid run id `{0}`: 1 to {MAX_RUN_ID} characters of letters, digits, `-`, `_`, `.`, `:` and `@`"
)]
pub struct InvalidRunId(pub String);

impl RunId {
    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(ulid::Ulid::new().to_string())
    }

    /// `id` if it is 1 to [`MAX_RUN_ID`] letters, digits, `-`, `_`, `.`, `:` and `@` (a schedule's runs are `<workflow>@<time>`): safe in a URL
    /// path, a log line and a broker's message id.
    pub fn parse(id: &str) -> Result<Self, InvalidRunId> {
        let ok = !id.is_empty()
            && id.len() <= MAX_RUN_ID
            && id.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@')
            });
        if ok {
            Ok(Self(id.to_owned()))
        } else {
            Err(InvalidRunId(id.to_owned()))
        }
    }

    /// The id of the child run that step `step` of this run starts: `<id>.<step>` when that
    /// is a valid id, else `<id>.` and a digest of the step's name, so that the same step
    /// always names the same child.
    pub fn child(&self, step: &str) -> RunId {
        let plain = format!("{}.{step}", self.0);
        Self::parse(&plain).unwrap_or_else(|_| {
            use sha2::Digest;
            let digest = hex::encode(&sha2::Sha256::digest(plain.as_bytes())[..8]);
            let keep = self.0.len().min(MAX_RUN_ID - digest.len() - 1);
            Self(format!("{}.{digest}", &self.0[..keep]))
        })
    }

    /// An id read back from the store, which only ever holds ids that were valid.
    pub(crate) fn from_stored(id: String) -> Self {
        Self(id)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for RunId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for RunId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<[u8]> for RunId {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_takes_url_safe_ids_only() {
        assert!(RunId::parse("order-42.retry_1").is_ok());
        assert!(RunId::parse("nightly@2026-12-02T02:00:00.000Z").is_ok());
        for bad in ["", "has space", "slash/", "é", &"x".repeat(MAX_RUN_ID + 1)] {
            assert!(RunId::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(RunId::generate().len(), 26);
    }
}
