"""The Connect OAuth fake on its own (in this process, on its own port): the
OAuth tests trust it to behave like Stripe's endpoints as STRIPE.md describes."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from conftest import ConnectFake, stripe_key
from fake_connect import FakeConnect

REDIRECT = "https://platform.example/cb"


@pytest.fixture
def fake():
    f = FakeConnect(port=0).start()
    yield f
    f.stop()


@pytest.fixture
def control(fake) -> ConnectFake:
    return ConnectFake(fake.url)


def client_id() -> str:
    return "ca_" + secrets.token_hex(16)


def authorize(fake, **q) -> dict:
    params = {"response_type": "code", "client_id": q.pop("client_id"), "scope": "read_write", "state": "st-1",
              "redirect_uri": REDIRECT, **q}
    r = requests.get(f"{fake.url}/oauth/authorize?{urlencode(params)}", allow_redirects=False, timeout=5)
    assert r.status_code == 302, r.text
    loc = urlsplit(r.headers["Location"])
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == REDIRECT
    return {k: v[0] for k, v in parse_qs(loc.query).items()}


def token(fake, form: dict, bearer: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return requests.post(f"{fake.url}/oauth/token", data=form, headers=headers, timeout=5)


def test_consent_code_exchange_single_use(fake, control):
    cid, key = client_id(), stripe_key()
    back = authorize(fake, client_id=cid)
    assert back["state"] == "st-1" and back["scope"] == "read_write" and back["code"].startswith("ac_")
    form = {"grant_type": "authorization_code", "code": back["code"], "client_id": cid, "client_secret": key}
    r = token(fake, form)
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["token_type"] == "bearer" and t["livemode"] is False and t["scope"] == "read_write"
    assert t["access_token"].startswith("sk_test_") and t["refresh_token"].startswith("rt_")
    assert t["stripe_user_id"].startswith("acct_") and t["stripe_publishable_key"].startswith("pk_test_")
    again = token(fake, form)
    assert again.status_code == 400
    assert again.json() == {"error": "invalid_grant", "error_description": f"Authorization code does not exist: {back['code']}"}
    calls = control.calls(client_id=cid, path="/oauth/token")
    assert [c["status"] for c in calls] == [200, 400]
    assert calls[0]["form"]["client_secret"] == key and calls[0]["form"]["grant_type"] == "authorization_code"
    (grant,) = control.grants(cid)
    assert grant["stripe_user_id"] == t["stripe_user_id"] and grant["connected"] is True


def test_bearer_key_live_mode_and_refresh(fake, control):
    cid, key = client_id(), stripe_key(mode="live")
    back = authorize(fake, client_id=cid, scope="read_only")
    t = token(fake, {"grant_type": "authorization_code", "code": back["code"], "client_id": cid}, bearer=key).json()
    assert t["livemode"] is True and t["access_token"].startswith("sk_live_") and t["scope"] == "read_only"
    r = token(fake, {"grant_type": "refresh_token", "refresh_token": t["refresh_token"], "client_id": cid}, bearer=key)
    assert r.status_code == 200, r.text
    t2 = r.json()
    assert t2["refresh_token"] == t["refresh_token"] and t2["access_token"] != t["access_token"]
    assert t2["stripe_user_id"] == t["stripe_user_id"]
    # The other mode's key, an unknown refresh token, a widened scope, no key.
    assert token(fake, {"grant_type": "refresh_token", "refresh_token": t["refresh_token"], "client_id": cid},
                 bearer=stripe_key()).json()["error"] == "invalid_grant"
    assert token(fake, {"grant_type": "refresh_token", "refresh_token": "rt_nope", "client_id": cid},
                 bearer=key).json()["error"] == "invalid_grant"
    assert token(fake, {"grant_type": "refresh_token", "refresh_token": t["refresh_token"], "client_id": cid,
                        "scope": "read_write"}, bearer=key).json()["error"] == "invalid_scope"
    r = token(fake, {"grant_type": "refresh_token", "refresh_token": t["refresh_token"], "client_id": cid})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert token(fake, {"grant_type": "password"}, bearer=key).json()["error"] == "unsupported_grant_type"
    assert control.calls(client_id=cid)[1]["bearer"] == key


def test_registered_platform_checks_key_and_redirect_uri(fake, control):
    cid, key = client_id(), stripe_key()
    control.register(cid, key, [REDIRECT])
    bad = requests.get(f"{fake.url}/oauth/authorize", params={"response_type": "code", "client_id": cid,
                       "redirect_uri": "https://evil.example/cb", "state": "s"}, allow_redirects=False, timeout=5)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_redirect_uri"
    back = authorize(fake, client_id=cid)
    r = token(fake, {"grant_type": "authorization_code", "code": back["code"], "client_id": cid,
                     "client_secret": stripe_key()})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    # A refused attempt does not burn the code.
    r = token(fake, {"grant_type": "authorization_code", "code": back["code"], "client_id": cid, "client_secret": key})
    assert r.status_code == 200, r.text


def test_deny_chosen_account_and_bad_requests(fake, control):
    cid = client_id()
    back = authorize(fake, client_id=cid, _deny="1")
    assert back["error"] == "access_denied" and back["state"] == "st-1" and "code" not in back
    assert authorize(fake, client_id=cid, scope="everything")["error"] == "invalid_scope"
    assert authorize(fake, client_id=cid, response_type="token")["error"] == "invalid_request"
    acct = "acct_" + "A1" * 8
    key = stripe_key()
    for _ in range(2):
        code = authorize(fake, client_id=cid, _account=acct)["code"]
        t = token(fake, {"grant_type": "authorization_code", "code": code, "client_id": cid, "client_secret": key})
        assert t.json()["stripe_user_id"] == acct
    assert len(control.grants(cid)) == 1
    # Another platform's code is not this one's.
    other = authorize(fake, client_id=client_id())["code"]
    r = token(fake, {"grant_type": "authorization_code", "code": other, "client_id": cid, "client_secret": key})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = requests.post(f"{fake.url}/oauth/token", json={"grant_type": "authorization_code"}, timeout=5)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    assert requests.get(f"{fake.url}/oauth/token", timeout=5).status_code == 405


def test_deauthorize(fake, control):
    cid, key = client_id(), stripe_key()
    code = authorize(fake, client_id=cid)["code"]
    t = token(fake, {"grant_type": "authorization_code", "code": code, "client_id": cid, "client_secret": key}).json()
    acct = t["stripe_user_id"]
    url = f"{fake.url}/oauth/deauthorize"
    form = {"client_id": cid, "stripe_user_id": acct}
    r = requests.post(url, data=form, headers={"Authorization": f"Bearer {key}"}, timeout=5)
    assert r.status_code == 200 and r.json() == {"stripe_user_id": acct}
    (grant,) = control.grants(cid)
    assert grant["connected"] is False and grant["deauthorized_at"]
    again = requests.post(url, data=form, headers={"Authorization": f"Bearer {key}"}, timeout=5)
    assert again.status_code == 400
    body = again.json()
    assert body["error"] == "invalid_client" and "not connected" in body["error_description"]
    # The refresh token died with the grant.
    r = token(fake, {"grant_type": "refresh_token", "refresh_token": t["refresh_token"], "client_id": cid}, bearer=key)
    assert r.json()["error"] == "invalid_grant"
    calls = control.calls(client_id=cid, path="/oauth/deauthorize")
    assert [(c["bearer"], c["form"], c["status"]) for c in calls] == [(key, form, 200), (key, form, 400)]


def test_down_and_up(fake, control):
    cid, key = client_id(), stripe_key()
    control.down("token")
    code = authorize(fake, client_id=cid)["code"]  # the authorize page still works
    form = {"grant_type": "authorization_code", "code": code, "client_id": cid, "client_secret": key}
    r = token(fake, form)
    assert r.status_code == 503 and r.headers["Content-Type"].startswith("text/html")
    control.up()
    assert token(fake, form).status_code == 200  # a 503 does not burn the code
    control.down(status=502)
    r = requests.get(f"{fake.url}/oauth/authorize", params={"client_id": cid}, allow_redirects=False, timeout=5)
    assert r.status_code == 502
    control.up()
    since = control.last_seq()
    authorize(fake, client_id=cid)
    assert [c["path"] for c in control.calls(since=since)] == ["/oauth/authorize"]
    with pytest.raises(requests.HTTPError):
        control.down("nonsense")
