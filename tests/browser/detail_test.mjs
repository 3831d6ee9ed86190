// Driven by tests/browser.rs: a job's parameters and result on its page, and a task's detail
// (parameters, result, error, one row per attempt) opened from the task table by mouse and by
// keyboard, closed again with the focus back on the task. Screenshots at 1400 px and 390 px.
//
// usage: node detail_test.mjs <base_url> <artifacts_dir> <completed_job> <retried_task> <failed_job> <failed_task>
import { join } from "node:path";
import { check, withBrowser } from "./harness.mjs";

const [base, artifacts, okJob, retriedTask, failedJob, failedTask] = process.argv.slice(2);

await withBrowser(artifacts, async ({ page, errors }) => {
  // The completed job: its parameters and its result.
  await page.goto(`${base}/api/ui/jobs/${okJob}`);
  await page.waitForSelector('[data-testid="job-parameters"]');
  const params = JSON.parse(await page.innerText('[data-testid="job-parameters"]'));
  check(params.message === "detail page" && params.n === 2, `the job's parameters are shown (${JSON.stringify(params)})`);
  const result = JSON.parse(await page.innerText('[data-testid="job-result"]'));
  check(result && typeof result === "object" && Object.keys(result).length > 0, `the job's result is shown (${JSON.stringify(result).slice(0, 200)})`);

  // Opening the retried task by mouse: parameters, result and both attempts.
  await page.click(`[data-task-open="${retriedTask}"]`);
  await page.waitForSelector(`[data-testid="task-detail"][data-task-id="${retriedTask}"]`);
  const taskParams = JSON.parse(await page.innerText('[data-testid="task-parameters"]'));
  check(taskParams.index === 0 && taskParams.message === "detail page", `the task's parameters are shown (${JSON.stringify(taskParams)})`);
  const taskResult = JSON.parse(await page.innerText('[data-testid="task-result"]'));
  check(/detail page from task 0/.test(taskResult.greeting || ""), `the task's result is shown (${JSON.stringify(taskResult)})`);
  const attempts = await page.$$eval('[data-testid="task-attempt"]', (els) =>
    els.map((e) => ({ outcome: e.dataset.outcome, attempt: e.dataset.attempt, text: e.innerText }))
  );
  check(attempts.length === 2, `two attempts listed (got ${attempts.length})`);
  check(attempts[0].outcome === "retry_scheduled" && /InjectedTransient/.test(attempts[0].text), `attempt 1 was retried with its error (${attempts[0].text})`);
  check(attempts[1].outcome === "completed" && attempts[1].attempt === "2", "attempt 2 completed");
  check(await page.evaluate(() => document.activeElement.dataset.testid === "task-detail-close"), "the focus moves to the opened detail");
  await page.screenshot({ path: join(artifacts, "ui-task-detail.png"), fullPage: true });

  // The detail stays open across a refresh, and closing it puts the focus back on the task.
  await page.waitForTimeout(100);
  await page.click('[data-testid="task-detail-close"]');
  await page.waitForSelector('[data-testid="task-detail"]', { state: "detached" });
  check(await page.evaluate((id) => document.activeElement.dataset.taskOpen === id, retriedTask), "the focus is back on the task");

  // The failed job: its result records the failure; the failed task, opened by keyboard, shows
  // its error.
  await page.goto(`${base}/api/ui/jobs/${failedJob}`);
  await page.waitForSelector('[data-testid="job-result"]');
  const failedResult = await page.innerText('[data-testid="job-result"]');
  check(failedResult.includes(failedTask), `the failed job's result names the failed task (${failedResult.slice(0, 300)})`);
  await page.focus(`[data-task-open="${failedTask}"]`);
  await page.keyboard.press("Enter");
  await page.waitForSelector(`[data-testid="task-detail"][data-task-id="${failedTask}"]`);
  check(/InjectedPermanent/.test(await page.innerText('[data-testid="task-detail-error"]')), "the failed task's error is in its detail");
  const failedAttempts = await page.$$eval('[data-testid="task-attempt"]', (els) => els.map((e) => e.dataset.outcome));
  check(failedAttempts.join() === "failed", `one failed attempt (${failedAttempts.join()})`);

  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(200);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  const wide = await page.evaluate(() =>
    [...document.querySelectorAll("main *")]
      .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest(".scroll"))
      .map((e) => `${e.tagName}.${e.className}[${e.dataset.testid || ""}]`)
      .slice(0, 8)
      .join(", ")
  );
  check(overflow <= 1, `the page fits 390 px with the task detail open (overflow ${overflow} px: ${wide})`);
  await page.screenshot({ path: join(artifacts, "ui-task-detail-390.png"), fullPage: true });

  check(errors.length === 0, `no JavaScript errors or refused calls (${errors.join(" | ")})`);
  console.log("browser test passed");
});
