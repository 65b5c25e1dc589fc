"""Stripe connections by API key, against localstripe as Stripe.

localstripe accepts any `sk_…` key, rejects `rk_…` keys with 401, and has no
`/v1/account`, so Patchbay's test call falls back to `/v1/balance`: connections
come out `active` with no Stripe account id."""

from datetime import timedelta

import pytest

from conftest import error, hint_of, now, ok, parse_time, stable, stripe_key, unique, wait_for


def test_create_with_a_secret_key(tenant):
    key = stripe_key()
    before = now()
    conn = tenant.connect(key, name="Main account", external_id="acct-42", metadata={"team": "billing"})
    assert conn["id"].startswith("conn_")
    assert conn["object"] == "connection"
    assert conn["tenant_id"] == tenant.id
    assert conn["provider"] == "stripe"
    assert conn["status"] == "active"
    assert conn["auth_method"] == "secret_key"
    assert conn["livemode"] is False
    assert conn["key_hint"] == hint_of(key)
    assert conn["key_hint"].startswith("sk_test_…") and conn["key_hint"].endswith(key[-4:])
    assert conn["stripe_account_id"] is None
    assert conn["external_id"] == "acct-42"
    assert conn["name"] == "Main account"
    assert conn["metadata"] == {"team": "billing"}
    assert conn["stripe_version"] is None
    assert conn["missing_permissions"] == []
    assert conn["last_error"] is None
    assert conn["previous_key_hint"] is None
    validated = parse_time(conn["last_validated_at"])
    assert before - timedelta(seconds=5) <= validated <= now() + timedelta(seconds=5)
    assert "api_key" not in conn

    assert stable(ok(tenant.api.get(f"/api/v1/connections/{conn['id']}"))) == stable(conn)
    assert [c["id"] for c in tenant.connections()] == [conn["id"]]


def test_create_live_mode_key(tenant):
    key = stripe_key(mode="live")
    conn = tenant.connect(key)
    assert conn["livemode"] is True
    assert conn["key_hint"] == hint_of(key)
    assert conn["key_hint"].startswith("sk_live_…")


def test_create_with_a_pinned_version(tenant):
    conn = tenant.connect(stripe_version="2026-10-28.endive")
    assert conn["stripe_version"] == "2026-10-28.endive"
    assert conn["status"] == "active"


def test_restricted_key_refused_by_stripe_stores_nothing(tenant):
    r = tenant.api.post("/api/v1/connections", json={"provider": "stripe", "api_key": stripe_key("rk"), "external_id": "rk-one"})
    err = error(r, 422, "stripe_key_invalid", "api_key")
    assert err["type"] == "invalid_request_error"
    assert tenant.connections() == []
    # The external id was not taken by the failed attempt.
    tenant.connect(external_id="rk-one")


@pytest.mark.parametrize(
    "api_key, code",
    [
        ("pk_test_" + "P" * 24, "stripe_key_publishable"),
        ("pk_live_" + "P" * 24, "stripe_key_publishable"),
        ("", "stripe_key_malformed"),
        ("   ", "stripe_key_malformed"),
        (" sk_test_" + "W" * 24, "stripe_key_malformed"),
        ("sk_test_" + "W" * 24 + "\n", "stripe_key_malformed"),
        ("sk_test_" + "W" * 12 + " " + "W" * 12, "stripe_key_malformed"),
        ("sk_test_short", "stripe_key_malformed"),
        ("sk_test_" + "W" * 20 + "-_!", "stripe_key_malformed"),
        ("sk_prod_" + "W" * 24, "stripe_key_malformed"),
        ("garbage-garbage-garbage", "stripe_key_malformed"),
        ("whsec_" + "W" * 32, "stripe_key_wrong_type"),
        ("ca_" + "W" * 32, "stripe_key_wrong_type"),
        ("acct_" + "W" * 16, "stripe_key_wrong_type"),
        ("sk_test_" + "W" * 300, "stripe_key_malformed"),
    ],
    ids=lambda v: v[:14].strip() or "blank" if isinstance(v, str) else str(v),
)
def test_unusable_keys_are_refused(tenant, api_key, code):
    r = tenant.api.post("/api/v1/connections", json={"provider": "stripe", "api_key": api_key})
    err = error(r, 422, code, "api_key")
    assert err["type"] == "invalid_request_error"
    if code == "stripe_key_publishable":
        assert "publishable" in err["message"].lower()
    assert tenant.connections() == []


