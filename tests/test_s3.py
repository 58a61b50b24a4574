"""Images and models on S3 through boto3, against moto's S3 server on 127.0.0.1.

Real HTTP and real boto3 throughout: the server is moto's (``tests/s3server.py``), the
reads go through Spark's Python data source API, the writes are read back with boto3
and pyarrow.
"""

import io
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pyarrow.parquet as pq
import pytest
from pyspark.errors import AnalysisException, PythonException

from demo import digits as digits_demo
from tests import shellkit
from tests.s3server import FAKE_CREDENTIALS, FaultyProxy, MotoServer

# Spark's Python workers inherit the JVM's environment, fixed when the shared session
# starts; collection runs before any fixture, so the fake credentials are in place.
for _name, _value in FAKE_CREDENTIALS.items():
    os.environ.setdefault(_name, _value)

from mxsql.udfs import artifacts, models  # noqa: E402
from mxsql.udfs.config import S3Settings, Settings, parse_settings  # noqa: E402
from mxsql.udfs.errors import ConfigError, ModelLoadError, RowError, S3Error  # noqa: E402
from mxsql.udfs.s3.options import SCHEMA  # noqa: E402
from mxsql.udfs.s3.source import data_source  # noqa: E402

IMAGES = "mxsql-images"
MODELS = "mxsql-models"
MANY = 2600  # more than one listing page of 1,000 keys


@pytest.fixture(scope="module")
def moto():
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="module")
def s3(moto):
    return moto.client()


def _put_all(s3, bucket, objects):
    """Upload {key: bytes} with a thread pool: thousands of small PUTs in seconds."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda kv: s3.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]),
                      objects.items()))


@pytest.fixture(scope="module")
def images(s3, digits):
    """Held-out digits under digits/LABEL/; 2,600 PNGs among other files under many/."""
    _, paths = digits
    pngs = {}
    for path in paths:
        with open(path, "rb") as f:
            pngs[f"{digits_demo.label_of(path)}/{os.path.basename(path)}"] = f.read()
    objects = {f"digits/{name}": data for name, data in pngs.items()}
    contents = list(pngs.values())
    objects.update({f"many/{i // 100:02d}/{i:05d}.png": contents[i % len(contents)]
                    for i in range(MANY)})
    objects.update({
        "many/README.txt": b"not an image",
        "many/labels.csv": b"path,label\n",
        "many/00/notes.PNG.txt": b"not an image either",
        "many/_SUCCESS": b"",
        "many/_temporary/0/part.png": contents[0],
        "many/.hidden.png": contents[0],
        "many/empty.png": b"",
    })
    s3.create_bucket(Bucket=IMAGES)
    _put_all(s3, IMAGES, objects)
    return pngs


def _read(spark, moto, path, **options):
    reader = spark.read.format("mxsql_s3").option("endpoint", moto.endpoint)
    for key, value in options.items():
        reader = reader.option(key, value)
    return reader.load(path)


def _source(moto, settings=None, **options):
    """The data source as Spark's planner makes it, for steps Spark does not let a test time."""
    cls = data_source(settings or Settings())
    return cls({"endpoint": moto.endpoint, **{k.lower(): v for k, v in options.items()}})


# ----------------------------------------------------------------------------- reading

def test_schema_is_binaryfiles_schema(spark, moto, images, digits):
    local = spark.read.format("binaryFile").load(os.path.dirname(digits[1][0])).schema
    remote = _read(spark, moto, f"s3://{IMAGES}/digits/").schema
    assert remote == local == SCHEMA
    assert [f.nullable for f in remote.fields] == [f.nullable for f in local.fields]


def test_listing_pages_through_thousands_of_keys_and_glob_picks_the_images(spark, moto, images):
    df = _read(spark, moto, f"s3://{IMAGES}/many/", pathGlobFilter="*.png",
               maxKeysPerPartition="100")
    assert df.rdd.getNumPartitions() == MANY // 100  # planned by Spark: listed, not read
    reader = _source(moto, path=f"s3://{IMAGES}/many/", pathGlobFilter="*.png").reader(SCHEMA)
    keys = [o.key for p in reader.partitions() for o in p.objects]
    assert keys == sorted(f"many/{i // 100:02d}/{i:05d}.png" for i in range(MANY))


