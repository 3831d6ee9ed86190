// Driven by tests/browser.rs: opens the job list and the page of a job with a failed task in
// headless Chromium (Debian's package, through playwright-core), checks what an operator must see,
// and saves screenshots. Exits non-zero with the reason on the first failed check.
//
// usage: node page_test.mjs <base_url> <failed_job_id> <completed_job_id> <artifacts_dir>
import { join } from "node:path";
import { check, withBrowser } from "./harness.mjs";

const [base, failedJob, okJob, artifacts] = process.argv.slice(2);

await withBrowser(artifacts, async ({ page, errors }) => {
  // The job list: both jobs, newest first, with their statuses.
  await page.goto(`${base}/api/ui`);
  await page.waitForSelector('[data-testid="job-row"]');
  const rows = await page.$$eval('[data-testid="job-row"]', (els) =>
    els.map((e) => ({ id: e.dataset.jobId, status: e.dataset.status }))
  );
  check(rows.length === 2, `job list shows 2 jobs (got ${rows.length})`);
  check(rows[0].id === failedJob && rows[0].status === "failed", "newest job first, shown as failed");
  check(rows[1].id === okJob && rows[1].status === "completed", "older job shown as completed");
  await page.screenshot({ path: join(artifacts, "ui-job-list.png"), fullPage: true });

  // Filtering by status keeps only the failed job.
  await page.selectOption('select[name="status"]', "failed");
  await page.waitForURL(/status=failed/);
  await page.waitForSelector('[data-testid="job-row"]');
  const filtered = await page.$$eval('[data-testid="job-row"]', (els) => els.map((e) => e.dataset.jobId));
  check(filtered.length === 1 && filtered[0] === failedJob, "status filter shows only the failed job");

  // The job page of the failed job, reached by clicking it.
  await page.click(`[data-job-id="${failedJob}"] a`);
  await page.waitForURL(new RegExp(`/api/ui/jobs/${failedJob}`));
  await page.waitForSelector('[data-testid="event-timeline"]');
  const stages = await page.$$eval('[data-testid="stage"]', (els) =>
    els.map((e) => ({
      stage: e.dataset.stage,
      status: e.dataset.status,
      segments: [...e.querySelectorAll(".bar span")].map((s) => s.className),
    }))
  );
  check(stages.length === 2, `two stages with a progress bar each (got ${stages.length})`);
  check(stages[0].status === "completed" && stages[0].segments.join() === "completed", "stage 1 completed, bar all green");
  check(stages[1].segments.includes("failed"), "stage 2 bar shows its failed task");

  const failedTasks = await page.$$eval('[data-testid="task-row"][data-status="failed"]', (els) =>
    els.map((e) => ({ text: e.innerText, error: e.querySelector('[data-testid="task-error"]').innerText }))
  );
  check(failedTasks.length === 1, "exactly one failed task in the task table");
  check(/InjectedPermanent/.test(failedTasks[0].error), "the failing task shows its error");
  const completedTasks = await page.$$('[data-testid="task-row"][data-status="completed"]');
  check(completedTasks.length >= 3, `stage 1's three tasks are completed (got ${completedTasks.length})`);

  const timeline = await page.$$eval('[data-testid="event-row"]', (els) =>
    els.map((e) => ({
      status: e.dataset.status,
      marked: e.classList.contains("last-success"),
      type: e.children[1].firstChild.textContent.trim(),
    }))
  );
  const marked = timeline.filter((e) => e.marked);
  check(marked.length === 1, "exactly one event is marked as the last successful step");
  const firstFailure = timeline.findIndex((e) => e.status === "failure");
  const lastOkBefore = timeline.slice(0, firstFailure).map((e) => e.status).lastIndexOf("success");
  check(timeline[lastOkBefore].marked, "the marked step is the last success before the first failure");
  check(["stage_advanced", "task_completed"].includes(marked[0].type), `the marked step is ${marked[0].type}`);
  check(await page.isVisible('[data-testid="last-success-marker"]'), "the marker is visible");
  const lastText = await page.innerText('[data-testid="last-success"]');
  check(lastText.startsWith(marked[0].type), "the facts name the marked step");
  const failures = await page.$$eval('tr.event[data-status="failure"]', (els) => els.map((e) => e.innerText));
  check(failures.length >= 2, "task and job failures are in the timeline");
  check(failures.every((t) => /InjectedPermanent|permanent/.test(t)), "every failure row shows its error");
  check(await page.isVisible('[data-testid="first-failure-marker"]'), "the first failure is marked");
  await page.screenshot({ path: join(artifacts, "ui-job-failed.png"), fullPage: true });

  check(errors.length === 0, `no JavaScript errors (${errors.join(" | ")})`);
  console.log("browser test passed");
});
