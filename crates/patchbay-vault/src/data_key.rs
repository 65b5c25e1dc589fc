//! A tenant's data key, unwrapped: it seals and opens that tenant's secrets.
//! Associated data binds each ciphertext to tenant, record and field.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use patchbay_core::sealed::SealedSecret;
use patchbay_core::{DataKeyId, TenantId};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::VaultError;
use crate::error::random_bytes;
use crate::format::{self, NONCE_LEN};
use crate::metrics::{self, Operation};

/// Where a secret lives: its owner, its record and its field. A ciphertext only
/// opens in the context it was sealed in.
#[derive(Debug, Clone, Copy)]
pub struct SecretContext<'a> {
    /// Owner.
    pub tenant: TenantId,
    /// Id of the record holding the secret (`conn_…`).
    pub record: &'a str,
    /// Field name (`api_key`, `previous_api_key`).
    pub field: &'a str,
}

/// An unwrapped data key. The key schedule is zeroized on drop.
pub struct DataKey {
    id: DataKeyId,
    tenant: TenantId,
    cipher: Aes256Gcm,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    pub(crate) fn from_material(
        id: DataKeyId,
        tenant: TenantId,
        material: &[u8; 32],
    ) -> Result<Self, VaultError> {
        let cipher = Aes256Gcm::new_from_slice(material)
            .map_err(|_| VaultError::Malformed("data key length"))?;
        Ok(Self { id, tenant, cipher })
    }

    /// This key's id.
    pub fn id(&self) -> DataKeyId {
        self.id
    }

    /// Seals a text secret for `context`. A fresh random nonce every time.
    pub fn seal(
        &self,
        context: SecretContext<'_>,
        secret: &SecretString,
    ) -> Result<SealedSecret, VaultError> {
        self.seal_bytes(context, secret.expose_secret().as_bytes())
    }

    /// Seals raw bytes for `context`.
    pub fn seal_bytes(
        &self,
        context: SecretContext<'_>,
        plaintext: &[u8],
    ) -> Result<SealedSecret, VaultError> {
        metrics::record(Operation::Seal, self.seal_unrecorded(context, plaintext))
    }

    fn seal_unrecorded(
        &self,
        context: SecretContext<'_>,
        plaintext: &[u8],
    ) -> Result<SealedSecret, VaultError> {
        self.check_tenant(context)?;
        let header = format::sealed_header(*self.id.uuid().as_bytes());
        let aad = secret_aad(&header, context);
        let nonce = random_bytes::<NONCE_LEN>()?;
        let ciphertext = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Unauthentic)?;
        let mut out = Vec::with_capacity(header.len() + NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(SealedSecret(out))
    }

    /// Opens a text secret sealed for `context`.
    pub fn open(
        &self,
        context: SecretContext<'_>,
        sealed: &SealedSecret,
    ) -> Result<SecretString, VaultError> {
        let bytes = self.open_bytes(context, sealed)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| VaultError::NotText)?;
        Ok(SecretString::from(text))
    }

    /// Opens raw bytes sealed for `context`.
    pub fn open_bytes(
        &self,
        context: SecretContext<'_>,
        sealed: &SealedSecret,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        metrics::record(Operation::Open, self.open_unrecorded(context, sealed))
    }

    fn open_unrecorded(
        &self,
        context: SecretContext<'_>,
        sealed: &SealedSecret,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        self.check_tenant(context)?;
        let parts = format::parse_sealed(&sealed.0)?;
        if parts.data_key != *self.id.uuid().as_bytes() {
            return Err(VaultError::WrongDataKey);
        }
        let aad = secret_aad(parts.header, context);
        self.cipher
            .decrypt(
                &Nonce::from(parts.nonce),
                Payload {
                    msg: parts.ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Unauthentic)
    }

    fn check_tenant(&self, context: SecretContext<'_>) -> Result<(), VaultError> {
        // The AAD would catch this too; failing early gives a clearer error.
        if context.tenant == self.tenant {
            Ok(())
        } else {
            Err(VaultError::WrongDataKey)
        }
    }
}

