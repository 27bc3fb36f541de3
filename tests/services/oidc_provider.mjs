// A real OpenID provider (node-oidc-provider) for Score's tests: client_credentials tokens for two resource
// servers (JWT and opaque access tokens), introspection and revocation. Started by tests/services/oidc.py.
//
// Configuration is one JSON document in the OIDC_PROVIDER_CONFIG environment variable:
//   {"port": 12345, "clients": {"<client_id>": "<space separated scopes>"}, "es256": false,
//    "introspectionClient": ["score-server", "score-server-secret"],
//    "resources": {"jwt": "https://score.test/jwt", "opaque": "https://score.test/opaque",
//                  "jwtEs256": "https://score.test/jwt-es256"}}
// oidc-provider is resolved from NODE_PATH (the fixture's npm prefix), so this file can live in the repository.

import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const config = JSON.parse(process.env.OIDC_PROVIDER_CONFIG);
const modulesDir = process.env.NODE_PATH.split(path.delimiter)[0];
// ESM ignores NODE_PATH: resolve the package from the fixture's prefix explicitly.
const require = createRequire(path.join(modulesDir, 'noop.js'));
const { default: Provider, errors } = await import(pathToFileURL(require.resolve('oidc-provider')).href);

const issuer = `http://127.0.0.1:${config.port}`;
const [introspectionId, introspectionSecret] = config.introspectionClient;
const SHORT_TTL = 2;
const LONG_TTL = 3600;

function signingKey(type, options, alg) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid: `${alg.toLowerCase()}-${randomUUID()}`, alg, use: 'sig' };
}

// RS256 first: it is the provider's default signing key (id_token_signed_response_alg defaults to RS256).
const keys = [signingKey('rsa', { modulusLength: 2048 }, 'RS256')];
if (config.es256) {
  keys.push(signingKey('ec', { namedCurve: 'P-256' }, 'ES256'));
}

// Every scope any client holds: the provider only lets a client request the listed scopes it was given, and a
// resource server silently drops the scopes its own `scope` does not list.
const allScopes = [...new Set(Object.values(config.clients).flatMap((scopes) => scopes.split(' ').filter(Boolean)))];

const resources = new Map([
  [config.resources.jwt, { accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } }],
  [config.resources.opaque, { accessTokenFormat: 'opaque' }],
]);
if (config.es256) {
  resources.set(config.resources.jwtEs256, { accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } });
}

const clients = Object.entries(config.clients).map(([clientId, scope]) => ({
  client_id: clientId,
  client_secret: `${clientId}-secret`,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_post',
  scope,
}));
clients.push({
  client_id: introspectionId,
  client_secret: introspectionSecret,
  grant_types: [],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_post',
});

const provider = new Provider(issuer, {
  clients,
  jwks: { keys },
  scopes: allScopes,
  // No end-user flows: client_credentials only, so no interactions, cookies or accounts are needed.
  cookies: { keys: [randomUUID()] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
    introspection: {
      enabled: true,
      // The default already lets any confidential client introspect any token; this keeps it explicit and
      // narrows it to the resource server's own client (and a token's own client).
      allowedPolicy: async (ctx, client, token) => client.clientId === introspectionId || client.clientId === token.clientId,
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (ctx, client, oneOf) => oneOf ?? config.resources.jwt,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        const info = resources.get(resourceIndicator);
        if (!info) {
          throw new errors.InvalidTarget();
        }
        return { scope: allScopes.join(' '), audience: resourceIndicator, ...info };
      },
    },
  },
  // Client credentials tokens have no account: put the client id in `sub` (JWT and introspection alike).
  extraTokenClaims: async (ctx, token) => (token.kind === 'ClientCredentials' ? { sub: token.clientId } : undefined),
  ttl: {
    ClientCredentials: (ctx, token, client) => ((client?.clientId ?? token.clientId).endsWith('-short') ? SHORT_TTL : LONG_TTL),
  },
  clockTolerance: 0,
});
provider.proxy = false;

const server = provider.listen(config.port, '127.0.0.1', () => {
  console.log(`oidc-provider ready at ${issuer}`);
});

function shutdown() {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
