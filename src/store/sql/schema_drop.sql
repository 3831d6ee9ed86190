-- Redeploy (admin API): the whole app schema goes, the migrations recreate it.
DROP SCHEMA IF EXISTS app CASCADE
