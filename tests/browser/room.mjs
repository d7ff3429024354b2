// Usage: node tests/browser/room.mjs HTTP_PORT [HTTP_PORT_B] [--screenshot FILE]
//
// Opens rturn's video room (GET /room/demo?policy=relay on 127.0.0.1:HTTP_PORT) twice, in two
// separate browser contexts of Debian's Chromium (through playwright-core) with a fake camera
// and microphone. The pages find each other through the signaling relay at /ws and connect
// through rturn's TURN relay. Passes if each page lists the other as connected with a
// relay/relay selected pair, shows its video, and a chat message crosses each way over the
// data channel, and the relay-only switch shows ?policy=relay. Prints the result as one line of JSON; exits 0 if all of that held, 1 if
// not, 2 if the browser or playwright-core is missing. --screenshot saves page A as a PNG.
// With HTTP_PORT_B, page B is served by that port's server (another node of a cluster): it
// signals and relays through that node, page A through the first.

import { CHROMIUM, CHROMIUM_ARGS, loadChromium } from "./chromium.mjs";

/** The whole run, launch included. */
const OVERALL_TIMEOUT_MS = 50_000;
/** The waits in the pages share this budget, so the result is printed before the above. */
const WAITS_MS = 35_000;
const started = Date.now();
/** What is left of the budget for the next wait (at least a second). */
const left = () => Math.max(1_000, started + WAITS_MS - Date.now());

const args = process.argv.slice(2);
const port = args[0];
const shotAt = args.indexOf("--screenshot");
const screenshot = shotAt >= 0 ? args[shotAt + 1] : null;
const portB = /^\d+$/.test(args[1] ?? "") ? args[1] : port;
if (!/^\d+$/.test(port ?? "") || (shotAt >= 0 && !screenshot)) {
  console.error("usage: node room.mjs HTTP_PORT [HTTP_PORT_B] [--screenshot FILE]");
  process.exit(2);
}
const chromium = await loadChromium();

let browser;
const overall = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: `gave up after ${OVERALL_TIMEOUT_MS} ms` }));
  process.exit(1);
}, OVERALL_TIMEOUT_MS);

