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
//
// Interactive login (authorization code flow with PKCE through HTML pages of its own, served
// under /interaction/UID, see "Interaction pages" below): the clients `web` (one-page login,
// consent), `web-idfirst` (identifier first: username page, then password page; consent) and
// `web-public` (public, one-page login, consent granted without asking); the users probe-user
// (password only) and otp-user (password, then a TOTP code: RFC 6238, SHA-1, 6 digits, 30 s).
// RP-initiated logout (/session/end) renders a plain confirm form.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { createPublicKey, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { generateKeyPair, exportJWK } from 'jose';
import Provider, { errors } from 'oidc-provider';

const env = process.env;
const API = 'https://api.authprobe.test';
const SECRET = 'oidc-Secret-Uu83-distinct';
const USERS = { 'probe-user': 'oidc-User-Pw-Kk52' };
const REDIRECT_URI = 'https://app.authprobe.test/callback';
const POST_LOGOUT_REDIRECT_URI = 'https://app.authprobe.test/logged-out';
const TOTP_SECRET = 'AUTHPROBEOTPUSERKJ7QW2XZ5MN4VLEB'; // base32, 20 bytes
// The accounts of the interactive login (the password grant knows probe-user only).
const ACCOUNTS = {
  'probe-user': { password: USERS['probe-user'] },
  'otp-user': { password: 'oidc-Otp-Pw-Jj71', totp: TOTP_SECRET },
};

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
// Authorization code clients of the interactive login (PKCE required for all, see `pkce`).
const codeClient = {
  redirect_uris: [REDIRECT_URI], post_logout_redirect_uris: [POST_LOGOUT_REDIRECT_URI],
  response_types: ['code'], grant_types: ['authorization_code', 'refresh_token'], scope: 'openid offline_access api',
};
clients.push(
  { ...codeClient, client_id: 'web', client_name: 'AuthProbe Web', client_secret: SECRET, token_endpoint_auth_method: 'client_secret_basic' },
  { ...codeClient, client_id: 'web-idfirst', client_name: 'AuthProbe Web (identifier first)', client_secret: SECRET, token_endpoint_auth_method: 'client_secret_basic' },
  { ...codeClient, client_id: 'web-public', client_name: 'AuthProbe SPA', token_endpoint_auth_method: 'none' },
);
const IDENTIFIER_FIRST = new Set(['web-idfirst']);
const FIRST_PARTY = new Set(['web-public']); // consent granted without asking

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

// ------------------------------------------------------------------------------------------
// Interaction pages: HTML of its own, shaped like Keycloak's and Auth0's, with decoys around the
// login form (a language picker before it, a search box after it).

const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="robots" content="noindex, nofollow">
  <title>${esc(title)} | AuthProbe Test Realm</title>
  <link rel="stylesheet" href="/resources/login.css">
</head>
<body class="login-pf">
<div class="login-pf-page">
  <header id="kc-header">
    <div id="kc-header-wrapper">AuthProbe Test Realm</div>
    <div id="kc-locale">
      <form method="get" action="/lang" id="kc-locale-form">
        <label for="lang" class="sr-only">Language</label>
        <select id="lang" name="lang"><option value="en" selected>English</option><option value="de">Deutsch</option><option value="fr">Fran&ccedil;ais</option></select>
        <button type="submit" class="btn btn-link">Change language</button>
      </form>
    </div>
  </header>
  <main class="card-pf">
    <h1 id="kc-page-title">${esc(title)}</h1>
${body}
  </main>
  <footer id="kc-footer">
    <form action="/search" class="help-search"><input type="text" name="q" placeholder="Search help articles" aria-label="Search help"></form>
    <p><a href="/privacy">Privacy</a> &middot; <a href="/terms">Terms</a></p>
  </footer>
