//! Free-form key/value metadata with Stripe's limits (50 keys, keys up to 40
//! characters, values up to 500) and merge-patch updates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// Most keys one object may carry.
pub const MAX_KEYS: usize = 50;
/// Longest key, in characters.
pub const MAX_KEY_CHARS: usize = 40;
/// Longest value, in characters.
pub const MAX_VALUE_CHARS: usize = 500;

/// Validated metadata: string keys to string values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = BTreeMap<String, String>, example = json!({"order_id": "6735"}))]
pub struct Metadata(BTreeMap<String, String>);

/// A metadata update: a string sets a key; `null` or an empty string removes it.
pub type MetadataPatch = BTreeMap<String, Option<String>>;

impl Metadata {
    /// Validates a complete metadata map; `param` prefixes field names in errors.
    pub fn new(map: BTreeMap<String, String>, param: &str) -> Result<Self, ValidationError> {
        let metadata = Self(map);
        metadata.check(param)?;
        Ok(metadata)
    }

    /// The pairs, sorted by key.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// Applies a merge patch, then checks the limits on the result.
    pub fn patched(&self, patch: MetadataPatch, param: &str) -> Result<Self, ValidationError> {
        let mut map = self.0.clone();
        for (key, value) in patch {
            match value {
                Some(v) if !v.is_empty() => {
                    map.insert(key, v);
                }
                _ => {
                    check_key(&key, param)?;
                    map.remove(&key);
                }
            }
        }
        Self::new(map, param)
    }

    fn check(&self, param: &str) -> Result<(), ValidationError> {
        if self.0.len() > MAX_KEYS {
            return Err(ValidationError::invalid(
                param.to_owned(),
                format!("{param} can have at most {MAX_KEYS} keys."),
            ));
        }
        for (key, value) in &self.0 {
            check_key(key, param)?;
            if value.chars().count() > MAX_VALUE_CHARS {
                return Err(ValidationError::invalid(
                    format!("{param}.{key}"),
                    format!("Metadata values can be at most {MAX_VALUE_CHARS} characters."),
                ));
            }
        }
        Ok(())
    }
}

fn check_key(key: &str, param: &str) -> Result<(), ValidationError> {
    if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
        return Err(ValidationError::invalid(
            format!("{param}.{key}"),
            format!("Metadata keys must be 1 to {MAX_KEY_CHARS} characters."),
        ));
    }
    if key.contains(['[', ']']) {
        return Err(ValidationError::invalid(
            format!("{param}.{key}"),
            "Metadata keys cannot contain '[' or ']'.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn enforces_limits_and_names_the_field() {
        assert!(Metadata::new(map(&[("a", "b")]), "metadata").is_ok());
        let long_key = "k".repeat(41);
        let err = Metadata::new(map(&[(&long_key, "v")]), "metadata").unwrap_err();
        assert_eq!(err.param, format!("metadata.{long_key}"));
        let err = Metadata::new(map(&[("k", &"v".repeat(501))]), "metadata").unwrap_err();
        assert_eq!(err.param, "metadata.k");
        let many: BTreeMap<_, _> = (0..51).map(|i| (i.to_string(), "v".into())).collect();
        assert_eq!(
            Metadata::new(many, "metadata").unwrap_err().param,
            "metadata"
        );
        assert!(Metadata::new(map(&[("", "v")]), "metadata").is_err());
    }

    #[test]
    fn patch_sets_and_removes() {
        let m = Metadata::new(map(&[("a", "1"), ("b", "2"), ("c", "3")]), "metadata").unwrap();
        let patch: MetadataPatch = [
            ("a".to_string(), Some("x".to_string())),
            ("b".to_string(), None),
            ("c".to_string(), Some(String::new())),
            ("d".to_string(), Some("4".to_string())),
        ]
        .into_iter()
        .collect();
        let m = m.patched(patch, "metadata").unwrap();
        assert_eq!(m.as_map(), &map(&[("a", "x"), ("d", "4")]));
    }
}
