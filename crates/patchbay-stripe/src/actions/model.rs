//! The catalogue's data model, as `catalog.json` declares it: an action is a
//! Stripe operation (method, path template, permission) and the fields its
//! `config` accepts, each with a type and, where the derivation would be
//! wrong, Stripe's own parameter name.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One action.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionDef {
    /// `stripe.createCustomer`
    pub name: String,
    /// What it does, for people.
    pub description: String,
    /// `GET`, `POST` or `DELETE`.
    pub method: HttpMethod,
    /// `/v1/customers/{customerId}`
    pub path: String,
    /// What it returns.
    pub kind: Kind,
    /// The restricted-key permission it needs (`rak_customer_write`).
    pub permission: String,
    /// The config fields, besides the common ones every action takes.
    #[serde(default)]
    pub params: BTreeMap<String, Param>,
    /// Example configs.
    pub examples: Vec<serde_json::Value>,
}

/// The HTTP method of the Stripe operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum HttpMethod {
    /// Reads.
    #[serde(rename = "GET")]
    Get,
    /// Creates, updates and actions.
    #[serde(rename = "POST")]
    Post,
    /// Deletes (and a few cancels).
    #[serde(rename = "DELETE")]
    Delete,
}

impl HttpMethod {
    /// The method text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Delete => "DELETE",
        }
    }
}

/// What an action returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One object.
    Object,
    /// A list (`limit`, `startingAfter`, `endingBefore`, auto-pagination).
    List,
    /// A search result (`query`, `limit`, `page`).
    Search,
    /// A deleted object.
    Delete,
}

/// Where a field goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// A `{placeholder}` of the path.
    Path,
}

/// A config field.
#[derive(Debug, Clone, Deserialize)]
pub struct Param {
    /// Its type and constraints.
    #[serde(flatten)]
    pub ty: Ty,
    /// Whether Stripe requires it.
    #[serde(default)]
    pub required: bool,
    /// Stripe's parameter name, when it is not the snake_case of the key.
    #[serde(default)]
    pub stripe: Option<String>,
    /// `path` for the object an action works on; otherwise body or query.
    #[serde(default, rename = "in")]
    pub location: Option<Location>,
    /// For people.
    #[serde(default)]
    pub description: Option<String>,
}

/// Allowed id prefixes: one or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Prefixes {
    /// `cus_`
    One(String),
    /// `["ch_", "py_"]`
    Many(Vec<String>),
}

impl Prefixes {
    /// The prefixes as a list.
    pub fn list(&self) -> Vec<&str> {
        match self {
            Self::One(p) => vec![p.as_str()],
            Self::Many(ps) => ps.iter().map(String::as_str).collect(),
        }
    }
}

/// A field's type.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Ty {
    /// Text.
    String {
        /// Longest accepted.
        #[serde(default, rename = "maxLength")]
        max_length: Option<usize>,
    },
    /// A Stripe object id.
    Id {
        /// Its prefix(es).
        prefix: Prefixes,
    },
    /// A whole number.
    Integer {
        /// Smallest accepted (`1` where Stripe requires a positive amount).
        #[serde(default)]
        minimum: Option<i64>,
    },
    /// `true` or `false`.
    Boolean,
    /// A three-letter ISO currency code.
    Currency,
    /// Unix seconds.
    Timestamp,
    /// One of fixed values.
    Enum {
        /// The values.
        values: Vec<String>,
    },
    /// String pairs (`metadata[k]=v`).
    Metadata,
    /// A nested object with Stripe's own keys.
    Object {
        /// Its fields.
        properties: BTreeMap<String, Param>,
    },
    /// A list.
    Array {
        /// The type of each item.
        items: Box<Param>,
    },
    /// A creation-time filter: `gt`, `gte`, `lt`, `lte` Unix seconds.
    Range,
}

/// snake_case of a camelCase key (`trialPeriodDays` → `trial_period_days`).
pub fn snake_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

impl Param {
    /// Stripe's name for the field `key`.
    pub fn stripe_name(&self, key: &str) -> String {
        self.stripe.clone().unwrap_or_else(|| snake_case(key))
    }

    /// Whether it is a path placeholder.
    pub fn in_path(&self) -> bool {
        self.location == Some(Location::Path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_cases() {
        assert_eq!(snake_case("trialPeriodDays"), "trial_period_days");
        assert_eq!(snake_case("unitAmount"), "unit_amount");
        assert_eq!(snake_case("email"), "email");
    }
}
