//! The SQL statements, one `.sql` file each, named by intent.
//! Add a file under `sql/` and a line here; `tests/sql_statements.rs` prepares every one.

/// `event_insert_batch.sql`
pub const EVENT_INSERT_BATCH: &str = include_str!("sql/event_insert_batch.sql");
/// Tasks whose worker disappeared: processing with a lease in the past.
pub const JANITOR_EXPIRED_LEASES: &str = include_str!("sql/janitor_expired_leases.sql");
/// `janitor_run_finish.sql`
pub const JANITOR_RUN_FINISH: &str = include_str!("sql/janitor_run_finish.sql");
/// `janitor_run_start.sql`
pub const JANITOR_RUN_START: &str = include_str!("sql/janitor_run_start.sql");
/// Running stages of processing jobs with no live task left: their end was never applied.
pub const JANITOR_STALLED_STAGES: &str = include_str!("sql/janitor_stalled_stages.sql");
/// Queued jobs untouched for a while with no message waiting in the outbox: their stage message was lost.
pub const JANITOR_STUCK_QUEUED_JOBS: &str = include_str!("sql/janitor_stuck_queued_jobs.sql");
/// The last task of stage $2: processing -> queued at stage $2 + 1, stage summary recorded.
pub const JOB_ADVANCE: &str = include_str!("sql/job_advance.sql");
/// Any live status -> failed, with the reason. Returns the row it changed (none = it was not live).
pub const JOB_FAIL: &str = include_str!("sql/job_fail.sql");
/// The last task of the last stage: processing -> completed | completed_with_errors.
pub const JOB_FINISH: &str = include_str!("sql/job_finish.sql");
/// `job_get.sql`
pub const JOB_GET: &str = include_str!("sql/job_get.sql");
/// Submit: create the job unless it exists (content-addressed id makes submit idempotent).
pub const JOB_INSERT: &str = include_str!("sql/job_insert.sql");
/// `job_lock.sql`
pub const JOB_LOCK: &str = include_str!("sql/job_lock.sql");
/// A job message that started nothing: the job's position, to judge the message by.
pub const JOB_MESSAGE_STATE: &str = include_str!("sql/job_message_state.sql");
/// `job_stage_state.sql`
pub const JOB_STAGE_STATE: &str = include_str!("sql/job_stage_state.sql");
/// Job message: queued -> processing for exactly this stage and attempt. No row = duplicate or stale.
pub const JOB_START_STAGE: &str = include_str!("sql/job_start_stage.sql");
/// `job_touch.sql`
pub const JOB_TOUCH: &str = include_str!("sql/job_touch.sql");
/// Abandon: visible again at once (Service Bus abandon has no backoff).
pub const LOCAL_QUEUE_ABANDON: &str = include_str!("sql/local_queue_abandon.sql");
/// Renew the locks of messages whose invocation still runs (auto lock renewal).
pub const LOCAL_QUEUE_RENEW: &str = include_str!("sql/local_queue_renew.sql");
/// Settle successfully delivered messages (only while the caller still holds the lock).
pub const LOCAL_QUEUE_COMPLETE: &str = include_str!("sql/local_queue_complete.sql");
/// Local mode: messages written straight into the queue table inside the causing transaction.
pub const LOCAL_QUEUE_INSERT_BATCH: &str = include_str!("sql/local_queue_insert_batch.sql");
/// Peek-lock up to $2 visible messages of queue $1 in id order; those at the max delivery count $4 are dead-lettered to $5.
pub const LOCAL_QUEUE_LEASE: &str = include_str!("sql/local_queue_lease.sql");
/// `message_failure_insert.sql`
pub const MESSAGE_FAILURE_INSERT: &str = include_str!("sql/message_failure_insert.sql");
/// `outbox_delete.sql`
pub const OUTBOX_DELETE: &str = include_str!("sql/outbox_delete.sql");
/// `outbox_insert_batch.sql`
pub const OUTBOX_INSERT_BATCH: &str = include_str!("sql/outbox_insert_batch.sql");
/// `outbox_mark_failed.sql`
pub const OUTBOX_MARK_FAILED: &str = include_str!("sql/outbox_mark_failed.sql");
/// `outbox_select.sql`
pub const OUTBOX_SELECT: &str = include_str!("sql/outbox_select.sql");
/// `outbox_stale_ids.sql`
pub const OUTBOX_STALE_IDS: &str = include_str!("sql/outbox_stale_ids.sql");
/// Local mode publish: move outbox rows into the queue table atomically (duplicate MessageIds dropped,
pub const OUTBOX_TO_LOCAL_QUEUE: &str = include_str!("sql/outbox_to_local_queue.sql");
/// Locks outbox rows the broker refused for good (their jobs are failed).
pub const OUTBOX_UNSENDABLE_ROWS: &str = include_str!("sql/outbox_unsendable_rows.sql");
/// `stage_counters_insert.sql`
pub const STAGE_COUNTERS_INSERT: &str = include_str!("sql/stage_counters_insert.sql");
/// Task counts of one stage, computed once when the stage ends.
pub const STAGE_COUNTS: &str = include_str!("sql/stage_counts.sql");
/// Failed tasks of a job up to a stage, in stage and task order, with their parameters.
pub const EARLIER_FAILED_TASKS: &str = include_str!("sql/earlier_failed_tasks.sql");
/// `stage_failed_tasks.sql`
pub const STAGE_FAILED_TASKS: &str = include_str!("sql/stage_failed_tasks.sql");
/// How many tasks of a job failed up to a stage (the `max_failures` budget).
pub const JOB_FAILED_COUNT: &str = include_str!("sql/job_failed_count.sql");
/// `stage_finish.sql`
pub const STAGE_FINISH: &str = include_str!("sql/stage_finish.sql");
/// `stage_insert.sql`
pub const STAGE_INSERT: &str = include_str!("sql/stage_insert.sql");
/// Completed results of a stage in task order (input of the next stage or of finalize).
pub const STAGE_RESULTS_COMPLETED: &str = include_str!("sql/stage_results_completed.sql");
/// `stages_summary.sql`
pub const STAGES_SUMMARY: &str = include_str!("sql/stages_summary.sql");
/// Task message: queued -> processing (or re-claim of an expired lease) for exactly this attempt,
pub const TASK_CLAIM: &str = include_str!("sql/task_claim.sql");
/// processing -> completed | failed ($12: also a queued task, for poison/malformed), its event, and the fan-in decrement, in one statement. The shard row and
pub const TASK_COMPLETE: &str = include_str!("sql/task_complete.sql");
/// Several successful task completions in one statement (grouped completions).
pub const TASK_COMPLETE_BATCH: &str = include_str!("sql/task_complete_batch.sql");
/// Grouped completions that end no counter shard: one statement outside a transaction block.
pub const TASK_COMPLETE_FAST: &str = include_str!("sql/task_complete_fast.sql");
/// `task_parent.sql`
pub const TASK_PARENT: &str = include_str!("sql/task_parent.sql");
/// processing -> queued with attempt + 1 (the retry message is written to the outbox in the same transaction).
pub const TASK_REQUEUE_RETRY: &str = include_str!("sql/task_requeue_retry.sql");
/// Why a claim matched nothing: the task's and its job's current state.
pub const TASK_STATE: &str = include_str!("sql/task_state.sql");
/// When a job ends early: its queued tasks will never run.
pub const TASKS_CANCEL_QUEUED: &str = include_str!("sql/tasks_cancel_queued.sql");
/// An attempt whose outcome could not be recorded: processing -> queued, so its redelivery runs it again.
pub const TASK_RELEASE: &str = include_str!("sql/task_release.sql");
/// The status of a task's job, share-locked for the rest of the transaction.
pub const JOB_LOCK_SHARE: &str = include_str!("sql/job_lock_share.sql");
/// One queued task of a job that stopped: cancelled.
pub const TASK_CANCEL_QUEUED: &str = include_str!("sql/task_cancel_queued.sql");
/// Poison: the job's tasks that never ran are failed with the reason.
pub const TASKS_FAIL_PENDING: &str = include_str!("sql/tasks_fail_pending.sql");
/// Create a stage's tasks in one statement.
pub const TASKS_INSERT_BATCH: &str = include_str!("sql/tasks_insert_batch.sql");