def test_malformed_create_bodies(tenant):
    post = lambda body: tenant.api.post("/api/v1/connections", json=body)  # noqa: E731
    error(post({"provider": "stripe"}), 400, "parameter_missing", "api_key")
    error(post({"api_key": stripe_key()}), 400, "parameter_missing", "provider")
    error(post({"provider": "paypal", "api_key": stripe_key()}), 400, "parameter_invalid", "provider")
    error(post({"provider": "stripe", "api_key": 42}), 400, "parameter_invalid", "api_key")
    error(post({"provider": "stripe", "api_key": stripe_key(), "secret": "x"}), 400, "parameter_unknown", "secret")
    error(post({"provider": "stripe", "api_key": stripe_key(), "external_id": ""}), 422, param="external_id")
    error(post({"provider": "stripe", "api_key": stripe_key(), "external_id": "x" * 256}), 422, param="external_id")
    error(post({"provider": "stripe", "api_key": stripe_key(), "stripe_version": "yesterday"}), 422, param="stripe_version")
    error(post({"provider": "stripe", "api_key": stripe_key(), "metadata": {"k": 1}}), 400)
    error(post({"provider": "stripe", "api_key": stripe_key(), "metadata": {"k" * 41: "v"}}), 422)
    error(post({"provider": "stripe", "api_key": stripe_key(), "name": ""}), 422, param="name")
    assert tenant.connections() == []


def test_duplicate_external_id(tenant, other_tenant):
    first = tenant.connect(external_id="customer-7")
    r = tenant.api.post("/api/v1/connections", json={"provider": "stripe", "api_key": stripe_key(), "external_id": "customer-7"})
    error(r, 409, "external_id_taken", "external_id")
    # The same external id is free in another tenant.
    other_tenant.connect(external_id="customer-7")
    assert [c["id"] for c in tenant.connections()] == [first["id"]]


def test_list_filters(tenant):
    a = tenant.connect(external_id="ext-a")
    live = tenant.connect(stripe_key(mode="live"), external_id="ext-live")
    # A restricted key stored unvalidated: the background validator finds localstripe refuses it.
    bad = ok(
        tenant.api.post("/api/v1/connections", json={"provider": "stripe", "api_key": stripe_key("rk"), "validate": False}),
        201,
    )
    assert bad["status"] == "pending"
    assert bad["auth_method"] == "restricted_key"
    invalid = wait_for(
        lambda: (c := ok(tenant.api.get(f"/api/v1/connections/{bad['id']}")))["status"] == "invalid" and c,
        timeout=15,
        what="the background validator to mark the rk_ connection invalid",
    )
    assert invalid["last_error"]["code"] == "stripe_key_invalid"
    assert invalid["last_validated_at"]

    ids = lambda **q: [c["id"] for c in tenant.connections(**q)]  # noqa: E731
    assert ids() == [bad["id"], live["id"], a["id"]]
    assert ids(status="invalid") == [bad["id"]]
    assert ids(status="active") == [live["id"], a["id"]]
    assert ids(status="pending") == []
    assert ids(livemode="true") == [live["id"]]
    assert ids(livemode="false") == [bad["id"], a["id"]]
    assert ids(external_id="ext-a") == [a["id"]]
    assert ids(external_id="nope") == []
    assert ids(status="active", livemode="false") == [a["id"]]

    error(tenant.api.get("/api/v1/connections", params={"status": "sleepy"}), 400, param="status")
    error(tenant.api.get("/api/v1/connections", params={"livemode": "maybe"}), 400, param="livemode")
    error(tenant.api.get("/api/v1/connections", params={"colour": "red"}), 400, "parameter_unknown")


