//! What the request path pays to open a connection's Stripe key: unwrap the
//! tenant's data key with the master key, then open the sealed secret.
//! Run: `cargo bench -p patchbay-vault --bench vault`.

use criterion::{Criterion, criterion_group, criterion_main};
use patchbay_core::TenantId;
use patchbay_vault::{Keyring, SecretContext, generate_master_key};
use secrecy::SecretString;

fn open_connection_secret(c: &mut Criterion) {
    let ring = Keyring::parse(&generate_master_key("k1").unwrap()).unwrap();
    let tenant = TenantId::new();
    let (record, key) = ring.new_data_key(tenant).unwrap();
    let record_id = "conn_01jq3v6k8e9r0f7t5b2n4m6p8s";
    let ctx = SecretContext {
        tenant,
        record: record_id,
        field: "api_key",
    };
    let secret = SecretString::from(format!("sk_live_{}", "x".repeat(99)));
    let sealed = key.seal(ctx, &secret).unwrap();

    c.bench_function("open secret (unwrap data key + open)", |b| {
        b.iter(|| {
            let key = ring.open_data_key(std::hint::black_box(&record)).unwrap();
            key.open(ctx, std::hint::black_box(&sealed)).unwrap()
        })
    });
    c.bench_function("open secret (data key already unwrapped)", |b| {
        b.iter(|| key.open(ctx, std::hint::black_box(&sealed)).unwrap())
    });
    c.bench_function("seal secret", |b| {
        b.iter(|| key.seal(ctx, std::hint::black_box(&secret)).unwrap())
    });
}

criterion_group!(benches, open_connection_secret);
criterion_main!(benches);