fn secret_aad(header: &[u8], context: SecretContext<'_>) -> Vec<u8> {
    format::aad(
        header,
        "patchbay/secret/v1",
        &[&context.tenant.to_string(), context.record, context.field],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keyring;

    fn keyring() -> Keyring {
        Keyring::parse(&crate::generate_master_key("k1").unwrap()).unwrap()
    }

    fn ctx(tenant: TenantId, record: &str) -> SecretContext<'_> {
        SecretContext {
            tenant,
            record,
            field: "api_key",
        }
    }

    const SECRET: &str = "sk_test_51Hx9Qabcdefghijklmnopqrstuvwxyz4242";

    #[test]
    fn round_trip_and_fresh_nonces() {
        let tenant = TenantId::new();
        let (_, key) = keyring().new_data_key(tenant).unwrap();
        let secret = SecretString::from(SECRET);
        let a = key.seal(ctx(tenant, "conn_a"), &secret).unwrap();
        let b = key.seal(ctx(tenant, "conn_a"), &secret).unwrap();
        assert_ne!(a, b, "every seal uses a fresh nonce");
        assert_eq!(
            key.open(ctx(tenant, "conn_a"), &a).unwrap().expose_secret(),
            SECRET
        );
        assert!(!a.0.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    }

    #[test]
    fn every_tampered_byte_fails() {
        let tenant = TenantId::new();
        let (_, key) = keyring().new_data_key(tenant).unwrap();
        let sealed = key
            .seal(ctx(tenant, "conn_a"), &SecretString::from(SECRET))
            .unwrap();
        // Version, data key id, nonce, ciphertext and tag: flipping any bit must fail.
        for i in 0..sealed.0.len() {
            let mut bad = sealed.clone();
            bad.0[i] ^= 0x01;
            assert!(key.open(ctx(tenant, "conn_a"), &bad).is_err(), "byte {i}");
        }
        let mut truncated = sealed.clone();
        truncated.0.truncate(sealed.0.len() - 1);
        assert!(key.open(ctx(tenant, "conn_a"), &truncated).is_err());
        assert!(
            key.open(ctx(tenant, "conn_a"), &SealedSecret(vec![]))
                .is_err()
        );
    }

    #[test]
    fn another_record_field_or_tenant_fails() {
        let ring = keyring();
        let tenant = TenantId::new();
        let (_, key) = ring.new_data_key(tenant).unwrap();
        let sealed = key
            .seal(ctx(tenant, "conn_a"), &SecretString::from(SECRET))
            .unwrap();
        assert!(matches!(
            key.open(ctx(tenant, "conn_b"), &sealed),
            Err(VaultError::Unauthentic)
        ));
        let other_field = SecretContext {
            field: "previous_api_key",
            ..ctx(tenant, "conn_a")
        };
        assert!(matches!(
            key.open(other_field, &sealed),
            Err(VaultError::Unauthentic)
        ));
        // Copied into another tenant's row: that tenant's key is another data key.
        let other = TenantId::new();
        let (_, other_key) = ring.new_data_key(other).unwrap();
        assert!(other_key.open(ctx(other, "conn_a"), &sealed).is_err());
        // Even with this data key, the other tenant's context does not open it.
        assert!(key.open(ctx(other, "conn_a"), &sealed).is_err());
    }

    /// Ways a byte string could be rendered into text: hex either case,
    /// base64 either alphabet, and a run of the decimal list `Debug` prints.
    fn renderings(bytes: &[u8]) -> Vec<String> {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let list = format!("{:?}", &bytes[..6]);
        vec![
            hex.to_uppercase(),
            hex,
            STANDARD_NO_PAD.encode(bytes),
            URL_SAFE_NO_PAD.encode(bytes),
            list.trim_end_matches(']').to_owned(),
        ]
    }

    #[test]
    fn debug_never_shows_key_material() {
        let tenant = TenantId::new();
        let material = Zeroizing::new(random_bytes::<32>().unwrap());
        let key = DataKey::from_material(DataKeyId::new(), tenant, &material).unwrap();
        let (record, from_ring) = keyring().new_data_key(tenant).unwrap();
        let shown = format!("{key:?} {key:#?} {from_ring:?} {record:?} {record:#?}");
        assert!(shown.contains("DataKey") && shown.contains("DataKeyRecord"));
        // Neither the key nor its wrapping, in any common rendering.
        for (what, bytes) in [
            ("material", &material[..]),
            ("wrapped key", &record.wrapped),
        ] {
            for text in renderings(bytes) {
                assert!(!shown.contains(&text), "{what} shown as {text}: {shown}");
            }
        }
    }
}