</div>
</body>
</html>
`;
}

const loginAlert = (text) => `    <div class="alert alert-error" role="alert"><span class="kc-feedback-text">${esc(text)}</span></div>\n`;

function loginPage(uid, st, { username = '', error } = {}) {
  return page('Sign in to your account', `${error ? loginAlert(error) : ''}    <form id="kc-form-login" class="form" method="post" action="/interaction/${uid}/login?src=page&amp;v=2" novalidate>
      <input type="hidden" name="csrf" value="${esc(st.csrf)}">
      <div class="form-group">
        <label for="username">Username or email</label>
        <input type="text" id="username" name="username" value="${esc(username)}" autocomplete="username" autofocus${error ? ' aria-invalid="true"' : ''}>
      </div>
      <div class="form-group">
        <label for="password">Password</label>
        <input type="password" id="password" name="password" autocomplete="current-password"${error ? ' aria-invalid="true"' : ''}>
      </div>
      <div class="form-options">
        <label><input type="checkbox" id="rememberMe" name="rememberMe"> Remember me</label>
        <a href="/interaction/${uid}/forgot-password">Forgot password?</a>
      </div>
      <button type="submit" name="login" value="sign-in" class="btn btn-primary btn-block">Sign in</button>
    </form>`);
}

function identifierPage(uid, st, { identifier = '', error } = {}) {
  return page('Welcome', `${error ? loginAlert(error) : ''}    <p class="instruction">Sign in to continue to ${esc(st.clientName)}.</p>
    <form id="identifier-form" class="form" method="post" action="/interaction/${uid}/identifier" novalidate>
      <input type="hidden" name="csrf" value="${esc(st.csrf)}">
      <div class="form-group">
        <label for="identifier">Email address or username</label>
        <input type="email" id="identifier" name="identifier" value="${esc(identifier)}" inputmode="email" autocomplete="username" autocapitalize="none" spellcheck="false" autofocus>
      </div>
      <button type="submit" name="action" value="next" class="btn btn-primary btn-block">Next</button>
    </form>
    <p><a href="/interaction/${uid}/forgot-password">Forgot password?</a></p>`);
}

function passwordPage(uid, st, { error } = {}) {
  return page('Enter your password', `${error ? loginAlert(error) : ''}    <div id="kc-username" class="identity">
      <span id="kc-attempted-username">${esc(st.username)}</span>
      <a id="reset-login" href="/interaction/${uid}/restart">Not you?</a>
    </div>
    <form id="password-form" class="form" method="post" action="/interaction/${uid}/password">
      <input type="hidden" name="csrf" value="${esc(st.csrf)}">
      <input type="hidden" name="username" value="${esc(st.username)}">
      <div class="form-group">
        <label for="password">Password</label>
        <input type="password" id="password" name="password" autocomplete="current-password" autofocus>
      </div>
      <button type="submit" name="action" value="continue" class="btn btn-primary btn-block">Continue</button>
    </form>
    <p><a href="/interaction/${uid}/forgot-password">Forgot password?</a></p>`);
}

function otpPage(uid, st, { error } = {}) {
  return page('Two-step verification', `    <p class="instruction">Enter the 6-digit code from your authenticator app.</p>
    <form id="kc-otp-login-form" class="form" method="post" action="/interaction/${uid}/otp">
      <input type="hidden" name="csrf" value="${esc(st.csrf)}">
      <div class="form-group">
        <label for="otp">One-time code</label>
        <input type="text" id="otp" name="otp" inputmode="numeric" autocomplete="one-time-code" maxlength="6" pattern="[0-9]*" autofocus${error ? ' aria-invalid="true"' : ''}>
${error ? `        <span id="input-error-otp" class="error" aria-live="polite">${esc(error)}</span>\n` : ''}      </div>
      <button type="submit" name="login" value="verify" class="btn btn-primary btn-block">Verify</button>
    </form>`);
}

function consentPage(uid, st, details, params) {
  const scopes = new Set(details.missingOIDCScope || []);
  for (const list of Object.values(details.missingResourceScopes || {})) list.forEach((x) => scopes.add(x));
  if (scopes.size === 0) (params.scope || '').split(' ').filter(Boolean).forEach((x) => scopes.add(x));
  const label = { openid: 'Verify your identity', offline_access: 'Keep access while you are away (offline access)', api: 'Access the AuthProbe API' };
  return page(`Grant access to ${st.clientName}`, `    <div id="kc-oauth" class="content-area">
      <p><strong>${esc(st.clientName)}</strong> wants to:</p>
      <ul id="scopes">
