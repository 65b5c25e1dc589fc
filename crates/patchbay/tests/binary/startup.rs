//! Start-up: the embedded default needs no configuration; a keyring that does
//! not match the data stops the server before it touches anything.

use serde_json::json;

use crate::support::{ADMIN, Client, Env, PgSchema, Server, data_dir, master_key};

#[tokio::test]
async fn the_default_needs_no_configuration_and_names_the_admin_token_file_without_printing_it() {
    let (_tmp, data) = data_dir();
    let env = Env::new(&data);
    let server = Server::start(&env).await;
    let token = std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(token.starts_with("pba_"));
    #[cfg(unix)]
    for file in ["admin-token", "master.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file} is private");
    }
    let client = Client::new(&server);
    let (status, _) = client
        .post("/api/v1/tenants", &token, json!({"name": "x"}))
        .await;
    assert_eq!(status, 201);
    let (_, out) = server.stop();
    assert!(
        !out.contains(&token),
        "stderr is a pipe here (a log collector): the token is not printed"
    );
    assert!(
        out.contains(&data.join("admin-token").display().to_string()),
        "where to read it is: {out}"
    );
    assert!(out.contains("DEVELOPMENT master key"), "warns loudly");

    let server = Server::start(&env).await;
    let client = Client::new(&server);
    let (status, list) = client.get("/api/v1/tenants", &token).await;
    assert_eq!(status, 200);
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        1,
        "data survives a restart"
    );
    let (status, out) = server.stop();
    assert!(status.success());
    assert!(!out.contains(&token), "not printed again");
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_the_database_files_are_the_owners_only() {
    use std::os::unix::fs::PermissionsExt;

    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let files = ["patchbay.db", "patchbay.db-wal", "patchbay.db-shm"];
    let (_tmp, data) = data_dir();
    let env = Env::new(&data);
    let server = Server::start(&env).await;
    let token = std::fs::read_to_string(data.join("admin-token")).unwrap();
    let (status, _) = Client::new(&server)
        .post("/api/v1/tenants", token.trim(), json!({"name": "x"}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(mode(&data), 0o700, "the data directory");
    for file in files {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}, while serving");
    }
    server.stop();

    // Files left readable by an older version are made private at start.
    for file in files {
        let path = data.join(file);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let server = Server::start(&env).await;
    for file in files {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}, after a restart");
    }
    server.stop();
}

#[tokio::test]
async fn a_missing_or_wrong_master_key_refuses_to_start() {
    let (_tmp, data) = data_dir();
    let k1 = master_key("k1");
    let env = Env::new(&data)
        .set("PATCHBAY_MASTER_KEYS", &k1)
        .set("PATCHBAY_ADMIN_TOKEN", ADMIN);
    let server = Server::start(&env).await;
    let (status, _) = Client::new(&server)
        .post("/api/v1/tenants", ADMIN, json!({"name": "x"}))
        .await;
    assert_eq!(status, 201);
    server.stop();

    let only_k2 = env.clone().set("PATCHBAY_MASTER_KEYS", master_key("k2"));
    let out = only_k2.run(&["serve"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'k1'") && err.contains("not configured"),
        "{err}"
    );

    let wrong_k1 = env.clone().set("PATCHBAY_MASTER_KEYS", master_key("k1"));
    for args in [&["serve"][..], &["keys", "rotate"], &["keys", "status"]] {
        let out = wrong_k1.run(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("master key 'k1' does not open"),
            "{args:?}: {err}"
        );
        assert!(!err.contains(&k1[3..]), "no key material in messages");
    }

    // Nothing was changed by the refusals: the right key still works.
    let server = Server::start(&env).await;
    let (status, list) = Client::new(&server).get("/api/v1/tenants", ADMIN).await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    server.stop();
}

#[tokio::test]
async fn serve_needs_explicit_keys_and_token_on_postgres() {
    let Some(pg) = PgSchema::create().await else {
        return;
    };
    let (_tmp, data) = data_dir();
    let env = Env::new(&data)
        .unset("PATCHBAY_SESSION_SIGNING_KEY")
        .set("PATCHBAY_DATABASE_URL", &pg.url);
    let out = env.run(&["serve"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PATCHBAY_MASTER_KEYS"));
    let k1 = master_key("k1");
    let out = env.clone().set("PATCHBAY_MASTER_KEYS", &k1).run(&["serve"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PATCHBAY_ADMIN_TOKEN"));
    let out = env
        .clone()
        .set("PATCHBAY_MASTER_KEYS", &k1)
        .set("PATCHBAY_ADMIN_TOKEN", ADMIN)
        .run(&["serve"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PATCHBAY_SESSION_SIGNING_KEY"));
    assert!(
        !data.join("master.key").exists() && !data.join("session.key").exists(),
        "no development keys for PostgreSQL"
    );
    // A start refused for configuration touched nothing: another k1 would still be accepted.
    let env = env
        .set("PATCHBAY_MASTER_KEYS", master_key("k1"))
        .set("PATCHBAY_ADMIN_TOKEN", ADMIN)
        .set(
            "PATCHBAY_SESSION_SIGNING_KEY",
            "test-session-signing-key-of-at-least-32-bytes",
        );
    let out = env.run(&["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::start(&env).await;
    let (status, ready) = Client::new(&server).get("/readyz", ADMIN).await;
    assert_eq!(status, 200);
    assert_eq!(ready["database"], "postgres");
    server.stop();
    pg.drop_schema().await;
}

#[tokio::test]
async fn bad_configuration_is_named() {
    let (_tmp, data) = data_dir();
    for (key, value, expect) in [
        ("PATCHBAY_LISTNE", "x", "PATCHBAY_LISTNE"),
        ("PATCHBAY_ADMIN_TOKEN", "short", "at least 32 characters"),
        ("PATCHBAY_MASTER_KEYS", "k1:not-base64", "master key 'k1'"),
        (
            "PATCHBAY_REVALIDATE_EVERY",
            "often",
            "PATCHBAY_REVALIDATE_EVERY",
        ),
    ] {
        let out = Env::new(&data).set(key, value).run(&["serve"]);
        assert!(!out.status.success(), "{key}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{key}: {err}");
    }
}