def test_keyset_pages_forward_and_back(tenant):
    created = [tenant.connect(name=f"c{i}")["id"] for i in range(15)]
    newest_first = list(reversed(created))

    # Forward with limit 4: 4, 4, 4, 3.
    pages, after = [], None
    while True:
        params = {"limit": 4}
        if after:
            params["starting_after"] = after
        page = ok(tenant.api.get("/api/v1/connections", params=params))
        assert page["object"] == "list" and page["url"] == "/api/v1/connections"
        pages.append(page)
        if not page["has_more"]:
            break
        after = page["data"][-1]["id"]
        assert len(pages) < 10
    assert [len(p["data"]) for p in pages] == [4, 4, 4, 3]
    assert [p["has_more"] for p in pages] == [True, True, True, False]
    walked = [c["id"] for p in pages for c in p["data"]]
    assert walked == newest_first

    # Newest first by creation time too.
    times = [c["created_at"] for p in pages for c in p["data"]]
    assert times == sorted(times, reverse=True)

    # Backward from the last page, page by page, to the top.
    back, before = [], pages[-1]["data"][0]["id"]
    while True:
        page = ok(tenant.api.get("/api/v1/connections", params={"limit": 4, "ending_before": before}))
        back.insert(0, page)
        if not page["has_more"]:
            break
        before = page["data"][0]["id"]
        assert len(back) < 10
    assert [[c["id"] for c in p["data"]] for p in back] == [[c["id"] for c in p["data"]] for p in pages[:-1]]

    # A short page before the third newest: the two newest, nothing more.
    top = ok(tenant.api.get("/api/v1/connections", params={"limit": 4, "ending_before": newest_first[2]}))
    assert [c["id"] for c in top["data"]] == newest_first[:2]
    assert top["has_more"] is False
    # Past the oldest: empty.
    end = ok(tenant.api.get("/api/v1/connections", params={"starting_after": newest_first[-1]}))
    assert end["data"] == [] and end["has_more"] is False
    # A cursor whose object was deleted meanwhile still leads to the next page.
    ok(tenant.api.delete(f"/api/v1/connections/{newest_first[3]}"))
    after_gone = ok(tenant.api.get("/api/v1/connections", params={"limit": 4, "starting_after": newest_first[3]}))
    assert [c["id"] for c in after_gone["data"]] == newest_first[4:8]
    before_gone = ok(tenant.api.get("/api/v1/connections", params={"limit": 4, "ending_before": newest_first[3]}))
    assert [c["id"] for c in before_gone["data"]] == newest_first[:3]
    created.remove(newest_first[3])
    newest_first.remove(newest_first[3])
    # Default limit is 10.
    default = ok(tenant.api.get("/api/v1/connections"))
    assert len(default["data"]) == 10 and default["has_more"] is True

    q = lambda **p: tenant.api.get("/api/v1/connections", params=p)  # noqa: E731
    error(q(limit=0), 400, param="limit")
    error(q(limit=101), 400, param="limit")
    error(q(limit="ten"), 400, param="limit")
    error(q(starting_after=created[0], ending_before=created[1]), 400)
    error(q(starting_after="conn_bogus"), 400, "invalid_id", "starting_after")
    error(q(ending_before=tenant.id), 400, "invalid_id", "ending_before")


def test_patch(tenant, other_tenant):
    conn = tenant.connect(name="Before", external_id="p-1", metadata={"a": "1", "b": "2"})
    tenant.connect(external_id="p-taken")
    path = f"/api/v1/connections/{conn['id']}"

    renamed = ok(tenant.api.patch(path, json={"name": "After"}))
    assert renamed["name"] == "After"
    assert renamed["metadata"] == {"a": "1", "b": "2"} and renamed["external_id"] == "p-1"
    assert renamed["updated_at"] >= conn["updated_at"]
    assert renamed["key_hint"] == conn["key_hint"] and renamed["status"] == "active"

    merged = ok(tenant.api.patch(path, json={"metadata": {"b": None, "c": "3"}}))
    assert merged["metadata"] == {"a": "1", "c": "3"}
    merged = ok(tenant.api.patch(path, json={"metadata": {"a": ""}}))
    assert merged["metadata"] == {"c": "3"}

    moved = ok(tenant.api.patch(path, json={"external_id": "p-2"}))
    assert moved["external_id"] == "p-2"
    assert [c["id"] for c in tenant.connections(external_id="p-2")] == [conn["id"]]
    assert tenant.connections(external_id="p-1") == []
    error(tenant.api.patch(path, json={"external_id": "p-taken"}), 409, "external_id_taken", "external_id")

    pinned = ok(tenant.api.patch(path, json={"stripe_version": "2026-10-28.endive"}))
    assert pinned["stripe_version"] == "2026-10-28.endive"
    ok(tenant.api.patch(path, json={"stripe_version": "2024-06-20"}))
    for bad in ("2026-10-28.", "2026-10-28.Endive", "26-10-28", "endive", "2026-10-28.endive; beta=v1", ""):
        error(tenant.api.patch(path, json={"stripe_version": bad}), 422, param="stripe_version")

    cleared = ok(tenant.api.patch(path, json={"name": None, "external_id": None, "stripe_version": None, "metadata": None}))
    assert cleared["name"] is None and cleared["external_id"] is None
    assert cleared["stripe_version"] is None and cleared["metadata"] == {}
    assert stable(ok(tenant.api.get(path))) == stable(cleared)

    error(tenant.api.patch(path, json={"api_key": stripe_key()}), 400, "parameter_unknown", "api_key")
    error(tenant.api.patch(path, json={"name": ""}), 422, param="name")
    error(tenant.api.patch(path, json={"metadata": {"k": 5}}), 400)
    # An empty patch changes nothing.
    same = ok(tenant.api.patch(path, json={}))
    drop = ("updated_at", "last_validated_at")
    assert {k: v for k, v in same.items() if k not in drop} == {k: v for k, v in cleared.items() if k not in drop}


