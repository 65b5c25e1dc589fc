"""The official Stripe SDK against localstripe directly: proves the fake answers
the way the SDK expects, so later suites can put Patchbay's proxy in between."""

import stripe

from conftest import LOCALSTRIPE_URL, stripe_key, unique


def test_sdk_creates_and_lists_customers():
    client = stripe.StripeClient(
        stripe_key(),
        base_addresses={"api": LOCALSTRIPE_URL},
        max_network_retries=0,
    )
    email = f"{unique('sdk')}@example.com"
    customer = client.v1.customers.create(params={"email": email, "name": "Black Box", "metadata": {"suite": "blackbox"}})
    assert customer.id.startswith("cus_")
    assert customer.email == email
    assert customer.metadata["suite"] == "blackbox"

    fetched = client.v1.customers.retrieve(customer.id)
    assert fetched.id == customer.id and fetched.name == "Black Box"

    # localstripe's store is shared by the whole session and lists oldest first:
    # filter by this test's e-mail address.
    listed = client.v1.customers.list(params={"email": email, "limit": 100})
    assert listed.object == "list"
    assert [c.id for c in listed.data] == [customer.id]


def test_sdk_sees_localstripe_refuse_restricted_keys():
    client = stripe.StripeClient(stripe_key("rk"), base_addresses={"api": LOCALSTRIPE_URL}, max_network_retries=0)
    try:
        client.v1.balance.retrieve()
    except stripe.AuthenticationError as e:
        assert e.http_status == 401
    else:
        raise AssertionError("localstripe accepted a restricted key")
