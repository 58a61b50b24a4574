-- Backfill: keep a predictions view current with an image table, classifying only what
-- changed. Run it again whenever images arrive, change or go: a file goes through the
-- network again only when it is new, when its modificationTime or length changed, or
-- when the model's fingerprint changed (mx_models(): its files' checksums and the
-- settings that change outputs), in which case every file is classified again.
--
-- Variables (give each with -d NAME=VALUE, or --hivevar NAME=VALUE):
--   table         image table (see create_image_table.sql); the whole set: a file no
--                 longer in it leaves the predictions at the next run
--   predictions   name of the view readers query, e.g. photo_predictions; the script
--                 keeps the tables predictions_history and predictions_runs beside it
--   model         a configured model's name (spark.mxsql.model.NAME.uri), e.g. default
--   partition_by  the history's partition column: label (the predicted class), day (the
--                 day the file was last modified) or model
--
-- Example:
--   mxsql -d table=photos -d predictions=photo_predictions -d model=default \
--         -d partition_by=day -f sql/backfill.sql
--
-- Readers query the view ${predictions}: one row per file and model, the latest committed
-- prediction (path, modification_time, length, model, fingerprint, label, probability,
-- class_index, top_k: the 5 best classes, error, run_id, predicted_at, day). A file that
-- cannot be decoded has a NULL label and top_k, and error says why; it is not retried
-- until it changes. Every row any run wrote stays in ${predictions}_history, tagged with
-- its run_id; a run enters ${predictions}_runs only after all its rows are written, and
-- the view reads only the rows of runs listed there. A run that fails or is killed half
-- way thus changes nothing readers see: the next run does its work again (its orphan rows
-- stay in the history, never read). Deleted files: the run writes a row marking each one
-- deleted, and the view drops it (a file that comes back is classified again).
--
-- Only the files' metadata is read to find the work; the bytes are read from the oldest
-- modificationTime among the files to classify onwards. Before this version the script
-- kept a table named ${predictions}: rename it (ALTER TABLE ... RENAME TO ...) first.

DECLARE OR REPLACE VARIABLE mxsql_backfill_run STRING DEFAULT uuid();
DECLARE OR REPLACE VARIABLE mxsql_backfill_started TIMESTAMP DEFAULT current_timestamp();
DECLARE OR REPLACE VARIABLE mxsql_backfill_fingerprint STRING;
DECLARE OR REPLACE VARIABLE mxsql_backfill_since TIMESTAMP;

SET VAR mxsql_backfill_fingerprint = (
  SELECT coalesce(max(fingerprint), raise_error(coalesce(
           max(concat('model ${model}: ', error)),
           'unknown model ${model}: SELECT name FROM mx_models() lists the configured models')))
  FROM mx_models()
  WHERE name = '${model}'
);

CREATE TABLE IF NOT EXISTS ${predictions}_history (
  path STRING,
  modification_time TIMESTAMP,
  length BIGINT,
  model STRING,
  fingerprint STRING,
  label STRING,
  probability DOUBLE,
  class_index INT,
  top_k ARRAY<STRUCT<label: STRING, probability: DOUBLE, class_index: INT>>,
  error STRING,
  deleted BOOLEAN,
  run_id STRING,
  predicted_at TIMESTAMP,
  day DATE
)
USING parquet
PARTITIONED BY (${partition_by});

CREATE TABLE IF NOT EXISTS ${predictions}_runs (
  run_id STRING,
  model STRING,
  fingerprint STRING,
  started_at TIMESTAMP,
  committed_at TIMESTAMP,
  classified BIGINT,
  undecodable BIGINT,
  deleted BIGINT
)
USING parquet;

CREATE OR REPLACE VIEW ${predictions} AS
SELECT path, modification_time, length, model, fingerprint, label, probability,
       class_index, top_k, error, run_id, predicted_at, day
FROM (
  SELECT h.*, row_number() OVER (PARTITION BY h.path, h.model
                                 ORDER BY r.started_at DESC, h.predicted_at DESC) AS version
  FROM ${predictions}_history h
  JOIN ${predictions}_runs r ON h.run_id = r.run_id
) latest
WHERE version = 1 AND NOT deleted;

