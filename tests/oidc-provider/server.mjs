// oidc-provider (the certified OpenID Connect server from the npm registry) configured for
// authprobe's tests. Started by tests/oauth2.rs; everything comes from the environment:
//   PORT, ISSUER          where to listen and the issuer it announces
//   KEYS_FILE             its signing keys (private JWKS): made when missing; ROTATE=1 puts a
//                         new key first (the one that signs) and keeps the others published
//   TLS_CERT, TLS_KEY     serve HTTPS with this certificate and key
//   CLIENT_KEY_FILE       the public JWK of the private_key_jwt client `keyed`
//   CLIENT_RSA_KEY_FILE   the public key (PEM) of the private_key_jwt client `keyed-rsa` (RS256)
//   PASSWORD_GRANT=0      leave the password grant unregistered (unsupported_grant_type)
// Prints "listening" on stdout once it accepts connections.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { generateKeyPair, exportJWK } from 'jose';
import Provider, { errors } from 'oidc-provider';

const env = process.env;
const API = 'https://api.authprobe.test';
const SECRET = 'oidc-Secret-Uu83-distinct';
const USERS = { 'probe-user': 'oidc-User-Pw-Kk52' };

async function keys() {
  let set = existsSync(env.KEYS_FILE) ? JSON.parse(readFileSync(env.KEYS_FILE, 'utf8')) : { keys: [] };
  if (set.keys.length === 0 || env.ROTATE === '1') {
    const { privateKey } = await generateKeyPair('RS256', { extractable: true });
    const jwk = await exportJWK(privateKey);
    jwk.kid = `k${Date.now()}`;
    jwk.alg = 'RS256';
    jwk.use = 'sig';
    set = { keys: [jwk, ...set.keys] };
    writeFileSync(env.KEYS_FILE, JSON.stringify(set));
  }
  return set;
}

const passwordGrant = env.PASSWORD_GRANT !== '0';
const clientKey = env.CLIENT_KEY_FILE ? JSON.parse(readFileSync(env.CLIENT_KEY_FILE, 'utf8')) : undefined;

const clients = [
  // client_credentials, opaque access tokens unless a resource is asked (then a JWT for it)
  { client_id: 'svc', client_secret: SECRET, grant_types: ['client_credentials'], response_types: [], redirect_uris: [], scope: 'api' },
  { client_id: 'svc-post', client_secret: SECRET, grant_types: ['client_credentials'], response_types: [], redirect_uris: [], token_endpoint_auth_method: 'client_secret_post', scope: 'api' },
  {
    client_id: 'app', client_secret: SECRET, response_types: [], redirect_uris: [],
    grant_types: passwordGrant ? ['password', 'refresh_token'] : ['client_credentials'],
    scope: 'openid offline_access api',
  },
];
if (passwordGrant) {
  // A public client (no secret): the password grant of a native app.
  clients.push({
    client_id: 'public-app', token_endpoint_auth_method: 'none', response_types: [], redirect_uris: [],
    grant_types: ['password'], scope: 'openid',
  });
}
if (env.CLIENT_RSA_KEY_FILE) {
  const jwk = createPublicKey(readFileSync(env.CLIENT_RSA_KEY_FILE, 'utf8')).export({ format: 'jwk' });
  clients.push({
    client_id: 'keyed-rsa', grant_types: ['client_credentials'], response_types: [], redirect_uris: [], scope: 'api',
    token_endpoint_auth_method: 'private_key_jwt', token_endpoint_auth_signing_alg: 'RS256',
    jwks: { keys: [{ ...jwk, alg: 'RS256', use: 'sig', kid: 'rsa-1' }] },
  });
}
if (clientKey) {
  clients.push({
    client_id: 'keyed', grant_types: ['client_credentials'], response_types: [], redirect_uris: [], scope: 'api',
    token_endpoint_auth_method: 'private_key_jwt', token_endpoint_auth_signing_alg: clientKey.alg,
    jwks: { keys: [clientKey] },
  });
}

const provider = new Provider(env.ISSUER, {
  clients,
  jwks: await keys(),
  scopes: ['openid', 'offline_access', 'api', 'admin'],
  findAccount: (ctx, id) => (USERS[id] ? { accountId: id, claims: () => ({ sub: id }) } : undefined),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (resource !== API) throw new errors.InvalidTarget();
        return { scope: 'api', audience: API, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
      },
    },
  },
  ttl: { AccessToken: 3600, ClientCredentials: 600, RefreshToken: 86400, IdToken: 3600, Grant: 86400 },
});

if (passwordGrant) {
  // Resource owner password credentials, registered as oidc-provider's documentation shows for
  // a grant it does not ship.
  provider.registerGrantType('password', async (ctx) => {
    const { client, params } = ctx.oidc;
    const accountId = params.username;
    if (!USERS[accountId] || USERS[accountId] !== params.password) {
      throw new errors.InvalidGrant('invalid resource owner credentials');
    }
    const scopes = new Set((params.scope || '').split(' ').filter(Boolean));
    const allowed = new Set(client.scope.split(' '));
    for (const s of scopes) {
      if (!allowed.has(s)) throw new errors.InvalidScope('requested scope is not allowed', s);
    }
    const oidcScopes = [...scopes].filter((s) => ['openid', 'offline_access'].includes(s)).join(' ');
    const grant = new provider.Grant({ accountId, clientId: client.clientId });
    if (oidcScopes) grant.addOIDCScope(oidcScopes);
    const resource = params.resource;
    if (resource) grant.addResourceScope(resource, scopes.has('api') ? 'api' : '');
    const grantId = await grant.save();
    const at = new provider.AccessToken({ accountId, client, grantId, gty: 'password', scope: oidcScopes });
    if (resource) {
      const info = { scope: 'api', audience: API, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
      at.resourceServer = new provider.ResourceServer(resource, info);
      at.scope = scopes.has('api') ? 'api' : undefined;
    }
    const accessToken = await at.save();
    let refreshToken;
    if (client.grantTypes.includes('refresh_token')) {
      const rt = new provider.RefreshToken({
        accountId, client, grantId, gty: 'password', scope: [...scopes].join(' '), rotations: 0, resource,
      });
      refreshToken = await rt.save();
    }
    let idToken;
    if (scopes.has('openid')) {
      const token = new provider.IdToken({ sub: accountId }, { ctx });
      token.scope = 'openid';
      idToken = await token.issue({ use: 'idtoken' });
    }
    ctx.body = {
      access_token: accessToken, expires_in: at.expiration, id_token: idToken, refresh_token: refreshToken,
      scope: [...scopes].join(' ') || undefined, token_type: 'Bearer',
    };
  }, ['username', 'password', 'scope', 'resource'], ['resource']);
}

const server = env.TLS_CERT
  ? https.createServer({ cert: readFileSync(env.TLS_CERT), key: readFileSync(env.TLS_KEY) }, provider.callback())
  : http.createServer(provider.callback());
server.listen(Number(env.PORT), '127.0.0.1', () => console.log('listening'));
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
