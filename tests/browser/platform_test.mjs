// Driven by tests/browser.rs: a platform request's page (/api/ui/requests/{request_id}) shows the
// request (dataset / resource / version, files, derived outputs) and its job's state, and its
// link leads to the job's page.
//
// usage: node platform_test.mjs <base_url> <request_id> <job_id> <table_name> <artifacts_dir>
import { join } from "node:path";
import { check, withBrowser } from "./harness.mjs";

const [base, requestId, jobId, tableName, artifacts] = process.argv.slice(2);

await withBrowser(artifacts, async ({ page, errors }) => {
  await page.goto(`${base}/api/ui/requests/${requestId}`);
  await page.waitForSelector(`[data-testid="request"][data-request-id="${requestId}"]`);
  const status = await page.getAttribute('[data-testid="request"]', "data-job-status");
  check(status === "completed", `the request's job is shown completed (${status})`);
  const text = await page.innerText('[data-testid="request"]');
  check(text.includes("Aerial-Imagery / Site Alpha / v1.0"), "dataset / resource / version are shown");
  check(text.includes("dem/elev.tif"), "the file is shown");
  const outputs = await page.innerText('[data-testid="request-outputs"]');
  check(outputs.includes(tableName) && outputs.includes("aerial-imagery/site-alpha/v1.0"), "the derived names are shown");
  await page.screenshot({ path: join(artifacts, "ui-platform-request.png"), fullPage: true });

  await page.click('[data-testid="request-job-link"]');
  await page.waitForURL(new RegExp(`/api/ui/jobs/${jobId}`));
  await page.waitForSelector('[data-testid="event-timeline"]');
  check(true, "the request's job link opens the job's page");
  check(errors.length === 0, `no error on either page (${errors.join(" | ")})`);
  console.log("browser test passed");
});
