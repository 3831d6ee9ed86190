// Driven by tests/browser.rs: the page of a process_raster_collection job of 55 inputs, 3 of them
// missing (completed_with_errors). The per-input outcomes are shown a page of 50 at a time,
// failures first, each failure with its stage and error naming the blob; the next page holds the
// last 5; the outcome filter shows only the failures. Screenshot: ui-job-collection.png.
//
// usage: node inputs_test.mjs <base_url> <job_id> <artifacts_dir> <missing blob>...
import { join } from "node:path";
import { check, withBrowser } from "./harness.mjs";

const [base, jobId, artifacts, ...missing] = process.argv.slice(2);

await withBrowser(artifacts, async ({ page, errors }) => {
  await page.goto(`${base}/api/ui/jobs/${jobId}`);
  await page.waitForSelector('[data-testid="input-table"]');
  const title = await page.innerText('[data-testid="job-title"]');
  check(/completed_with_errors/.test(title), `the job is shown completed_with_errors (${title})`);
  const range = () => page.innerText('[data-testid="input-range"]');
  check(/^1–50 of 55 · 52 ok, 3 failed/.test(await range()), `first page of the inputs (${await range()})`);
  const rows = () =>
    page.$$eval('[data-testid="input-row"]', (els) =>
      els.map((e) => ({ outcome: e.dataset.outcome, blob: e.dataset.blob, text: e.innerText }))
    );
  let r = await rows();
  check(r.length === 50, `a page holds 50 inputs, not all 55 (${r.length})`);
  const failed = r.slice(0, 3);
  check(failed.every((x) => x.outcome === "failed"), "failures first");
  check(
    failed.map((x) => x.blob).sort().join() === [...missing].sort().join(),
    `the failed inputs are the missing blobs (${failed.map((x) => x.blob)})`
  );
  for (const x of failed) {
    check(/stage 2 \(validate\)/.test(x.text) && x.text.includes(x.blob), `${x.blob}: its stage and an error naming it`);
  }
  check(r.slice(3).every((x) => x.outcome === "ok" && /item /.test(x.text)), "the others are ok with their item id");
  await page.locator('[data-testid="inputs-section"]').screenshot({ path: join(artifacts, "ui-job-collection.png") });

  await page.click('[data-testid="inputs-next"]');
  await page.waitForFunction(() => document.querySelector('[data-testid="input-range"]').innerText.startsWith("51–55"));
  r = await rows();
  check(r.length === 5 && r.every((x) => x.outcome === "ok"), "the next page holds the last 5 inputs");
  await page.click('[data-testid="inputs-prev"]');
  await page.waitForFunction(() => document.querySelector('[data-testid="input-range"]').innerText.startsWith("1–50"));
  check(true, "previous page: back to 1–50");
  await page.selectOption('[data-testid="input-outcome-filter"]', "failed");
  await page.waitForFunction(() => document.querySelector('[data-testid="input-range"]').innerText.startsWith("1–3 of 3 failed"));
  r = await rows();
  check(r.length === 3 && r.every((x) => x.outcome === "failed"), "the failed filter shows the 3 failures");
  check(errors.length === 0, `no JavaScript errors or refused calls (${errors.join(" | ")})`);
  console.log("browser test passed");
});
