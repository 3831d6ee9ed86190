-- The platform layer's requests (POST /api/platform/submit): one row per request, written in the
-- same transaction as its job's creation, so a request never exists without its job or the
-- reverse. request_id is the earlier recipe (first 32 hex of sha256 of
-- `dataset_id|resource_id|version_id`); a repeated request finds its row and answers with it.
-- The earlier system's `api_requests` columns, plus what the status routes report. A job removed
-- by retention takes its request with it (ON DELETE CASCADE).
CREATE TABLE IF NOT EXISTS app.platform_requests (
  request_id   VARCHAR(32)  PRIMARY KEY CHECK (request_id ~ '^[0-9a-f]{32}$'),
  dataset_id   VARCHAR(255) NOT NULL,
  resource_id  VARCHAR(255) NOT NULL,
  version_id   VARCHAR(50)  NOT NULL,
  job_id       VARCHAR(64)  NOT NULL REFERENCES app.jobs (job_id) ON DELETE CASCADE,
  job_type     VARCHAR(100) NOT NULL,
  data_type    VARCHAR(50)  NOT NULL CHECK (data_type IN ('raster', 'vector')),
  client_id    VARCHAR(100) NOT NULL,
  -- The validated request body and the names derived from it (table, folder, collection, item).
  request      JSONB        NOT NULL,
  outputs      JSONB        NOT NULL,
  created_at   TIMESTAMPTZ  NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS idx_platform_requests_dataset_id ON app.platform_requests (dataset_id);
-- The status list, newest first, keyset-paged on (created_at, request_id).
CREATE INDEX IF NOT EXISTS idx_platform_requests_created_at
  ON app.platform_requests (created_at DESC, request_id DESC);
-- The cascade from a deleted job, and a job's page finding its request.
CREATE INDEX IF NOT EXISTS idx_platform_requests_job_id ON app.platform_requests (job_id);
-- One request per STAC item (and so per table and folder: the names share their source): two
-- dataset/resource/version triples that differ only in case or separators would write the same
-- outputs; the second is refused (409) instead of overwriting the first's.
CREATE UNIQUE INDEX IF NOT EXISTS idx_platform_requests_item_id
  ON app.platform_requests ((outputs->>'item_id'));
