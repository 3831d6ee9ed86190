-- Serialises the transactions working on one key (a table's creation, one chunk's rows) until commit.
SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))