def test_every_listed_object_is_read_once(spark, moto, images):
    rows = _read(spark, moto, f"s3://{IMAGES}/digits/", maxKeysPerPartition="50") \
        .select("path", "length", "content").collect()
    assert len(rows) == 360
    for row in rows:
        expected = images[row.path.split("/digits/", 1)[1]]
        assert row.content == expected and row.length == len(expected)


def test_a_glob_that_matches_nothing_gives_no_rows(spark, moto, images):
    assert _read(spark, moto, f"s3://{IMAGES}/many/", pathGlobFilter="*.gif").count() == 0


def test_hidden_and_empty_objects_are_skipped_as_binaryfile_does(moto, images):
    listed = [o.key for p in _source(moto, path=f"s3://{IMAGES}/many/").reader(SCHEMA).partitions()
              for o in p.objects]
    assert "many/README.txt" in listed and "many/00/notes.PNG.txt" in listed
    for hidden in ("many/_SUCCESS", "many/_temporary/0/part.png", "many/.hidden.png",
                   "many/empty.png"):
        assert hidden not in listed


def test_glob_supports_braces_and_classes_on_the_file_name(moto, images):
    def names(glob):
        reader = _source(moto, path=f"s3://{IMAGES}/many/", pathGlobFilter=glob).reader(SCHEMA)
        return sorted(o.key for p in reader.partitions() for o in p.objects)

    assert names("*.{txt,csv}") == ["many/00/notes.PNG.txt", "many/README.txt", "many/labels.csv"]
    assert names("0000[0-2].png") == ["many/00/00000.png", "many/00/00001.png",
                                      "many/00/00002.png"]


def test_recursive_lookup_off_reads_only_the_top_level(moto, images):
    reader = _source(moto, path=f"s3://{IMAGES}/many", recursiveFileLookup="false").reader(SCHEMA)
    assert sorted(o.key for p in reader.partitions() for o in p.objects) == \
        ["many/README.txt", "many/labels.csv"]


def test_partitions_hold_at_most_the_configured_keys_or_bytes(moto, images):
    by_keys = _source(moto, path=f"s3://{IMAGES}/many/", pathGlobFilter="*.png",
                      maxKeysPerPartition="700").reader(SCHEMA).partitions()
    assert [len(p.objects) for p in by_keys] == [700, 700, 700, 500]
    by_bytes = _source(moto, path=f"s3://{IMAGES}/digits/", maxBytesPerPartition="20k") \
        .reader(SCHEMA).partitions()
    assert len(by_bytes) > 1
    assert all(sum(o.size for o in p.objects) <= 20 * 1024 for p in by_bytes)
    assert sum(len(p.objects) for p in by_bytes) == 360


def test_gets_in_flight_stay_within_max_concurrent_requests(moto, images):
    reader = _source(moto, path=f"s3://{IMAGES}/digits/", maxConcurrentRequests="3") \
        .reader(SCHEMA)
    client = reader.target.client(3)
    in_flight, peak, lock = [0], [0], threading.Lock()
    get_object = client.get_object

    def counted(**kwargs):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        try:
            return get_object(**kwargs)
        finally:
            with lock:
                in_flight[0] -= 1

    client.get_object = counted
    try:
        rows = sum(b.num_rows for p in reader.partitions() for b in reader.read(p))
    finally:
        del client.get_object
    assert rows == 360 and 1 < peak[0] <= 3


def _read_through(proxy, path, **options):
    reader = data_source(Settings())(
        {"endpoint": proxy.endpoint, "path": path, **{k.lower(): v for k, v in options.items()}}
    ).reader(SCHEMA)
    return {r["path"]: r["content"] for p in reader.partitions() for b in reader.read(p)
            for r in b.to_pylist()}


def test_throttled_and_cut_off_reads_are_retried(moto, images):
    zeros = sorted(name for name in images if name.startswith("zero/"))
    with FaultyProxy(moto.endpoint) as proxy:
        proxy.fail(zeros[0], "throttle", "throttle")
        proxy.fail(zeros[1], "cut")
        rows = _read_through(proxy, f"s3://{IMAGES}/digits/zero/")
    assert rows == {f"s3://{IMAGES}/digits/{name}": images[name] for name in zeros}

    def gets(name):
        return [fault for method, path, fault in proxy.requests
                if method == "GET" and path.endswith(name)]

    assert gets(zeros[0]) == ["throttle", "throttle", None]
    assert gets(zeros[1]) == ["cut", None]


