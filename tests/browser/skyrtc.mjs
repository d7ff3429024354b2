// Usage: node tests/browser/skyrtc.mjs HTTP_PORT [--screenshot FILE]
//
// Opens skyrtc.html (an app written against the articles' SkyRTC client) twice, in two
// browser contexts of Debian's Chromium (through playwright-core), both signaling over
// ws://127.0.0.1:HTTP_PORT/skyrtc in one room: page A joins first, page B joins, offers to A
// as SkyRTC does, and opens a data channel through rturn's TURN relay (the iceServers of
// `_peers`, relay only). Passes if B's message reaches A and A's echo reaches B, both pages
// added the candidates rturn relayed with `new RTCIceCandidate(data)`, and both selected
// pairs are relay/relay. Prints the result as one line of JSON; exits 0 if all of that held,
// 1 if not, 2 if the browser or playwright-core is missing. --screenshot saves page B.

import { CHROMIUM, CHROMIUM_ARGS, loadChromium } from "./chromium.mjs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
/** The whole run, launch included; the pages give up a little earlier. */
const OVERALL_TIMEOUT_MS = 45_000;
const PAGE_TIMEOUT_MS = 25_000;

const args = process.argv.slice(2);
const port = args[0];
const shotAt = args.indexOf("--screenshot");
const screenshot = shotAt >= 0 ? args[shotAt + 1] : null;
if (!/^\d+$/.test(port ?? "") || (shotAt >= 0 && !screenshot)) {
  console.error("usage: node skyrtc.mjs HTTP_PORT [--screenshot FILE]");
  process.exit(2);
}
const chromium = await loadChromium();

let browser;
const overall = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: `gave up after ${OVERALL_TIMEOUT_MS} ms` }));
  process.exit(1);
}, OVERALL_TIMEOUT_MS);

const url = `ws://127.0.0.1:${port}/skyrtc`;
const room = `skyrtc-${Math.random().toString(36).slice(2)}`;
const result = { ok: false, url, room, problems: [] };
const problems = result.problems;
const logs = { a: [], b: [] };
try {
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, timeout: 15_000, args: CHROMIUM_ARGS });
  const pages = {};
  for (const name of ["a", "b"]) {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on("console", (m) => logs[name].push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => logs[name].push(`pageerror: ${e.message}`));
    await page.goto(pathToFileURL(join(HERE, "skyrtc.html")).href);
    pages[name] = page;
  }
  // A is in the room first; B finds it in _peers and offers.
  const idA = await pages.a.evaluate(([u, r]) => window.start(u, r), [url, room]);
  const idB = await pages.b.evaluate(([u, r]) => window.start(u, r), [url, room]);
  const [a, b] = await Promise.all(
    ["a", "b"].map((name) => pages[name].evaluate((ms) => window.done(ms), PAGE_TIMEOUT_MS)),
  );
  result.a = a;
  result.b = b;
  if (screenshot) await pages.b.screenshot({ path: screenshot });

  if (JSON.stringify(a.connections) !== "[]") problems.push(`A was not alone: ${a.connections}`);
  if (JSON.stringify(b.connections) !== JSON.stringify([idA])) problems.push(`B's connections are not [A]`);
  if (!a.events.includes("_new_peer")) problems.push("A was not told of B (_new_peer)");
  if (a.me !== idA || b.me !== idB || idA === idB) problems.push("socketIds wrong");
  if (!b.sent || a.received !== b.sent) problems.push("A did not receive B's message");
  if (b.echo !== `echo: ${b.sent}`) problems.push("B did not receive A's echo");
  for (const [name, side] of [["A", a], ["B", b]]) {
    if (!(side.candidatesAdded > 0)) problems.push(`${name} added no relayed candidate`);
    const pair = side.pair;
    if (!pair || pair.local !== "relay" || pair.remote !== "relay") {
      problems.push(`${name}: selected pair is not relay/relay: ${JSON.stringify(pair)}`);
    }
    for (const p of side.problems) problems.push(`${name}: ${p}`);
  }
  result.ok = problems.length === 0;
} catch (err) {
  problems.push(String(err && err.stack || err));
} finally {
  if (!result.ok) result.logs = logs;
  console.log(JSON.stringify(result));
  clearTimeout(overall);
  if (browser) await browser.close().catch(() => {});
  process.exit(result.ok ? 0 : 1);
}
