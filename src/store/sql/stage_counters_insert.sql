INSERT INTO app.stage_counters (job_id, stage, shard, remaining, total)
SELECT $1, $2, u.shard, u.n, u.n FROM unnest($3::smallint[], $4::int[]) AS u(shard, n)
ON CONFLICT (job_id, stage, shard) DO UPDATE SET remaining = EXCLUDED.remaining, total = EXCLUDED.total