def test_throttling_past_max_attempts_fails_naming_the_key(moto, images):
    first = sorted(name for name in images if name.startswith("zero/"))[0]
    with FaultyProxy(moto.endpoint) as proxy:
        proxy.fail(first, "throttle", "throttle", "throttle")
        with pytest.raises(S3Error, match=f"cannot read s3://{IMAGES}/digits/{first} in 2 tries "
                                          r"\(option maxAttempts\): SlowDown"):
            _read_through(proxy, f"s3://{IMAGES}/digits/zero/", maxAttempts="2")


def test_mx_functions_work_unchanged_on_s3_rows(spark, moto, images, digits_table):
    spark.sql(f"""
        CREATE OR REPLACE TEMPORARY VIEW s3_digits USING mxsql_s3
        OPTIONS (path 's3://{IMAGES}/digits/', pathGlobFilter '*.png', endpoint '{moto.endpoint}')
    """)
    from_s3 = {r.path.split("/digits/", 1)[1]: r.label for r in spark.sql(
        "SELECT path, mx_classify(content).label AS label FROM s3_digits").collect()}
    local = {"/".join(r.path.rsplit("/", 2)[-2:]): r.label for r in spark.sql(
        "SELECT path, mx_classify(content).label AS label FROM digits").collect()}
    assert len(from_s3) == 360 and from_s3 == local
    right = sum(label == name.split("/")[0] for name, label in from_s3.items())
    assert right / len(from_s3) > 0.9


