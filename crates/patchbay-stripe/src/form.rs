//! Stripe's `application/x-www-form-urlencoded` bodies: nested objects as
//! `metadata[order_id]=6735`, arrays as `items[0][price]=price_1`, booleans as
//! `true`/`false`, and `null` as the empty string (which unsets a field).

use serde_json::Value;

/// Flattens a JSON object into the key/value pairs Stripe expects, in order.
pub fn flatten(value: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Value::Object(map) = value {
        for (key, v) in map {
            push(&mut out, key.clone(), v);
        }
    }
    out
}

fn push(out: &mut Vec<(String, String)>, key: String, value: &Value) {
    match value {
        Value::Null => out.push((key, String::new())),
        Value::Bool(b) => out.push((key, b.to_string())),
        Value::Number(n) => out.push((key, n.to_string())),
        Value::String(s) => out.push((key, s.clone())),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                push(out, format!("{key}[{i}]"), item);
            }
        }
        Value::Object(map) => {
            if map.is_empty() {
                // An empty object unsets the whole hash, as `metadata=` does.
                out.push((key, String::new()));
                return;
            }
            for (k, v) in map {
                push(out, format!("{key}[{k}]"), v);
            }
        }
    }
}

/// Encodes pairs as a form body (or query string).
pub fn encode(pairs: &[(String, String)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        serializer.append_pair(k, v);
    }
    serializer.finish()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Sorted, since object key order depends on serde_json's features.
    fn pairs(v: Value) -> Vec<(String, String)> {
        let mut out = flatten(&v);
        out.sort();
        out
    }

    fn p(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn encodes_like_stripe() {
        let got = pairs(json!({
            "email": "a@b.co",
            "metadata": {"order_id": 6735, "gift": true, "note": null},
            "items": [{"price": "price_1", "quantity": 2}, {"price": "price_2"}],
            "expand": ["customer", "data.latest_invoice"],
            "amount": 1999
        }));
        let mut want = vec![
            p("email", "a@b.co"),
            p("metadata[order_id]", "6735"),
            p("metadata[gift]", "true"),
            p("metadata[note]", ""),
            p("items[0][price]", "price_1"),
            p("items[0][quantity]", "2"),
            p("items[1][price]", "price_2"),
            p("expand[0]", "customer"),
            p("expand[1]", "data.latest_invoice"),
            p("amount", "1999"),
        ];
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn empty_hash_unsets_and_encoding_escapes() {
        assert_eq!(pairs(json!({"metadata": {}})), vec![p("metadata", "")]);
        assert_eq!(
            encode(&[p("metadata[a b]", "x&y=z")]),
            "metadata%5Ba+b%5D=x%26y%3Dz"
        );
        assert!(pairs(json!("not an object")).is_empty());
    }
}