${[...scopes].map((x) => `        <li data-scope="${esc(x)}">${esc(label[x] || x)}</li>`).join('\n')}
      </ul>
      <form id="consent-form" class="form-actions" method="post" action="/interaction/${uid}/consent">
        <input type="hidden" name="csrf" value="${esc(st.csrf)}">
        <button type="submit" name="decision" value="allow" class="btn btn-primary">Allow</button>
        <button type="submit" name="decision" value="deny" class="btn btn-default">Deny</button>
      </form>
    </div>`);
}

// Pages without any form: errors, and where the decoys lead.
function plainPage(title, text) {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>${esc(title)}</title></head>
<body>
<div id="kc-error-message">
  <h1>${esc(title)}</h1>
  <p class="instruction">${esc(text)}</p>
</div>
</body>
</html>
`;
}

// oidc-provider's own error page (e.g. SessionNotFound on /auth/UID), also used for the errors of
// the interaction routes: a status of 4xx/5xx, error and error_description, no form.
async function renderError(ctx, out) {
  ctx.type = 'html';
  ctx.body = `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Error | AuthProbe Test Realm</title></head>
<body>
<div id="kc-error-message">
  <h1>We are sorry...</h1>
  <p class="instruction">${esc(out.error_description || out.error)}</p>
  <pre><strong>error</strong>: ${esc(out.error)}</pre>
${out.error_description ? `  <pre><strong>error_description</strong>: ${esc(out.error_description)}</pre>\n` : ''}</div>
</body>
</html>
`;
}

// RP-initiated logout: one ordinary form holding the hidden xsrf and its submit button (the
// default page puts the buttons outside the form, tied to it by form="op.logoutForm").
async function logoutSource(ctx) {
  const action = ctx.oidc.urlFor('end_session_confirm');
  const { secret } = ctx.oidc.session.state;
  const who = ctx.oidc.client ? ` of ${esc(ctx.oidc.client.clientName || ctx.oidc.client.clientId)}` : '';
  ctx.body = page('Sign out', `    <p class="instruction">Do you want to sign out${who}?</p>
    <form id="kc-logout-form" method="post" action="${esc(action)}">
      <input type="hidden" name="xsrf" value="${esc(secret)}">
      <button type="submit" name="logout" value="yes" class="btn btn-primary btn-block">Sign out</button>
    </form>`);
}

// A first-party client's grant is made without asking: the scopes it requested.
async function loadExistingGrant(ctx) {
  const { oidc } = ctx;
  const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
  if (grantId) return oidc.provider.Grant.find(grantId);
  if (!FIRST_PARTY.has(oidc.client.clientId)) return undefined;
  const grant = new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
  grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
  for (const [indicator, rs] of Object.entries(oidc.resourceServers || {})) {
    grant.addResourceScope(indicator, [...oidc.requestParamScopes].filter((x) => rs.scopes.has(x)).join(' '));
  }
  await grant.save();
  return grant;
}

// TOTP (RFC 6238 over RFC 4226): HMAC-SHA1, 6 digits, 30 s steps.
function base32(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of s.replace(/=+$/, '').toUpperCase()) {
    const i = alphabet.indexOf(c);
    if (i < 0) throw new Error(`not base32: ${c}`);
    value = ((value << 5) | i) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}
function hotp(key, counter) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const h = createHmac('sha1', key).update(msg).digest();
  const o = h[h.length - 1] & 0x0f;
  const n = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(n % 1_000_000).padStart(6, '0');
}
const usedSteps = new Map(); // accountId -> Set of the steps already used (replays are refused)
function checkTotp(accountId, code) {
  const account = ACCOUNTS[accountId];
  if (!account?.totp || !/^[0-9]{6}$/.test(code || '')) return false;
  const key = base32(account.totp);
  const now = Math.floor(Date.now() / 1000 / 30);
  const used = usedSteps.get(accountId) || new Set();
  for (const step of [now, now - 1, now + 1]) {
    if (used.has(step)) continue;
    if (timingSafeEqual(Buffer.from(hotp(key, step)), Buffer.from(code))) {
      used.add(step);
      for (const s of used) if (s < now - 2) used.delete(s);
      usedSteps.set(accountId, used);
      return true;
    }
  }
  return false;
}

