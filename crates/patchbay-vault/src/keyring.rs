//! The master keyring: AES-256 keys from configuration, the first one primary.
//! It wraps and unwraps tenants' data keys and makes the per-key check values.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use patchbay_core::sealed::{DataKeyRecord, MasterKeyCheck, Rewrap};
use patchbay_core::{DataKeyId, TenantId};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::VaultError;
use crate::data_key::DataKey;
use crate::error::random_bytes;
use crate::format::{self, NONCE_LEN, TAG_LEN};
use crate::metrics::{self, Operation};

/// A master key id: 1 to 64 characters of `A-Z a-z 0-9 _ - .`.
pub type MasterKeyId = String;

const CHECK_PLAINTEXT: &[u8] = b"patchbay master key check v1";
const DATA_KEY_LEN: usize = 32;

struct MasterKey {
    id: MasterKeyId,
    cipher: Aes256Gcm,
}

/// The configured master keys. The first is the primary: it wraps new data keys;
/// the others only unwrap, until rotation has moved everything off them.
pub struct Keyring {
    keys: Vec<MasterKey>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.key_ids())
            .finish_non_exhaustive()
    }
}

/// A fresh random master key in the configuration's `id:base64` form.
pub fn generate_master_key(id: &str) -> Result<SecretString, VaultError> {
    check_key_id(id)?;
    let bytes = Zeroizing::new(random_bytes::<32>()?);
    Ok(SecretString::from(format!(
        "{id}:{}",
        STANDARD.encode(*bytes)
    )))
}

fn check_key_id(id: &str) -> Result<(), VaultError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(VaultError::Config(format!(
            "master key id '{}' must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '-', '.'",
            id.chars().take(64).collect::<String>()
        )))
    }
}

