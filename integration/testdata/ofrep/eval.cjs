// Evaluates cfgcluster's flags through OpenFeature's own JavaScript SDK and
// OFREP provider (npm: @openfeature/server-sdk, @openfeature/ofrep-provider),
// as a Node.js service would, and prints each evaluation's details as JSON.
// Usage: node eval.cjs BASE_URL TOKEN
const { OpenFeature } = require('@openfeature/server-sdk');
const { OFREPProvider } = require('@openfeature/ofrep-provider');

(async () => {
  const [baseUrl, token] = process.argv.slice(2);
  await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl, headers: { Authorization: `Bearer ${token}` } }));
  const c = OpenFeature.getClient();
  const out = {
    staff: await c.getBooleanDetails('new-checkout', false, { targetingKey: 'u1', email: 'ada@example.com' }),
    other: await c.getBooleanDetails('new-checkout', false, { targetingKey: 'u2', email: 'bob@elsewhere.org' }),
    disabled: await c.getBooleanDetails('dark-mode', true, { targetingKey: 'u1' }),
    missing: await c.getStringDetails('nope', 'fallback', { targetingKey: 'u1' }),
    object: await c.getObjectDetails('limits', {}, { targetingKey: 'u1' }),
    number: await c.getNumberDetails('max-items', 1, { targetingKey: 'u1', plan: 'pro' }),
  };
  console.log(JSON.stringify(out));
  await OpenFeature.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
