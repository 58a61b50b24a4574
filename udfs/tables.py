"""Table functions that show the configured models: ``mx_models()`` and ``mx_labels()``.

They run as Python UDTFs in the workers, with the session's ``SET spark.mxsql.…``
applied through ``Settings.for_task()``.
"""

from typing import Iterator, Optional, Tuple

from mxsql.udfs import artifacts, fingerprint
from mxsql.udfs.checkpoint import first_line, read_labels
from mxsql.udfs.config import ModelSpec, Settings

MODELS_SCHEMA = (
    "name STRING, uri STRING, epoch INT, engine STRING, precision STRING, "
    "input_shape ARRAY<INT>, channels INT, resize STRING, mean ARRAY<DOUBLE>, "
    "std ARRAY<DOUBLE>, num_labels INT, sha256_symbol STRING, sha256_params STRING, "
    "sha256_labels STRING, fingerprint STRING, error STRING"
)
LABELS_SCHEMA = "class_index INT, label STRING"


def _known_sha256(uri: str, configured: Optional[str], settings: Settings) -> Optional[str]:
    """The configured checksum, else the one of a local file or of the cached copy."""
    if configured:
        return configured
    path = artifacts.local_or_cached(uri, settings.cache_dir, settings.s3)
    return fingerprint.file_sha256(path) if path else None


def _labels(spec: ModelSpec, settings: Settings):
    path = artifacts.fetch(spec.labels_uri, key=spec.key("labels"), cache_dir=settings.cache_dir,
                           s3=settings.s3, sha256=spec.sha256_labels,
                           checksum_key=spec.key("sha256.labels"))
    return read_labels(path)


def model_rows(settings: Settings) -> Iterator[Tuple]:
    """One row of ``MODELS_SCHEMA`` per configured model, by name.

    The fingerprint needs every artifact's checksum, so a remote file is fetched into the
    per-machine cache (as loading the model would). If a file cannot be read, the
    columns that need it are NULL (a checksum still shows when configured or cached) and
    error says why.
    """
    for spec in sorted(settings.models, key=lambda m: m.name):
        num_labels, checksums, model_print, error = None, None, None, None
        try:
            num_labels = len(_labels(spec, settings))
            checksums = fingerprint.artifact_checksums(spec, settings)
            model_print = fingerprint.model_fingerprint(spec, settings, checksums=checksums)
        except Exception as e:  # shown per row: one broken model must not hide the others
            error = first_line(e)
        if checksums is None:
            checksums = tuple(_known_sha256(uri, configured, settings) for uri, configured in (
                (spec.symbol_uri, spec.sha256_symbol), (spec.params_uri, spec.sha256_params),
                (spec.labels_uri, spec.sha256_labels)))
        yield (
            spec.name, artifacts.shown(spec.uri), spec.epoch, spec.engine, spec.precision,
            [spec.channels, *spec.input_size], spec.channels, spec.resize,
            list(spec.mean) if spec.mean else None, list(spec.std) if spec.std else None,
            num_labels, *checksums, model_print, error,
        )


def label_rows(settings: Settings, name: Optional[str]) -> Iterator[Tuple[int, str]]:
    """``(class_index, label)`` of model ``name`` (default 'default'), in index order."""
    spec = settings.model(name or "default")
    for index, label in enumerate(_labels(spec, settings)):
        yield index, label


def udtfs(settings: Settings):
    """The two UDTF classes, capturing ``settings`` (pickled with them to the workers)."""

    class MxModels:
        def eval(self):
            yield from model_rows(settings.for_task())

    class MxLabels:
        def eval(self, name: Optional[str] = None):
            yield from label_rows(settings.for_task(), name)

    return MxModels, MxLabels
