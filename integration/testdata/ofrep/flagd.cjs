// Evaluates cfgcluster's flags with OpenFeature's JavaScript SDK and flagd's
// in-process provider (npm: @openfeature/flagd-provider), which takes the
// flags from a node's flagd sync port (flagd.sync.v1) and evaluates them
// itself. It prints one evaluation, then, after the next configuration
// change the provider hears of, another. Usage: node flagd.cjs HOST PORT
const { OpenFeature, ProviderEvents } = require('@openfeature/server-sdk');
const { FlagdProvider } = require('@openfeature/flagd-provider');

(async () => {
  const [host, port] = process.argv.slice(2);
  await OpenFeature.setProviderAndWait(new FlagdProvider({ resolverType: 'in-process', host, port: Number(port) }));
  const c = OpenFeature.getClient();
  const ada = { targetingKey: 'u1', email: 'ada@example.com' };
  const changed = new Promise((resolve) => OpenFeature.addHandler(ProviderEvents.ConfigurationChanged, resolve));
  console.log(JSON.stringify({ before: await c.getBooleanDetails('new-checkout', false, ada) }));
  await changed;
  console.log(JSON.stringify({ after: await c.getBooleanDetails('new-checkout', false, ada) }));
  await OpenFeature.close();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
