"""Every ``spark.mxsql.*`` key: one table entry each, from which the settings classes are built.

A key is declared once, as a :class:`Key` in ``GLOBAL_KEYS``, ``S3_KEYS`` or ``MODEL_KEYS``:
its name, the field it fills, its parser, its default and its one-line doc. ``Settings``,
``S3Settings`` and ``ModelSpec`` are frozen dataclasses made from those tables (one field a
key, its default the parsed default), and the README table, the commented block of
``spark-defaults.conf`` and Spark's ``SET -v`` are rendered from them
(``mxsql.registry.config``). The ``mxsql_s3`` data source's options are a table of the
same :class:`Key` entries (``mxsql.udfs.s3.options``).

To add a key: append one entry to its table, e.g. in ``MODEL_KEYS``
``Key("precision", "precision", _choice("fp32", "int8"), "fp32", "One-line doc.")``
(``settable=True`` for a global key SET may change; ``example=`` for one without a
default); read it as ``settings.FIELD`` or ``spec.FIELD``; run ``make docs`` to rewrite
the README's table and ``spark-defaults.conf``; add its tests. A new parser takes the
text and raises ``InvalidValue("must be ...")`` saying what it wants.

This module lives on the worker side because a session's ``SET spark.mxsql.…`` reaches
Python workers as task-local properties and must be parsed there with the same rules; the
driver imports it to read its conf.
"""

import difflib
import os
import posixpath
import re
import urllib.parse
from dataclasses import dataclass, field, make_dataclass, replace
from typing import Callable, Dict, Iterable, Mapping, Optional, Tuple

from mxsql.udfs.errors import ConfigError

__all__ = [
    "PREFIX",
    "S3_PREFIX",
    "MODEL_PREFIX",
    "RUNTIME_MODELS_KEY",
    "ALLOWED_URIS_KEY",
    "GLOBAL_KEYS",
    "S3_KEYS",
    "MODEL_KEYS",
    "Key",
    "InvalidValue",
    "S3Settings",
    "ModelSpec",
    "Settings",
    "parse_settings",
    "parse_keys",
    "record",
    "global_keys",
    "model_key",
    "did_you_mean",
    "uri_location",
    "boolean",
    "nonempty_text",
    "optional_text",
    "positive_int",
]

PREFIX = "spark.mxsql."
S3_PREFIX = PREFIX + "s3."
MODEL_PREFIX = PREFIX + "model."
RUNTIME_MODELS_KEY = PREFIX + "runtimeModels"
ALLOWED_URIS_KEY = MODEL_PREFIX + "allowedUris"
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


class InvalidValue(ValueError):
    """A parser's refusal of a setting's text; ``wanted`` says what the value must be.

    It never holds the text itself: the caller decides whether to show it (an
    ``mxsql_s3`` option could hold a secret).
    """

    def __init__(self, wanted: str):
        super().__init__(wanted)
        self.wanted = wanted


# Parsers: text in, value out, or InvalidValue saying what is wanted. They raise it
# ``from None`` where Python's own error would repeat the text (a possible secret) and add
# nothing the wanted phrase does not say.