const provider = new Provider(env.ISSUER, {
  clients,
  jwks: await keys(),
  scopes: ['openid', 'offline_access', 'api', 'admin'],
  findAccount: (ctx, id) => (USERS[id] || ACCOUNTS[id] ? { accountId: id, claims: () => ({ sub: id }) } : undefined),
  pkce: { required: () => true },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  loadExistingGrant,
  renderError,
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: { enabled: true, logoutSource },
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
  ttl: {
    AccessToken: 3600, ClientCredentials: 600, RefreshToken: 86400, IdToken: 3600, Grant: 86400,
    Interaction: 3600, Session: 14 * 24 * 3600, // oidc-provider's defaults, set to silence its notices
  },
});

// ------------------------------------------------------------------------------------------
// The interaction routes. State is kept here, keyed by the interaction's uid: its csrf value,
// the stage reached (identifier, password, otp) and the account identified so far.

const interactions = new Map(); // uid -> { csrf, stage, username, accountId, clientName, at }
function stateFor(details, client) {
  let st = interactions.get(details.uid);
  if (!st) {
    const now = Date.now();
    for (const [k, v] of interactions) if (now - v.at > 3_600_000) interactions.delete(k);
    const idFirst = IDENTIFIER_FIRST.has(details.params.client_id);
    st = { csrf: randomBytes(24).toString('base64url'), stage: idFirst ? 'identifier' : 'login', idFirst, at: now };
    interactions.set(details.uid, st);
  }
  st.clientName = client?.clientName || details.params.client_id;
  return st;
}

async function readForm(ctx) {
  const type = (ctx.get('content-type') || '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    const err = new errors.InvalidRequest('the form must be sent as application/x-www-form-urlencoded');
    throw err;
  }
  const chunks = [];
  for await (const chunk of ctx.req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function html(ctx, status, body) {
  ctx.status = status;
  ctx.type = 'html';
  ctx.set('Cache-Control', 'no-store');
  ctx.body = body;
}

// After the login: done (then consent), or the one-time code when the account has one.
async function passwordAccepted(ctx, uid, st, accountId) {
  st.accountId = accountId;
  if (ACCOUNTS[accountId].totp) {
    st.stage = 'otp';
    return html(ctx, 200, otpPage(uid, st));
  }
  return finishLogin(ctx, uid, accountId, ['pwd']);
}
async function finishLogin(ctx, uid, accountId, amr) {
  interactions.delete(uid);
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, { login: { accountId, amr } }, { mergeWithLastSubmission: false });
  ctx.status = 303;
  ctx.redirect(returnTo);
}
// Consent given: the grant gets what the prompt found missing.
async function finishConsent(ctx, uid, details) {
  const { details: missing } = details.prompt;
  let grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
  grant ||= new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  interactions.delete(uid);
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  ctx.status = 303;
  ctx.redirect(returnTo);
}
const credentialsOk = (username, password) => {
  const account = ACCOUNTS[username];
  if (!account || typeof password !== 'string') return false;
  const a = Buffer.from(account.password);
  const b = Buffer.from(password);
  return a.length === b.length && timingSafeEqual(a, b);
};

const INTERACTION = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/([a-z-]+))?$/;

