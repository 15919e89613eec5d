//! Signed plugins: ed25519 keys, signatures over a plugin's name and digest, and the keys
//! a registry trusts (`registry.trusted-keys`).
//!
//! A signature binds a component to the plugin it is for: it signs the line
//! `flowhost-plugin-v1`, the plugin's name and the component's SHA-256 (the registry's
//! digest), so a component signed as `payment` is not accepted as `refund`, and a changed
//! byte breaks it. Texts, one line each:
//!
//! | what | form | where |
//! | --- | --- | --- |
//! | public key | `ed25519:<base64 of 32 bytes>` | `registry.trusted-keys`, `KEY.pub` |
//! | secret key | `flowhost-ed25519-secret:<base64 of the 32-byte seed>` | `KEY` (mode 0600) |
//! | signature | `<public key>:<base64 of 64 bytes>` | `FILE.wasm.sig`, the `Flowhost-Signature` header |
//!
//! With trusted keys set, the registry takes no version without a signature by one of
//! them; without, it checks a signature it is given and records its key, and takes
//! unsigned versions too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

pub use crate::model::SignedBy;

/// What a signature signs, before the plugin's name and digest.
const CONTEXT: &str = "flowhost-plugin-v1";
/// The prefix of a public key's text.
const PUBLIC: &str = "ed25519:";
/// The prefix of a secret key's text.
const SECRET: &str = "flowhost-ed25519-secret:";
/// The header an upload's signature comes in.
pub const SIGNATURE_HEADER: &str = "flowhost-signature";

/// Why a key, a signature or a version's signing was refused.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// A key's or signature's text does not parse.
    #[error("{what}: {why}")]
    Malformed {
        /// What was read (`a public key`, `the signature`, a configuration key).
        what: String,
        /// Why it does not parse.
        why: String,
    },
    /// Trusted keys are set and the version comes unsigned.
    #[error(
        "plugin `{plugin}` is unsigned, and registry.trusted-keys is set: sign it with `flowhost plugins sign` and send the signature (FILE.sig, or the Flowhost-Signature header)"
    )]
    Unsigned {
        /// The plugin.
        plugin: String,
    },
    /// The signature is not the key's over this plugin's name and digest.
    #[error(
        "plugin `{plugin}`: the signature does not verify for this component and name (key {key})"
    )]
    BadSignature {
        /// The plugin.
        plugin: String,
        /// The key it names.
        key: String,
    },
    /// The signature verifies, by a key that is not trusted.
    #[error("plugin `{plugin}` is signed by {key}, which is not in registry.trusted-keys")]
    Untrusted {
        /// The plugin.
        plugin: String,
        /// The key.
        key: String,
    },
    /// A key file could not be read or written.
    #[error("`{}`: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn malformed(what: impl Into<String>, why: impl ToString) -> SigningError {
    SigningError::Malformed {
        what: what.into(),
        why: why.to_string(),
    }
}

/// An ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Reads `ed25519:<base64>`.
    pub fn parse(text: &str) -> Result<Self, SigningError> {
        let what = "a public key";
        let encoded = text
            .trim()
            .strip_prefix(PUBLIC)
            .ok_or_else(|| malformed(what, format!("expected `{PUBLIC}<base64>`")))?;
        let bytes: [u8; 32] = decode(what, encoded)?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|e| malformed(what, e))
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PUBLIC}{}", BASE64.encode(self.0.as_bytes()))
    }
}

