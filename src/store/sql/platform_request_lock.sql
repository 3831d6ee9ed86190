-- Serialises the requests that would write one STAC item (and so one table and folder), until
-- the end of the transaction: the owner check and the insert after it see each other's commits.
SELECT pg_advisory_xact_lock(hashtextextended('platform_request:' || $1::text, 0))
