-- process_raster: serialises the pgSTAC writes of one collection (pgSTAC creates a collection's
-- partitions on its first items, and concurrent first upserts race on them). Held to the end of
-- the transaction.
SELECT pg_advisory_xact_lock(hashtext('coremachine.stac:' || $1::text))
