"""Real objects for schemathesis to work on, and its two configuration files.

`scripts/blackbox` runs this before fuzzing:

    st_seed.py URL WORKDIR      (PATCHBAY_ST_TOKEN = the admin token; LOCALSTRIPE_URL
                                 and FAKE_CONNECT_URL as for the suite)

It creates, over the API, a tenant with an admin-scoped key and, in it, a
validated connection (localstripe), a Connect OAuth connection (through
fake_connect.py's consent), webhook endpoints, a Stripe event received through
one of them (signed), event subscriptions with deliveries, a Connect platform,
allowed origins, spare API keys; and, for the admin pass, spare tenants with
keys. Then it writes WORKDIR/schemathesis-admin.toml and
WORKDIR/schemathesis-tenant.toml: the credential header (from the environment
variable PATCHBAY_ST_TOKEN, never in the file) and, per operation, its path
parameters fixed to those objects, so every operation reaches its handler with
an object that exists instead of a 404. Operations that destroy their object
(deletes, revokes) get objects of their own. Prints the tenant key on stdout,
and a summary of what it seeded on stderr.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import string
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import requests

ALNUM = string.ascii_letters + string.digits
CALLBACK = "https://app.example.com/oauth/callback"


def rand(n: int) -> str:
    return "".join(secrets.choice(ALNUM) for _ in range(n))


class Client:
    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.http = requests.Session()
        self.http.headers["x-api-key"] = token

    def call(self, method: str, path: str, want: int = 200, **kw) -> dict:
        r = self.http.request(method, self.url + path, timeout=30, **kw)
        if r.status_code != want:
            sys.exit(f"st_seed: {method} {path} -> {r.status_code} (wanted {want}): {r.text[:500]}")
        return r.json() if r.content else {}


def stripe_key(mode: str = "test") -> str:
    return f"sk_{mode}_{rand(24)}"


def sign(secret: str, body: bytes) -> str:
    t = int(time.time())
    return f"t={t},v1=" + hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def seed(url: str, admin_token: str, fake_connect: str) -> tuple[str, dict[str, str]]:
    admin = Client(url, admin_token)
    ids: dict[str, str] = {}
    tenant = admin.call("POST", "/api/v1/tenants", 201, json={"name": "schemathesis"})
    key = admin.call("POST", f"/api/v1/tenants/{tenant['id']}/api-keys", 201, json={"name": "schemathesis", "scopes": ["admin"]})
    tk = Client(url, key["key"])
    # Spare keys of this tenant: one to read, one to revoke.
    for name in ("key", "key_revoke"):
        ids[name] = tk.call("POST", "/api/v1/api-keys", 201, json={"name": name, "scopes": ["connections:read"]})["id"]

    # Connections by key, validated against localstripe: one to work on, one to delete.
    for name in ("conn", "conn_delete"):
        ids[name] = tk.call("POST", "/api/v1/connections", 201,
                            json={"provider": "stripe", "api_key": stripe_key(), "name": name})["id"]

    # The Connect platform (registered with the fake first) and an OAuth connection through it.
    client_id = "ca_" + rand(32)
    platform_key = stripe_key()
    requests.post(f"{fake_connect}/_platforms", json={"client_id": client_id, "secret_key": platform_key,
                                                      "redirect_uris": [CALLBACK]}, timeout=10).raise_for_status()
    tk.call("PUT", "/api/v1/integrations/stripe", json={"client_id": client_id, "secret_key": platform_key,
                                                          "redirect_uris": [CALLBACK], "scope": "read_write"})
    auth = tk.call("GET", "/api/v1/connections/stripe/auth-url", params={"external_id": "st-oauth", "redirect_uri": CALLBACK})
    consent = requests.get(auth["url"], allow_redirects=False, timeout=10)
    if consent.status_code != 302:
        sys.exit(f"st_seed: the fake's consent answered {consent.status_code}: {consent.text[:300]}")
    query = dict(parse_qsl(urlsplit(consent.headers["Location"]).query))
    oauth = requests.get(f"{url}/api/v1/oauth/stripe/callback", params=query, timeout=30)
    if oauth.status_code not in (200, 201):
        sys.exit(f"st_seed: the OAuth callback answered {oauth.status_code}: {oauth.text[:300]}")
    ids["conn_oauth"] = oauth.json()["id"]
    tk.call("PUT", "/api/v1/settings", json={"allowed_origins": ["https://app.example.com"]})

    # Webhook endpoints (one to delete) and a signed Stripe event through the first.
    secret = "whsec_" + rand(32)
    ids["endpoint"] = tk.call("POST", f"/api/v1/connections/{ids['conn']}/webhook-endpoints", 201,
                              json={"signing_secret": secret})["id"]
    ids["endpoint_delete"] = tk.call("POST", f"/api/v1/connections/{ids['conn']}/webhook-endpoints", 201,
                                     json={"signing_secret": "whsec_" + rand(32)})["id"]
    # Subscriptions (one to delete), on a loopback receiver that refuses connections:
    # deliveries fail and are retried, which is what the delivery log shows.
    for name in ("subscription", "subscription_delete"):
        ids[name] = tk.call("POST", "/api/v1/event-subscriptions", 201,
                            json={"url": "http://127.0.0.1:9/hooks", "events": ["*"], "description": name})["id"]
    event = {"id": "evt_" + rand(24), "object": "event", "type": "customer.created", "created": int(time.time()),
             "livemode": False, "api_version": "2024-06-20",
             "data": {"object": {"id": "cus_" + rand(14), "object": "customer"}}}
    body = json.dumps(event).encode()
    receipt = requests.post(f"{url}/api/v1/webhooks/stripe/{ids['endpoint']}", data=body, timeout=30,
                            headers={"Content-Type": "application/json", "Stripe-Signature": sign(secret, body)})
    if receipt.status_code != 200 or not receipt.json().get("event_id"):
        sys.exit(f"st_seed: the signed event answered {receipt.status_code}: {receipt.text[:300]}")
    ids["event"] = receipt.json()["event_id"]

    # For the admin pass: a tenant to work on (with two keys) and one to delete.
    for name in ("tenant", "tenant_delete"):
        ids[name] = admin.call("POST", "/api/v1/tenants", 201, json={"name": f"schemathesis {name}"})["id"]
    for name in ("tenant_key", "tenant_key_revoke"):
        ids[name] = admin.call("POST", f"/api/v1/tenants/{ids['tenant']}/api-keys", 201,
                               json={"name": name, "scopes": ["connections:read"]})["id"]
    return key["key"], ids


def path_values(operation_id: str, path: str, ids: dict[str, str]) -> dict[str, str]:
    """The seeded object each path parameter of an operation names."""
    destroys = {
        "delete_tenant": {"id": "tenant_delete"},
        "admin_revoke_key": {"key_id": "tenant_key_revoke"},
        "revoke_key": {"key_id": "key_revoke"},
        "delete_connection": {"id": "conn_delete"},
        "refresh_connection": {"id": "conn_oauth"},
        "delete_endpoint": {"id": "endpoint_delete"},
        "delete_subscription": {"id": "subscription_delete"},
    }.get(operation_id, {})
    by_prefix = [
        ("/api/v1/tenants/{id}", {"id": "tenant", "key_id": "tenant_key"}),
        ("/api/v1/api-keys/{key_id}", {"key_id": "key"}),
        ("/api/v1/connections/{id}", {"id": "conn"}),
        ("/api/v1/webhook-endpoints/{id}", {"id": "endpoint"}),
        ("/api/v1/event-subscriptions/{id}", {"id": "subscription"}),
        ("/api/v1/events/{id}", {"id": "event"}),
        ("/api/v1/webhooks/stripe/{endpoint_id}", {"endpoint_id": "endpoint"}),
    ]
    names = re.findall(r"\{(\w+)\}", path)
    values: dict[str, str] = {}
    for prefix, mapping in by_prefix:
        if path.startswith(prefix):
            for name in names:
                ref = destroys.get(name) or mapping.get(name)
                if ref:
                    values[name] = ids[ref]
    if path == "/api/v1/actions/{name}":
        values["name"] = "stripe.createCustomer"
    if path.endswith("/proxy/{path}"):
        values["path"] = "v1/customers"
    return values


def toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string for these values


def write_config(out: Path, spec: dict, ids: dict[str, str], include: re.Pattern, exclude: set[str]) -> list[str]:
    lines = ['headers = { "x-api-key" = "${PATCHBAY_ST_TOKEN}" }', ""]
    covered = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete") or not include.search(path):
                continue
            if op["operationId"] in exclude:
                continue
            covered.append(op["operationId"])
            values = path_values(op["operationId"], path, ids)
            if not values:
                continue
            params = ", ".join(f'"path.{k}" = {toml_string(v)}' for k, v in values.items())
            lines += ["[[operations]]", f"include-operation-id = {toml_string(op['operationId'])}",
                      f"parameters = {{ {params} }}", ""]
    old = os.umask(0o077)
    try:
        out.write_text("\n".join(lines))
    finally:
        os.umask(old)
    return covered


# The two passes: which paths each covers (the admin token cannot act as a tenant).
ADMIN_PATHS = re.compile(r"^/(healthz|readyz|metrics|api/v1/(tenants|admin|audit-events))")
TENANT_PATHS = re.compile(r"^/api/v1/(?!tenants|admin)")


def main() -> None:
    url, work = sys.argv[1].rstrip("/"), Path(sys.argv[2])
    spec = json.loads(Path(sys.argv[3]).read_text())
    key, ids = seed(url, os.environ["PATCHBAY_ST_TOKEN"], os.environ["FAKE_CONNECT_URL"].rstrip("/"))
    admin_ops = write_config(work / "schemathesis-admin.toml", spec, ids, ADMIN_PATHS, set())
    tenant_ops = write_config(work / "schemathesis-tenant.toml", spec, ids, TENANT_PATHS, set())
    every = {op["operationId"] for item in spec["paths"].values() for m, op in item.items()
             if m in ("get", "post", "put", "patch", "delete")}
    left = sorted(every - set(admin_ops) - set(tenant_ops))
    if left:
        sys.exit(f"st_seed: operations in neither pass: {left}")
    print(f"st_seed: {len(ids)} objects seeded; admin pass {len(admin_ops)} operations, "
          f"tenant pass {len(tenant_ops)}", file=sys.stderr)
    print(key)


if __name__ == "__main__":
    main()
