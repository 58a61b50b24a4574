-- The k most probable classes of each image, one row per class, best first.
--
-- Variables (give each with -d NAME=VALUE, or --hivevar NAME=VALUE):
--   table   image table (see create_image_table.sql)
--   model   a configured model's name (spark.mxsql.model.NAME.uri), e.g. default
--   k       classes per image, e.g. 5
--   limit   how many images, the first by path; e.g. 100
--
-- Example:
--   mxsql -d table=photos -d model=default -d k=5 -d limit=100 -f sql/top_k.sql
--
-- The images are picked first (ORDER BY ... LIMIT, cached), so exactly `limit` images
-- reach the network (see classify.sql). Rank 1 is the top-1 class: there is no need
-- for a separate mx_classify call, which would run the network again. An image that
-- cannot be decoded gives one row with NULL rank, label and probability.

CACHE TABLE mx_picked AS
SELECT path, content FROM ${table} ORDER BY path LIMIT ${limit};

SELECT path, pos + 1 AS rank, t.label, CAST(t.probability AS DECIMAL(5, 4)) AS probability
FROM (SELECT path, mx_top_k(content, ${k}, '${model}') AS top FROM mx_picked) ranked
LATERAL VIEW OUTER posexplode(top) classes AS pos, t
ORDER BY path, rank;

DROP VIEW IF EXISTS mx_picked;
