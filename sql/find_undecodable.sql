-- Files of an image table that cannot be decoded as images, and why. No model runs:
-- mx_image_info only decodes. These are the images mx_classify gives NULL for.
--
-- Variables (give each with -d NAME=VALUE, or --hivevar NAME=VALUE):
--   table   image table (see create_image_table.sql)
--
-- Example:
--   mxsql -d table=photos -f sql/find_undecodable.sql
--
-- LATERAL VIEW inline(array(f(...))) turns the function's struct into columns and lets
-- the WHERE clause filter on them with one call per image: a WHERE on a subquery's
-- field of the call would make Spark evaluate the call again for the rows it keeps.

SELECT path, length, error
FROM ${table}
LATERAL VIEW inline(array(mx_image_info(content))) info
WHERE error IS NOT NULL
ORDER BY path;
