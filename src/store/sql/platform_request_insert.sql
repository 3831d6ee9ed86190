-- A new platform request, in the transaction that creates (or finds) its job. No row back: the
-- request exists already (a repeat racing this one), and the whole submit is rolled back.
INSERT INTO app.platform_requests
  (request_id, dataset_id, resource_id, version_id, job_id, job_type, data_type, client_id, request, outputs)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (request_id) DO NOTHING
RETURNING request_id
