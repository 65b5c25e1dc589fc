//! Validates an action's `config` and encodes it as Stripe expects, before
//! anything is sent: unknown fields, wrong types, missing required fields,
//! bad amounts, currencies and list bounds are refused naming the field.
//! Nested objects encode as `address[line1]`, arrays as `items[0][price]`,
//! metadata as `metadata[k]`, booleans as `true`/`false`.

use serde_json::{Map, Value};

use super::model::{ActionDef, HttpMethod, Kind, Param, Ty};

/// A refused config: the field (`config.address.line1`), a code and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field at fault, as the caller wrote it, prefixed `config.`.
    pub param: String,
    /// `parameter_unknown`, `parameter_missing`, `parameter_invalid`.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self {
            param: format!("config.{param}"),
            code: "parameter_invalid",
            message: message.into(),
        }
    }
}

/// Auto-pagination of a list action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoPaginate {
    /// Most items returned.
    pub max_items: u32,
}

/// A validated call, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedCall {
    /// The method.
    pub method: HttpMethod,
    /// The path with its placeholders filled.
    pub path: String,
    /// Form pairs (POST) or query pairs (GET, DELETE), in Stripe's encoding.
    pub pairs: Vec<(String, String)>,
    /// `Stripe-Account` the caller asked for.
    pub stripe_account: Option<String>,
    /// `Stripe-Version` the caller asked for.
    pub stripe_version: Option<String>,
    /// `Idempotency-Key` the caller gave (POST only).
    pub idempotency_key: Option<String>,
    /// Follow `starting_after` for the caller.
    pub auto_paginate: Option<AutoPaginate>,
}

/// Longest `maxItems`.
pub const MAX_ITEMS: u32 = 10_000;

/// The common fields every action accepts (besides its own).
fn common_fields(def: &ActionDef) -> Vec<&'static str> {
    // Stripe's deletes take no parameters at all, not even expand.
    let mut fields = if def.kind == Kind::Delete {
        vec!["stripeAccount", "stripeVersion"]
    } else {
        vec!["expand", "stripeAccount", "stripeVersion"]
    };
    if def.method == HttpMethod::Post {
        fields.push("idempotencyKey");
    }
    match def.kind {
        Kind::List => fields.extend([
            "limit",
            "startingAfter",
            "endingBefore",
            "autoPaginate",
            "maxItems",
        ]),
        Kind::Search => fields.extend(["query", "limit", "page"]),
        Kind::Object | Kind::Delete => {}
    }
    fields
}

/// Every field name `def` accepts (for suggestions and the schema).
pub fn accepted_fields(def: &ActionDef) -> Vec<String> {
    let mut all: Vec<String> = def.params.keys().cloned().collect();
    all.extend(common_fields(def).into_iter().map(str::to_owned));
    all
}

