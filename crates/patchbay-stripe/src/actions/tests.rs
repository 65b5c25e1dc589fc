use serde_json::json;

use super::*;

fn catalog() -> Catalog {
    Catalog::parse(
        r#"[
        {"name": "stripe.createPaymentIntent", "description": "d", "method": "POST", "path": "/v1/payment_intents",
         "kind": "object", "permission": "rak_payment_intent_write",
         "params": {
            "amount": {"type": "integer", "minimum": 1, "required": true},
            "currency": {"type": "currency", "required": true},
            "customerId": {"type": "id", "prefix": "cus_", "stripe": "customer"},
            "paymentMethodTypes": {"type": "array", "items": {"type": "string"}},
            "captureMethod": {"type": "enum", "values": ["automatic", "manual"]},
            "confirm": {"type": "boolean"},
            "metadata": {"type": "metadata"},
            "shipping": {"type": "object", "properties": {"name": {"type": "string", "required": true},
                "address": {"type": "object", "properties": {"line1": {"type": "string"}, "postal_code": {"type": "string"}}}}}
         },
         "examples": [{"amount": 2000, "currency": "usd"}]},
        {"name": "stripe.createSubscription", "description": "d", "method": "POST", "path": "/v1/subscriptions",
         "kind": "object", "permission": "rak_subscription_write",
         "params": {
            "customerId": {"type": "id", "prefix": "cus_", "stripe": "customer", "required": true},
            "items": {"type": "array", "items": {"type": "object", "properties": {"price": {"type": "id", "prefix": "price_"}, "quantity": {"type": "integer", "minimum": 1}}}},
            "trialPeriodDays": {"type": "integer", "minimum": 0}
         },
         "examples": [{"customerId": "cus_1", "items": [{"price": "price_1"}]}]},
        {"name": "stripe.cancelSubscription", "description": "d", "method": "DELETE", "path": "/v1/subscriptions/{subscriptionId}",
         "kind": "object", "permission": "rak_subscription_write",
         "params": {"subscriptionId": {"type": "id", "prefix": "sub_", "in": "path", "required": true},
                    "invoiceNow": {"type": "boolean"}, "prorate": {"type": "boolean"}},
         "examples": [{"subscriptionId": "sub_1"}]},
        {"name": "stripe.listCharges", "description": "d", "method": "GET", "path": "/v1/charges",
         "kind": "list", "permission": "rak_charge_read",
         "params": {"customerId": {"type": "id", "prefix": "cus_", "stripe": "customer"}, "created": {"type": "range"}},
         "examples": [{}]},
        {"name": "stripe.searchCustomers", "description": "d", "method": "GET", "path": "/v1/customers/search",
         "kind": "search", "permission": "rak_customer_read", "params": {},
         "examples": [{"query": "email:'a@b.c'"}]}
    ]"#,
    )
    .unwrap()
}

