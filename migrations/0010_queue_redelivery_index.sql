-- The emulator's dead-letter sweep looks for messages at their max delivery count
-- (local_queue_dead_letter.sql: queue = $1 AND delivery_count >= $2). Without an index on
-- delivery_count it read every visible message of the queue: 43 ms per sweep with 70,000 task
-- messages queued, the largest cost of a 100k-task stage (docs/performance.md). With it, a sweep
-- that finds nothing reads nothing.
CREATE INDEX IF NOT EXISTS idx_queue_messages_delivery_count ON app.queue_messages (queue, delivery_count);
