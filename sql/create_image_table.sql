-- Create a table over a folder or bucket of images, read by Spark's binaryFile source.
-- Its columns are path, modificationTime, length and content (the file's bytes).
--
-- Variables (give each with -d NAME=VALUE, or --hivevar NAME=VALUE):
--   table      name of the table, e.g. photos (an existing table is left as it is)
--   path       folder or bucket prefix: /data/photos, hdfs:///photos, s3a://bucket/photos
--   glob       which file names to read: *.jpg, *.{jpg,jpeg,png}, or * for every file
--   recursive  true: read every sub-folder (folder-per-class layouts); false: one level
--
-- Example:
--   mxsql -d table=photos -d path=/data/photos -d 'glob=*.{jpg,png}' -d recursive=true \
--         -f sql/create_image_table.sql
--
-- binaryFile skips empty (0-byte) files: they never reach the table.

CREATE TABLE IF NOT EXISTS ${table}
USING binaryFile
OPTIONS (
  path '${path}',
  pathGlobFilter '${glob}',
  recursiveFileLookup '${recursive}'
);

SELECT count(*) AS images, sum(length) AS bytes FROM ${table};