-- The files to classify, from metadata alone (binaryFile reads no bytes for it): the
-- oldest modificationTime among them bounds the bytes the next statement reads.
SET VAR mxsql_backfill_since = (
  SELECT coalesce(min(i.modificationTime), TIMESTAMP '9999-12-31 00:00:00')
  FROM (SELECT path, modificationTime, length FROM ${table}) i
  LEFT ANTI JOIN (SELECT path, modification_time, length FROM ${predictions}
                  WHERE model = '${model}' AND fingerprint = mxsql_backfill_fingerprint) done
    ON i.path = done.path AND i.modificationTime = done.modification_time
   AND i.length = done.length
);

INSERT INTO ${predictions}_history BY NAME
SELECT path, modificationTime AS modification_time, length,
       '${model}' AS model, mxsql_backfill_fingerprint AS fingerprint,
       top_k[0].label AS label, top_k[0].probability AS probability,
       top_k[0].class_index AS class_index, top_k,
       CAST(NULL AS STRING) AS error, false AS deleted,
       mxsql_backfill_run AS run_id, current_timestamp() AS predicted_at,
       to_date(modificationTime) AS day
FROM (
  SELECT /*+ BROADCAST(done) */
         i.path, i.modificationTime, i.length,
         mx_top_k(i.content, 5, '${model}', i.path) AS top_k
  FROM ${table} i
  LEFT ANTI JOIN (SELECT path, modification_time, length FROM ${predictions}
                  WHERE model = '${model}' AND fingerprint = mxsql_backfill_fingerprint) done
    ON i.path = done.path AND i.modificationTime = done.modification_time
   AND i.length = done.length
  WHERE i.modificationTime >= mxsql_backfill_since
) todo;

-- Why the files without a class failed: decoded again, only those (a later row of the
-- same run, which the view prefers).
INSERT INTO ${predictions}_history BY NAME
SELECT failed.path, failed.modification_time, failed.length, failed.model,
       failed.fingerprint, failed.label, failed.probability, failed.class_index,
       failed.top_k,
       coalesce(mx_image_info(i.content).error,
                'the image decodes but the network failed on it: see the workers log') AS error,
       false AS deleted, failed.run_id, current_timestamp() AS predicted_at, failed.day
FROM ${table} i
JOIN (SELECT * FROM ${predictions}_history
      WHERE run_id = mxsql_backfill_run AND top_k IS NULL) failed
  ON i.path = failed.path AND i.modificationTime = failed.modification_time
WHERE i.modificationTime >= mxsql_backfill_since;

-- Files gone from the image table: a row marking each deleted.
INSERT INTO ${predictions}_history BY NAME
SELECT c.path, c.modification_time, c.length, c.model, c.fingerprint, c.label,
       c.probability, c.class_index, c.top_k, c.error, true AS deleted,
       mxsql_backfill_run AS run_id, current_timestamp() AS predicted_at, c.day
FROM (SELECT * FROM ${predictions} WHERE model = '${model}') c
LEFT ANTI JOIN (SELECT path FROM ${table}) i ON c.path = i.path;

-- The commit: from here on, readers see this run's rows.
INSERT INTO ${predictions}_runs BY NAME
SELECT mxsql_backfill_run AS run_id, '${model}' AS model,
       mxsql_backfill_fingerprint AS fingerprint, mxsql_backfill_started AS started_at,
       current_timestamp() AS committed_at,
       count_if(NOT deleted AND top_k IS NOT NULL) AS classified,
       count_if(error IS NOT NULL AND NOT deleted) AS undecodable,
       count_if(deleted) AS deleted
FROM ${predictions}_history
WHERE run_id = mxsql_backfill_run;

SELECT classified, undecodable, deleted
FROM ${predictions}_runs
WHERE run_id = mxsql_backfill_run;

SELECT ${partition_by}, count(*) AS images
FROM ${predictions}
GROUP BY ${partition_by}
ORDER BY ${partition_by};
