// Driven by tests/browser.rs: the operator's actions from the page. On a failed job: the next step
// is explained, "Retry failed tasks" asks for confirmation (backing out does nothing), then runs
// only the failed task again and the job completes. On a running job: cancel with a reason. On
// the job list: bulk cancel, then bulk resubmit, of two selected running jobs. Each action's
// outcome is shown. tests/browser.rs checks the database afterwards.
//
// usage: node actions_test.mjs retry <base_url> <artifacts_dir> <failed_job>
//        node actions_test.mjs cancel <base_url> <artifacts_dir> <running_1> <running_2> <running_3>
//        node actions_test.mjs attempts <base_url> <artifacts_dir> <job failed in attempts 1 and 2>
import { join } from "node:path";
import { check, withBrowser } from "./harness.mjs";

const [mode, base, artifacts, ...jobs] = process.argv.slice(2);

async function retry({ page, errors }) {
  const [failedJob] = jobs;
  // A failed job: what to do next, and the actions that apply.
  await page.goto(`${base}/api/ui/jobs/${failedJob}`);
  await page.waitForSelector('[data-testid="job-actions"]');
  const hint = await page.innerText('[data-testid="next-step"]');
  check(/permanent error/i.test(hint), `the next step names the error class (${hint})`);
  check(hint.includes(`coremachine resubmit ${failedJob} --failed-tasks`), "the next step shows the command");
  check(!(await page.$('[data-testid="action-cancel"]')), "a failed job offers no cancel");
  for (const a of ["failed_tasks", "failed_stage", "start"]) {
    check(await page.isVisible(`[data-testid="action-${a}"]`), `a failed job offers ${a}`);
  }
  await page.screenshot({ path: join(artifacts, "ui-job-actions.png"), fullPage: true });

  // Confirmation: backing out changes nothing.
  await page.click('[data-testid="action-failed_tasks"]');
  await page.waitForSelector("dialog#confirm[open]");
  check(/only the failed or cancelled tasks/.test(await page.innerText("dialog#confirm")), "the dialog says what will happen");
  await page.click('[data-testid="confirm-back"]');
  await page.waitForSelector("dialog#confirm:not([open])", { state: "attached" });
  await page.waitForSelector('[data-testid="job-title"] .badge.failed');
  check(!(await page.$('[data-testid="action-result"]')), "backing out runs nothing");

  await page.click('[data-testid="action-failed_tasks"]');
  await page.click('[data-testid="confirm-ok"]');
  await page.waitForSelector('[data-testid="action-result"]');
  const retried = await page.innerText('[data-testid="action-result"]');
  check(
    /resubmitted as attempt 2 \(after a failed attempt 1\): 1 failed task\(s\) of stage 2 queued again, 2 completed kept/.test(retried),
    `the retry's outcome is shown (${retried})`
  );
  await page.waitForSelector('[data-testid="job-title"] .badge.completed', { timeout: 30_000 });
  check(true, "the retried job completes on the page");
  check(errors.length === 0, `no JavaScript errors or refused calls (${errors.join(" | ")})`);
}

