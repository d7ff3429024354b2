// Usage: node tests/browser/shared_port.mjs PORT
//
// One TLS port for turns:, HTTPS and WSS: opens rturn's video room over HTTPS
// (https://127.0.0.1:PORT/room/demo) in Debian's Chromium through playwright-core, which
// joins over wss: on the same origin, so the same port; then, in that page, reads the TURN
// servers from /api/ice-servers (same port again) and gathers candidates with only its
// turns: URL and policy "relay". Prints the result as one line of JSON; exits 0 if the page
// joined over wss://127.0.0.1:PORT and a relay candidate came over TLS from the turns: URL on
// PORT, 1 if not, 2 if the browser or playwright-core is missing.

import { CHROMIUM, CHROMIUM_ARGS, loadChromium } from "./chromium.mjs";

/** The whole run, launch included; each wait inside gives up earlier. */
const OVERALL_TIMEOUT_MS = 45_000;
const GATHER_TIMEOUT_MS = 15_000;

const port = process.argv[2];
if (!/^\d+$/.test(port ?? "")) {
  console.error("usage: node shared_port.mjs PORT");
  process.exit(2);
}
const chromium = await loadChromium();

let browser;
const overall = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: `gave up after ${OVERALL_TIMEOUT_MS} ms` }));
  process.exit(1);
}, OVERALL_TIMEOUT_MS);

const url = `https://127.0.0.1:${port}/room/demo`;
const result = { ok: false, url, sockets: [], problems: [] };
const problems = result.problems;
const logs = [];
try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 15_000,
    args: [
      ...CHROMIUM_ARGS,
      // HTTPS, wss: and turns: against the certificate the test made a moment ago.
      "--ignore-certificate-errors",
      "--use-fake-ui-for-media-stream",
      "--use-fake-device-for-media-stream",
    ],
  });
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
  page.on("websocket", (ws) => result.sockets.push(ws.url()));
  await page.goto(url);
  // Joined: the page knows its own peer ID from the "peers" reply, which came over wss:.
  await page.waitForSelector("body[data-me]", { timeout: 15_000 });
  result.me = await page.getAttribute("body", "data-me");
  if (!result.sockets.some((s) => s.startsWith(`wss://127.0.0.1:${port}/`))) {
    problems.push(`the room did not signal over wss://127.0.0.1:${port}`);
  }

  result.gather = await page.evaluate(async ({ timeoutMs }) => {
    const api = await (await fetch("/api/ice-servers")).json();
    const iceServers = api.iceServers
      .map((s) => ({ ...s, urls: [].concat(s.urls).filter((u) => u.startsWith("turns:")) }))
      .filter((s) => s.urls.length);
    const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: "relay" });
    pc.createDataChannel("probe");
    const candidates = [];
    const errors = [];
    pc.onicecandidateerror = (e) => errors.push(`${e.errorCode} ${e.errorText} ${e.url}`);
    const done = new Promise((resolve) => {
      pc.onicecandidate = (e) => {
        if (!e.candidate) return resolve(true);
        const c = e.candidate;
        candidates.push({ type: c.type, address: c.address, relayProtocol: c.relayProtocol, url: c.url });
      };
    });
    await pc.setLocalDescription(await pc.createOffer());
    const finished = await Promise.race([done, new Promise((r) => setTimeout(() => r(false), timeoutMs))]);
    pc.close();
    return { urls: iceServers.map((s) => s.urls), candidates, errors, finished };
  }, { timeoutMs: GATHER_TIMEOUT_MS });

  const turns = `turns:127.0.0.1:${port}`;
  if (!result.gather.urls.flat().some((u) => u.startsWith(turns))) {
    problems.push(`/api/ice-servers listed no ${turns}`);
  }
  const relays = result.gather.candidates.filter((c) => c.type === "relay");
  if (!relays.some((c) => c.relayProtocol === "tls" && (c.url ?? "").startsWith(turns))) {
    problems.push(`no relay candidate over TLS from ${turns}`);
  }
  result.ok = problems.length === 0;
} catch (err) {
  result.error = String(err?.message ?? err);
} finally {
  if (logs.length) result.console = logs;
  await browser?.close().catch(() => {});
  clearTimeout(overall);
}

console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