provider.use(async (ctx, next) => {
  // The decoys' targets: pages without a form.
  if (ctx.method === 'GET' && ['/lang', '/search', '/privacy', '/terms'].includes(ctx.path)) {
    return html(ctx, 200, plainPage('AuthProbe Test Realm', `Nothing to see here (${ctx.path.slice(1)}).`));
  }
  if (ctx.method === 'GET' && ctx.path === '/resources/login.css') {
    ctx.type = 'text/css';
    ctx.body = 'body{font-family:sans-serif}.alert-error{color:#c00}.error{color:#c00}\n';
    return undefined;
  }
  const m = INTERACTION.exec(ctx.path);
  if (!m) return next();
  const [, uid, action] = m;
  try {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.uid !== uid) throw new errors.SessionNotFound('interaction session not found');
    const client = await provider.Client.find(details.params.client_id);
    const st = stateFor(details, client);
    const { prompt } = details;

    if (ctx.method === 'GET') {
      if (action === 'forgot-password') {
        return html(ctx, 200, plainPage('Forgot your password?', 'Ask your administrator to reset it.'));
      }
      if (action === 'restart') {
        if (st.idFirst && st.stage !== 'identifier') Object.assign(st, { stage: 'identifier', username: undefined, accountId: undefined });
        ctx.status = 303;
        return ctx.redirect(`/interaction/${uid}`);
      }
      if (action) return next();
      if (prompt.name === 'consent' && FIRST_PARTY.has(details.params.client_id)) {
        // prompt=consent (which offline_access needs) from a first-party client: granted, no page.
        return finishConsent(ctx, uid, details);
      }
      if (prompt.name === 'consent') return html(ctx, 200, consentPage(uid, st, prompt.details, details.params));
      if (prompt.name !== 'login') throw new errors.InvalidRequest(`unsupported prompt ${prompt.name}`);
      if (st.stage === 'otp') return html(ctx, 200, otpPage(uid, st));
      if (st.stage === 'password') return html(ctx, 200, passwordPage(uid, st));
      if (st.stage === 'identifier') return html(ctx, 200, identifierPage(uid, st));
      return html(ctx, 200, loginPage(uid, st));
    }

    if (ctx.method !== 'POST' || !action) return next();
    if (action === 'login' && (ctx.query.src !== 'page' || ctx.query.v !== '2')) {
      return html(ctx, 400, plainPage('Bad request', 'The form was posted to a wrong address (src=page and v=2 expected).'));
    }
    const form = await readForm(ctx);
    const csrf = form.get('csrf');
    const a = Buffer.from(st.csrf);
    const b = Buffer.from(csrf || '');
    if (!(a.length === b.length && timingSafeEqual(a, b))) {
      return html(ctx, 403, plainPage('Forbidden', 'CSRF token missing or wrong'));
    }

    if (action === 'consent' && prompt.name === 'consent') {
      const decision = form.get('decision');
      if (decision === 'deny') {
        interactions.delete(uid);
        const returnTo = await provider.interactionResult(ctx.req, ctx.res, { error: 'access_denied', error_description: 'End-User aborted interaction' }, { mergeWithLastSubmission: false });
        ctx.status = 303;
        return ctx.redirect(returnTo);
      }
      if (decision !== 'allow') return html(ctx, 400, plainPage('Bad request', 'Choose Allow or Deny.'));
      return finishConsent(ctx, uid, details);
    }
    if (prompt.name !== 'login') throw new errors.InvalidRequest(`no ${action} step in a ${prompt.name} interaction`);

    if (action === 'login' && st.stage === 'login') {
      const username = (form.get('username') || '').trim();
      if (!credentialsOk(username, form.get('password'))) {
        return html(ctx, 200, loginPage(uid, st, { username, error: 'Invalid username or password.' }));
      }
      return passwordAccepted(ctx, uid, st, username);
    }
    if (action === 'identifier' && st.stage === 'identifier') {
      const identifier = (form.get('identifier') || '').trim();
      if (!ACCOUNTS[identifier]) {
        return html(ctx, 200, identifierPage(uid, st, { identifier, error: 'We could not find that account.' }));
      }
      Object.assign(st, { stage: 'password', username: identifier });
      ctx.status = 303;
      return ctx.redirect(`/interaction/${uid}`);
    }
    if (action === 'password' && st.stage === 'password') {
      if (form.get('username') !== st.username) {
        return html(ctx, 400, plainPage('Bad request', 'The account changed during the sign-in.'));
      }
      if (!credentialsOk(st.username, form.get('password'))) {
        return html(ctx, 200, passwordPage(uid, st, { error: 'Invalid password.' }));
      }
      return passwordAccepted(ctx, uid, st, st.username);
    }
    if (action === 'otp' && st.stage === 'otp') {
      if (!checkTotp(st.accountId, (form.get('otp') || '').trim())) {
        return html(ctx, 200, otpPage(uid, st, { error: 'Invalid authenticator code.' }));
      }
      return finishLogin(ctx, uid, st.accountId, ['pwd', 'otp']);
    }
    return html(ctx, 400, plainPage('Bad request', `This step (${action}) is not the current one.`));
  } catch (err) {
    if (!(err instanceof errors.OIDCProviderError)) throw err;
    ctx.status = err.statusCode || 500;
    ctx.set('Cache-Control', 'no-store');
    return renderError(ctx, { error: err.error, error_description: err.error_description }, err);
  }
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
