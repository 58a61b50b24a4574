-- Evaluate a model on a labelled image table laid out one folder per class: the true
-- label of an image is the name of its parent folder (.../cat/0001.jpg is a cat).
-- Prints each image's prediction, the accuracy per class, then the overall accuracy.
--
-- Variables (give each with -d NAME=VALUE, or --hivevar NAME=VALUE):
--   table   image table over the class folders (see create_image_table.sql, with
--           recursive=true)
--   model   a configured model's name (spark.mxsql.model.NAME.uri), e.g. default
--
-- Example:
--   mxsql -d table=test_images -d model=default -f sql/evaluate.sql
--
-- The images are classified once, into a cached view that the three reports read. An
-- image that cannot be decoded has a NULL prediction and counts as wrong.

CACHE TABLE mx_evaluation AS
SELECT path,
       regexp_extract(path, '/([^/]+)/[^/]+$', 1) AS truth,
       c.label AS predicted,
       c.probability
FROM (SELECT path, mx_classify(content, '${model}') AS c FROM ${table}) classified;

SELECT path, truth, predicted, CAST(probability AS DECIMAL(5, 4)) AS probability,
       predicted <=> truth AS correct
FROM mx_evaluation
ORDER BY path;

SELECT truth, count(*) AS images, count_if(predicted <=> truth) AS correct,
       CAST(count_if(predicted <=> truth) / count(*) AS DECIMAL(5, 4)) AS accuracy
FROM mx_evaluation
GROUP BY truth
ORDER BY truth;

SELECT count(*) AS images, count_if(predicted <=> truth) AS correct,
       CAST(count_if(predicted <=> truth) / count(*) AS DECIMAL(5, 4)) AS accuracy
FROM mx_evaluation;

DROP VIEW IF EXISTS mx_evaluation;
