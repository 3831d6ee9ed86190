-- Attempts kept apart (the events API and the web page): the events of job attempt N are those at
-- or after its `job_resubmitted` event (a resubmit archives the tasks it replaces and fences the
-- claim by attempt, so no event of an earlier attempt is written after it). This partial index
-- finds those boundaries without reading the job's other events; an insert of any other event
-- type does not touch it.
CREATE INDEX IF NOT EXISTS idx_job_events_resubmits ON app.job_events (job_id, event_id)
  WHERE event_type = 'job_resubmitted';
