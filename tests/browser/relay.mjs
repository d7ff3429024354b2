// Usage: node tests/browser/relay.mjs PORT udp|tcp [USERNAME CREDENTIAL]
//
// Launches Debian's Chromium (through playwright-core; Playwright's own browser download is
// not used), loads relay.html and has two peers in the page open a data channel through the
// TURN server at 127.0.0.1:PORT with iceTransportPolicy "relay". Prints the result as one
// line of JSON; exits 0 if the message and its echo arrived over a relay/relay pair, 1 if
// not, 2 if the browser or playwright-core is missing.

import { CHROMIUM, CHROMIUM_ARGS, loadChromium } from "./chromium.mjs";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
/** The whole run, launch included; the page gives up on ICE a little earlier. */
const OVERALL_TIMEOUT_MS = 30_000;
const ICE_TIMEOUT_MS = 10_000;

const [port, transport, username = "alice", credential = "wonderland"] = process.argv.slice(2);
if (!/^\d+$/.test(port ?? "") || !["udp", "tcp", "tls"].includes(transport)) {
  console.error("usage: node relay.mjs PORT udp|tcp [USERNAME CREDENTIAL]");
  process.exit(2);
}
const chromium = await loadChromium();

const userDataDir = mkdtempSync(join(tmpdir(), "rturn-chromium-"));
let context;
const overall = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: `gave up after ${OVERALL_TIMEOUT_MS} ms` }));
  rmSync(userDataDir, { recursive: true, force: true });
  process.exit(1);
}, OVERALL_TIMEOUT_MS);

let result;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 15_000,
    args: [
      ...CHROMIUM_ARGS,
      // turns: against the certificate the test made a moment ago, which no root trusts.
      ...(transport === "tls" ? ["--ignore-certificate-errors"] : []),
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const logs = [];
  page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
  await page.goto(pathToFileURL(join(HERE, "relay.html")).href);
  result = await page.evaluate((args) => window.relayTest(args), {
    // turns: is TURN over TLS over TCP; Chromium reports its relayProtocol as "tls".
    url: transport === "tls"
      ? `turns:127.0.0.1:${port}?transport=tcp`
      : `turn:127.0.0.1:${port}?transport=${transport}`,
    username,
    credential,
    transport,
    timeoutMs: ICE_TIMEOUT_MS,
  });
  if (logs.length) result.console = logs;
} catch (err) {
  result = { ok: false, error: String(err?.message ?? err) };
} finally {
  await context?.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
  clearTimeout(overall);
}

console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