def test_validate(tenant):
    conn = tenant.connect()
    first = parse_time(conn["last_validated_at"])
    validated = ok(tenant.api.post(f"/api/v1/connections/{conn['id']}/validate"))
    assert validated["status"] == "active"
    assert validated["last_error"] is None
    again = parse_time(validated["last_validated_at"])
    assert again > first
    assert abs((now() - again).total_seconds()) < 10
    latest = ok(tenant.api.get(f"/api/v1/connections/{conn['id']}"))["last_validated_at"]
    assert parse_time(latest) >= again
    events = ok(tenant.api.get("/api/v1/audit-events", params={"action": "connection.validated", "target_id": conn["id"]}))
    assert len(events["data"]) >= 1


def test_validate_records_a_refused_key(tenant):
    conn = ok(
        tenant.api.post("/api/v1/connections", json={"provider": "stripe", "api_key": stripe_key("rk"), "validate": False}),
        201,
    )
    checked = ok(tenant.api.post(f"/api/v1/connections/{conn['id']}/validate"))
    assert checked["status"] == "invalid"
    assert checked["last_error"]["code"] == "stripe_key_invalid"


def test_rotate(tenant):
    old = stripe_key()
    conn = tenant.connect(old)
    path = f"/api/v1/connections/{conn['id']}/rotate"

    new = stripe_key()
    # localstripe has no /v1/account, so neither key names its account: sameness
    # cannot be proven, and the rotation needs the caller to accept a change.
    error(tenant.api.post(path, json={"api_key": new}), 422, "account_unknown", "api_key")
    rotated = ok(tenant.api.post(path, json={"api_key": new, "allow_account_change": True}))
    assert rotated["id"] == conn["id"]
    assert rotated["key_hint"] == hint_of(new) != conn["key_hint"]
    assert rotated["status"] == "active"
    assert rotated["previous_key_hint"] is None
    assert rotated["previous_key_expires_at"] is None
    assert rotated["livemode"] is False and rotated["auth_method"] == "secret_key"
    assert ok(tenant.api.get(f"/api/v1/connections/{conn['id']}"))["key_hint"] == hint_of(new)

    newer = stripe_key()
    kept = ok(
        tenant.api.post(
            path, json={"api_key": newer, "keep_previous_for_seconds": 3600, "allow_account_change": True}
        )
    )
    assert kept["key_hint"] == hint_of(newer)
    assert kept["previous_key_hint"] == hint_of(new)
    expires = parse_time(kept["previous_key_expires_at"])
    assert timedelta(seconds=3500) < expires - now() < timedelta(seconds=3700)

    r = tenant.api.post(path, json={"api_key": newer})
    error(r, 422, "same_key", "api_key")
    error(tenant.api.post(path, json={"api_key": stripe_key(mode="live")}), 422, "mode_mismatch", "api_key")
    error(tenant.api.post(path, json={"api_key": stripe_key("rk")}), 422, "stripe_key_invalid", "api_key")
    error(tenant.api.post(path, json={"api_key": "pk_test_" + "Q" * 24}), 422, "stripe_key_publishable", "api_key")
    error(tenant.api.post(path, json={"api_key": " "}), 422, "stripe_key_malformed", "api_key")
    error(tenant.api.post(path, json={"api_key": stripe_key(), "keep_previous_for_seconds": 0}), 422, param="keep_previous_for_seconds")
    error(tenant.api.post(path, json={"api_key": stripe_key(), "keep_previous_for_seconds": 2592001}), 422, param="keep_previous_for_seconds")
    error(tenant.api.post(path, json={"api_key": stripe_key(), "keep_previous_for_seconds": -1}), 400, param="keep_previous_for_seconds")
    error(tenant.api.post(path, json={}), 400, "parameter_missing", "api_key")
    # None of the refusals changed the key.
    assert ok(tenant.api.get(f"/api/v1/connections/{conn['id']}"))["key_hint"] == hint_of(newer)

    events = ok(tenant.api.get("/api/v1/audit-events", params={"action": "connection.rotated", "target_id": conn["id"]}))
    assert len(events["data"]) == 2
    latest = events["data"][0]
    assert latest["object"] == "audit_event"
    assert latest["action"] == "connection.rotated"
    assert latest["tenant_id"] == tenant.id
    assert latest["target_id"] == conn["id"]
    assert latest["actor"] == tenant.key_id
    assert latest["details"]["key_hint"] == hint_of(newer)
    assert latest["details"]["account_change"] == {"from": None, "to": None, "accepted_by_caller": True}
    assert latest["details"]["previous_key_hint"] == hint_of(new)
    # The whole audit log of the tenant mentions only hints.
    log = ok(tenant.api.get("/api/v1/audit-events", params={"limit": 100}))
    actions = {e["action"] for e in log["data"]}
    assert {"connection.created", "connection.rotated"} <= actions
    # The admin sees the same events when filtering by tenant.
    admin_view = ok(tenant.admin.get("/api/v1/audit-events", params={"tenant_id": tenant.id, "action": "connection.rotated"}))
    assert [e["id"] for e in admin_view["data"]] == [e["id"] for e in events["data"]]
    error(tenant.api.get("/api/v1/audit-events", params={"tenant_id": tenant.id}), 400, "parameter_unknown", "tenant_id")