def _integer(text: str, wanted: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise InvalidValue(wanted) from None


def positive_int(text: str) -> int:
    """A setting's text as an integer > 0."""
    wanted = "must be a positive integer"
    value = _integer(text, wanted)
    if value <= 0:
        raise InvalidValue(wanted)
    return value


def _non_negative_int(text: str) -> int:
    wanted = "must be an integer >= 0"
    value = _integer(text, wanted)
    if value < 0:
        raise InvalidValue(wanted)
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip()
        if value not in allowed:
            raise InvalidValue("must be one of " + ", ".join(allowed))
        return value

    return parse


def boolean(text: str) -> bool:
    """A setting's text as true or false (any case)."""
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise InvalidValue("must be true or false")
    return lowered == "true"


def nonempty_text(text: str) -> str:
    """A setting's text, stripped, that must not be empty."""
    value = text.strip()
    if not value:
        raise InvalidValue("must not be empty")
    return value


def optional_text(text: str) -> Optional[str]:
    """A setting's text, stripped; empty means unset."""
    return text.strip() or None


def _input_size(text: str) -> Tuple[int, int]:
    wanted = "must be SIZE or HEIGHT,WIDTH of positive integers, e.g. 224 or 224,224"
    parts = [p.strip() for p in text.split(",")]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise InvalidValue(wanted)
    try:
        height, width = (positive_int(p) for p in parts)
    except InvalidValue:
        raise InvalidValue(wanted) from None
    return height, width


def _channels(text: str) -> int:
    wanted = "must be 3 (RGB) or 1 (grayscale)"
    value = _integer(text, wanted)
    if value not in (1, 3):
        raise InvalidValue(wanted)
    return value


def _floats(text: str, wanted: str = "must be a comma-separated list of numbers"):
    try:
        return tuple(float(p) for p in text.split(","))
    except ValueError:
        raise InvalidValue(wanted) from None


def _positive_floats(text: str) -> Tuple[float, ...]:
    wanted = "must be a comma-separated list of numbers > 0"
    values = _floats(text, wanted)
    if any(v <= 0 for v in values):
        raise InvalidValue(wanted)
    return values


def _sha256(text: str) -> str:
    value = text.strip().lower()
    if not _SHA256.match(value):
        raise InvalidValue("must be 64 hexadecimal digits (a SHA-256 digest)")
    return value


def _uri_prefixes(text: str) -> Optional[str]:
    value = optional_text(text)
    for entry in (value or "").split(","):
        if not entry.strip():
            continue
        try:
            uri_location(entry)
        except ValueError as e:
            raise InvalidValue(
                "must be a comma list of absolute folders and file://, s3://, s3a://, "
                f"http(s):// prefixes ({e})") from None
    return value


def _cache_dir(text: str) -> str:
    # "~" stays as written: it is the home of the user each executor runs as, expanded
    # in the worker, not the driver's.
    return nonempty_text(text)


@dataclass(frozen=True)
class Key:
    """One setting: its table's entry.

    ``name`` is relative to its table (``batchSize``, ``sha256.params``, an ``mxsql_s3``
    option); ``field`` is the attribute it fills; ``default`` is text, parsed like a given
    value (None: unset, the field is None). ``example`` is what ``spark-defaults.conf``
    shows for a key without a default. The last flags apply to one table each.
    """

    name: str
    field: str
    parse: Callable[[str], object]
    default: Optional[str]
    doc: str
    example: Optional[str] = None
    required: bool = False  # no default: its record cannot be made without it
    settable: bool = False  # global keys: may a session change it with SET?
    reading_only: bool = False  # mxsql_s3 options: refused when writing
    fixed_by_server: bool = False  # mxsql_s3 options: on the Thrift server, only its own value


GLOBAL_KEYS: Tuple[Key, ...] = (
    Key("batchSize", "batch_size", positive_int, "32",
        "Images per forward pass; a short batch runs in pieces of 4, the last padded with "
        "blank images (never with rows), so a worker binds two batch shapes.",
        settable=True),
    Key("onError", "on_error", _choice("null", "fail"), "null",
        "null: a row that cannot be classified gives NULL and its reason in mx_image_info; "
        "fail: the query fails naming the reason.",
        settable=True),
    Key("maxImagePixels", "max_image_pixels", positive_int, "89478485",
        "Largest image, in pixels, that is decoded; larger ones are row errors "
        "(decompression-bomb guard, Pillow's default).",
        settable=True),
    Key("prefetch", "prefetch", boolean, "true",
        "Decode the next Arrow batch in a background thread, at idle CPU priority, while "
        "the network runs on this one.",
        settable=True),
    Key("cacheDir", "cache_dir", _cache_dir, "~/.cache/mxsql",
        "Local directory where model files fetched from HTTP(S) or S3 are kept, one copy "
        "per machine; ~ is the home of the user each executor runs as."),
    Key("server.allowedPaths", "server_allowed_paths", optional_text, None,
        "mxsql-thriftserver only: comma list of local folders and file://, s3://, s3a://, "
        "hdfs:// prefixes under which a JDBC connection may read and write files by path, "
        "besides the warehouse; unset = the warehouse only.",
        example="/data/images,s3://my-bucket/images/"),
    Key("runtimeModels", "runtime_models", boolean, "true",
        "Whether a session may add or change a model with SET spark.mxsql.model.NAME.*, "
        "taking effect on its next query; mxsql-thriftserver makes it false unless its "
        "operator sets it. Never SET in a session."),
    Key("model.allowedUris", "model_allowed_uris", _uri_prefixes, None,
        "Comma list of folders and file://, s3://, http(s):// prefixes from which a model "
        "added or changed with SET may load; unset = the folders of the models configured "
        "at start. Never SET in a session.",
        example="/models,s3://my-bucket/models/"),
)

S3_KEYS: Tuple[Key, ...] = (
    Key("endpoint", "endpoint", optional_text, None,
        "S3 endpoint URL (MinIO, other S3-compatible stores; buckets are then addressed "
        "by path); unset = AWS.",
        example="http://127.0.0.1:9000"),
    Key("region", "region", optional_text, None,
        "AWS region; unset = boto3's default chain.", example="us-east-1"),
    Key("profile", "profile", optional_text, None,
        "AWS profile for credentials, which always come from boto3's chain, never from "
        "a setting; unset = boto3's default chain.",
        example="default"),
)

MODEL_KEYS: Tuple[Key, ...] = (
    Key("uri", "uri", nonempty_text, None,
        "Checkpoint prefix PREFIX (PREFIX-symbol.json, PREFIX-EPOCH.params): local path, "
        "file://, http(s):// or s3://.",
        example="s3://my-bucket/models/resnet-18/resnet-18", required=True),
    Key("epoch", "epoch", _non_negative_int, "0",
        "Checkpoint epoch: PREFIX-0000.params for 0."),
    Key("labels", "labels", optional_text, None,
        "Labels file, one label a line (a leading WordNet id is dropped); unset = "
        "synset.txt beside the prefix.",
        example="s3://my-bucket/models/resnet-18/synset.txt"),
    Key("inputSize", "input_size", _input_size, "224",
        "Network input size: SIZE or HEIGHT,WIDTH."),
    Key("channels", "channels", _channels, "3", "Input channels: 3 = RGB, 1 = grayscale."),
    Key("mean", "mean", _floats, None,
        "Per-channel mean subtracted from 0-255 pixels, comma list; unset = none.",
        example="123.68,116.779,103.939"),
    Key("std", "std", _positive_floats, None,
        "Per-channel divisor applied after the mean, comma list; unset = none (raw pixels, "
        "as the model zoo's symbolic ResNets expect).",
        example="58.393,57.12,57.375"),
    Key("resize", "resize", _choice("stretch", "center-crop"), "stretch",
        "stretch to the input size (as the classic recipe), or center-crop: shorter side "
        "to size, then crop."),
    Key("output", "output", _choice("auto", "probabilities", "logits"), "auto",
        "auto: softmax unless the symbol already ends in one; or force probabilities or "
        "logits."),
    Key("engine", "engine", _choice("mxnet", "onnxruntime"), "mxnet",
        "mxnet, or onnxruntime: the checkpoint converted once to ONNX (cached in cacheDir) "
        "and run with ONNX Runtime; needs pip install 'mxsql[onnx]'."),
    Key("precision", "precision", _choice("fp32", "int8"), "fp32",
        "fp32, or int8: the network quantized once per machine by oneDNN (cached in "
        "cacheDir) from the calibration images; engine=mxnet only, needs an x86-64 CPU "
        "with AVX2."),
    Key("calibration", "calibration", optional_text, None,
        "precision=int8: folder, file:// or s3:// prefix of images like those the model "
        "will classify, read in path order; unset = none (int8 then refuses to load).",
        example="s3://my-bucket/images/calibration/"),
    Key("calibrationImages", "calibration_images", positive_int, "64",
        "precision=int8: how many images of the calibration set, the first in path order, "
        "calibrate the quantization."),
    Key("sha256.symbol", "sha256_symbol", _sha256, None,
        "Expected SHA-256 of PREFIX-symbol.json, checked before the model loads.",
        example="<64 hex digits>"),
    Key("sha256.params", "sha256_params", _sha256, None,
        "Expected SHA-256 of PREFIX-EPOCH.params, checked before the model loads.",
        example="<64 hex digits>"),
    Key("sha256.labels", "sha256_labels", _sha256, None,
        "Expected SHA-256 of the labels file, checked before the model loads.",
        example="<64 hex digits>"),
)


def global_keys() -> Dict[str, Key]:
    """Every key outside the per-model ones, by its full name."""
    keys = {PREFIX + k.name: k for k in GLOBAL_KEYS}
    keys.update((S3_PREFIX + k.name, k) for k in S3_KEYS)
    return keys


_GLOBAL = global_keys()
_MODEL = {k.name: k for k in MODEL_KEYS}


def model_key(model: str, name: str) -> str:
    """The full key of a model setting, e.g. ``spark.mxsql.model.default.uri``."""
    return f"{MODEL_PREFIX}{model}.{name}"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'X'?"`` for the choice closest to ``word`` (ignoring case), or ''."""
    by_lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f"; did you mean '{by_lower[close[0]]}'?" if close else ""


def record(cls_name: str, keys: Tuple[Key, ...], base: type, *,
           leading: Tuple[Tuple[str, type], ...] = (),
           trailing: Tuple[Tuple[str, type, object], ...] = ()) -> type:
    """A frozen dataclass with one field per key, its default the key's parsed default.

    ``base`` holds the methods; ``leading`` fields have no default, ``trailing`` ones
    take a ``dataclasses.field``. The class is picklable by reference once it is bound
    to ``cls_name`` in its caller's module.
    """
    fields = list(leading)
    fields += [(k.field, object) for k in keys if k.required]
    fields += [
        (k.field, object, field(default=None if k.default is None else k.parse(k.default)))
        for k in keys if not k.required
    ]
    fields += list(trailing)
    return make_dataclass(cls_name, fields, bases=(base,), frozen=True,
                          namespace={"__module__": base.__module__, "__doc__": base.__doc__})


def parse_keys(keys: Tuple[Key, ...], given: Mapping[str, str],
               name: Callable[[Key], str], *,
               label: Optional[Callable[[Key], str]] = None) -> Dict[str, object]:
    """``{field: value}`` for every key: its text in ``given`` under ``name(key)``, else
    its default.

    A bad value raises ConfigError naming the key and what it must be, and showing the
    text given; with ``label``, errors name the key by it and never show the text.
    """
    values = {}
    for key in keys:
        text = given.get(name(key), key.default)
        if text is None:
            values[key.field] = None
            continue
        try:
            values[key.field] = key.parse(text)
        except InvalidValue as e:
            shown = label(key) if label else f"{name(key)}={text!r}"
            raise ConfigError(f"{shown}: {e.wanted}") from e
    return values


class _S3Settings:
    """Where and as whom boto3 talks to S3; never holds a secret."""


S3Settings = record("S3Settings", S3_KEYS, _S3Settings)


class _ModelSpec:
    """Everything needed to fetch, check and run one model; small and picklable."""

    def key(self, name: str) -> str:
        """The configuration key behind one of this model's settings."""
        return model_key(self.name, name)

    @property
    def symbol_uri(self) -> str:
        return f"{self.uri}-symbol.json"

    @property
    def params_uri(self) -> str:
        return f"{self.uri}-{self.epoch:04d}.params"

    @property
    def labels_uri(self) -> str:
        if self.labels:
            return self.labels
        base, sep, _ = self.uri.rpartition("/")
        return f"{base}{sep}synset.txt"

    def artifact_uris(self) -> Tuple[Tuple[str, str], ...]:
        """``(key, uri)`` of every file or prefix this model reads, with the key it comes
        from: symbol, params, labels and, for int8, the calibration images."""
        uris = [(self.key("uri"), self.symbol_uri), (self.key("uri"), self.params_uri),
                (self.key("labels") if self.labels else self.key("uri"), self.labels_uri)]
        if self.calibration:
            uris.append((self.key("calibration"), self.calibration))
        return tuple(uris)


ModelSpec = record("ModelSpec", MODEL_KEYS, _ModelSpec, leading=(("name", str),))

_LOCAL_STORE = "file"
_SAME_STORE = {"s3": "s3", "s3a": "s3", "s3n": "s3", "http": "http", "https": "https"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


def uri_location(uri: str) -> str:
    """Where ``uri`` points, as ``store://authority/path``, to compare with allowed prefixes.

    Local paths and ``file:`` URIs become ``file://`` plus the real path (``..`` and
    symbolic links resolved, ``~`` expanded); ``s3a://``/``s3n://`` are ``s3://``; scheme and
    host lose their case, user info, query and default ports are dropped. Raises ValueError
    for what cannot be compared safely: another scheme, a ``file:`` URI naming another
    host, a relative local path, and a ``.`` or ``..`` segment (percent-encoded or not) or
    a backslash in a remote path, which a server may resolve where the text does not show.
    """
    text = uri.strip()
    parts = urllib.parse.urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in ("", _LOCAL_STORE):
        if scheme:
            if parts.netloc not in ("", "localhost"):
                raise ValueError("a file: URI names another host")
            path = urllib.parse.unquote(parts.path)
        else:
            path = os.path.expanduser(text)
        if not path.startswith("/"):
            raise ValueError("a local path must be absolute")
        return f"{_LOCAL_STORE}://{os.path.realpath(path)}"
    if scheme not in _SAME_STORE:
        raise ValueError(f"scheme {scheme}:// is not one of file, s3, s3a, s3n, http, https")
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError("no bucket or host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("a malformed port") from None
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    path = urllib.parse.unquote(parts.path) or "/"
    if "\\" in path or any(s in (".", "..") for s in path.split("/")):
        raise ValueError("'.' or '..' segments and backslashes are not allowed in a remote URI")
    return f"{_SAME_STORE[scheme]}://{host}{path}"


def _is_under(location: str, prefix: str) -> bool:
    return location == prefix or location.startswith(prefix.rstrip("/") + "/")


def _display(location: str) -> str:
    """A location as messages show it: a local one as its path."""
    prefix = _LOCAL_STORE + "://"
    return location[len(prefix):] if location.startswith(prefix) else location


def _folder(location: str) -> str:
    store, _, rest = location.partition("://")
    if store == _LOCAL_STORE:
        return f"{store}://{posixpath.dirname(rest)}"
    authority, slash, path = rest.partition("/")
    return f"{store}://{authority}{posixpath.dirname(slash + path)}"


def _allowed_prefixes(given: Optional[str], models: Iterable[ModelSpec]) -> Tuple[str, ...]:
    """The normalised prefixes of ``spark.mxsql.model.allowedUris``, else the folders of
    ``models``' artifacts (those configured at start; one that cannot be normalised
    gives no folder, and fails when it loads)."""
    if given is not None:
        return tuple(uri_location(e) for e in given.split(",") if e.strip())
    folders = set()
    for spec in models:
        for _, uri in spec.artifact_uris():
            try:
                folders.add(_folder(uri_location(uri)))
            except ValueError:
                continue
    return tuple(sorted(folders))


class _Settings:
    """The parsed ``spark.mxsql.*`` configuration that travels to the workers.

    ``s3`` holds the ``spark.mxsql.s3.*`` keys, ``models`` one ModelSpec per configured
    model, ``raw`` the ``spark.mxsql.*`` strings it was parsed from, ``allowed_uris`` the
    normalised prefixes a model added or changed with SET may load from (fixed when the
    functions are registered: ``spark.mxsql.model.allowedUris``, else the folders of the
    models configured then).
    """

    def model(self, name: str) -> ModelSpec:
        """The model called ``name``, or a ConfigError that names the key to set."""
        for spec in self.models:
            if spec.name == name:
                return spec
        known = [m.name for m in self.models]
        if known:
            listing = "configured models: " + ", ".join(sorted(known))
        else:
            listing = "no model is configured"
        where = "with SET, " if self.runtime_models else ""
        raise ConfigError(
            f"unknown model '{name}': set {model_key(name, 'uri')} {where}in "
            f"spark-defaults.conf or with --conf ({listing}){did_you_mean(name, known)}"
        )

    def for_task(self) -> "Settings":
        """These settings with the running Spark task's ``SET spark.mxsql.…`` applied.

        A session's SQL settings reach a task as local properties; PySpark has no public
        way to list them, so the task context's own dict is read.
        """
        from pyspark import TaskContext

        context = TaskContext.get()
        props = getattr(context, "_localProperties", None) if context else None
        return self.with_session_overrides(props or {})

    def with_session_overrides(self, props: Mapping[str, str]) -> "Settings":
        """Apply a session's ``SET spark.mxsql.…`` values (task-local properties).

        Settable keys take effect, and so do model keys where ``runtimeModels`` allows
        them and their files are under ``allowedUris`` (:meth:`admit`); any other key that
        differs from what the functions were registered with is refused (a ConfigError
        naming the key), before anything is fetched.
        """
        raw = dict(self.raw)
        changed = {
            k: v for k, v in props.items()
            if k.startswith(PREFIX) and raw.get(k) != v
        }
        if not changed:
            return self
        for key in changed:
            known = _GLOBAL.get(key)
            if known is None:
                _check_known(key)
            elif not known.settable:
                raise ConfigError(_fixed_message(key))
        return self.admit(parse_settings({**raw, **changed}))

    def admit(self, other: "Settings") -> "Settings":
        """``other`` (a session's settings, parsed) if this registered policy allows it,
        with this policy's ``allowed_uris``; else a ConfigError naming the key and the
        setting that refuses it.

        The policy keys must be unchanged; a model added or changed needs
        ``runtimeModels=true`` and every file it reads under ``allowedUris``. Models
        configured at registration are trusted as they are.
        """
        mine, theirs = dict(self.raw), dict(other.raw)
        for key in (RUNTIME_MODELS_KEY, ALLOWED_URIS_KEY):
            if mine.get(key) != theirs.get(key):
                raise ConfigError(_fixed_message(key))
        changed = sorted(k for k in set(mine) | set(theirs)
                         if k.startswith(MODEL_PREFIX) and mine.get(k) != theirs.get(k))
        if changed and not self.runtime_models:
            raise ConfigError(
                f"{changed[0]} cannot be changed with SET: runtime models are off here "
                f"({RUNTIME_MODELS_KEY}=false, the operator's setting): set the model in "
                "spark-defaults.conf or with --conf, or ask the operator to enable "
                f"{RUNTIME_MODELS_KEY}"
            )
        for spec in other.models:
            if spec in self.models:
                continue
            for key, uri in spec.artifact_uris():
                problem = self.uri_problem(uri)
                if problem is not None:
                    raise ConfigError(f"{key}: {problem}")
        return replace(other, allowed_uris=self.allowed_uris)

    def uri_problem(self, uri: str) -> Optional[str]:
        """Why a model added or changed with SET may not read ``uri``, or None."""
        from mxsql.udfs.artifacts import shown  # here: artifacts imports this module

        try:
            location = uri_location(uri)
        except ValueError as e:
            return f"{shown(uri)} cannot be checked against {ALLOWED_URIS_KEY}: {e}"
        if any(_is_under(location, prefix) for prefix in self.allowed_uris):
            return None
        allowed = ", ".join(_display(p) for p in self.allowed_uris) or "none"
        resolved = "" if _display(location) == shown(uri) else \
            f" (resolves to {_display(location)})"
        return (f"{shown(uri)}{resolved} is outside {ALLOWED_URIS_KEY} (allowed: {allowed}): "
                "a model added or changed with SET loads only from there; ask the operator "
                f"to add its folder to {ALLOWED_URIS_KEY}")

    def model_set_problem(self, key: str, value: str) -> Optional[str]:
        """Why ``SET key=value`` of a model key must be refused, checked on the driver
        before it applies: runtime models off, a malformed value, a file outside
        ``allowedUris``. None when it may apply (the whole model is checked again when a
        query uses it)."""
        _check_known(key)
        if not self.runtime_models:
            return (f"runtime models are off ({RUNTIME_MODELS_KEY}=false, the operator's "
                    "setting)")
        setting = key[len(MODEL_PREFIX):].partition(".")[2]
        try:
            _MODEL[setting].parse(value)
        except InvalidValue as e:
            raise ConfigError(f"{key}={value!r}: {e.wanted}") from e
        if setting in ("uri", "labels", "calibration") and value.strip():
            uris = [value] + ([f"{value.strip()}-symbol.json"] if setting == "uri" else [])
            for uri in uris:
                problem = self.uri_problem(uri)
                if problem is not None:
                    return problem
        return None


Settings = record(
    "Settings", GLOBAL_KEYS, _Settings,
    trailing=(
        ("s3", S3Settings, field(default_factory=S3Settings)),
        ("models", tuple, field(default=())),
        ("raw", tuple, field(default=())),
        ("allowed_uris", tuple, field(default=())),
    ),
)


def _fixed_message(key: str) -> str:
    if key in (RUNTIME_MODELS_KEY, ALLOWED_URIS_KEY):
        return (f"{key} cannot be changed with SET: it is the operator's policy for models "
                "added at run time: set it in spark-defaults.conf or with --conf and restart")
    return (f"{key} cannot be changed with SET after the mx functions are registered "
            "(the model cache and S3 settings are fixed when the session or server "
            "starts): set it in spark-defaults.conf or with --conf and restart")


def _check_known(key: str) -> None:
    if key in _GLOBAL:
        return
    if key.startswith(MODEL_PREFIX):
        name, _, setting = key[len(MODEL_PREFIX):].partition(".")
        if not name or not _MODEL_NAME.match(name):
            raise ConfigError(
                f"{key}: model names may hold letters, digits, '_' and '-' "
                f"(expected {model_key('NAME', 'uri')} and similar)"
            )
        if setting in _MODEL:
            return
        raise ConfigError(
            f"{key}: unknown model setting '{setting}'"
            + did_you_mean(setting, _MODEL)
            + " (known: " + ", ".join(_MODEL) + ")"
        )
    candidates = list(_GLOBAL) + [model_key("NAME", k) for k in _MODEL]
    raise ConfigError(f"unknown key {key}" + did_you_mean(key, candidates))


def parse_settings(conf: Mapping[str, str]) -> Settings:
    """Parse the ``spark.mxsql.*`` entries of ``conf``; other keys are ignored.

    Raises ConfigError naming the key for an unknown key or a malformed value. It does
    not touch any model artifact: those are checked when a model is first used.
    """
    raw = {k: str(v) for k, v in conf.items() if k.startswith(PREFIX)}
    for key in raw:
        _check_known(key)
    names = sorted({
        k[len(MODEL_PREFIX):].partition(".")[0] for k in raw
        if k.startswith(MODEL_PREFIX) and k not in _GLOBAL
    })
    values = parse_keys(GLOBAL_KEYS, raw, lambda k: PREFIX + k.name)
    models = tuple(_parse_model(name, raw) for name in names)
    return Settings(
        **values,
        s3=S3Settings(**parse_keys(S3_KEYS, raw, lambda k: S3_PREFIX + k.name)),
        models=models,
        raw=tuple(sorted(raw.items())),
        allowed_uris=_allowed_prefixes(values["model_allowed_uris"], models),
    )


def _parse_model(name: str, raw: Mapping[str, str]) -> ModelSpec:
    values = parse_keys(MODEL_KEYS, raw, lambda k: model_key(name, k.name))
    for key in MODEL_KEYS:
        if key.required and values[key.field] is None:
            raise ConfigError(
                f"model '{name}' has settings but no {model_key(name, key.name)}: set it "
                f"({key.doc})"
            )
    for stat in ("mean", "std"):
        if values[stat] is not None and len(values[stat]) != values["channels"]:
            raise ConfigError(
                f"{model_key(name, stat)}: {len(values[stat])} values but "
                f"{model_key(name, 'channels')} is {values['channels']}: give one per channel"
            )
    if values["precision"] == "int8" and values["calibration"] is None:
        raise ConfigError(
            f"{model_key(name, 'precision')}=int8 needs {model_key(name, 'calibration')}: "
            "set it to a folder, file:// or s3:// prefix of images like those the model will "
            f"classify, or set {model_key(name, 'precision')}=fp32"
        )
    spec = ModelSpec(name=name, **values)
    from mxsql.udfs import engines  # here: engines imports this module

    engines.check(spec)
    return spec
