// Driven by tests/browser.rs: the page of a 2 x 1,000-task job running at stage 2 (its stage-1
// tasks 5 and 700 failed, tolerated). The running stage is visible with its rate; the task table
// is paged (failures first, the total always shown, next and previous pages, a status filter);
// the events are summarised. Screenshots at 1400 px and 390 px; at 390 px nothing is wider than
// the screen. Keyboard: the task filter and pager are reachable with Tab.
//
// usage: node scale_test.mjs <base_url> <job_id> <artifacts_dir>
import { join } from "node:path";
import { check, withBrowser } from "./harness.mjs";

const [base, jobId, artifacts] = process.argv.slice(2);

await withBrowser(artifacts, async ({ page, errors }) => {
  await page.goto(`${base}/api/ui/jobs/${jobId}`);
  await page.waitForSelector('[data-testid="task-table"]');
  const stage2 = await page.$eval('[data-testid="stage"][data-stage="2"]', (e) => ({
    status: e.dataset.status,
    text: e.innerText,
  }));
  check(stage2.status === "running", `stage 2 is shown running (${stage2.status})`);
  check(/998 task\(s\)/.test(stage2.text), "the running stage shows its 998 tasks");
  check(await page.isVisible('[data-testid="stage-rate"]'), "the running stage shows its rate");
  const range = () => page.innerText('[data-testid="task-range"]');
  check(/^1–100 of 1998 · 1998 task\(s\) in all/.test(await range()), `first page of all tasks (${await range()})`);
  const first = await page.$$eval('[data-testid="task-row"]', (els) => els.slice(0, 3).map((e) => e.dataset.status));
  check(first.join() === "failed,failed,queued", `failures first (${first})`);
  check((await page.$$('[data-testid="task-row"]')).length === 100, "a page holds 100 rows, not the whole job");
  await page.screenshot({ path: join(artifacts, "ui-job-scale-1400.png"), fullPage: true, clip: { x: 0, y: 0, width: 1400, height: 2000 } });

  await page.click('[data-testid="tasks-next"]');
  await page.waitForFunction(() => document.querySelector('[data-testid="task-range"]').innerText.startsWith("101–200"));
  check(true, "next page: 101–200");
  await page.click('[data-testid="tasks-prev"]');
  await page.waitForFunction(() => document.querySelector('[data-testid="task-range"]').innerText.startsWith("1–100"));
  check(true, "previous page: back to 1–100");
  await page.selectOption('[data-testid="task-status-filter"]', "failed");
  await page.waitForFunction(() => document.querySelector('[data-testid="task-range"]').innerText.startsWith("1–2 of 2 failed"));
  check((await page.$$('[data-testid="task-row"]')).length === 2, "the failed filter shows the two failed tasks");
  check(await page.isVisible('[data-testid="events-note"]'), "the events view says it shows the last events of many");

  // Keyboard: Tab reaches the task filter.
  await page.focus('[data-testid="task-status-filter"]');
  await page.keyboard.press("Shift+Tab");
  await page.keyboard.press("Tab");
  check(await page.$eval('[data-testid="task-status-filter"]', (e) => e === document.activeElement), "the task filter is reachable with Tab");
  check((await page.$$("[aria-live]")).length <= 1, "one aria-live region at most");

  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(200);
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  check(wide <= 390, `nothing wider than a 390 px screen (${wide} px)`);
  await page.screenshot({ path: join(artifacts, "ui-job-scale-390.png"), fullPage: true, clip: { x: 0, y: 0, width: 390, height: 2400 } });
  await page.goto(`${base}/api/ui`);
  await page.waitForSelector('[data-testid="job-row"]');
  const wideList = await page.evaluate(() => document.documentElement.scrollWidth);
  check(wideList <= 390, `the job list fits 390 px (${wideList} px)`);
  await page.screenshot({ path: join(artifacts, "ui-job-list-390.png"), fullPage: true });
  check(errors.length === 0, `no JavaScript errors or refused calls (${errors.join(" | ")})`);
  console.log("browser test passed");
});
