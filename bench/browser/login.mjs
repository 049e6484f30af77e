// The interactive login of bench/interactive.sh as a browser check makes it: Debian's Chromium,
// headless, driven by puppeteer-core, through the identity provider's own pages (username and
// password, a TOTP code, consent), stopped at the redirect to the redirect URI, the code then
// exchanged at the token endpoint.
//
//   node login.mjs CONFIG.json
//
// CONFIG: {issuer, client_id, client_secret, redirect_uri, executable, accounts: [{username,
// password, totp_secret}], warmup, logins, launches}. Each account is used for one login (its TOTP
// time step is then spent). Two ways, one after the other:
//   context  the browser-check way: Chromium launched once, a fresh incognito context (browser
//            context) and page per login, `warmup` logins first, then `logins` measured;
//   launch   Chromium launched, one login in its default context, closed: `launches` times.
// Between phases it prints `{"mark": NAME}` and waits for a line on stdin, so that the harness can
// read the whole process tree's CPU time while nothing runs; at the end, `{"result": …}`.
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import puppeteer from "puppeteer-core";

const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const input = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function mark(name) {
    process.stdout.write(JSON.stringify({ mark: name }) + "\n");
    const { done } = await input.next();
    if (done) throw new Error("the harness went away");
}

// RFC 6238 (SHA-1, 6 digits) of a base32 secret or an otpauth:// URI with its period.
function totp(secret, now = Date.now()) {
    let period = 30;
    if (secret.startsWith("otpauth://")) {
        const u = new URL(secret);
        period = Number(u.searchParams.get("period") || 30);
        secret = u.searchParams.get("secret");
    }
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let bits = "";
    for (const c of secret.replace(/=+$/, "").toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
    const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
    const counter = Buffer.alloc(8);
    counter.writeBigUInt64BE(BigInt(Math.floor(now / 1000 / period)));
    const mac = crypto.createHmac("sha1", key).update(counter).digest();
    const offset = mac[mac.length - 1] & 0xf;
    return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

const b64url = (buf) => buf.toString("base64url");

async function launch() {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), "authprobe-bench-chromium-"));
    const browser = await puppeteer.launch({
        executablePath: cfg.executable,
        headless: true,
        userDataDir: profile,
        args: [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    });
    return {
        browser,
        async close() {
            await browser.close();
            fs.rmSync(profile, { recursive: true, force: true });
        },
    };
}

// One login in `context` (a BrowserContext) as `account`; returns its wall time in seconds.
async function login(context, account) {
    const started = process.hrtime.bigint();
    const verifier = b64url(crypto.randomBytes(32));
    const state = b64url(crypto.randomBytes(16));
    const authorize = new URL(`${cfg.issuer}/authorize`);
    for (const [k, v] of Object.entries({
        response_type: "code",
        client_id: cfg.client_id,
        redirect_uri: cfg.redirect_uri,
        scope: "openid",
        state,
        nonce: b64url(crypto.randomBytes(16)),
        code_challenge: b64url(crypto.createHash("sha256").update(verifier).digest()),
        code_challenge_method: "S256",
    })) {
        authorize.searchParams.set(k, v);
    }
    const page = await context.newPage();
    // The redirect to the redirect URI is answered here, never sent: the application is not there
    // (and the machine has no network). Only requests to it are paused, not the IdP's.
    const cdp = await page.createCDPSession();
    const redirected = new Promise((resolve) => {
        cdp.on("Fetch.requestPaused", (event) => {
            resolve(event.request.url);
            cdp.send("Fetch.fulfillRequest", {
                requestId: event.requestId,
                responseCode: 200,
                responseHeaders: [{ name: "Content-Type", value: "text/html" }],
                body: Buffer.from("<!DOCTYPE html><title>callback</title>").toString("base64"),
            }).catch(() => {});
        });
    });
    await cdp.send("Fetch.enable", { patterns: [{ urlPattern: `${cfg.redirect_uri}*`, requestStage: "Request" }] });

    await page.goto(authorize.href);
    await page.type("#username", account.username);
    await page.type("#password", account.password);
    await Promise.all([page.waitForNavigation(), page.click("#kc-login")]);
    await page.waitForSelector("#otp");
    await page.type("#otp", totp(account.totp_secret));
    await Promise.all([page.waitForNavigation(), page.click("#kc-login")]);
    await page.waitForSelector('input[name="accept"]');
    await Promise.all([page.waitForNavigation(), page.click('input[name="accept"]')]);
    const back = new URL(await redirected);
    await page.close();
    if (back.searchParams.get("state") !== state) throw new Error(`state mismatch: ${back}`);
    const code = back.searchParams.get("code");
    if (!code) throw new Error(`no code: ${back}`);

    const token = await fetch(`${cfg.issuer}/token`, {
        method: "POST",
        headers: {
            Authorization: "Basic " + Buffer.from(`${cfg.client_id}:${cfg.client_secret}`).toString("base64"),
            "Content-Type": "application/x-www-form-urlencoded",
        },
        body: new URLSearchParams({
            grant_type: "authorization_code",
            code,
            redirect_uri: cfg.redirect_uri,
            code_verifier: verifier,
        }),
    });
    const body = await token.json();
    if (token.status !== 200 || !body.access_token) throw new Error(`token: ${token.status} ${JSON.stringify(body)}`);
    return Number(process.hrtime.bigint() - started) / 1e9;
}

const accounts = cfg.accounts.slice();
const next = () => {
    const a = accounts.shift();
    if (!a) throw new Error("out of accounts");
    return a;
};
const result = { context: [], launch: [] };

// The browser-check way: one browser, a fresh incognito context per login.
await mark("start");
const shared = await launch();
await mark("launched");
for (let i = 0; i < cfg.warmup; i++) {
    const ctx = await shared.browser.createBrowserContext();
    await login(ctx, next());
    await ctx.close();
}
await mark("context-start");
for (let i = 0; i < cfg.logins; i++) {
    const ctx = await shared.browser.createBrowserContext();
    result.context.push(await login(ctx, next()));
    await ctx.close();
}
await mark("context-end");
await shared.close();
await mark("closed");

// A browser per login: launched, one login in its default context, closed.
for (let i = 0; i < cfg.launches; i++) {
    const started = process.hrtime.bigint();
    const own = await launch();
    await login(own.browser.defaultBrowserContext(), next());
    await own.close();
    result.launch.push(Number(process.hrtime.bigint() - started) / 1e9);
}
await mark("launch-end");
process.stdout.write(JSON.stringify({ result }) + "\n");
process.exit(0);