/// Operator cancel: queued | processing -> cancelled, under the row lock.
pub const JOB_CANCEL: &str = include_str!("sql/job_cancel.sql");
/// Cancel / resubmit: the job state under its row lock.
pub const JOB_CONTROL_STATE: &str = include_str!("sql/job_control_state.sql");
/// Resubmit: failed | cancelled -> queued at a stage, attempt + 1.
pub const JOB_RESUBMIT: &str = include_str!("sql/job_resubmit.sql");
/// Resubmit: drop the stage rows (and counters) that run again.
pub const STAGES_DELETE_FROM: &str = include_str!("sql/stages_delete_from.sql");
/// Resubmit: move the previous attempt's tasks of the stages that run again to app.task_archive.
pub const TASKS_ARCHIVE_FROM_STAGE: &str = include_str!("sql/tasks_archive_from_stage.sql");
/// Retry of failed tasks: the stage's tasks that did not complete, locked.
pub const STAGE_RETRY_TASKS: &str = include_str!("sql/stage_retry_tasks.sql");
/// Retry of failed tasks: move these tasks to app.task_archive.
pub const TASKS_ARCHIVE_IDS: &str = include_str!("sql/tasks_archive_ids.sql");
/// Retry of failed tasks: the stage runs again with only the re-queued tasks on its counter.
pub const STAGE_REOPEN: &str = include_str!("sql/stage_reopen.sql");
/// Janitor repair of a stalled stage: its tasks still queued or processing.
pub const STAGE_LIVE_TASKS: &str = include_str!("sql/stage_live_tasks.sql");
/// Tasks of a job being run right now.
pub const TASKS_IN_FLIGHT: &str = include_str!("sql/tasks_in_flight.sql");