async function cancel({ page, errors }) {
  const [run1, run2, run3] = jobs;

  // Cancel a running job with a reason.
  await page.goto(`${base}/api/ui/jobs/${run3}`);
  await page.click('[data-testid="action-cancel"]');
  await page.waitForSelector("dialog#confirm[open]");
  await page.click('[data-testid="confirm-ok"]');
  check(await page.isVisible("dialog#confirm[open]"), "cancel is not sent without a reason");
  await page.fill('[data-testid="confirm-reason"]', "browser says stop");
  await page.click('[data-testid="confirm-ok"]');
  await page.waitForSelector('[data-testid="action-result"]');
  const cancelled = await page.innerText('[data-testid="action-result"]');
  check(/cancelled: job cancelled at stage 1/.test(cancelled), `the cancel's outcome is shown (${cancelled})`);
  await page.waitForSelector('[data-testid="job-title"] .badge.cancelled');

  // Bulk cancel, then bulk resubmit, on the job list.
  await page.goto(`${base}/api/ui`);
  await page.waitForSelector('[data-testid="job-row"]');
  await page.uncheck("#auto-refresh");
  await page.waitForSelector('[data-testid="job-row"]');
  const tick = async () => {
    for (const id of [run1, run2]) await page.check(`[data-testid="job-select"][value="${id}"]`);
  };
  await tick();
  check((await page.innerText('[data-testid="bulk-cancel"]')).includes("(2)"), "two running jobs selected for cancel");
  check(await page.isDisabled('[data-testid="bulk-resubmit"]'), "running jobs cannot be resubmitted");
  await page.click('[data-testid="bulk-cancel"]');
  await page.waitForSelector("dialog#confirm[open]");
  await page.fill('[data-testid="confirm-reason"]', "bulk from the browser");
  await page.click('[data-testid="confirm-ok"]');
  await page.waitForSelector('[data-testid="action-result"]');
  let lines = await page.$$eval('[data-testid="action-result"] div', (els) => els.map((e) => e.innerText));
  check(lines.length === 2 && lines.every((l) => /cancelled: job cancelled/.test(l)), `both cancelled (${lines.join(" | ")})`);
  for (const id of [run1, run2]) {
    await page.waitForSelector(`[data-testid="job-row"][data-job-id="${id}"][data-status="cancelled"]`);
  }
  await tick();
  await page.click('[data-testid="bulk-resubmit"]');
  await page.click('[data-testid="confirm-ok"]');
  await page.waitForFunction(() => /resubmitted/.test(document.querySelector('[data-testid="action-result"]')?.innerText || ""));
  lines = await page.$$eval('[data-testid="action-result"] div', (els) => els.map((e) => e.innerText));
  check(lines.length === 2 && lines.every((l) => /resubmitted as attempt 2/.test(l)), `both resubmitted (${lines.join(" | ")})`);
  await page.screenshot({ path: join(artifacts, "ui-bulk-actions.png"), fullPage: true });

  check(errors.length === 0, `no JavaScript errors or refused calls (${errors.join(" | ")})`);
}

// A job whose retry failed again: the page describes attempt 2 and lists attempt 1.
async function attempts({ page, errors }) {
  const [jobId] = jobs;
  await page.goto(`${base}/api/ui/jobs/${jobId}`);
  await page.waitForSelector('[data-testid="earlier-attempts"]');
  const earlier = await page.$$eval('[data-testid="earlier-attempt"]', (els) =>
    els.map((e) => ({ attempt: e.dataset.attempt, status: e.dataset.status, text: e.innerText }))
  );
  check(earlier.length === 1 && earlier[0].attempt === "1" && earlier[0].status === "failed", `attempt 1 listed as failed (${JSON.stringify(earlier)})`);
  check(/InjectedPermanent/.test(earlier[0].text), "the earlier attempt shows its error");
  const facts = await page.innerText(".facts");
  check(/first failure \(attempt 2\)/.test(facts), "the first failure shown is the current attempt's");
  const marked = await page.$eval('tr.first-failure [data-testid="event-job-attempt"]', (e) => e.innerText);
  check(marked === "2", `the marked first failure belongs to job attempt 2 (${marked})`);
  const jobAttempts = await page.$$eval('[data-testid="event-job-attempt"]', (els) => els.map((e) => e.innerText));
  check(jobAttempts[0] === "1" && jobAttempts.includes("2"), "events carry the job attempt they belong to");
  const failures1 = await page.$$eval('tr.event[data-status="failure"]', (els) =>
    els.filter((e) => e.querySelector('[data-testid="event-job-attempt"]').innerText === "1").length
  );
  check(failures1 >= 1, "attempt 1's failures are still in the timeline");
  await page.screenshot({ path: join(artifacts, "ui-job-attempts.png"), fullPage: true });
  check(errors.length === 0, `no JavaScript errors or refused calls (${errors.join(" | ")})`);
}

await withBrowser(artifacts, { retry, cancel, attempts }[mode]);
console.log("browser test passed");