def test_rotate_request_id_is_audited(tenant):
    conn = tenant.connect()
    # localstripe has no /v1/account, so the account cannot be proven the same.
    r = tenant.api.post(
        f"/api/v1/connections/{conn['id']}/rotate",
        json={"api_key": stripe_key(), "allow_account_change": True},
        headers={"x-request-id": "bb-rotate-1"},
    )
    ok(r)
    # The server makes its own request id; the client's is kept apart and echoed.
    server_id = r.headers["x-request-id"]
    assert server_id.startswith("req_")
    assert r.headers["x-client-request-id"] == "bb-rotate-1"
    events = ok(tenant.api.get("/api/v1/audit-events", params={"action": "connection.rotated", "target_id": conn["id"]}))
    assert events["data"][0]["request_id"] == server_id
    assert events["data"][0]["client_request_id"] == "bb-rotate-1"


def test_pending_connection_is_validated_in_the_background(tenant):
    conn = ok(
        tenant.api.post("/api/v1/connections", json={"provider": "stripe", "api_key": stripe_key(), "validate": False}),
        201,
    )
    assert conn["status"] == "pending"
    assert conn["last_validated_at"] is None
    active = wait_for(
        lambda: (c := ok(tenant.api.get(f"/api/v1/connections/{conn['id']}")))["status"] == "active" and c,
        timeout=10,
        what="the background validator to activate the pending connection",
    )
    assert active["last_validated_at"]
    assert active["last_error"] is None


def test_delete(tenant):
    keep = tenant.connect(external_id="keep")
    conn = tenant.connect(external_id="gone")
    path = f"/api/v1/connections/{conn['id']}"
    deleted = ok(tenant.api.delete(path))
    assert deleted == {"id": conn["id"], "object": "connection", "deleted": True}
    error(tenant.api.get(path), 404, "resource_missing", "id")
    error(tenant.api.delete(path), 404, "resource_missing")
    error(tenant.api.patch(path, json={"name": "x"}), 404, "resource_missing")
    error(tenant.api.post(path + "/validate"), 404, "resource_missing")
    error(tenant.api.post(path + "/rotate", json={"api_key": stripe_key()}), 404, "resource_missing")
    assert [c["id"] for c in tenant.connections()] == [keep["id"]]
    # Its external id is free again.
    tenant.connect(external_id="gone")
    events = ok(tenant.api.get("/api/v1/audit-events", params={"action": "connection.deleted", "target_id": conn["id"]}))
    assert len(events["data"]) == 1


def test_malformed_connection_ids(tenant):
    for bad in ("nope", "conn_", "ten_0000000000000000000000000a", "conn_" + "!" * 26):
        error(tenant.api.get(f"/api/v1/connections/{bad}"), 400, "invalid_id", "id")


def test_many_names_and_metadata_survive(tenant):
    meta = {f"k{i}": "v" * 500 for i in range(50)}
    conn = tenant.connect(name="ü" * 200, metadata=meta, external_id=unique("ümlaut"))
    assert conn["metadata"] == meta and conn["name"] == "ü" * 200
    error(tenant.api.patch(f"/api/v1/connections/{conn['id']}", json={"metadata": {"k50": "x"}}), 422)
    error(tenant.api.patch(f"/api/v1/connections/{conn['id']}", json={"metadata": {"k0": "v" * 501}}), 422)
