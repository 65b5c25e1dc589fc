//! Opaque sealed bytes as storage keeps them. Only the vault can make or open
//! them; everywhere else they are just bytes whose `Debug` shows a length.

use std::fmt;

use crate::{DataKeyId, TenantId, Timestamp};

/// A secret sealed by a tenant's data key (see `patchbay-vault`).
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret(pub Vec<u8>);

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedSecret({} bytes)", self.0.len())
    }
}

/// A tenant's data key, wrapped (encrypted) by a master key.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKeyRecord {
    /// `dek_…`
    pub id: DataKeyId,
    /// Owner; deleting this record crypto-shreds the tenant's secrets.
    pub tenant_id: TenantId,
    /// Which master key wrapped it.
    pub master_key_id: String,
    /// The wrapped key.
    pub wrapped: Vec<u8>,
    /// When created.
    pub created_at: Timestamp,
}

impl fmt::Debug for DataKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKeyRecord")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("master_key_id", &self.master_key_id)
            .field("wrapped", &format_args!("{} bytes", self.wrapped.len()))
            .finish()
    }
}

/// A data key re-wrapped under another master key; applied only if the stored
/// record still holds `old_wrapped` (compare-and-swap), so concurrent rotations
/// never clobber each other.
#[derive(Debug, Clone)]
pub struct Rewrap {
    /// The data key.
    pub id: DataKeyId,
    /// Its owner.
    pub tenant_id: TenantId,
    /// The wrapping expected in storage.
    pub old_wrapped: Vec<u8>,
    /// The new master key id.
    pub new_master_key_id: String,
    /// The new wrapping.
    pub new_wrapped: Vec<u8>,
}

/// A master key's check value: a known constant sealed under it, so a wrong key
/// with a familiar id is caught at start instead of producing garbage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeyCheck {
    /// The key id.
    pub key_id: String,
    /// The sealed constant.
    pub check_value: Vec<u8>,
    /// When first seen.
    pub created_at: Timestamp,
}
