//! Prefixed, time-ordered identifiers (`ten_…`, `conn_…`) backed by UUIDv7.
//! The text form is the prefix plus 26 lowercase Crockford base32 characters, so ids
//! sort by creation time both as text and as the native UUID the databases store.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// What kind of record an [`Id`] names: its prefix and a human name for messages.
pub trait IdKind: Send + Sync + 'static {
    /// The text prefix, including the trailing underscore.
    const PREFIX: &'static str;
    /// The record's name as a user reads it ("connection").
    const NAME: &'static str;
    /// The id's name in the OpenAPI document ("ConnectionId").
    const SCHEMA: &'static str;
}

/// An identifier of one kind of record. Ids of different kinds never mix up at compile time.
pub struct Id<K: IdKind> {
    uuid: Uuid,
    kind: PhantomData<fn() -> K>,
}

macro_rules! id_kind {
    ($kind:ident, $alias:ident, $prefix:literal, $name:literal) => {
        #[doc = concat!("Marker for ", $name, " ids (`", $prefix, "…`).")]
        #[derive(Debug)]
        pub enum $kind {}
        impl IdKind for $kind {
            const PREFIX: &'static str = $prefix;
            const NAME: &'static str = $name;
            const SCHEMA: &'static str = stringify!($alias);
        }
        #[doc = concat!("The id of a ", $name, ".")]
        pub type $alias = Id<$kind>;
    };
}

id_kind!(TenantKind, TenantId, "ten_", "tenant");
id_kind!(ApiKeyKind, ApiKeyId, "key_", "API key");
id_kind!(ConnectionKind, ConnectionId, "conn_", "connection");
id_kind!(DataKeyKind, DataKeyId, "dek_", "data key");
id_kind!(AuditEventKind, AuditEventId, "aud_", "audit event");
id_kind!(JobKind, JobId, "job_", "job");
id_kind!(
    WebhookEndpointKind,
    WebhookEndpointId,
    "we_",
    "webhook endpoint"
);
id_kind!(EventKind, EventId, "ev_", "event");
id_kind!(
    SubscriptionKind,
    SubscriptionId,
    "esub_",
    "event subscription"
);
id_kind!(DeliveryKind, DeliveryId, "dlv_", "event delivery");

/// Length of the encoded part of an id (128 bits in base32).
pub const ENCODED_LEN: usize = 26;
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

impl<K: IdKind> Id<K> {
    /// A fresh id whose order follows creation time.
    pub fn new() -> Self {
        Self::from_uuid(Uuid::now_v7())
    }

    /// Wraps a UUID read back from storage.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self {
            uuid,
            kind: PhantomData,
        }
    }

    /// The UUID the databases store.
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// The 26 characters after the prefix.
    pub fn encoded(&self) -> String {
        encode(self.uuid.as_u128())
    }

    /// Parses only the encoded part (no prefix), as embedded in API-key tokens.
    pub fn from_encoded(s: &str) -> Result<Self, IdError> {
        decode(s)
            .map(|v| Self::from_uuid(Uuid::from_u128(v)))
            .ok_or_else(|| IdError::new::<K>(s))
    }
}

impl<K: IdKind> Default for Id<K> {
    fn default() -> Self {
        Self::new()
    }
}

fn encode(mut value: u128) -> String {
    let mut out = [0u8; ENCODED_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value & 31) as usize];
        value >>= 5;
    }
    out.iter().map(|&b| b as char).collect()
}

fn decode(s: &str) -> Option<u128> {
    if s.len() != ENCODED_LEN {
        return None;
    }
    let bytes = s.as_bytes();
    // 26 characters carry 130 bits: the first may only use the low 3 bits.
    let mut value: u128 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let digit = ALPHABET.iter().position(|&a| a == b)? as u128;
        if i == 0 && digit > 7 {
            return None;
        }
        value = (value << 5) | digit;
    }
    Some(value)
}

/// A string that is not a well-formed id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{value}' is not a valid {name} id: expected '{prefix}' followed by {ENCODED_LEN} characters"
)]
pub struct IdError {
    /// The rejected text, shortened so that a pasted secret is never echoed whole.
    pub value: String,
    /// The expected prefix.
    pub prefix: &'static str,
    /// The record kind.
    pub name: &'static str,
}

