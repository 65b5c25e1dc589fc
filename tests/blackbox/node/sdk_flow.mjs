// The official Stripe Node SDK against Patchbay's root paths (/v1/…) with a
// key bound to one connection, exactly as it is used against Stripe: only the
// host, port and protocol change. Run by test_proxy.py; prints one JSON object
// with what each call returned, for the test to check.
//
// Environment:
//   PATCHBAY_HOST, PATCHBAY_PORT  where Patchbay listens (plain HTTP)
//   PATCHBAY_BOUND_KEY            a Patchbay key with the `proxy` scope bound to a connection
//   FLOW_EMAIL                    a unique e-mail address: the customers this run creates
//   FLOW_COUNT                    how many customers to create and page through [30]
//   FLOW_PAGE_SIZE                the list's page size [7]
//   FLOW_MISSING_ID               a customer id that does not exist

import Stripe from 'stripe';

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined || v === '') {
    throw new Error(`set ${name}`);
  }
  return v;
};

const host = env('PATCHBAY_HOST');
const port = Number(env('PATCHBAY_PORT'));
const email = env('FLOW_EMAIL');
const count = Number(env('FLOW_COUNT', '30'));
const pageSize = Number(env('FLOW_PAGE_SIZE', '7'));
const missingId = env('FLOW_MISSING_ID');

const options = { host, port, protocol: 'http' };
const stripe = new Stripe(env('PATCHBAY_BOUND_KEY'), options);

// What an SDK error looks like to the application.
const describeError = (e) => ({
  class: e?.constructor?.name,
  type: e?.type,
  raw_type: e?.rawType,
  status: e?.statusCode,
  code: e?.code ?? null,
  message: e?.message,
  is_invalid_request: e instanceof Stripe.errors.StripeInvalidRequestError,
  is_authentication: e instanceof Stripe.errors.StripeAuthenticationError,
});

const expectError = async (what, call) => {
  try {
    const got = await call();
    throw new Error(`${what}: expected an error, got ${JSON.stringify(got).slice(0, 300)}`);
  } catch (e) {
    if (!(e instanceof Stripe.errors.StripeError)) {
      throw e;
    }
    return describeError(e);
  }
};

const out = { sdk_version: Stripe.PACKAGE_VERSION, node_version: process.version };

const first = await stripe.customers.create({
  email,
  name: 'Node Flow',
  metadata: { suite: 'blackbox', sdk: 'node' },
});
out.created = { id: first.id, object: first.object, email: first.email, name: first.name, metadata: first.metadata };

const fetched = await stripe.customers.retrieve(first.id);
out.retrieved = { id: fetched.id, email: fetched.email, name: fetched.name };

const updated = await stripe.customers.update(first.id, { name: 'Node Flow 2', metadata: { step: 'updated' } });
out.updated = { id: updated.id, name: updated.name, metadata: updated.metadata };

const created = [first.id];
for (let i = 1; i < count; i++) {
  const c = await stripe.customers.create({ email, metadata: { n: String(i) } });
  created.push(c.id);
}
out.created_ids = created;

const listed = [];
await stripe.customers.list({ email, limit: pageSize }).autoPagingEach((c) => {
  listed.push(c.id);
});
out.listed_ids = listed;

const pi = await stripe.paymentIntents.create({ amount: 2000, currency: 'usd', payment_method: 'pm_card_visa' });
const confirmed = await stripe.paymentIntents.confirm(pi.id);
out.payment_intent = { id: pi.id, created_status: pi.status, confirmed_status: confirmed.status, amount: confirmed.amount };

const deleted = await stripe.customers.del(first.id);
out.deleted = { id: deleted.id, deleted: deleted.deleted };
out.retrieve_deleted = await expectError('retrieving a deleted customer', () => stripe.customers.retrieve(first.id));
out.not_found = await expectError('retrieving a missing customer', () => stripe.customers.retrieve(missingId));

// A key Patchbay does not know: its 401 is Stripe-shaped, so the SDK raises its own class.
const stranger = new Stripe(`pbk_${'x'.repeat(40)}`, options);
out.unknown_key = await expectError('an unknown key', () => stranger.customers.list({ limit: 1 }));

process.stdout.write(JSON.stringify(out) + '\n');