/// Jobs newest first, optional filters, keyset cursor.
pub const JOBS_LIST: &str = include_str!("sql/jobs_list.sql");
/// Per-stage task counts of a job.
pub const JOB_STAGE_PROGRESS: &str = include_str!("sql/job_stage_progress.sql");
/// Tasks of a job in stage and task order, optional filters, keyset cursor.
pub const TASKS_LIST: &str = include_str!("sql/tasks_list.sql");
/// The most recent janitor run.
pub const JANITOR_LAST_RUN: &str = include_str!("sql/janitor_last_run.sql");

/// Whether a task was archived by a resubmit.
pub const TASK_ARCHIVED: &str = include_str!("sql/task_archived.sql");

// The API's reads (job_views, stage_views, task_views, event_views, platform_requests,
// janitor_views) and its admin redeploy (migrations).
/// The web page's job list, newest first.
pub const UI_JOBS: &str = include_str!("sql/ui_jobs.sql");
/// How many per-input outcomes a job's result holds, and how many are ok.
pub const UI_JOB_INPUT_TOTALS: &str = include_str!("sql/ui_job_input_totals.sql");
/// One page of a job's per-input outcomes (from its result), failures first.
pub const UI_JOB_INPUTS: &str = include_str!("sql/ui_job_inputs.sql");
/// Started stages with task counts.
pub const TIMELINE_STAGES: &str = include_str!("sql/timeline_stages.sql");
/// One task by id, current or archived.
pub const TASK_GET: &str = include_str!("sql/task_get.sql");
/// One page of the tasks of one job, failures first.
pub const UI_JOB_TASKS: &str = include_str!("sql/ui_job_tasks.sql");
/// Task totals of one job by stage and status.
pub const UI_JOB_TASK_TOTALS: &str = include_str!("sql/ui_job_task_totals.sql");
/// One page of a job's events, oldest first.
pub const EVENTS_PAGE: &str = include_str!("sql/events_page.sql");
/// Event counts per type and status.
pub const EVENTS_COUNTS: &str = include_str!("sql/events_counts.sql");
/// The last successful event and the first failure.
pub const EVENTS_MILESTONES: &str = include_str!("sql/events_milestones.sql");
/// The per-item transaction lock of platform requests.
pub const PLATFORM_REQUEST_LOCK: &str = include_str!("sql/platform_request_lock.sql");
/// A new platform request (ON CONFLICT DO NOTHING).
pub const PLATFORM_REQUEST_INSERT: &str = include_str!("sql/platform_request_insert.sql");
/// Another platform request owning the same outputs.
pub const PLATFORM_REQUEST_OUTPUT_OWNER: &str =
    include_str!("sql/platform_request_output_owner.sql");
/// One platform request with its job.
pub const PLATFORM_REQUEST_GET: &str = include_str!("sql/platform_request_get.sql");
/// A page of platform requests with their jobs.
pub const PLATFORM_REQUESTS_LIST: &str = include_str!("sql/platform_requests_list.sql");
/// Redeploy: drop the app schema (the migrations recreate it).
pub const SCHEMA_DROP: &str = include_str!("sql/schema_drop.sql");

/// Cancel: close running stage rows before locking the job (lock order of completions).
pub const STAGES_CANCEL_RUNNING: &str = include_str!("sql/stages_cancel_running.sql");
/// Cancel: close a stage that started while the cancel waited, without waiting.
pub const STAGE_CANCEL_NOWAIT: &str = include_str!("sql/stage_cancel_nowait.sql");

