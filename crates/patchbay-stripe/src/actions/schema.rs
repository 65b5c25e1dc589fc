//! JSON Schema (draft 2020-12) of an action's `config`, for `GET /api/v1/actions`:
//! every property says where it goes at Stripe (`x-stripe-name`,
//! `x-stripe-in`: `path`, `body` or `query`), so the catalogue can be checked
//! against Stripe's OpenAPI document field by field.

use serde_json::{Map, Value, json};

use super::model::{ActionDef, HttpMethod, Kind, Param, Ty};

/// The schema of `def`'s config.
pub fn config_schema(def: &ActionDef) -> Value {
    let place = if def.method == HttpMethod::Post {
        "body"
    } else {
        "query"
    };
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (key, param) in &def.params {
        let mut schema = param_schema(param);
        let stripe = if param.in_path() {
            key.clone()
        } else {
            param.stripe_name(key)
        };
        if let Value::Object(m) = &mut schema {
            m.insert("x-stripe-name".into(), json!(stripe));
            m.insert(
                "x-stripe-in".into(),
                json!(if param.in_path() { "path" } else { place }),
            );
        }
        properties.insert(key.clone(), schema);
        if param.required {
            required.push(key.clone());
        }
    }
    let stripe_common = |name: &str, schema: Value| {
        let mut schema = schema;
        if let Value::Object(m) = &mut schema {
            m.insert("x-stripe-name".into(), json!(name));
            m.insert("x-stripe-in".into(), json!(place));
        }
        schema
    };
    if def.kind != Kind::Delete {
        properties.insert(
            "expand".into(),
            stripe_common("expand", json!({"type": "array", "items": {"type": "string"}, "description": "Fields to expand (Stripe's expand[])."})),
        );
    }
    properties.insert(
        "stripeAccount".into(),
        json!({"type": "string", "pattern": "^acct_[A-Za-z0-9]+$", "x-patchbay": true, "description": "Act on this connected account (Stripe-Account header)."}),
    );
    properties.insert(
        "stripeVersion".into(),
        json!({"type": "string", "x-patchbay": true, "description": "Stripe-Version for this call (overrides the connection's pin)."}),
    );
    if def.method == HttpMethod::Post {
        properties.insert(
            "idempotencyKey".into(),
            json!({"type": "string", "maxLength": 255, "x-patchbay": true, "description": "Idempotency-Key for this call; generated when absent, the same across Patchbay's retries."}),
        );
    }
    match def.kind {
        Kind::List => {
            properties.insert(
                "limit".into(),
                stripe_common(
                    "limit",
                    json!({"type": "integer", "minimum": 1, "maximum": 100}),
                ),
            );
            properties.insert(
                "startingAfter".into(),
                stripe_common("starting_after", json!({"type": "string"})),
            );
            properties.insert(
                "endingBefore".into(),
                stripe_common("ending_before", json!({"type": "string"})),
            );
            properties.insert("autoPaginate".into(), json!({"type": "boolean", "x-patchbay": true, "description": "Follow pages for you (needs maxItems)."}));
            properties.insert("maxItems".into(), json!({"type": "integer", "minimum": 1, "maximum": super::encode::MAX_ITEMS, "x-patchbay": true}));
        }
        Kind::Search => {
            properties.insert(
                "query".into(),
                stripe_common("query", json!({"type": "string", "minLength": 1})),
            );
            properties.insert(
                "limit".into(),
                stripe_common(
                    "limit",
                    json!({"type": "integer", "minimum": 1, "maximum": 100}),
                ),
            );
            properties.insert(
                "page".into(),
                stripe_common("page", json!({"type": "string"})),
            );
            required.push("query".into());
        }
        Kind::Object | Kind::Delete => {}
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": false,
        "properties": properties,
        "required": required,
    })
}

fn param_schema(param: &Param) -> Value {
    let mut schema = match &param.ty {
        Ty::String { max_length } => match max_length {
            Some(max) => json!({"type": "string", "maxLength": max}),
            None => json!({"type": "string"}),
        },
        Ty::Id { prefix } => {
            let alternatives: Vec<String> = prefix.list().iter().map(|p| format!("^{p}")).collect();
            json!({"type": "string", "pattern": alternatives.join("|")})
        }
        Ty::Integer { minimum } => match minimum {
            Some(min) => json!({"type": "integer", "minimum": min}),
            None => json!({"type": "integer"}),
        },
        Ty::Boolean => json!({"type": "boolean"}),
        Ty::Currency => json!({"type": "string", "pattern": "^[A-Za-z]{3}$"}),
        Ty::Timestamp => json!({"type": "integer", "minimum": 0, "format": "unix-time"}),
        Ty::Enum { values } => json!({"type": "string", "enum": values}),
        Ty::Metadata => {
            json!({"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 50})
        }
        Ty::Object { properties } => {
            let mut props = Map::new();
            let mut required = Vec::new();
            for (key, p) in properties {
                let mut s = param_schema(p);
                if let Value::Object(m) = &mut s {
                    m.insert("x-stripe-name".into(), json!(p.stripe_name(key)));
                }
                props.insert(key.clone(), s);
                if p.required {
                    required.push(key.clone());
                }
            }
            json!({"type": "object", "additionalProperties": false, "properties": props, "required": required})
        }
        Ty::Array { items } => json!({"type": "array", "items": param_schema(items)}),
        Ty::Range => json!({
            "type": "object", "additionalProperties": false,
            "properties": {"gt": {"type": "integer"}, "gte": {"type": "integer"}, "lt": {"type": "integer"}, "lte": {"type": "integer"}}
        }),
    };
    if let (Some(description), Value::Object(m)) = (&param.description, &mut schema) {
        m.insert("description".into(), json!(description));
    }
    schema
}
