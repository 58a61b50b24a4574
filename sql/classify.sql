-- Classify images: the most probable class of each image and its probability.
--
-- Variables (give each with -d NAME=VALUE, or --hivevar NAME=VALUE):
--   table   image table (see create_image_table.sql)
--   model   a configured model's name (spark.mxsql.model.NAME.uri), e.g. default
--   limit   how many images, the first by path; e.g. 100
--
-- Example:
--   mxsql -d table=photos -d model=default -d limit=100 -f sql/classify.sql
--
-- The images are picked first (ORDER BY ... LIMIT, cached), so exactly `limit` images
-- reach the network: with the LIMIT in a subquery of the classifying query, Spark moves
-- the call below the limit of each partition and classifies up to `limit` images per
-- partition. mx_classify is called once per image and its fields are read from a
-- subquery. An image that cannot be decoded gives NULL (find_undecodable.sql says why).

CACHE TABLE mx_picked AS
SELECT path, content FROM ${table} ORDER BY path LIMIT ${limit};

SELECT path, c.label, CAST(c.probability AS DECIMAL(5, 4)) AS probability
FROM (SELECT path, mx_classify(content, '${model}') AS c FROM mx_picked) classified
ORDER BY path;

DROP VIEW IF EXISTS mx_picked;
