//! Who signed a module, and whether the host may run it.
//!
//! Signatures are wasmsign2's embedded ones: a `signature` custom section in
//! front of the module, written by `wasmsign2 sign`, over the rest of the
//! module's bytes. They travel with the file wherever it goes (copied into
//! the module directory, `bullpen deploy`, pushed to and pulled from a
//! registry, kept for rollback), so one check at load covers every way a
//! module reaches a queue. Keys are OpenSSH ed25519 public keys, named by
//! their SHA256 fingerprint as `ssh-keygen -l` prints it.
//!
//! With `[host] require_signatures`, a module that no key of `[host]
//! trusted_keys` signed does not load: at start that stops the start, on a
//! deploy the serving version stays and the reason is the rejection's.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256};
use std::fmt;
use wasmsign2::{PublicKey, PublicKeySet, WSError};

/// A key whose signatures the host trusts.
#[derive(Clone, PartialEq, Eq)]
pub struct TrustedKey {
    key: [u8; 32],
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// The key's comment (`release@acme`), empty when it has none.
    pub comment: String,
}

impl fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustedKey({})", self.fingerprint)
    }
}

impl TrustedKey {
    /// The keys of an OpenSSH public key file (`authorized_keys` format:
    /// one `ssh-ed25519 AAAA… comment` per line; blank and `#` lines
    /// skipped). Every line must be an ed25519 key; the error says which
    /// is not, by its 1-based number.
    pub fn parse_all(text: &str) -> Result<Vec<TrustedKey>, (usize, String)> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            keys.push(Self::parse(line).map_err(|reason| (n + 1, reason))?);
        }
        Ok(keys)
    }

    /// One `ssh-ed25519 AAAA… [comment]` line.
    pub fn parse(line: &str) -> Result<TrustedKey, String> {
        let mut fields = line.split_whitespace();
        let (kind, blob) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        let comment = fields.collect::<Vec<_>>().join(" ");
        if kind != "ssh-ed25519" {
            return Err(format!(
                "a `{kind}` key: module signatures are ed25519 (ssh-keygen -t ed25519)"
            ));
        }
        let wire = STANDARD
            .decode(blob)
            .map_err(|e| format!("not an OpenSSH public key: {e}"))?;
        // The wire form: string "ssh-ed25519", string <32-byte key>.
        let key: [u8; 32] = wire
            .strip_prefix(b"\0\0\0\x0bssh-ed25519\0\0\0\x20")
            .and_then(|k| k.try_into().ok())
            .ok_or("not an OpenSSH ed25519 public key (its body is not one)")?;
        Ok(TrustedKey {
            key,
            fingerprint: format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(&wire))),
            comment,
        })
    }

    fn public_key(&self) -> PublicKey {
        let mut bytes = vec![0x01]; // wasmsign2's tag for an ed25519 key
        bytes.extend_from_slice(&self.key);
        PublicKey::from_bytes(&bytes).expect("32 bytes are an ed25519 key")
    }
}

/// Which signatures the host trusts, and whether it runs only signed
/// modules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// `[host] trusted_keys`, every key of every entry, in order.
    pub keys: Vec<TrustedKey>,
    /// `[host] require_signatures`.
    pub required: bool,
}

/// The trusted key that signed a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The key's fingerprint, `SHA256:…`.
    pub key_id: String,
    /// The key's comment, empty when it has none.
    pub comment: String,
}

impl fmt::Display for Signer {
    /// `SHA256:… (release@acme)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.comment.as_str() {
            "" => f.write_str(&self.key_id),
            comment => write!(f, "{} ({comment})", self.key_id),
        }
    }
}

impl Trust {
    /// Who of the trusted keys signed `module` (the first in
    /// `trusted_keys` order when several did); `Ok(None)` when none did
    /// and none is required. `Err` says why a module that must be signed
    /// is not.
    pub fn check(&self, module: &[u8]) -> Result<Option<Signer>, String> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        let set = PublicKeySet::new(self.keys.iter().map(TrustedKey::public_key).collect());
        let verified = match is_signed(module) {
            true => set.verify(&mut std::io::Cursor::new(module), None),
            false => Err(WSError::NoSignatures),
        };
        let refused = match verified {
            Ok(valid) => {
                let signer = self
                    .keys
                    .iter()
                    .find(|k| valid.iter().any(|v| v.pk.as_ref() == k.key))
                    .expect("a valid key is a trusted one");
                return Ok(Some(Signer {
                    key_id: signer.fingerprint.clone(),
                    comment: signer.comment.clone(),
                }));
            }
            Err(WSError::NoSignatures) => {
                "not signed, and [host] require_signatures is on: sign it with a key of trusted_keys (wasmsign2 sign --ssh -k KEY -i IN.wasm -o OUT.wasm)".to_owned()
            }
            Err(WSError::VerificationFailed) => format!(
                "its signature is valid for none of the {} trusted key(s): it was signed by another key, or changed after it was signed",
                self.keys.len()
            ),
            Err(e) => format!("its signature section cannot be read: {e}"),
        };
        if self.required {
            Err(refused)
        } else {
            Ok(None)
        }
    }
}

/// Whether `module` carries a signature at all: whether its first section
/// is wasmsign2's `signature` custom section.
pub fn is_signed(module: &[u8]) -> bool {
    const NAME: &[u8] = b"signature";
    let Some(rest) = module.get(8..) else {
        return false;
    };
    // A custom section (id 0), its size (LEB128), then its name's length
    // and the name.
    let Some((&0, rest)) = rest.split_first() else {
        return false;
    };
    let Some(rest) = skip_leb128(rest) else {
        return false;
    };
    rest.split_first()
        .is_some_and(|(&len, name)| usize::from(len) == NAME.len() && name.starts_with(NAME))
}

fn skip_leb128(bytes: &[u8]) -> Option<&[u8]> {
    let end = bytes.iter().take(5).position(|b| b & 0x80 == 0)?;
    Some(&bytes[end + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    // `ssh-keygen -t ed25519 -C release@acme`; `ssh-keygen -l` printed
    // the fingerprint below for it.
    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINKY+3Ypw329rfueNX7HOSP6rk8qHsz+54SQoEL3gmEF release@acme";
    const FINGERPRINT: &str = "SHA256:RP5pQ/64prWohUeOG94lL0Nfm43X/zOb/ZLDYZYW86g";

    #[test]
    fn a_key_is_named_by_its_openssh_fingerprint() {
        let key = TrustedKey::parse(KEY).unwrap();
        assert_eq!(key.fingerprint, FINGERPRINT);
        assert_eq!(key.comment, "release@acme");
    }

    #[test]
    fn only_ed25519_keys_are_trusted_and_the_bad_line_is_named() {
        let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 me";
        let (line, reason) =
            TrustedKey::parse_all(&format!("# keys\n{KEY}\n\n{rsa}\n")).unwrap_err();
        assert_eq!(line, 4);
        assert!(reason.contains("ed25519"), "{reason}");
        assert!(TrustedKey::parse("ssh-ed25519 !!!").is_err());
        assert_eq!(
            TrustedKey::parse_all(&format!("{KEY}\n{KEY}"))
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn an_unsigned_module_loads_unless_signatures_are_required() {
        let module = b"\0asm\x0d\0\x01\0";
        let mut trust = Trust {
            keys: vec![TrustedKey::parse(KEY).unwrap()],
            required: false,
        };
        assert_eq!(trust.check(module), Ok(None));
        assert!(!is_signed(module));
        trust.required = true;
        assert!(trust.check(module).unwrap_err().starts_with("not signed"));
        assert_eq!(Trust::default().check(module), Ok(None));
    }
}