@pytest.mark.slow
def test_the_mxsql_shell_reads_s3_through_a_temporary_view(moto, images, tmp_path):
    # The shell registers mxsql_s3 only when a statement names it (start-up time).
    script = (f"CREATE TEMPORARY VIEW zeros USING mxsql_s3 OPTIONS (path "
              f"'s3://{IMAGES}/digits/zero/', endpoint '{moto.endpoint}');\n"
              "SELECT count(*) FROM zeros;\n")
    done = shellkit.run_mxsql(["-S", "-e", script], home=str(tmp_path / "home"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [str(sum(1 for name in images if name.startswith("zero/")))]


def test_session_s3_settings_apply_when_options_are_absent(spark, mx_conf, moto, images):
    mx_conf({"spark.mxsql.s3.endpoint": moto.endpoint})
    df = spark.read.format("mxsql_s3").load(f"s3://{IMAGES}/digits/zero/")
    assert df.count() == sum(1 for name in images if name.startswith("zero/"))


def test_sql_direct_query_on_a_path_is_not_supported_by_spark(spark):
    with pytest.raises(AnalysisException, match=r"UNSUPPORTED_DATASOURCE_FOR_DIRECT_QUERY.*"
                                                r"mxsql_s3"):
        spark.sql(f"SELECT * FROM mxsql_s3.`s3://{IMAGES}/digits/`").collect()


def test_persistent_table_is_refused_with_the_temporary_view_form(spark, moto):
    """Spark 4.3 keeps a Python data source table in the metastore but not its OPTIONS."""
    spark.sql("DROP TABLE IF EXISTS s3_images_persistent")
    try:
        with pytest.raises(AnalysisException, match=r"ConfigError: .*persistent CREATE TABLE "
                                                    r".*CREATE TEMPORARY VIEW name USING "
                                                    r"mxsql_s3"):
            spark.sql(f"CREATE TABLE s3_images_persistent USING mxsql_s3 "
                      f"OPTIONS (path 's3://{IMAGES}/digits/', endpoint '{moto.endpoint}')")
        spark.sql("CREATE TABLE s3_images_persistent (path STRING, content BINARY) "
                  f"USING mxsql_s3 OPTIONS (path 's3://{IMAGES}/digits/')")
        with pytest.raises(AnalysisException, match=r"ConfigError: mxsql_s3 needs a path: "
                                                    r".*CREATE TEMPORARY VIEW"):
            spark.sql("SELECT count(*) FROM s3_images_persistent").collect()
    finally:
        spark.sql("DROP TABLE IF EXISTS s3_images_persistent")


# ----------------------------------------------------------------------------- server policy

@pytest.mark.parametrize("option, value", [("profile", "admin"),
                                           ("endpoint", "http://127.0.0.1:1")])
def test_server_refuses_another_endpoint_or_profile_for_reads_and_writes(moto, option, value):
    """As mxsql-thriftserver registers the source; the JDBC path is in test_thriftserver."""
    cls = data_source(Settings(s3=S3Settings(endpoint=moto.endpoint)), fixed_by_server=True)
    source = cls({"path": f"s3://{IMAGES}/digits/", option.lower(): value})
    message = (f"mxsql_s3: option '{option}' is fixed by the server: .* restarting the server "
               f"with --conf spark.mxsql.s3.{option}=")
    for step in (source.schema, lambda: source.reader(SCHEMA),
                 lambda: source.writer(SCHEMA, True)):
        with pytest.raises(ConfigError, match=message) as refused:
            step()
        assert value not in str(refused.value)


def test_server_allows_its_own_endpoint_no_option_and_any_region(moto, images):
    cls = data_source(Settings(s3=S3Settings(endpoint=moto.endpoint)), fixed_by_server=True)
    expected = sum(1 for name in images if name.startswith("zero/"))
    for options in ({"endpoint": moto.endpoint}, {}, {"region": "eu-west-1"}):
        source = cls({"path": f"s3://{IMAGES}/digits/zero/", **options})
        assert sum(len(p.objects) for p in source.reader(SCHEMA).partitions()) == expected


# ----------------------------------------------------------------------------- errors

def test_no_such_bucket_names_the_bucket(spark, moto):
    with pytest.raises(AnalysisException, match=r"S3Error: mxsql_s3: cannot list "
                                                r"s3://mxsql-nothing-here/images/: "
                                                r"no such bucket 'mxsql-nothing-here'"):
        _read(spark, moto, "s3://mxsql-nothing-here/images/").collect()


def test_missing_prefix_is_path_not_found(spark, moto, images):
    with pytest.raises(AnalysisException, match=f"S3Error: mxsql_s3: path not found: no object "
                                                f"under s3://{IMAGES}/nope/"):
        _read(spark, moto, f"s3://{IMAGES}/nope/").collect()


def test_unknown_option_is_named_with_a_suggestion(spark, moto):
    with pytest.raises(AnalysisException, match="ConfigError: mxsql_s3: unknown option "
                                                "'globfilter'; did you mean 'pathGlobFilter'"):
        _read(spark, moto, f"s3://{IMAGES}/digits/", globFilter="*.png").collect()


def test_non_s3_path_is_refused(spark, moto):
    with pytest.raises(AnalysisException, match="ConfigError: mxsql_s3: path '/tmp/images' is "
                                                "not an S3 URI"):
        _read(spark, moto, "/tmp/images").collect()


@pytest.fixture
def vanishing(s3, images):
    """A prefix of three images, and a function that deletes one after listing."""
    s3.create_bucket(Bucket="mxsql-vanishing")
    data = next(iter(images.values()))
    _put_all(s3, "mxsql-vanishing", {f"v/{i}.png": data for i in range(3)})
    yield lambda key: s3.delete_object(Bucket="mxsql-vanishing", Key=key)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="mxsql-vanishing"):
        for obj in page.get("Contents", ()):
            s3.delete_object(Bucket="mxsql-vanishing", Key=obj["Key"])
    s3.delete_bucket(Bucket="mxsql-vanishing")


def test_key_vanished_after_listing_gives_null_content_and_a_reason(moto, vanishing, caplog):
    """Spark lists and reads in one action, so the planner's two steps are called here."""
    reader = _source(moto, path="s3://mxsql-vanishing/v/", errorColumn="error")
    reader = reader.reader(reader.schema())
    partitions = reader.partitions()
    vanishing("v/1.png")
    rows = [row for p in partitions for b in reader.read(p) for row in b.to_pylist()]
    gone = [r for r in rows if r["path"] == "s3://mxsql-vanishing/v/1.png"][0]
    assert gone["content"] is None
    assert gone["error"] == ("s3://mxsql-vanishing/v/1.png vanished between listing and "
                             "reading (NoSuchKey)")
    assert all(r["content"] for r in rows if r is not gone)
    assert "s3://mxsql-vanishing/v/1.png vanished" in caplog.text


def test_key_vanished_after_listing_fails_with_on_error_fail(moto, vanishing):
    source = _source(moto, Settings(on_error="fail"), path="s3://mxsql-vanishing/v/")
    reader = source.reader(SCHEMA)
    partitions = reader.partitions()
    vanishing("v/2.png")
    with pytest.raises(RowError, match="s3://mxsql-vanishing/v/2.png vanished between listing"):
        [b for p in partitions for b in reader.read(p)]


# ----------------------------------------------------------------------------- writing

def _objects(s3, bucket, prefix):
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", ()))


def _read_parquet(s3, bucket, prefix):
    """Every published part under prefix, read with boto3 and pyarrow, as sorted rows."""
    rows = []
    for key in _objects(s3, bucket, prefix):
        if key.endswith(".parquet") and "/_" not in key:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            rows.extend(pq.read_table(io.BytesIO(body)).to_pylist())
    return sorted(rows, key=lambda r: r["path"])


@pytest.fixture(scope="module")
def results(s3):
    s3.create_bucket(Bucket="mxsql-results")
    return "mxsql-results"


def test_predictions_written_to_s3_as_parquet_read_back(spark, moto, s3, images, results):
    predictions = _read(spark, moto, f"s3://{IMAGES}/digits/", maxKeysPerPartition="100") \
        .selectExpr("path", "mx_classify(content) AS c") \
        .selectExpr("path", "c.label AS label", "c.probability AS probability")
    predictions.write.format("mxsql_s3").option("endpoint", moto.endpoint) \
        .mode("overwrite").save(f"s3://{results}/predictions/")
    rows = _read_parquet(s3, results, "predictions/")
    assert len(rows) == 360 and set(rows[0]) == {"path", "label", "probability"}
    right = sum(r["label"] == r["path"].split("/digits/")[1].split("/")[0] for r in rows)
    assert right / len(rows) > 0.9
    keys = _objects(s3, results, "predictions/")
    assert not [k for k in keys if "_temporary" in k]
    manifest = json.loads(s3.get_object(Bucket=results, Key="predictions/_SUCCESS")["Body"].read())
    assert manifest["rows"] == 360
    assert sorted("predictions/" + f for f in manifest["files"]) == \
        [k for k in keys if k.endswith(".parquet")]


def test_insert_into_a_temporary_view_appends_and_overwrites(spark, moto, s3, results):
    spark.sql(f"""
        CREATE OR REPLACE TEMPORARY VIEW s3_labels (path STRING, label STRING) USING mxsql_s3
        OPTIONS (path 's3://{results}/labels/', endpoint '{moto.endpoint}')
    """)
    spark.sql("INSERT INTO s3_labels VALUES ('a.png', 'one'), ('b.png', 'two')")
    spark.sql("INSERT INTO s3_labels VALUES ('c.png', 'three')")
    assert [r["path"] for r in _read_parquet(s3, results, "labels/")] == ["a.png", "b.png", "c.png"]
    spark.sql("INSERT OVERWRITE s3_labels VALUES ('d.png', 'four')")
    assert _read_parquet(s3, results, "labels/") == [{"path": "d.png", "label": "four"}]


def test_writing_to_a_bucket_root_is_refused_and_deletes_nothing(spark, moto, s3, results):
    s3.put_object(Bucket=results, Key="keep/me.txt", Body=b"precious")
    frame = spark.createDataFrame([("a.png", "one")], "path string, label string")
    with pytest.raises(AnalysisException, match=f"S3Error: mxsql_s3: cannot write to the root "
                                                f"of bucket '{results}'"):
        frame.write.format("mxsql_s3").option("endpoint", moto.endpoint) \
            .mode("overwrite").save(f"s3://{results}/")
    assert s3.get_object(Bucket=results, Key="keep/me.txt")["Body"].read() == b"precious"


def test_failed_write_leaves_the_previous_output_and_no_partial_files(
        spark, moto, s3, images, results):
    prefix = f"s3://{results}/failing/"
    spark.range(10).selectExpr("CAST(id AS STRING) AS path").write.format("mxsql_s3") \
        .option("endpoint", moto.endpoint).mode("overwrite").save(prefix)
    before = _objects(s3, results, "failing/")
    spark.conf.set("spark.mxsql.onError", "fail")
    try:
        # Four tasks on two cores; the last holds the zeros, made unreadable: with
        # onError=fail it fails after at least two others uploaded their parts.
        df = _read(spark, moto, f"s3://{IMAGES}/digits/", maxKeysPerPartition="90") \
            .selectExpr("path", "IF(path LIKE '%/zero/%', X'00', content) AS content") \
            .selectExpr("path", "mx_classify(content, 'default', path).label AS label")
        with pytest.raises(PythonException, match=f"RowError: cannot classify image "
                                                  f"s3://{IMAGES}/digits/zero/[^ ]+ with model "
                                                  f"'default'"):
            df.write.format("mxsql_s3").option("endpoint", moto.endpoint) \
                .mode("overwrite").save(prefix)
    finally:
        spark.conf.unset("spark.mxsql.onError")
    assert _objects(s3, results, "failing/") == before
    assert sorted(r["path"] for r in _read_parquet(s3, results, "failing/")) == \
        sorted(str(i) for i in range(10))


# ----------------------------------------------------------------------------- models

@pytest.fixture(scope="module")
def s3_model(s3, digits):
    """The digits checkpoint uploaded to s3://mxsql-models/digits/."""
    prefix = digits[0]
    folder = os.path.dirname(prefix)
    s3.create_bucket(Bucket=MODELS)
    for name in ("digits-symbol.json", "digits-0000.params", "synset.txt"):
        s3.upload_file(os.path.join(folder, name), MODELS, f"digits/{name}")
    return f"s3://{MODELS}/digits/digits"


def test_model_read_from_s3_classifies_and_its_cache_is_reused(
        spark, mx_conf, moto, s3_model, images, digits_table, tmp_path):
    cache = str(tmp_path / "cache")
    conf = {**digits_demo.model_conf(s3_model, "s3digits"),
            "spark.mxsql.s3.endpoint": moto.endpoint, "spark.mxsql.cacheDir": cache}
    mx_conf(conf)
    row = spark.sql("""
        SELECT count(*) AS n, count_if(mx_classify(content, 's3digits').label
                                       = mx_classify(content).label) AS same
        FROM digits""").first()
    assert row.n == 360 and row.same == 360
    cached = sorted(n for n in os.listdir(cache) if not n.endswith((".lock", ".etag")))
    assert sorted(n.split("-", 1)[1] for n in cached) == \
        ["digits-0000.params", "digits-symbol.json", "synset.txt"]
    before = {n: os.stat(os.path.join(cache, n)) for n in cached}
    settings = parse_settings(conf)
    model = models.get_model(settings.model("s3digits"), settings)
    assert model.num_classes == 10
    after = {n: os.stat(os.path.join(cache, n)) for n in cached}
    assert {n: (s.st_ino, s.st_mtime_ns) for n, s in before.items()} == \
        {n: (s.st_ino, s.st_mtime_ns) for n, s in after.items()}


def test_model_file_replaced_in_s3_is_fetched_again(moto, s3, s3_model, tmp_path):
    settings = S3Settings(endpoint=moto.endpoint)
    uri = f"s3://{MODELS}/replaced/synset.txt"
    s3.put_object(Bucket=MODELS, Key="replaced/synset.txt", Body=b"cat\ndog\n")

    def fetch():
        path = artifacts.fetch(uri, key="spark.mxsql.model.m.labels", cache_dir=str(tmp_path),
                               s3=settings)
        with open(path, "rb") as f:
            return f.read()

    assert fetch() == b"cat\ndog\n"
    s3.put_object(Bucket=MODELS, Key="replaced/synset.txt", Body=b"cat\ndog\nbird\n")
    assert fetch() == b"cat\ndog\nbird\n"


def test_same_uri_on_another_endpoint_is_another_cache_entry(tmp_path):
    uri = "s3://bucket/models/m-symbol.json"
    first = artifacts._cache_name(uri, S3Settings(endpoint="http://127.0.0.1:1"))
    second = artifacts._cache_name(uri, S3Settings(endpoint="http://127.0.0.1:2"))
    assert first != second and first.endswith("-m-symbol.json")


def test_missing_model_file_names_the_key_and_the_bucket(moto, s3_model, tmp_path):
    with pytest.raises(ModelLoadError, match=r"spark\.mxsql\.model\.m\.uri: cannot fetch "
                                             r"s3://mxsql-models/nothing-symbol\.json: "
                                             r"no such key"):
        artifacts.fetch(f"s3://{MODELS}/nothing-symbol.json", key="spark.mxsql.model.m.uri",
                        cache_dir=str(tmp_path), s3=S3Settings(endpoint=moto.endpoint))
    with pytest.raises(ModelLoadError, match=r"spark\.mxsql\.model\.m\.uri: cannot fetch "
                                             r"s3://mxsql-no-models/m-symbol\.json: "
                                             r"no such bucket 'mxsql-no-models'"):
        artifacts.fetch("s3://mxsql-no-models/m-symbol.json", key="spark.mxsql.model.m.uri",
                        cache_dir=str(tmp_path), s3=S3Settings(endpoint=moto.endpoint))


# ----------------------------------------------------------------------------- secrets

_FAILING_RUN = r"""
import sys
from mxsql.registry.session import build_session

endpoint, bucket = sys.argv[1], sys.argv[2]
spark = build_session({
    "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
    "spark.mxsql.s3.endpoint": endpoint,
    "spark.mxsql.model.default.uri": f"s3://{bucket}/models/digits",
}, master="local[1]", app_name="mxsql-s3-failing-run")
spark.sql(f"CREATE TEMPORARY VIEW imgs USING mxsql_s3 OPTIONS "
          f"(path 's3://{bucket}/', profile 'restricted', errorColumn 'error')")
steps = {
    "listing with the environment's credentials":
        lambda: spark.read.format("mxsql_s3").load(f"s3://{bucket}/open/").count(),
    "rows": lambda: "; ".join(f"{r.path} -> {r.error}" for r in
                              spark.sql("SELECT path, error FROM imgs ORDER BY path").collect()),
    "model with the environment's credentials":
        lambda: spark.sql("SELECT mx_classify(content) FROM imgs WHERE error IS NULL").collect(),
    "onError=fail": lambda: (spark.sql("SET spark.mxsql.onError=fail"),
                             spark.sql("SELECT count(content) FROM imgs").collect()),
}
for name, step in steps.items():
    try:
        print(name, "gave", step(), flush=True)
    except Exception as e:
        print(name, "failed:", e, flush=True)
spark.stop()
"""


@pytest.fixture
def iam_moto():
    """A server of its own: once IAM checks are on, they are on for every request."""
    with MotoServer() as server:
        yield server


@pytest.mark.slow
def test_access_denied_is_named_and_no_credential_reaches_the_logs(iam_moto, images, tmp_path):
    """A run of its own whose environment holds credentials S3 refuses, and a profile
    that may list but not read secret/: every failure is named, no credential printed."""
    admin = iam_moto.client()
    bucket = "mxsql-guarded"
    admin.create_bucket(Bucket=bucket)
    png = next(iter(images.values()))
    _put_all(admin, bucket, {"open/a.png": png, "open/b.png": png, "secret/c.png": png})
    iam = iam_moto.client("iam")
    iam.create_user(UserName="analyst")
    iam.put_user_policy(UserName="analyst", PolicyName="no-secrets", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:GetObject",
             "Resource": f"arn:aws:s3:::{bucket}/secret/*"},
        ],
    }))
    analyst = iam.create_access_key(UserName="analyst")["AccessKey"]
    iam_moto.enforce_iam()
    env_key, env_secret = "AKIAMXSQLENVIRONMENT", "mxsql+environment/secret+DoNotPrint0123456"
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[restricted]\naws_access_key_id = {analyst['AccessKeyId']}\n"
        f"aws_secret_access_key = {analyst['SecretAccessKey']}\n")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": env_key, "AWS_SECRET_ACCESS_KEY": env_secret,
           "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
           "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
           "MXSQL_HOME": str(tmp_path / "home"), "PYSPARK_PYTHON": sys.executable}
    run = subprocess.run([sys.executable, "-c", _FAILING_RUN, iam_moto.endpoint, bucket],
                         env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    logs = run.stdout + run.stderr
    assert run.returncode == 0, logs[-3000:]
    assert ("listing with the environment's credentials failed: " in logs
            and f"cannot list s3://{bucket}/open/: the S3 credentials were refused "
                "(InvalidAccessKeyId)" in logs)
    assert (f"rows gave s3://{bucket}/open/a.png -> None; s3://{bucket}/open/b.png -> None; "
            f"s3://{bucket}/secret/c.png -> access denied to s3://{bucket}/secret/c.png: the "
            "credentials of profile 'restricted' lack permission for it\n") in run.stdout
    assert (f"spark.mxsql.model.default.uri: cannot fetch s3://{bucket}/models/digits-symbol.json: "
            f"access denied to s3://{bucket}/models/digits-symbol.json (HTTP 403): the "
            "credentials of boto3's default chain (environment, profile, instance role) were "
            "refused") in logs
    assert "onError=fail failed: " in logs
    assert f"mxsql_s3: access denied to s3://{bucket}/secret/c.png" in logs
    for secret in (env_key, env_secret, analyst["AccessKeyId"], analyst["SecretAccessKey"]):
        assert secret not in logs
