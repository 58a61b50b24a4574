-- Backfill: classify the images a predictions table does not hold yet and append them.
-- The predictions table is Parquet, partitioned by a column you choose. Run the script
-- again when new images arrive: images already predicted with this model (same path)
-- are skipped, so only the new ones go through the network.
--
-- Variables (give each with -d NAME=VALUE, or --hivevar NAME=VALUE):
--   table         image table (see create_image_table.sql)
--   predictions   predictions table, created on the first run, e.g. photo_predictions
--   model         a configured model's name (spark.mxsql.model.NAME.uri), e.g. default
--   partition_by  the partition column: label (the predicted class), day (the day the
--                 file was last modified) or model
--
-- Example:
--   mxsql -d table=photos -d predictions=photo_predictions -d model=default \
--         -d partition_by=day -f sql/backfill.sql
--
-- Images that cannot be decoded are stored with a NULL label (find_undecodable.sql
-- says why) and are not retried. The paths already predicted are broadcast to the
-- tasks (the BROADCAST hint), so the images' bytes are not shuffled for the join.

CREATE TABLE IF NOT EXISTS ${predictions} (
  path STRING,
  modification_time TIMESTAMP,
  length BIGINT,
  label STRING,
  probability DOUBLE,
  class_index INT,
  model STRING,
  predicted_at TIMESTAMP,
  day DATE
)
USING parquet
PARTITIONED BY (${partition_by});

INSERT INTO ${predictions} BY NAME
SELECT path, modificationTime AS modification_time, length,
       c.label, c.probability, c.class_index,
       '${model}' AS model, current_timestamp() AS predicted_at,
       to_date(modificationTime) AS day
FROM (
  SELECT /*+ BROADCAST(done) */
         i.path, i.modificationTime, i.length, mx_classify(i.content, '${model}') AS c
  FROM ${table} i
  LEFT ANTI JOIN (SELECT path FROM ${predictions} WHERE model = '${model}') done
    ON i.path = done.path
) new_images;

SELECT ${partition_by}, count(*) AS images
FROM ${predictions}
GROUP BY ${partition_by}
ORDER BY ${partition_by};
