// What every browser script shares: where Debian's Chromium is, how to load playwright-core
// (Playwright's own browser download is never used), and the switches Chromium needs here.

import { existsSync } from "node:fs";

/** Debian's Chromium, or RTURN_CHROMIUM. */
export const CHROMIUM = process.env.RTURN_CHROMIUM || "/usr/bin/chromium";

/** Switches for a headless Chromium on this machine, each explained. */
export const CHROMIUM_ARGS = [
  // As root in a container there is no user namespace for the sandbox.
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  // The machine's network is closed: no calls home, no component or sync traffic.
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  // Chromium's port allocator leaves the loopback interface out of its network list, so
  // on a machine (or container, CI runner) whose only interface is lo it gathers no
  // candidates at all, relay included: the TURN socket to 127.0.0.1 is never opened.
  // This switch adds loopback back; Chromium's own WebRTC browser tests set it for the
  // same reason. It does not matter for the verdicts: with iceTransportPolicy "relay"
  // only relay candidates are gathered, and the pages check the selected pair.
  "--allow-loopback-in-peer-connection",
];

/** playwright-core's chromium launcher; exits 2 with a hint when something is missing. */
export async function loadChromium() {
  if (!existsSync(CHROMIUM)) {
    console.error(`${CHROMIUM} is missing: run scripts/test.sh (installs Debian's chromium)`);
    process.exit(2);
  }
  try {
    const { chromium } = await import("playwright-core");
    return chromium;
  } catch (err) {
    console.error(`playwright-core is missing (${err.code}): run scripts/test.sh (npm ci --prefix tests/browser)`);
    process.exit(2);
  }
}
