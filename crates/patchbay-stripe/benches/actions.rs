//! What validating and encoding an action's config costs on the request path
//! (goal: under 20 µs for a typical config). Run: `cargo bench -p patchbay-stripe --bench actions`.

use criterion::{Criterion, criterion_group, criterion_main};
use patchbay_stripe::actions::{Catalog, prepare};
use serde_json::json;

fn validate_and_encode(c: &mut Criterion) {
    let catalog = Catalog::builtin();
    let create = catalog
        .get("stripe.createCustomer")
        .expect("createCustomer is in the catalogue");
    let config = json!({
        "email": "jane@example.com", "name": "Jane Doe",
        "address": {"line1": "1 Main St", "city": "San Francisco", "postal_code": "94107", "country": "US"},
        "metadata": {"source": "workflow", "order": "6735"},
        "expand": ["tax"]
    });
    c.bench_function("prepare stripe.createCustomer (typical config)", |b| {
        b.iter(|| prepare(create, std::hint::black_box(&config)).unwrap())
    });
    let list = catalog
        .get("stripe.listCustomers")
        .expect("listCustomers is in the catalogue");
    let config = json!({"email": "jane@example.com", "limit": 100, "startingAfter": "cus_123"});
    c.bench_function("prepare stripe.listCustomers", |b| {
        b.iter(|| prepare(list, std::hint::black_box(&config)).unwrap())
    });
    let body = json!({"action": "stripe.createCustomer", "config": {"email": "jane@example.com", "metadata": {"k": "v"}}}).to_string();
    c.bench_function("parse body + look up + prepare + form-encode", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_str(std::hint::black_box(&body)).unwrap();
            let def = catalog.get(v["action"].as_str().unwrap()).unwrap();
            let call = prepare(def, &v["config"]).unwrap();
            patchbay_stripe::form::encode(&call.pairs)
        })
    });
}

criterion_group!(benches, validate_and_encode);
criterion_main!(benches);
