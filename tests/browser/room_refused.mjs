// Usage: node tests/browser/room_refused.mjs HTTP_PORT
//
// Opens rturn's video room with ?policy=relay twice on a server whose relay address is
// 127.0.0.1 and whose operator denies that address as a peer (denied-peer-ip): relaying
// between the two relays is refused (403), so the relayed candidates can never reach each
// other and ICE fails. Passes if page A marks the
// other peer failed, says why (the peer rules, 403) in its peer list and its chat log, and
// shows the relay-only switch on. Prints one line of JSON; exits 0 if all of that held, 1 if
// not, 2 if the browser or playwright-core is missing.

import { CHROMIUM, CHROMIUM_ARGS, loadChromium } from "./chromium.mjs";

const OVERALL_TIMEOUT_MS = 55_000;
const port = process.argv[2];
if (!/^\d+$/.test(port ?? "")) {
  console.error("usage: node room_refused.mjs HTTP_PORT");
  process.exit(2);
}
const chromium = await loadChromium();
const overall = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: `gave up after ${OVERALL_TIMEOUT_MS} ms` }));
  process.exit(1);
}, OVERALL_TIMEOUT_MS);

const result = { ok: false, problems: [] };
let browser;
try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 15_000,
    args: [...CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"],
  });
  const pages = [];
  for (let i = 0; i < 2; i++) {
    const page = await (await browser.newContext()).newPage();
    await page.goto(`http://127.0.0.1:${port}/room/refused?policy=relay`);
    pages.push(page);
  }
  const failed = await pages[0]
    .waitForFunction(() => document.querySelector("#peers li[data-state='failed']"), null, { timeout: 40_000 })
    .then(() => true, () => false);
  if (!failed) result.problems.push("page A never marked the other peer failed");
  // The reason stays in the peer list, also while an ICE restart tries again.
  await pages[0]
    .waitForFunction(
      () => [...document.querySelectorAll("#peers li")].some((li) => li.textContent.includes("403")),
      null,
      { timeout: 10_000 },
    )
    .catch(() => {});
  result.peers = await pages[0].$$eval("#peers li", (lis) => lis.map((li) => li.textContent));
  result.chat = await pages[0].$$eval("#chat-log li", (lis) => lis.map((li) => li.textContent));
  if (!result.peers.some((t) => t.includes("403") && t.includes("peer rules"))) {
    result.problems.push("the peer list does not say why (403, peer rules)");
  }
  if (!result.chat.some((t) => t.includes("connection failed") && t.includes("403"))) {
    result.problems.push("the chat log does not say why the connection failed");
  }
  if (!(await pages[0].isChecked("#relay-only"))) result.problems.push("the relay-only switch is off");
} catch (err) {
  result.problems.push(String(err?.message ?? err));
} finally {
  await browser?.close().catch(() => {});
  clearTimeout(overall);
}
result.ok = result.problems.length === 0;
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