/// Validates `config` for `def` and encodes it.
pub fn prepare(def: &ActionDef, config: &Value) -> Result<PreparedCall, FieldError> {
    let empty = Map::new();
    let config = match config {
        Value::Object(map) => map,
        Value::Null => &empty,
        _ => {
            return Err(FieldError {
                param: "config".into(),
                code: "parameter_invalid",
                message: "config must be a JSON object.".into(),
            });
        }
    };
    let common = common_fields(def);
    for key in config.keys() {
        if !def.params.contains_key(key) && !common.contains(&key.as_str()) {
            let accepted = accepted_fields(def);
            let near = super::nearest(key, accepted.iter().map(String::as_str), 3);
            return Err(FieldError {
                param: format!("config.{key}"),
                code: "parameter_unknown",
                message: format!(
                    "{} does not take '{key}'.{}",
                    def.name,
                    if near.is_empty() {
                        String::new()
                    } else {
                        format!(" Did you mean {}?", near.join(", "))
                    }
                ),
            });
        }
    }
    let mut path = def.path.clone();
    let mut pairs = Vec::new();
    for (key, param) in &def.params {
        let Some(value) = config.get(key).filter(|v| !v.is_null()) else {
            if param.required {
                return Err(FieldError {
                    param: format!("config.{key}"),
                    code: "parameter_missing",
                    message: format!("{} needs '{key}'.", def.name),
                });
            }
            continue;
        };
        if param.in_path() {
            let id = path_segment(key, param, value)?;
            path = path.replace(&format!("{{{key}}}"), &id);
        } else {
            encode(key, &param.stripe_name(key), param, value, &mut pairs)?;
        }
    }
    let text = |key: &str| -> Result<Option<String>, FieldError> {
        match config.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(FieldError::invalid(
                key,
                format!("{key} must be a non-empty string."),
            )),
        }
    };
    if let Some(expand) = config.get("expand").filter(|v| !v.is_null()) {
        let items = expand
            .as_array()
            .filter(|a| a.iter().all(Value::is_string))
            .ok_or_else(|| {
                FieldError::invalid(
                    "expand",
                    "expand must be a list of field paths, e.g. [\"customer\"].",
                )
            })?;
        for (i, item) in items.iter().enumerate() {
            pairs.push((
                format!("expand[{i}]"),
                item.as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    let stripe_account = text("stripeAccount")?;
    if let Some(account) = &stripe_account
        && !crate::oauth::is_account_id(account)
    {
        return Err(FieldError::invalid(
            "stripeAccount",
            "stripeAccount must be a connected account id (acct_…).",
        ));
    }
    let stripe_version = text("stripeVersion")?
        .map(|v| {
            crate::validate_stripe_version(&v)
                .map_err(|e| FieldError::invalid("stripeVersion", e.message))
        })
        .transpose()?;
    let idempotency_key = text("idempotencyKey")?;
    if idempotency_key
        .as_ref()
        .is_some_and(|k| k.len() > 255 || k.chars().any(char::is_control))
    {
        return Err(FieldError::invalid(
            "idempotencyKey",
            "idempotencyKey must be at most 255 characters, without control characters.",
        ));
    }
    let mut auto_paginate = None;
    match def.kind {
        Kind::List => {
            let limit = integer(config, "limit")?;
            if let Some(limit) = limit {
                if !(1..=100).contains(&limit) {
                    return Err(FieldError::invalid(
                        "limit",
                        "limit must be between 1 and 100.",
                    ));
                }
                pairs.push(("limit".into(), limit.to_string()));
            }
            let after = text("startingAfter")?;
            let before = text("endingBefore")?;
            if after.is_some() && before.is_some() {
                return Err(FieldError::invalid(
                    "endingBefore",
                    "startingAfter and endingBefore cannot be used together.",
                ));
            }
            if let Some(a) = after {
                pairs.push(("starting_after".into(), a));
            }
            if let Some(b) = before {
                pairs.push(("ending_before".into(), b));
            }
            let auto = match config.get("autoPaginate") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(FieldError::invalid(
                        "autoPaginate",
                        "autoPaginate must be true or false.",
                    ));
                }
            };
            let max_items = integer(config, "maxItems")?;
            match (auto, max_items) {
                (true, _) if pairs.iter().any(|(k, _)| k == "ending_before") => {
                    return Err(FieldError::invalid(
                        "endingBefore",
                        "autoPaginate pages forward (startingAfter); it cannot start from endingBefore.",
                    ));
                }
                (true, Some(n)) if (1..=i64::from(MAX_ITEMS)).contains(&n) => {
                    auto_paginate = Some(AutoPaginate {
                        max_items: n as u32,
                    });
                }
                (true, Some(_)) => {
                    return Err(FieldError::invalid(
                        "maxItems",
                        format!("maxItems must be between 1 and {MAX_ITEMS}."),
                    ));
                }
                (true, None) => {
                    return Err(FieldError {
                        param: "config.maxItems".into(),
                        code: "parameter_missing",
                        message: format!("autoPaginate needs maxItems (at most {MAX_ITEMS})."),
                    });
                }
                (false, Some(_)) => {
                    return Err(FieldError::invalid(
                        "maxItems",
                        "maxItems goes with \"autoPaginate\": true.",
                    ));
                }
                (false, None) => {}
            }
        }
        Kind::Search => {
            let query = text("query")?.ok_or_else(|| FieldError {
                param: "config.query".into(),
                code: "parameter_missing",
                message: format!(
                    "{} needs a Stripe search query, e.g. \"email:'jane@example.com'\".",
                    def.name
                ),
            })?;
            pairs.push(("query".into(), query));
            if let Some(limit) = integer(config, "limit")? {
                if !(1..=100).contains(&limit) {
                    return Err(FieldError::invalid(
                        "limit",
                        "limit must be between 1 and 100.",
                    ));
                }
                pairs.push(("limit".into(), limit.to_string()));
            }
            if let Some(page) = text("page")? {
                pairs.push(("page".into(), page));
            }
        }
        Kind::Object | Kind::Delete => {}
    }
    Ok(PreparedCall {
        method: def.method,
        path,
        pairs,
        stripe_account,
        stripe_version,
        idempotency_key,
        auto_paginate,
    })
}

fn integer(config: &Map<String, Value>, key: &str) -> Result<Option<i64>, FieldError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64()),
        Some(_) => Err(FieldError::invalid(
            key,
            format!("{key} must be an integer."),
        )),
    }
}

