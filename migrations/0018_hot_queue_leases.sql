-- [batch] Local queue leases as HOT updates (docs/performance.md, "Batched deliveries").
-- A local queue message is inserted, leased (delivery_count, lock_token, visible_at change) and
-- deleted. The lease changed two indexed columns (idx_queue_messages_ready on visible_at,
-- idx_queue_messages_delivery_count), so it wrote a new entry in every index: 8 index entries
-- per message. Now the lease reads the queue in id order (what Service Bus's sequence numbers
-- give) through (queue, id) and checks visible_at on the row, and dead-lettering a message at its
-- max delivery count is part of the lease (local_queue_lease.sql), so no index names a column
-- the lease changes: 3 index entries per message, written by its insert.
CREATE INDEX IF NOT EXISTS idx_queue_messages_queue_id ON app.queue_messages (queue, id);
DROP INDEX IF EXISTS app.idx_queue_messages_ready;
DROP INDEX IF EXISTS app.idx_queue_messages_delivery_count;
-- Room for the lease's new version of every row of a page: a batch leases consecutive messages,
-- i.e. whole pages at once (a message row is ~0.7 KB with its body; at fillfactor 70 only half
-- of the leases found room, measured).
ALTER TABLE app.queue_messages SET (fillfactor = 40);
-- The same for tasks: a wave claims consecutive tasks of a stage, and at fillfactor 70 a third of
-- the claims and completions found no room on their page (measured); the old versions are pruned
-- between the claim and the completion.
ALTER TABLE app.tasks SET (fillfactor = 50);
