// Shared by the browser scripts run from tests/browser.rs: launches headless Chromium (Debian's
// package, through playwright-core) with a throw-away profile, records page errors and HTTP
// errors, and prints one "ok - ..." line per passed check.
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const TIMEOUT = 30_000;

export function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

// Runs `body({ context, page, errors, newPage })` in a fresh browser and closes it afterwards.
// `errors` collects JavaScript errors and every HTTP answer >= 400 (as "status url").
export async function withBrowser(artifacts, body, viewport = { width: 1400, height: 900 }) {
  mkdirSync(artifacts, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), "coremachine-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.COREMACHINE_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const errors = [];
  const watch = (page) => {
    page.setDefaultTimeout(TIMEOUT);
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("console", (m) => m.type() === "error" && !/status of 4\d\d/.test(m.text()) && errors.push(m.text()));
    page.on("response", (r) => r.status() >= 400 && errors.push(`${r.status()} ${r.url()}`));
    return page;
  };
  const newPage = async () => watch(await context.newPage());
  try {
    const page = watch(context.pages()[0] || (await context.newPage()));
    await body({ context, page, errors, newPage });
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}