/// A path placeholder's value: an id of the right prefix, plain characters only.
fn path_segment(key: &str, param: &Param, value: &Value) -> Result<String, FieldError> {
    let Value::String(id) = value else {
        return Err(FieldError::invalid(
            key,
            format!("{key} must be a string id."),
        ));
    };
    check_id(key, param, id)?;
    Ok(id.clone())
}

fn check_id(field: &str, param: &Param, id: &str) -> Result<(), FieldError> {
    let plain = !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !plain {
        return Err(FieldError::invalid(
            field,
            format!("{field} must be a Stripe id (letters, digits and '_')."),
        ));
    }
    if let Ty::Id { prefix } = &param.ty {
        let prefixes = prefix.list();
        if !prefixes.iter().any(|p| id.starts_with(p)) {
            return Err(FieldError::invalid(
                field,
                format!(
                    "{field} must be an id starting with {}.",
                    prefixes.join(" or ")
                ),
            ));
        }
    }
    Ok(())
}

/// Encodes one field (recursively) into `pairs` under the Stripe name `name`.
fn encode(
    field: &str,
    name: &str,
    param: &Param,
    value: &Value,
    pairs: &mut Vec<(String, String)>,
) -> Result<(), FieldError> {
    match (&param.ty, value) {
        (Ty::String { max_length }, Value::String(s)) => {
            if max_length.is_some_and(|max| s.chars().count() > max) {
                return Err(FieldError::invalid(
                    field,
                    format!(
                        "{field} must be at most {} characters.",
                        max_length.unwrap_or_default()
                    ),
                ));
            }
            pairs.push((name.to_owned(), s.clone()));
        }
        (Ty::Id { .. }, Value::String(s)) => {
            check_id(field, param, s)?;
            pairs.push((name.to_owned(), s.clone()));
        }
        (Ty::Integer { minimum }, Value::Number(n)) => {
            let Some(i) = n.as_i64() else {
                return Err(FieldError::invalid(
                    field,
                    format!(
                        "{field} must be an integer (amounts are in the smallest currency unit, e.g. cents)."
                    ),
                ));
            };
            if let Some(min) = minimum
                && i < *min
            {
                return Err(FieldError::invalid(
                    field,
                    if *min == 1 {
                        format!("{field} must be a positive integer.")
                    } else {
                        format!("{field} must be at least {min}.")
                    },
                ));
            }
            pairs.push((name.to_owned(), i.to_string()));
        }
        (Ty::Timestamp, Value::Number(n)) => {
            let i = n.as_i64().filter(|i| *i >= 0).ok_or_else(|| {
                FieldError::invalid(
                    field,
                    format!("{field} must be a Unix timestamp in seconds."),
                )
            })?;
            pairs.push((name.to_owned(), i.to_string()));
        }
        (Ty::Boolean, Value::Bool(b)) => pairs.push((name.to_owned(), b.to_string())),
        (Ty::Currency, Value::String(s)) => {
            if s.len() != 3 || !s.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(FieldError::invalid(
                    field,
                    format!("{field} must be a three-letter ISO currency code, e.g. usd."),
                ));
            }
            pairs.push((name.to_owned(), s.to_ascii_lowercase()));
        }
        (Ty::Enum { values }, Value::String(s)) => {
            if !values.contains(s) {
                return Err(FieldError::invalid(
                    field,
                    format!("{field} must be one of: {}.", values.join(", ")),
                ));
            }
            pairs.push((name.to_owned(), s.clone()));
        }
        (Ty::Metadata, Value::Object(map)) => {
            if map.len() > 50 {
                return Err(FieldError::invalid(
                    field,
                    format!("{field} may have at most 50 keys."),
                ));
            }
            for (k, v) in map {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(FieldError::invalid(
                            &format!("{field}.{k}"),
                            "metadata values must be strings.",
                        ));
                    }
                };
                if k.is_empty() || k.chars().count() > 40 || text.chars().count() > 500 {
                    return Err(FieldError::invalid(
                        &format!("{field}.{k}"),
                        "metadata keys are 1 to 40 characters and values at most 500.",
                    ));
                }
                pairs.push((format!("{name}[{k}]"), text));
            }
        }
        (Ty::Object { properties }, Value::Object(map)) => {
            for key in map.keys() {
                if !properties.contains_key(key) {
                    let near = super::nearest(key, properties.keys().map(String::as_str), 3);
                    return Err(FieldError {
                        param: format!("config.{field}.{key}"),
                        code: "parameter_unknown",
                        message: format!(
                            "{field} does not take '{key}'.{}",
                            if near.is_empty() {
                                String::new()
                            } else {
                                format!(" Did you mean {}?", near.join(", "))
                            }
                        ),
                    });
                }
            }
            for (key, prop) in properties {
                let sub_field = format!("{field}.{key}");
                match map.get(key).filter(|v| !v.is_null()) {
                    Some(v) => encode(
                        &sub_field,
                        &format!("{name}[{}]", prop.stripe_name(key)),
                        prop,
                        v,
                        pairs,
                    )?,
                    None if prop.required => {
                        return Err(FieldError {
                            param: format!("config.{sub_field}"),
                            code: "parameter_missing",
                            message: format!("{field} needs '{key}'."),
                        });
                    }
                    None => {}
                }
            }
        }
        (Ty::Array { items }, Value::Array(values)) => {
            if values.len() > 250 {
                return Err(FieldError::invalid(
                    field,
                    format!("{field} may have at most 250 items."),
                ));
            }
            for (i, v) in values.iter().enumerate() {
                encode(
                    &format!("{field}[{i}]"),
                    &format!("{name}[{i}]"),
                    items,
                    v,
                    pairs,
                )?;
            }
        }
        (Ty::Range, Value::Object(map)) => {
            for (k, v) in map {
                if !matches!(k.as_str(), "gt" | "gte" | "lt" | "lte") {
                    return Err(FieldError::invalid(
                        &format!("{field}.{k}"),
                        format!("{field} takes gt, gte, lt and lte (Unix seconds)."),
                    ));
                }
                let i = v.as_i64().filter(|i| *i >= 0).ok_or_else(|| {
                    FieldError::invalid(&format!("{field}.{k}"), "a Unix timestamp in seconds.")
                })?;
                pairs.push((format!("{name}[{k}]"), i.to_string()));
            }
        }
        (ty, _) => {
            return Err(FieldError::invalid(
                field,
                format!("{field} must be {}.", describe(ty)),
            ));
        }
    }
    Ok(())
}

fn describe(ty: &Ty) -> &'static str {
    match ty {
        Ty::String { .. } => "a string",
        Ty::Id { .. } => "a Stripe id (a string)",
        Ty::Integer { .. } => "an integer",
        Ty::Boolean => "true or false",
        Ty::Currency => "a three-letter currency code",
        Ty::Timestamp => "a Unix timestamp in seconds",
        Ty::Enum { .. } => "one of its allowed values (a string)",
        Ty::Metadata => "an object of string values",
        Ty::Object { .. } => "an object",
        Ty::Array { .. } => "a list",
        Ty::Range => "an object with gt, gte, lt or lte",
    }
}