/// The recorded install of an optional schema (pgSTAC).
pub const OPTIONAL_SCHEMA_GET: &str = include_str!("sql/optional_schema_get.sql");
/// Records the install of an optional schema.
pub const OPTIONAL_SCHEMA_RECORD: &str = include_str!("sql/optional_schema_record.sql");
/// Serialises the pgSTAC writes of one collection (process_raster).
pub const STAC_COLLECTION_LOCK: &str = include_str!("sql/stac_collection_lock.sql");
/// Finished jobs past their retention, oldest first.
pub const RETENTION_EXPIRED_JOBS: &str = include_str!("sql/retention_expired_jobs.sql");
/// Completed jobs whose events are past their retention and still there.
pub const RETENTION_EVENT_JOBS: &str = include_str!("sql/retention_event_jobs.sql");
/// One bounded batch of events of jobs still past retention.
pub const RETENTION_DELETE_EVENTS: &str = include_str!("sql/retention_delete_events.sql");
/// One bounded batch of tasks of jobs still past retention.
pub const RETENTION_DELETE_TASKS: &str = include_str!("sql/retention_delete_tasks.sql");
/// One bounded batch of archived tasks of jobs still past retention.
pub const RETENTION_DELETE_ARCHIVE: &str = include_str!("sql/retention_delete_archive.sql");
/// The emptied job rows past retention (stages and counters by cascade), with their message failures.
pub const RETENTION_DELETE_JOBS: &str = include_str!("sql/retention_delete_jobs.sql");
/// Completed jobs whose events are all gone: `events_purged_at` set.
pub const RETENTION_MARK_EVENTS_PURGED: &str = include_str!("sql/retention_mark_events_purged.sql");
/// What retention would delete now (counts).
pub const RETENTION_PREVIEW: &str = include_str!("sql/retention_preview.sql");

/// The trace context a job was submitted under (a retry message carries it on).
pub const JOB_TRACEPARENT: &str = include_str!("sql/job_traceparent.sql");

