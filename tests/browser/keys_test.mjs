// Driven by tests/browser.rs with function keys enforced (as in Azure): the page shell and its
// assets load with no key, the first data call answers 401 and the page asks for the key once; a
// wrong key is refused and asked for again; with the right key the job list and a job's page load
// and no further call is refused; a `?code=` in the address is taken and removed from it.
//
// usage: node keys_test.mjs <base_url> <job_id> <function_key> <artifacts_dir>
import { join } from "node:path";
import { check, withBrowser } from "./harness.mjs";

const [base, jobId, key, artifacts] = process.argv.slice(2);

await withBrowser(artifacts, async ({ page, errors, newPage }) => {
  const assets = [];
  page.on("response", (r) => /\/api\/ui\/app\.(js|css)$/.test(r.url()) && assets.push(r.status()));

  await page.goto(`${base}/api/ui`);
  await page.waitForSelector('[data-testid="key-form"]');
  check(assets.length === 2 && assets.every((s) => s === 200), `app.js and app.css load without a key (${assets})`);
  check(
    errors.length === 1 && /^401 .*\/api\/ui\/data\/jobs/.test(errors[0]),
    `the only refused call is the first data call (${errors.join(" | ")})`
  );
  await page.screenshot({ path: join(artifacts, "ui-key-form.png"), fullPage: true });

  await page.fill('[data-testid="key-input"]', "not-the-key");
  await page.click('[data-testid="key-submit"]');
  await page.waitForSelector('[data-testid="key-why"].error');
  check(/not valid/.test(await page.innerText('[data-testid="key-why"]')), "a wrong key is refused with the reason");
  errors.length = 0;

  await page.fill('[data-testid="key-input"]', key);
  await page.click('[data-testid="key-submit"]');
  await page.waitForSelector(`[data-testid="job-row"][data-job-id="${jobId}"]`);
  check(true, "with the key the job list shows the job");
  check(await page.isVisible("#forget-key"), "the page offers to forget the key");

  await page.click(`[data-job-id="${jobId}"] a`);
  await page.waitForURL(new RegExp(`/api/ui/jobs/${jobId}`));
  await page.waitForSelector('[data-testid="event-timeline"]');
  const status = await page.getAttribute('[data-testid="stage"]', "data-status");
  check(status === "completed", "the job's page loads with the key kept for the session (no second prompt)");
  check(errors.length === 0, `no call refused once the key is given (${errors.join(" | ")})`);

  // A new tab has its own session: the key comes from ?code= and leaves the address bar.
  const tab = await newPage();
  await tab.goto(`${base}/api/ui/jobs/${jobId}?code=${encodeURIComponent(key)}`);
  await tab.waitForSelector('[data-testid="event-timeline"]');
  check(!tab.url().includes("code="), `the key is removed from the address (${tab.url()})`);
  check(errors.length === 0, `?code= is used for the data calls (${errors.join(" | ")})`);
  console.log("browser test passed");
});