impl Keyring {
    /// Parses `id:base64,id:base64` (commas or newlines between entries; the first
    /// entry is primary). Each key must decode to exactly 32 bytes.
    pub fn parse(spec: &SecretString) -> Result<Self, VaultError> {
        let mut keys: Vec<MasterKey> = Vec::new();
        for (index, entry) in spec
            .expose_secret()
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.starts_with('#'))
            .enumerate()
        {
            let (id, material) = entry.split_once(':').ok_or_else(|| {
                VaultError::Config(format!(
                    "entry {} is not 'id:base64-key' (expected e.g. k1:<44 base64 characters>)",
                    index + 1
                ))
            })?;
            let id = id.trim();
            check_key_id(id)?;
            if keys.iter().any(|k| k.id == id) {
                return Err(VaultError::Config(format!(
                    "master key id '{id}' appears twice"
                )));
            }
            let bytes = Zeroizing::new(STANDARD.decode(material.trim()).map_err(|_| {
                VaultError::Config(format!("master key '{id}' is not valid base64"))
            })?);
            if bytes.len() != 32 {
                return Err(VaultError::Config(format!(
                    "master key '{id}' decodes to {} bytes; AES-256 needs exactly 32 (generate one with `patchbay keys generate`)",
                    bytes.len()
                )));
            }
            let cipher = Aes256Gcm::new_from_slice(&bytes)
                .map_err(|_| VaultError::Config(format!("master key '{id}' is unusable")))?;
            keys.push(MasterKey {
                id: id.to_owned(),
                cipher,
            });
        }
        if keys.is_empty() {
            return Err(VaultError::Config("no master key given".into()));
        }
        Ok(Self { keys })
    }

    /// The primary key's id.
    pub fn primary_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Every configured id, primary first.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// Whether `id` is configured.
    pub fn has_key(&self, id: &str) -> bool {
        self.key(id).is_some()
    }

    fn key(&self, id: &str) -> Option<&MasterKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// A check value for configured key `id`, to be stored and verified at every start.
    pub fn make_check(&self, id: &str) -> Result<MasterKeyCheck, VaultError> {
        let key = self.key(id).ok_or_else(|| VaultError::UnknownMasterKey {
            key_id: id.to_owned(),
        })?;
        let nonce = random_bytes::<NONCE_LEN>()?;
        let aad = format::aad(&[format::V1], "patchbay/check/v1", &[id]);
        let ciphertext = key
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: CHECK_PLAINTEXT,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Unauthentic)?;
        let mut value = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        value.push(format::V1);
        value.extend_from_slice(&nonce);
        value.extend_from_slice(&ciphertext);
        Ok(MasterKeyCheck {
            key_id: id.to_owned(),
            check_value: value,
            created_at: patchbay_core::time::now(),
        })
    }

    /// Verifies a stored check value against the configured key of the same id.
    pub fn verify_check(&self, check: &MasterKeyCheck) -> Result<(), VaultError> {
        let key = self
            .key(&check.key_id)
            .ok_or_else(|| VaultError::UnknownMasterKey {
                key_id: check.key_id.clone(),
            })?;
        let wrong = || VaultError::WrongMasterKey {
            key_id: check.key_id.clone(),
        };
        let value = &check.check_value;
        if value.len() < 1 + NONCE_LEN + TAG_LEN || value[0] != format::V1 {
            return Err(VaultError::Malformed("check value"));
        }
        let nonce: [u8; NONCE_LEN] = value[1..1 + NONCE_LEN]
            .try_into()
            .map_err(|_| VaultError::Malformed("check value"))?;
        let aad = format::aad(&[format::V1], "patchbay/check/v1", &[&check.key_id]);
        let plain = key
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &value[1 + NONCE_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| wrong())?;
        if plain == CHECK_PLAINTEXT {
            Ok(())
        } else {
            Err(wrong())
        }
    }

    /// Creates a tenant's data key, wrapped by the primary key.
    pub fn new_data_key(&self, tenant: TenantId) -> Result<(DataKeyRecord, DataKey), VaultError> {
        metrics::record(Operation::NewDataKey, self.new_data_key_unrecorded(tenant))
    }

    fn new_data_key_unrecorded(
        &self,
        tenant: TenantId,
    ) -> Result<(DataKeyRecord, DataKey), VaultError> {
        let id = DataKeyId::new();
        let material = Zeroizing::new(random_bytes::<DATA_KEY_LEN>()?);
        let wrapped = self.wrap(&self.keys[0], tenant, id, &material)?;
        let record = DataKeyRecord {
            id,
            tenant_id: tenant,
            master_key_id: self.keys[0].id.clone(),
            wrapped,
            created_at: patchbay_core::time::now(),
        };
        let key = DataKey::from_material(id, tenant, &material)?;
        Ok((record, key))
    }

    /// Unwraps a stored data key.
    pub fn open_data_key(&self, record: &DataKeyRecord) -> Result<DataKey, VaultError> {
        let key = self
            .unwrap_material(record)
            .and_then(|material| DataKey::from_material(record.id, record.tenant_id, &material));
        metrics::record(Operation::OpenDataKey, key)
    }

    /// Re-wraps a data key under the primary key (no change if already there).
    pub fn rewrap(&self, record: &DataKeyRecord) -> Result<Rewrap, VaultError> {
        let rewrap = self.unwrap_material(record).and_then(|material| {
            let primary = &self.keys[0];
            Ok(Rewrap {
                id: record.id,
                tenant_id: record.tenant_id,
                old_wrapped: record.wrapped.clone(),
                new_master_key_id: primary.id.clone(),
                new_wrapped: self.wrap(primary, record.tenant_id, record.id, &material)?,
            })
        });
        metrics::record(Operation::Rewrap, rewrap)
    }

    fn wrap(
        &self,
        key: &MasterKey,
        tenant: TenantId,
        id: DataKeyId,
        material: &[u8; DATA_KEY_LEN],
    ) -> Result<Vec<u8>, VaultError> {
        let header = format::wrapped_header(&key.id);
        let aad = format::aad(
            &header,
            "patchbay/dek/v1",
            &[&tenant.to_string(), &id.to_string()],
        );
        let nonce = random_bytes::<NONCE_LEN>()?;
        let ciphertext = key
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: material,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Unauthentic)?;
        let mut out = header;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    fn unwrap_material(
        &self,
        record: &DataKeyRecord,
    ) -> Result<Zeroizing<[u8; DATA_KEY_LEN]>, VaultError> {
        let parts = format::parse_wrapped(&record.wrapped)?;
        if parts.master_key_id != record.master_key_id {
            return Err(VaultError::Malformed(
                "master key id differs from its column",
            ));
        }
        let key = self
            .key(parts.master_key_id)
            .ok_or_else(|| VaultError::UnknownMasterKey {
                key_id: parts.master_key_id.to_owned(),
            })?;
        let aad = format::aad(
            parts.header,
            "patchbay/dek/v1",
            &[&record.tenant_id.to_string(), &record.id.to_string()],
        );
        let plain = Zeroizing::new(
            key.cipher
                .decrypt(
                    &Nonce::from(parts.nonce),
                    Payload {
                        msg: parts.ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| VaultError::Unauthentic)?,
        );
        let mut material = Zeroizing::new([0u8; DATA_KEY_LEN]);
        if plain.len() != DATA_KEY_LEN {
            return Err(VaultError::Malformed("data key length"));
        }
        material.copy_from_slice(&plain);
        Ok(material)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretContext;

    fn spec(entries: &[&SecretString]) -> SecretString {
        SecretString::from(
            entries
                .iter()
                .map(|s| s.expose_secret().to_owned())
                .collect::<Vec<_>>()
                .join(","),
        )
    }

    #[test]
    fn parses_primary_first_and_rejects_bad_config() {
        let k2 = generate_master_key("k2").unwrap();
        let k1 = generate_master_key("k1").unwrap();
        let ring = Keyring::parse(&spec(&[&k2, &k1])).unwrap();
        assert_eq!(ring.primary_id(), "k2");
        assert_eq!(ring.key_ids(), vec!["k2", "k1"]);
        for bad in [
            "",
            "k1",
            "k1:not-base64!",
            "k1:AAAA",
            "bad id:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            assert!(Keyring::parse(&SecretString::from(bad)).is_err(), "{bad}");
        }
        assert!(Keyring::parse(&spec(&[&k1, &k1])).is_err(), "duplicate ids");
    }

    #[test]
    fn config_errors_never_echo_key_material() {
        let material = "c2VjcmV0LWtleS1tYXRlcmlhbC10aGF0LWlzLXdyb25n";
        let err = Keyring::parse(&SecretString::from(format!("k1:{material}"))).unwrap_err();
        assert!(!err.to_string().contains(material));
        let debug = format!(
            "{:?}",
            Keyring::parse(&generate_master_key("k1").unwrap()).unwrap()
        );
        assert_eq!(debug, "Keyring { key_ids: [\"k1\"], .. }");
    }

    #[test]
    fn check_values_catch_a_wrong_key_with_a_known_id() {
        let right = Keyring::parse(&generate_master_key("k1").unwrap()).unwrap();
        let wrong = Keyring::parse(&generate_master_key("k1").unwrap()).unwrap();
        let check = right.make_check("k1").unwrap();
        right.verify_check(&check).unwrap();
        assert!(matches!(
            wrong.verify_check(&check),
            Err(VaultError::WrongMasterKey { key_id }) if key_id == "k1"
        ));
    }

    #[test]
    fn data_keys_unwrap_only_with_their_master_key_and_owner() {
        let k1 = generate_master_key("k1").unwrap();
        let old = Keyring::parse(&k1).unwrap();
        let tenant = TenantId::new();
        let (record, key) = old.new_data_key(tenant).unwrap();
        let ctx = SecretContext {
            tenant,
            record: "conn_x",
            field: "api_key",
        };
        let sealed = key.seal(ctx, &SecretString::from("sk_test_x")).unwrap();

        let k2 = generate_master_key("k2").unwrap();
        let only_new = Keyring::parse(&k2).unwrap();
        assert!(matches!(
            only_new.open_data_key(&record),
            Err(VaultError::UnknownMasterKey { key_id }) if key_id == "k1"
        ));

        let both = Keyring::parse(&spec(&[&k2, &k1])).unwrap();
        let rewrap = both.rewrap(&record).unwrap();
        assert_eq!(rewrap.new_master_key_id, "k2");
        let moved = DataKeyRecord {
            master_key_id: rewrap.new_master_key_id.clone(),
            wrapped: rewrap.new_wrapped.clone(),
            ..record.clone()
        };
        let reopened = only_new.open_data_key(&moved).unwrap();
        assert_eq!(
            reopened.open(ctx, &sealed).unwrap().expose_secret(),
            "sk_test_x"
        );

        // A wrapped key copied to another tenant's record does not unwrap.
        let stolen = DataKeyRecord {
            tenant_id: TenantId::new(),
            ..record.clone()
        };
        assert!(matches!(
            old.open_data_key(&stolen),
            Err(VaultError::Unauthentic)
        ));
        // The column and the self-described key id must agree.
        let relabelled = DataKeyRecord {
            master_key_id: "k2".into(),
            ..record
        };
        assert!(both.open_data_key(&relabelled).is_err());
    }
}
