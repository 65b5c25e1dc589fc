//! Byte layouts of sealed values. Each starts with a format version so a later
//! layout can be read next to this one; headers are authenticated as AAD.
//!
//! - wrapped data key: `[1][len][master key id][nonce 12][ciphertext 32 + tag 16]`
//! - sealed secret:    `[1][data key uuid 16][nonce 12][ciphertext + tag 16]`
//! - check value:      `[1][nonce 12][ciphertext + tag 16]`

use crate::VaultError;

/// The only layout version so far.
pub(crate) const V1: u8 = 1;
/// AES-GCM nonce length.
pub(crate) const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub(crate) const TAG_LEN: usize = 16;

/// A parsed wrapped data key.
pub(crate) struct WrappedKey<'a> {
    pub header: &'a [u8],
    pub master_key_id: &'a str,
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: &'a [u8],
}

pub(crate) fn wrapped_header(master_key_id: &str) -> Vec<u8> {
    let mut header = Vec::with_capacity(2 + master_key_id.len());
    header.push(V1);
    header.push(master_key_id.len() as u8);
    header.extend_from_slice(master_key_id.as_bytes());
    header
}

pub(crate) fn parse_wrapped(bytes: &[u8]) -> Result<WrappedKey<'_>, VaultError> {
    let (&version, rest) = bytes.split_first().ok_or(VaultError::Malformed("empty"))?;
    if version != V1 {
        return Err(VaultError::Malformed("unknown wrapped-key version"));
    }
    let (&len, rest) = rest
        .split_first()
        .ok_or(VaultError::Malformed("truncated"))?;
    let len = len as usize;
    if rest.len() < len + NONCE_LEN + TAG_LEN {
        return Err(VaultError::Malformed("truncated wrapped key"));
    }
    let master_key_id = std::str::from_utf8(&rest[..len])
        .map_err(|_| VaultError::Malformed("master key id is not text"))?;
    let nonce = rest[len..len + NONCE_LEN]
        .try_into()
        .map_err(|_| VaultError::Malformed("nonce"))?;
    Ok(WrappedKey {
        header: &bytes[..2 + len],
        master_key_id,
        nonce,
        ciphertext: &rest[len + NONCE_LEN..],
    })
}

/// A parsed sealed secret.
pub(crate) struct SealedParts<'a> {
    pub header: &'a [u8],
    pub data_key: [u8; 16],
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: &'a [u8],
}

pub(crate) const SEALED_HEADER_LEN: usize = 1 + 16;

pub(crate) fn sealed_header(data_key: [u8; 16]) -> [u8; SEALED_HEADER_LEN] {
    let mut header = [0u8; SEALED_HEADER_LEN];
    header[0] = V1;
    header[1..].copy_from_slice(&data_key);
    header
}

pub(crate) fn parse_sealed(bytes: &[u8]) -> Result<SealedParts<'_>, VaultError> {
    if bytes.len() < SEALED_HEADER_LEN + NONCE_LEN + TAG_LEN {
        return Err(VaultError::Malformed("truncated sealed secret"));
    }
    if bytes[0] != V1 {
        return Err(VaultError::Malformed("unknown sealed-secret version"));
    }
    let data_key = bytes[1..SEALED_HEADER_LEN]
        .try_into()
        .map_err(|_| VaultError::Malformed("data key id"))?;
    let nonce = bytes[SEALED_HEADER_LEN..SEALED_HEADER_LEN + NONCE_LEN]
        .try_into()
        .map_err(|_| VaultError::Malformed("nonce"))?;
    Ok(SealedParts {
        header: &bytes[..SEALED_HEADER_LEN],
        data_key,
        nonce,
        ciphertext: &bytes[SEALED_HEADER_LEN + NONCE_LEN..],
    })
}

/// Builds associated data from a domain label and `\0`-separated parts; the
/// separator cannot occur in ids or field names, so parts cannot run together.
pub(crate) fn aad(header: &[u8], label: &str, parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + label.len() + 64);
    out.extend_from_slice(header);
    out.extend_from_slice(label.as_bytes());
    for part in parts {
        out.push(0);
        out.extend_from_slice(part.as_bytes());
    }
    out
}
