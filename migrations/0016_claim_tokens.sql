-- [batch] Fencing tokens for task claims, and cheaper task row updates (docs/performance.md,
-- "Batched deliveries").

-- 1. Every claim of a task increments claim_token and records the DeliveryCount of the message
--    that claimed it. A completion, retry or release names the token of the claim it belongs to
--    and changes nothing when the task was claimed again since (a zombie holder cannot overwrite
--    the attempt that took over). A message delivered more often than the one that holds the
--    claim means the holder lost the message's lock (it died or stalled): it takes the task over
--    at once instead of waiting for the lease (task_claim.sql).
ALTER TABLE app.tasks
  ADD COLUMN IF NOT EXISTS claim_token INT NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS claim_delivery_count INT;

-- 2. The updated_at trigger ran PL/pgSQL on every claim and every completion. The hot-path
--    statements now set updated_at themselves; the trigger runs only for a statement that did
--    not (its WHEN is evaluated without calling the function).
DROP TRIGGER IF EXISTS update_tasks_updated_at ON app.tasks;
CREATE TRIGGER update_tasks_updated_at BEFORE UPDATE ON app.tasks FOR EACH ROW
  WHEN (OLD.updated_at IS NOT DISTINCT FROM NEW.updated_at)
  EXECUTE FUNCTION app.update_updated_at_column();

-- 3. Room on each page for the claim's and the completion's new row versions, so that an update
--    that changes no indexed column stays on its page (a HOT update: no index entry at all).
ALTER TABLE app.tasks SET (fillfactor = 70);