impl IdError {
    fn new<K: IdKind>(value: &str) -> Self {
        let value: String = if value.chars().count() > 40 {
            value.chars().take(40).chain("…".chars()).collect()
        } else {
            value.to_owned()
        };
        Self {
            value,
            prefix: K::PREFIX,
            name: K::NAME,
        }
    }
}

impl<K: IdKind> FromStr for Id<K> {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .strip_prefix(K::PREFIX)
            .ok_or_else(|| IdError::new::<K>(s))?;
        decode(rest)
            .map(|v| Self::from_uuid(Uuid::from_u128(v)))
            .ok_or_else(|| IdError::new::<K>(s))
    }
}

impl<K: IdKind> fmt::Display for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(K::PREFIX)?;
        f.write_str(&self.encoded())
    }
}

impl<K: IdKind> fmt::Debug for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<K: IdKind> Clone for Id<K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K: IdKind> Copy for Id<K> {}
impl<K: IdKind> PartialEq for Id<K> {
    fn eq(&self, other: &Self) -> bool {
        self.uuid == other.uuid
    }
}
impl<K: IdKind> Eq for Id<K> {}
impl<K: IdKind> Hash for Id<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.uuid.hash(state);
    }
}
impl<K: IdKind> PartialOrd for Id<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<K: IdKind> Ord for Id<K> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.uuid.cmp(&other.uuid)
    }
}

impl<K: IdKind> Serialize for Id<K> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de, K: IdKind> Deserialize<'de> for Id<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl<K: IdKind> utoipa::PartialSchema for Id<K> {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(format!(
                "A {} id: '{}' followed by {ENCODED_LEN} characters.",
                K::NAME,
                K::PREFIX
            )))
            .pattern(Some(format!(
                "^{}[0-9a-hjkmnp-tv-z]{{{ENCODED_LEN}}}$",
                K::PREFIX
            )))
            .examples([serde_json::Value::String(format!(
                "{}01jq3v6k8e9r0f7t5b2n4m6p8s",
                K::PREFIX
            ))])
            .into()
    }
}

impl<K: IdKind> utoipa::ToSchema for Id<K> {
    /// Each kind is its own schema, with its own prefix in the pattern.
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed(K::SCHEMA)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let id = ConnectionId::new();
        let text = id.to_string();
        assert!(text.starts_with("conn_"));
        assert_eq!(text.len(), "conn_".len() + ENCODED_LEN);
        assert_eq!(text.parse::<ConnectionId>().unwrap(), id);
        assert_eq!(ConnectionId::from_encoded(&id.encoded()).unwrap(), id);
    }

    #[test]
    fn extremes_round_trip() {
        for v in [0u128, 1, u128::MAX, u128::MAX >> 1, 1 << 127] {
            let id = TenantId::from_uuid(Uuid::from_u128(v));
            assert_eq!(id.to_string().parse::<TenantId>().unwrap(), id);
        }
    }

    #[test]
    fn text_order_follows_uuid_order() {
        let mut ids: Vec<TenantId> = (0..200).map(|_| TenantId::new()).collect();
        ids.sort();
        let mut texts: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        let sorted = texts.clone();
        texts.sort();
        assert_eq!(texts, sorted);
    }

    #[test]
    fn rejects_wrong_prefix_length_and_alphabet() {
        let good = TenantId::new().to_string();
        assert!(good.replace("ten_", "conn_").parse::<TenantId>().is_err());
        assert!(good[..good.len() - 1].parse::<TenantId>().is_err());
        assert!(format!("{good}0").parse::<TenantId>().is_err());
        assert!(good.replace(&good[5..6], "u").parse::<TenantId>().is_err());
        assert!("ten_".parse::<TenantId>().is_err());
        assert!("".parse::<TenantId>().is_err());
        // First character above 7 would overflow 128 bits.
        let overflow = format!("ten_8{}", "0".repeat(ENCODED_LEN - 1));
        assert!(overflow.parse::<TenantId>().is_err());
    }

    #[test]
    fn error_names_the_kind_and_truncates_long_input() {
        let err = "x".repeat(100).parse::<ConnectionId>().unwrap_err();
        assert_eq!(err.name, "connection");
        assert!(err.to_string().contains("conn_"));
        assert!(err.value.chars().count() <= 41);
    }
}