/// An ed25519 secret key: what `flowhost keys generate` writes and `plugins sign` reads.
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A new key, from the operating system's randomness.
    pub fn generate() -> Result<Self, SigningError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| malformed("the system's randomness", e))?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// Reads `flowhost-ed25519-secret:<base64>`.
    pub fn parse(text: &str) -> Result<Self, SigningError> {
        let what = "a secret key";
        let encoded = text
            .trim()
            .strip_prefix(SECRET)
            .ok_or_else(|| malformed(what, format!("expected `{SECRET}<base64>`")))?;
        let seed: [u8; 32] = decode(what, encoded)?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// Reads the key file at `path`.
    pub fn read(path: &Path) -> Result<Self, SigningError> {
        let text = std::fs::read_to_string(path).map_err(|source| SigningError::File {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|e| malformed(path.display().to_string(), e))
    }

    /// Writes the key to `path` (readable by its owner only) and its public key to
    /// `path.pub`; refuses to replace either.
    pub fn write(&self, path: &Path) -> Result<PathBuf, SigningError> {
        use std::io::Write;
        let public = with_suffix(path, "pub");
        let create = |path: &Path, mode: u32| {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
            #[cfg(not(unix))]
            let _ = mode;
            options.open(path).map_err(|source| SigningError::File {
                path: path.to_owned(),
                source,
            })
        };
        fn written(path: &Path) -> impl FnOnce(std::io::Error) -> SigningError + '_ {
            move |source| SigningError::File {
                path: path.to_owned(),
                source,
            }
        }
        // The public key's file first: if it is in the way, no secret is left behind.
        let mut file = create(&public, 0o644)?;
        writeln!(file, "{}", self.public()).map_err(written(&public))?;
        let mut file = create(path, 0o600)?;
        writeln!(file, "{SECRET}{}", BASE64.encode(self.0.to_bytes())).map_err(written(path))?;
        Ok(public)
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The signature of a component with SHA-256 `digest` as plugin `plugin`.
    pub fn sign(&self, plugin: &str, digest: &str) -> String {
        let signature = self.0.sign(&message(plugin, digest));
        format!("{}:{}", self.public(), BASE64.encode(signature.to_bytes()))
    }
}

/// `path` with `.suffix` added after its extension: `payment.wasm.sig`, `release.pub`.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Where the signature of the component `file` is kept: `FILE.sig`, which `plugins sign`
/// writes and `plugins push`, the directory watch and the configured files' loading read.
pub fn signature_path(file: &Path) -> PathBuf {
    with_suffix(file, "sig")
}

/// The signature kept beside the component `file` ([`signature_path`]), if there is one.
pub fn read_signature(file: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(signature_path(file)) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What is signed for a component with SHA-256 `digest` as plugin `plugin`.
fn message(plugin: &str, digest: &str) -> Vec<u8> {
    format!("{CONTEXT}\n{plugin}\n{digest}").into_bytes()
}

fn decode<const N: usize>(what: &str, encoded: &str) -> Result<[u8; N], SigningError> {
    let bytes = BASE64.decode(encoded).map_err(|e| malformed(what, e))?;
    bytes
        .try_into()
        .map_err(|bytes: Vec<u8>| malformed(what, format!("{} bytes, not {N}", bytes.len())))
}

/// The keys a registry trusts, by name: `registry.trusted-keys`.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<(String, PublicKey)>,
}

impl TrustedKeys {
    /// Reads `registry.trusted-keys`, naming the key of one that does not parse.
    pub fn parse(keys: &BTreeMap<String, String>) -> Result<Self, SigningError> {
        let keys = keys
            .iter()
            .map(|(name, text)| {
                PublicKey::parse(text)
                    .map(|key| (name.clone(), key))
                    .map_err(|e| malformed(format!("registry.trusted-keys.{name}"), e))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    /// Whether any key is trusted: then every version must be signed by one.
    pub fn required(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Checks `signature` (if any) of a component with SHA-256 `digest` as plugin
    /// `plugin`: who signed it, `None` for an unsigned version where none is required.
    pub fn check(
        &self,
        plugin: &str,
        digest: &str,
        signature: Option<&str>,
    ) -> Result<Option<SignedBy>, SigningError> {
        let Some(signature) = signature else {
            if self.required() {
                return Err(SigningError::Unsigned {
                    plugin: plugin.to_owned(),
                });
            }
            return Ok(None);
        };
        let what = "the signature";
        let (key, encoded) = signature
            .trim()
            .rsplit_once(':')
            .ok_or_else(|| malformed(what, "expected `ed25519:<key>:<signature>`"))?;
        let key = PublicKey::parse(key).map_err(|e| malformed(what, e))?;
        let bytes: [u8; 64] = decode(what, encoded)?;
        key.0
            .verify_strict(&message(plugin, digest), &Signature::from_bytes(&bytes))
            .map_err(|_| SigningError::BadSignature {
                plugin: plugin.to_owned(),
                key: key.to_string(),
            })?;
        self.signer(plugin, &key.to_string()).map(Some)
    }

    /// Whether a stored version of `plugin`, signed by `signed_by` when it was registered,
    /// may become current under the keys trusted now: any version without trusted keys,
    /// else one a trusted key signed.
    pub fn check_signed(
        &self,
        plugin: &str,
        signed_by: Option<&SignedBy>,
    ) -> Result<(), SigningError> {
        if !self.required() {
            return Ok(());
        }
        let signer = signed_by.ok_or_else(|| SigningError::Unsigned {
            plugin: plugin.to_owned(),
        })?;
        self.signer(plugin, &signer.key).map(drop)
    }

    /// Who `key` is, if it may sign versions of `plugin` now: a version signed before the
    /// keys changed is checked again before it becomes current.
    pub fn signer(&self, plugin: &str, key: &str) -> Result<SignedBy, SigningError> {
        let name = self
            .keys
            .iter()
            .find(|(_, trusted)| trusted.to_string() == key)
            .map(|(name, _)| name.clone());
        if name.is_none() && self.required() {
            return Err(SigningError::Untrusted {
                plugin: plugin.to_owned(),
                key: key.to_owned(),
            });
        }
        Ok(SignedBy {
            key: key.to_owned(),
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn trusting(key: &SecretKey) -> TrustedKeys {
        TrustedKeys::parse(&BTreeMap::from([(
            "release".to_owned(),
            key.public().to_string(),
        )]))
        .unwrap()
    }

    #[test]
    fn a_signature_verifies_for_its_name_and_digest_only() {
        let key = SecretKey::generate().unwrap();
        let trusted = trusting(&key);
        let signature = key.sign("payment", DIGEST);
        let signer = trusted.check("payment", DIGEST, Some(&signature)).unwrap();
        assert_eq!(
            signer,
            Some(SignedBy {
                key: key.public().to_string(),
                name: Some("release".into())
            })
        );
        assert!(matches!(
            trusted.check("refund", DIGEST, Some(&signature)),
            Err(SigningError::BadSignature { .. })
        ));
        let other = DIGEST.replace('9', "8");
        assert!(matches!(
            trusted.check("payment", &other, Some(&signature)),
            Err(SigningError::BadSignature { .. })
        ));
    }

    #[test]
    fn with_trusted_keys_only_their_signatures_pass() {
        let (ours, theirs) = (
            SecretKey::generate().unwrap(),
            SecretKey::generate().unwrap(),
        );
        let trusted = trusting(&ours);
        assert!(matches!(
            trusted.check("payment", DIGEST, None),
            Err(SigningError::Unsigned { .. })
        ));
        assert!(matches!(
            trusted.check("payment", DIGEST, Some(&theirs.sign("payment", DIGEST))),
            Err(SigningError::Untrusted { .. })
        ));
        // Without trusted keys: unsigned passes, a signature is checked and recorded.
        let open = TrustedKeys::default();
        assert_eq!(open.check("payment", DIGEST, None).unwrap(), None);
        let signer = open
            .check("payment", DIGEST, Some(&theirs.sign("payment", DIGEST)))
            .unwrap()
            .unwrap();
        assert_eq!(
            (signer.key, signer.name),
            (theirs.public().to_string(), None)
        );
        assert!(
            open.check("payment", DIGEST, Some(&theirs.sign("refund", DIGEST)))
                .is_err()
        );
    }

    #[test]
    fn malformed_keys_and_signatures_are_named() {
        let bad = BTreeMap::from([("ci".to_owned(), "ed25519:AAAA".to_owned())]);
        let error = TrustedKeys::parse(&bad).unwrap_err().to_string();
        assert!(error.contains("registry.trusted-keys.ci"), "{error}");
        assert!(error.contains("3 bytes, not 32"), "{error}");
        let key = SecretKey::generate().unwrap();
        for signature in [
            "",
            "nonsense",
            "ed25519:abc:def",
            &format!("{}:!!", key.public()),
        ] {
            assert!(
                matches!(
                    trusting(&key).check("p", DIGEST, Some(signature)),
                    Err(SigningError::Malformed { .. })
                ),
                "{signature:?}"
            );
        }
    }

    #[test]
    fn keys_round_trip_through_their_files_and_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("release");
        let key = SecretKey::generate().unwrap();
        let public = key.write(&path).unwrap();
        assert_eq!(public, dir.path().join("release.pub"));
        let read = SecretKey::read(&path).unwrap();
        assert_eq!(read.public(), key.public());
        let text = std::fs::read_to_string(&public).unwrap();
        assert_eq!(PublicKey::parse(&text).unwrap(), key.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = SecretKey::generate().unwrap().write(&path);
        assert!(matches!(again, Err(SigningError::File { .. })));
        assert_eq!(SecretKey::read(&path).unwrap().public(), key.public());
    }
}