fn pairs(call: &PreparedCall) -> Vec<(&str, &str)> {
    call.pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn the_shipped_catalogue_loads_and_every_example_validates() {
    let catalog = Catalog::builtin();
    assert!(!catalog.actions().is_empty());
    for def in catalog.actions() {
        let schema = schema::config_schema(def);
        assert_eq!(schema["type"], "object", "{}", def.name);
    }
}

#[test]
fn configs_encode_as_stripe_expects() {
    let c = catalog();
    let def = c.get("stripe.createPaymentIntent").unwrap();
    let call = prepare(
        def,
        &json!({
            "amount": 2000, "currency": "USD", "customerId": "cus_9",
            "paymentMethodTypes": ["card", "link"], "captureMethod": "manual", "confirm": false,
            "metadata": {"order": "6735", "n": 2},
            "shipping": {"name": "Jane", "address": {"line1": "1 Main", "postal_code": "94107"}},
            "expand": ["customer", "latest_charge"], "idempotencyKey": "k-1", "stripeAccount": "acct_123456789"
        }),
    )
    .unwrap();
    let p = pairs(&call);
    for expected in [
        ("amount", "2000"),
        ("currency", "usd"),
        ("customer", "cus_9"),
        ("payment_method_types[0]", "card"),
        ("payment_method_types[1]", "link"),
        ("capture_method", "manual"),
        ("confirm", "false"),
        ("metadata[order]", "6735"),
        ("metadata[n]", "2"),
        ("shipping[name]", "Jane"),
        ("shipping[address][line1]", "1 Main"),
        ("shipping[address][postal_code]", "94107"),
        ("expand[0]", "customer"),
        ("expand[1]", "latest_charge"),
    ] {
        assert!(p.contains(&expected), "{expected:?} in {p:?}");
    }
    assert_eq!(call.idempotency_key.as_deref(), Some("k-1"));
    assert_eq!(call.stripe_account.as_deref(), Some("acct_123456789"));

    let sub = prepare(
        c.get("stripe.createSubscription").unwrap(),
        &json!({"customerId": "cus_1", "items": [{"price": "price_1", "quantity": 2}, {"price": "price_2"}], "trialPeriodDays": 14}),
    )
    .unwrap();
    assert_eq!(
        pairs(&sub),
        vec![
            ("customer", "cus_1"),
            ("items[0][price]", "price_1"),
            ("items[0][quantity]", "2"),
            ("items[1][price]", "price_2"),
            ("trial_period_days", "14"),
        ]
    );

    let cancel = prepare(
        c.get("stripe.cancelSubscription").unwrap(),
        &json!({"subscriptionId": "sub_7", "invoiceNow": true}),
    )
    .unwrap();
    assert_eq!(cancel.path, "/v1/subscriptions/sub_7");
    assert_eq!(pairs(&cancel), vec![("invoice_now", "true")]);
    assert_eq!(cancel.method, HttpMethod::Delete);

    let list = prepare(
        c.get("stripe.listCharges").unwrap(),
        &json!({"customerId": "cus_1", "created": {"gte": 100, "lt": 200}, "limit": 5, "startingAfter": "ch_9", "autoPaginate": true, "maxItems": 250}),
    )
    .unwrap();
    assert_eq!(list.auto_paginate, Some(AutoPaginate { max_items: 250 }));
    let p = pairs(&list);
    for expected in [
        ("created[gte]", "100"),
        ("created[lt]", "200"),
        ("limit", "5"),
        ("starting_after", "ch_9"),
        ("customer", "cus_1"),
    ] {
        assert!(p.contains(&expected), "{expected:?} in {p:?}");
    }
    let search = prepare(
        c.get("stripe.searchCustomers").unwrap(),
        &json!({"query": "email:'a@b.c'", "limit": 3}),
    )
    .unwrap();
    assert_eq!(
        pairs(&search),
        vec![("query", "email:'a@b.c'"), ("limit", "3")]
    );
}

#[test]
fn bad_configs_are_refused_naming_the_field() {
    let c = catalog();
    let pi = c.get("stripe.createPaymentIntent").unwrap();
    let refused = |def: &ActionDef, config: serde_json::Value| prepare(def, &config).unwrap_err();
    let cases = [
        (
            json!({"currency": "usd"}),
            "config.amount",
            "parameter_missing",
        ),
        (
            json!({"amount": 10.5, "currency": "usd"}),
            "config.amount",
            "parameter_invalid",
        ),
        (
            json!({"amount": "10", "currency": "usd"}),
            "config.amount",
            "parameter_invalid",
        ),
        (
            json!({"amount": 0, "currency": "usd"}),
            "config.amount",
            "parameter_invalid",
        ),
        (
            json!({"amount": -5, "currency": "usd"}),
            "config.amount",
            "parameter_invalid",
        ),
        (
            json!({"amount": 5, "currency": "dollars"}),
            "config.currency",
            "parameter_invalid",
        ),
        (
            json!({"amount": 5, "currency": "usd", "customerId": "acct_1"}),
            "config.customerId",
            "parameter_invalid",
        ),
        (
            json!({"amount": 5, "currency": "usd", "captureMethod": "later"}),
            "config.captureMethod",
            "parameter_invalid",
        ),
        (
            json!({"amount": 5, "currency": "usd", "confirm": "yes"}),
            "config.confirm",
            "parameter_invalid",
        ),
        (
            json!({"amount": 5, "currency": "usd", "amuont": 5}),
            "config.amuont",
            "parameter_unknown",
        ),
        (
            json!({"amount": 5, "currency": "usd", "shipping": {"address": {}}}),
            "config.shipping.name",
            "parameter_missing",
        ),
        (
            json!({"amount": 5, "currency": "usd", "shipping": {"name": "x", "adress": {}}}),
            "config.shipping.adress",
            "parameter_unknown",
        ),
        (
            json!({"amount": 5, "currency": "usd", "metadata": {"k": {"nested": 1}}}),
            "config.metadata.k",
            "parameter_invalid",
        ),
        (
            json!({"amount": 5, "currency": "usd", "stripeAccount": "evil"}),
            "config.stripeAccount",
            "parameter_invalid",
        ),
        (
            json!({"amount": 5, "currency": "usd", "stripeVersion": "latest"}),
            "config.stripeVersion",
            "parameter_invalid",
        ),
        (
            json!({"amount": 5, "currency": "usd", "limit": 5}),
            "config.limit",
            "parameter_unknown",
        ),
    ];
    for (config, param, code) in cases {
        let e = refused(pi, config.clone());
        assert_eq!(
            (e.param.as_str(), e.code),
            (param, code),
            "{config}: {}",
            e.message
        );
    }
    let unknown = refused(pi, json!({"amount": 5, "currency": "usd", "amuont": 5}));
    assert!(
        unknown.message.contains("amount"),
        "suggests the near name: {}",
        unknown.message
    );

    let list = c.get("stripe.listCharges").unwrap();
    for (config, param) in [
        (json!({"limit": 0}), "config.limit"),
        (json!({"limit": 101}), "config.limit"),
        (
            json!({"startingAfter": "ch_1", "endingBefore": "ch_2"}),
            "config.endingBefore",
        ),
        (json!({"autoPaginate": true}), "config.maxItems"),
        (
            json!({"autoPaginate": true, "maxItems": 10001}),
            "config.maxItems",
        ),
        (json!({"maxItems": 5}), "config.maxItems"),
        (json!({"created": {"since": 5}}), "config.created.since"),
    ] {
        assert_eq!(refused(list, config.clone()).param, param, "{config}");
    }
    let cancel = c.get("stripe.cancelSubscription").unwrap();
    assert_eq!(
        refused(cancel, json!({"subscriptionId": "sub_1/../x"})).param,
        "config.subscriptionId"
    );
    assert_eq!(refused(cancel, json!({})).code, "parameter_missing");
    assert_eq!(
        refused(c.get("stripe.searchCustomers").unwrap(), json!({})).param,
        "config.query"
    );
}

#[test]
fn unknown_names_get_near_suggestions() {
    let c = catalog();
    assert_eq!(
        c.suggest("stripe.createPaymentIntnet"),
        vec!["stripe.createPaymentIntent".to_owned()]
    );
    assert!(c.suggest("something.else.entirely").is_empty());
}

#[test]
fn schemas_say_where_each_field_goes() {
    let c = catalog();
    let s = schema::config_schema(c.get("stripe.createPaymentIntent").unwrap());
    assert_eq!(s["properties"]["customerId"]["x-stripe-name"], "customer");
    assert_eq!(s["properties"]["customerId"]["x-stripe-in"], "body");
    assert_eq!(
        s["properties"]["shipping"]["properties"]["address"]["x-stripe-name"],
        "address"
    );
    assert_eq!(s["required"], json!(["amount", "currency"]));
    let s = schema::config_schema(c.get("stripe.cancelSubscription").unwrap());
    assert_eq!(s["properties"]["subscriptionId"]["x-stripe-in"], "path");
    assert_eq!(s["properties"]["invoiceNow"]["x-stripe-in"], "query");
    assert_eq!(
        s["properties"]["invoiceNow"]["x-stripe-name"],
        "invoice_now"
    );
}

#[test]
fn bad_catalogues_are_refused_when_loaded() {
    for bad in [
        r#"[{"name": "x.y", "description": "d", "method": "GET", "path": "/v1/x", "kind": "object", "permission": "rak_x", "params": {}, "examples": [{}]}]"#,
        r#"[{"name": "stripe.y", "description": "d", "method": "GET", "path": "/v1/x/{xId}", "kind": "object", "permission": "rak_x", "params": {}, "examples": [{}]}]"#,
        r#"[{"name": "stripe.y", "description": "d", "method": "GET", "path": "/v1/x", "kind": "object", "permission": "rak_x", "params": {"a": {"type": "integer", "required": true}}, "examples": [{}]}]"#,
        r#"[{"name": "stripe.y", "description": "d", "method": "GET", "path": "/v1/x", "kind": "object", "permission": "x", "params": {}, "examples": [{}]}]"#,
        r#"[{"name": "stripe.y", "description": "d", "method": "PUT", "path": "/v1/x", "kind": "object", "permission": "rak_x", "params": {}, "examples": [{}]}]"#,
    ] {
        assert!(Catalog::parse(bad).is_err(), "{bad}");
    }
}
