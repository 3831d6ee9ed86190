-- Another request that already owns the outputs named by item id $1 (not request $2).
SELECT request_id, dataset_id, resource_id, version_id
FROM app.platform_requests
WHERE outputs->>'item_id' = $1 AND request_id <> $2
