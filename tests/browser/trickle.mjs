// Usage: node tests/browser/trickle.mjs HTTP_PORT [--screenshot FILE]
//
// Opens rturn's trickle-ICE page (GET / on 127.0.0.1:HTTP_PORT) in Debian's Chromium through
// playwright-core, lets it load its ICE servers from /api/ice-servers, picks the "relay"
// policy, presses "Gather candidates" and reads the candidate table and the verdict line.
// Prints the result as one line of JSON; exits 0 if each turn: URL gave a relay candidate on
// the relay address and the verdict says so, 1 if not, 2 if the browser or playwright-core
// is missing.
// With --screenshot, then gathers once more with policy "all" and saves a PNG of the page.

import { CHROMIUM, CHROMIUM_ARGS, loadChromium } from "./chromium.mjs";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** The whole run, launch included; each wait inside gives up earlier. */
const OVERALL_TIMEOUT_MS = 45_000;
const GATHER_TIMEOUT_MS = 20_000;

const args = process.argv.slice(2);
const port = args[0];
const shotAt = args.indexOf("--screenshot");
const screenshot = shotAt >= 0 ? args[shotAt + 1] : null;
if (!/^\d+$/.test(port ?? "") || (shotAt >= 0 && !screenshot)) {
  console.error("usage: node trickle.mjs HTTP_PORT [--screenshot FILE]");
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

const base = `http://127.0.0.1:${port}`;
const result = { ok: false, url: `${base}/` };
const logs = [];
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 15_000,
    viewport: { width: 1000, height: 700 },
    args: [
      ...CHROMIUM_ARGS,
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));

  await page.goto(result.url);
  // The server list comes from /api/ice-servers: wait until the page has it (or says why not).
  await page.waitForFunction(
    () => /^(loaded|could not)/.test(document.getElementById("servers-status").textContent),
    null,
    { timeout: 10_000 },
  );
  result.serversStatus = await page.textContent("#servers-status");
  result.servers = await page.$$eval("#servers .server", (rows) =>
    rows.map((r) => ({
      url: r.querySelector('[data-field="urls"]').value,
      username: r.querySelector('[data-field="username"]').value,
      hasCredential: r.querySelector('[data-field="credential"]').value !== "",
    })),
  );

  result.relay = await gather(page, "relay");
  if (screenshot) {
    result.all = await gather(page, "all");
    await page.screenshot({ path: screenshot });
    result.screenshot = screenshot;
  }

  const problems = [];
  const turnRows = result.servers.filter((s) => /^turn:/.test(s.url));
  if (!turnRows.length) problems.push("the page loaded no turn: URL from /api/ice-servers");
  if (turnRows.some((s) => !s.username || !s.hasCredential)) {
    problems.push("a turn: URL came without username or credential");
  }
  const relays = result.relay.rows.filter((r) => r.type === "relay");
  if (!relays.length) problems.push("no row with data-type=relay");
  if (result.relay.rows.some((r) => r.type !== "relay")) {
    problems.push("policy relay, yet a non-relay candidate was listed");
  }
  if (relays.some((r) => r.address !== "127.0.0.1")) problems.push("a relay candidate not on relay-ip 127.0.0.1");
  // Each turn: URL the API listed (UDP and TCP to the server) gave its own relay candidate.
  for (const transport of ["udp", "tcp"]) {
    const listed = turnRows.some((s) => s.url.endsWith(`transport=${transport}`));
    if (listed && !relays.some((r) => r.relayProtocol === transport)) {
      problems.push(`no relay candidate over ${transport} to the server`);
    }
  }
  if (result.relay.status !== "ok" || !/relay candidate via turn:/.test(result.relay.verdict)) {
    problems.push(`verdict is not a relay success: [${result.relay.status}] ${result.relay.verdict}`);
  }
  if (result.relay.timeout) problems.push(result.relay.timeout);
  if (result.relay.errors.length) problems.push("icecandidateerror reported");
  if (result.relay.cutUrls.length) problems.push(`Server URL cut off: ${result.relay.cutUrls.join(", ")}`);
  result.problems = problems;
  result.ok = problems.length === 0;
} catch (err) {
  result.error = String(err?.message ?? err);
} finally {
  if (logs.length) result.console = logs;
  await context?.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
  clearTimeout(overall);
}

console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);

/** Selects `policy`, presses Gather and returns the table, the errors and the verdict. */
async function gather(page, policy) {
  await page.selectOption("#policy", policy);
  await page.click("#gather");
  const finished = await page
    .waitForFunction(
      () => !["running", "idle"].includes(document.getElementById("verdict").dataset.status),
      null,
      { timeout: GATHER_TIMEOUT_MS },
    )
    .then(() => true, () => false);
  const state = await page.evaluate(() => {
    const columns = [...document.querySelectorAll("thead th")].map((th) => th.textContent.trim());
    const rows = [...document.querySelectorAll("#candidates tr[data-type]")].map((tr) => {
      const cells = [...tr.children].map((td) => td.textContent.trim());
      return {
        type: tr.dataset.type,
        protocol: cells[columns.indexOf("Protocol")],
        address: cells[columns.indexOf("Address")],
        port: cells[columns.indexOf("Port")],
        relayProtocol: cells[columns.indexOf("Relay protocol")],
        url: cells[columns.indexOf("Server URL")],
      };
    });
    // The Server URL column shows each URL whole (it once cut them at 10 rem).
    const urlAt = columns.indexOf("Server URL");
    const cut = [...document.querySelectorAll("#candidates tr[data-type]")]
      .map((tr) => tr.children[urlAt])
      .filter((td) => td && td.scrollWidth > td.clientWidth + 1)
      .map((td) => td.textContent.trim());
    const verdict = document.getElementById("verdict");
    return {
      cutUrls: cut,
      status: verdict.dataset.status,
      verdict: verdict.textContent.trim(),
      rows,
      errors: [...document.querySelectorAll("#errors li")].map((li) => li.textContent.trim()),
    };
  });
  if (!finished) state.timeout = `no verdict within ${GATHER_TIMEOUT_MS} ms`;
  return state;
}