const urls = {
  a: `http://127.0.0.1:${port}/room/demo?policy=relay`,
  b: `http://127.0.0.1:${portB}/room/demo?policy=relay`,
};
const result = { ok: false, urls, problems: [] };
const problems = result.problems;
const logs = { a: [], b: [] };
const pages = {};
try {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 15_000,
    // The shared switches (chromium.mjs), plus a fake camera and microphone that
    // getUserMedia grants without a prompt.
    args: [
      ...CHROMIUM_ARGS,
      "--use-fake-ui-for-media-stream",
      "--use-fake-device-for-media-stream",
    ],
  });

  // Two contexts: two users who share nothing but the server.
  const ids = {};
  for (const name of ["a", "b"]) {
    const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    const page = await context.newPage();
    page.on("console", (m) => logs[name].push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => logs[name].push(`pageerror: ${e.message}`));
    await page.goto(urls[name]);
    // Joined: the page knows its own peer ID from the "peers" reply.
    await page.waitForSelector("body[data-me]", { timeout: left() });
    ids[name] = await page.getAttribute("body", "data-me");
    pages[name] = page;
  }
  result.ids = ids;
  if (ids.a === ids.b) problems.push("both pages got the same peer ID");

  // Each sees the other, connected through the relay on both sides of the selected pair.
  const connected = async (name, other) => {
    const li = `#peers li[data-peer="${ids[other]}"]`;
    const ok = await pages[name]
      .waitForSelector(`${li}[data-state="connected"][data-route="relay/relay"]`, { timeout: left() })
      .then(() => true, () => false);
    const entry = await pages[name].$eval(li, (el) => ({
      state: el.dataset.state,
      route: el.dataset.route,
      text: el.textContent,
    })).catch(() => null);
    if (!ok) problems.push(`${name} does not list ${other} as connected relay/relay: ${JSON.stringify(entry)}`);
    return entry;
  };
  result.peers = { a: await connected("a", "b"), b: await connected("b", "a") };

  // The fake camera's frames arrive: the remote tile plays video with a size.
  const video = async (name, other) => {
    const tile = `figure.tile[data-peer="${ids[other]}"]`;
    const ok = await pages[name]
      .waitForFunction(
        (sel) => {
          const v = document.querySelector(`${sel} video`);
          return v && v.videoWidth > 0 && document.querySelector(sel).classList.contains("has-video");
        },
        tile,
        { timeout: left() },
      )
      .then(() => true, () => false);
    if (!ok) problems.push(`${name} shows no video from ${other}`);
    return pages[name].$eval(`${tile} video`, (v) => `${v.videoWidth}x${v.videoHeight}`).catch(() => null);
  };
  // Without a connection there is no video or chat to wait for.
  if (problems.length) throw new Error("the pages did not connect through the relay");
  result.video = { a: await video("a", "b"), b: await video("b", "a") };
  result.media = {
    a: await pages.a.textContent("#media"),
    b: await pages.b.textContent("#media"),
  };
  // ?policy=relay shows as the relay-only switch, on.
  for (const name of ["a", "b"]) {
    if (!(await pages[name].isChecked("#relay-only"))) problems.push(`${name}'s relay-only switch is off under ?policy=relay`);
  }

  // Nothing the user must read is cut off: the chat placeholder fits its input, and every
  // tile caption (own and remote, with the peer's ID and route) fits its tile.
  for (const name of ["a", "b"]) {
    const cut = await pages[name].evaluate(() => {
      const out = [];
      const input = document.querySelector("#chat-input");
      const style = getComputedStyle(input);
      const ctx = document.createElement("canvas").getContext("2d");
      ctx.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
      const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
      const need = ctx.measureText(input.placeholder).width;
      if (need > room) out.push(`chat placeholder needs ${need.toFixed(0)} px, has ${room.toFixed(0)}`);
      for (const cap of document.querySelectorAll("figure.tile figcaption")) {
        if (cap.scrollWidth > cap.clientWidth + 1) out.push(`caption "${cap.textContent}" is cut off`);
      }
      return out;
    });
    for (const c of cut) problems.push(`${name}: ${c}`);
  }

  // Chat over the data channel, each way; the receiver shows it under the sender's ID.
  const chat = async (from, to) => {
    const text = `hello from ${from} ${Math.random().toString(36).slice(2)}`;
    await pages[from].fill("#chat-input", text);
    await pages[from].click("#chat-send");
    const ok = await pages[to]
      .waitForFunction(
        ({ sender, text }) => [...document.querySelectorAll(`#chat-log li[data-from="${sender}"] .text`)]
          .some((el) => el.textContent === text),
        { sender: ids[from], text },
        { timeout: left() },
      )
      .then(() => true, () => false);
    if (!ok) problems.push(`${to} did not show ${from}'s chat message`);
    return text;
  };
  result.chat = { ab: await chat("a", "b"), ba: await chat("b", "a") };

  if (screenshot) {
    // Page A down to the end of its content: no empty band below.
    const height = await pages.a.evaluate(() => Math.ceil(document.querySelector("main").getBoundingClientRect().bottom));
    await pages.a.screenshot({ path: screenshot, clip: { x: 0, y: 0, width: 1000, height: Math.min(700, height) } });
    result.screenshot = screenshot;
  }
} catch (err) {
  problems.push(String(err?.message ?? err));
} finally {
  for (const [name, page] of Object.entries(pages)) {
    result[`chatLog_${name}`] = await page
      .$$eval("#chat-log li", (lis) => lis.map((li) => li.textContent))
      .catch(() => null);
  }
  if (logs.a.length || logs.b.length) result.console = logs;
  await browser?.close().catch(() => {});
  clearTimeout(overall);
}

result.ok = problems.length === 0;
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
