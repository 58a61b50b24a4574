-- Compare two models on a labelled image table laid out one folder per class (as for
-- evaluate.sql: the true label of an image is the name of its parent folder). Prints the
-- images where the two models' top-1 classes differ, then one row: the accuracy of each
-- model, and how often they agree. Made to check what precision=int8 costs on your own
-- images: configure the same checkpoint twice, once at each precision.
--
-- Variables (give each with -d NAME=VALUE, or --hivevar NAME=VALUE):
--   table      image table over the class folders (see create_image_table.sql, with
--              recursive=true)
--   model      the configured model to check, e.g. the checkpoint at precision=int8
--   reference  the configured model to compare it with, e.g. the same one in fp32
--
-- Example:
--   mxsql --conf spark.mxsql.model.fp.uri=PREFIX --conf spark.mxsql.model.q.uri=PREFIX \
--         --conf spark.mxsql.model.q.precision=int8 \
--         --conf spark.mxsql.model.q.calibration=/data/calibration \
--         -d table=test_images -d model=q -d reference=fp -f sql/compare_models.sql
--
-- Each model classifies each image once, into a cached view that the reports read. An
-- image that cannot be decoded has a NULL prediction: it counts as wrong, and the two
-- models agree on it when both give NULL.

CACHE TABLE mx_comparison AS
SELECT path,
       regexp_extract(path, '/([^/]+)/[^/]+$', 1) AS truth,
       m.label AS predicted,
       m.probability,
       r.label AS reference_predicted,
       r.probability AS reference_probability
FROM (SELECT path, mx_classify(content, '${model}') AS m,
             mx_classify(content, '${reference}') AS r
      FROM ${table}) classified;

SELECT path, truth, predicted, CAST(probability AS DECIMAL(5, 4)) AS probability,
       reference_predicted,
       CAST(reference_probability AS DECIMAL(5, 4)) AS reference_probability
FROM mx_comparison
WHERE NOT (predicted <=> reference_predicted)
ORDER BY path;

SELECT count(*) AS images,
       CAST(count_if(predicted <=> truth) / count(*) AS DECIMAL(5, 4)) AS accuracy,
       CAST(count_if(reference_predicted <=> truth) / count(*) AS DECIMAL(5, 4))
           AS reference_accuracy,
       count_if(predicted <=> reference_predicted) AS agreeing,
       CAST(count_if(predicted <=> reference_predicted) / count(*) AS DECIMAL(5, 4))
           AS agreement
FROM mx_comparison;

DROP VIEW IF EXISTS mx_comparison;