/// Every statement with its name (prepared against the schema by a test).
pub const ALL: &[(&str, &str)] = &[
    ("event_insert_batch", EVENT_INSERT_BATCH),
    ("janitor_expired_leases", JANITOR_EXPIRED_LEASES),
    ("janitor_run_finish", JANITOR_RUN_FINISH),
    ("janitor_run_start", JANITOR_RUN_START),
    ("janitor_stalled_stages", JANITOR_STALLED_STAGES),
    ("janitor_stuck_queued_jobs", JANITOR_STUCK_QUEUED_JOBS),
    ("job_advance", JOB_ADVANCE),
    ("job_fail", JOB_FAIL),
    ("job_finish", JOB_FINISH),
    ("job_get", JOB_GET),
    ("job_insert", JOB_INSERT),
    ("job_lock", JOB_LOCK),
    ("job_message_state", JOB_MESSAGE_STATE),
    ("job_stage_state", JOB_STAGE_STATE),
    ("job_start_stage", JOB_START_STAGE),
    ("job_touch", JOB_TOUCH),
    ("local_queue_abandon", LOCAL_QUEUE_ABANDON),
    ("local_queue_renew", LOCAL_QUEUE_RENEW),
    ("local_queue_complete", LOCAL_QUEUE_COMPLETE),
    ("local_queue_insert_batch", LOCAL_QUEUE_INSERT_BATCH),
    ("local_queue_lease", LOCAL_QUEUE_LEASE),
    ("message_failure_insert", MESSAGE_FAILURE_INSERT),
    ("outbox_delete", OUTBOX_DELETE),
    ("outbox_insert_batch", OUTBOX_INSERT_BATCH),
    ("outbox_mark_failed", OUTBOX_MARK_FAILED),
    ("outbox_select", OUTBOX_SELECT),
    ("outbox_unsendable_rows", OUTBOX_UNSENDABLE_ROWS),
    ("outbox_stale_ids", OUTBOX_STALE_IDS),
    ("outbox_to_local_queue", OUTBOX_TO_LOCAL_QUEUE),
    ("stage_counters_insert", STAGE_COUNTERS_INSERT),
    ("stage_counts", STAGE_COUNTS),
    ("stage_failed_tasks", STAGE_FAILED_TASKS),
    ("earlier_failed_tasks", EARLIER_FAILED_TASKS),
    ("job_failed_count", JOB_FAILED_COUNT),
    ("stage_finish", STAGE_FINISH),
    ("stage_insert", STAGE_INSERT),
    ("stage_results_completed", STAGE_RESULTS_COMPLETED),
    ("stages_summary", STAGES_SUMMARY),
    ("task_claim", TASK_CLAIM),
    ("task_complete", TASK_COMPLETE),
    ("task_complete_batch", TASK_COMPLETE_BATCH),
    ("task_parent", TASK_PARENT),
    ("task_requeue_retry", TASK_REQUEUE_RETRY),
    ("task_state", TASK_STATE),
    ("tasks_cancel_queued", TASKS_CANCEL_QUEUED),
    ("task_release", TASK_RELEASE),
    ("task_complete_fast", TASK_COMPLETE_FAST),
    ("job_lock_share", JOB_LOCK_SHARE),
    ("task_cancel_queued", TASK_CANCEL_QUEUED),
    ("tasks_fail_pending", TASKS_FAIL_PENDING),
    ("tasks_insert_batch", TASKS_INSERT_BATCH),
    ("job_cancel", JOB_CANCEL),
    ("job_control_state", JOB_CONTROL_STATE),
    ("job_resubmit", JOB_RESUBMIT),
    ("stages_delete_from", STAGES_DELETE_FROM),
    ("tasks_archive_from_stage", TASKS_ARCHIVE_FROM_STAGE),
    ("tasks_in_flight", TASKS_IN_FLIGHT),
    ("stage_live_tasks", STAGE_LIVE_TASKS),
    ("stage_retry_tasks", STAGE_RETRY_TASKS),
    ("tasks_archive_ids", TASKS_ARCHIVE_IDS),
    ("stage_reopen", STAGE_REOPEN),
    ("task_archived", TASK_ARCHIVED),
    ("stages_cancel_running", STAGES_CANCEL_RUNNING),
    ("stage_cancel_nowait", STAGE_CANCEL_NOWAIT),
    ("jobs_list", JOBS_LIST),
    ("job_stage_progress", JOB_STAGE_PROGRESS),
    ("tasks_list", TASKS_LIST),
    ("janitor_last_run", JANITOR_LAST_RUN),
    ("ui_jobs", UI_JOBS),
    ("ui_job_input_totals", UI_JOB_INPUT_TOTALS),
    ("ui_job_inputs", UI_JOB_INPUTS),
    ("timeline_stages", TIMELINE_STAGES),
    ("task_get", TASK_GET),
    ("ui_job_tasks", UI_JOB_TASKS),
    ("ui_job_task_totals", UI_JOB_TASK_TOTALS),
    ("events_page", EVENTS_PAGE),
    ("events_counts", EVENTS_COUNTS),
    ("events_milestones", EVENTS_MILESTONES),
    ("platform_request_lock", PLATFORM_REQUEST_LOCK),
    ("platform_request_insert", PLATFORM_REQUEST_INSERT),
    (
        "platform_request_output_owner",
        PLATFORM_REQUEST_OUTPUT_OWNER,
    ),
    ("platform_request_get", PLATFORM_REQUEST_GET),
    ("platform_requests_list", PLATFORM_REQUESTS_LIST),
    ("schema_drop", SCHEMA_DROP),
    ("optional_schema_get", OPTIONAL_SCHEMA_GET),
    ("optional_schema_record", OPTIONAL_SCHEMA_RECORD),
    ("stac_collection_lock", STAC_COLLECTION_LOCK),
    ("retention_expired_jobs", RETENTION_EXPIRED_JOBS),
    ("retention_event_jobs", RETENTION_EVENT_JOBS),
    ("retention_delete_events", RETENTION_DELETE_EVENTS),
    ("retention_delete_tasks", RETENTION_DELETE_TASKS),
    ("retention_delete_archive", RETENTION_DELETE_ARCHIVE),
    ("retention_delete_jobs", RETENTION_DELETE_JOBS),
    ("retention_mark_events_purged", RETENTION_MARK_EVENTS_PURGED),
    ("retention_preview", RETENTION_PREVIEW),
    ("job_traceparent", JOB_TRACEPARENT),
];

/// The name of a statement of [`ALL`] (the `.sql` file's), found by its text; `"statement"` for
/// text that is not one of them.
pub fn name_of(text: &str) -> &'static str {
    ALL.iter()
        .find(|(_, t)| std::ptr::eq(t.as_ptr(), text.as_ptr()) || *t == text)
        .map(|(n, _)| *n)
        .unwrap_or("statement")
}
