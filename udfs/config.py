"""Every ``spark.mxsql.*`` key: its name, default, parser and one-line doc.

This module is the one owner of key names. It lives on the worker side because a
session's ``SET spark.mxsql.…`` reaches Python workers as task-local properties and
must be parsed there with the same rules; the driver imports it to read its conf.
"""

import difflib
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Tuple

from mxsql.udfs.errors import ConfigError

__all__ = [
    "PREFIX",
    "GLOBAL_KEYS",
    "MODEL_KEYS",
    "Key",
    "S3Settings",
    "ModelSpec",
    "Settings",
    "parse_settings",
    "model_key",
    "describe_keys",
    "nonempty_text",
    "optional_text",
    "positive_int",
]

PREFIX = "spark.mxsql."
_MODEL_PREFIX = PREFIX + "model."
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def positive_int(text: str) -> int:
    """A setting's text as an integer > 0 (ValueError says what is allowed)."""
    value = int(text.strip())
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text.strip())
    if value < 0:
        raise ValueError("must be an integer >= 0")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip()
        if value not in allowed:
            raise ValueError("must be one of " + ", ".join(allowed))
        return value

    return parse


def nonempty_text(text: str) -> str:
    """A setting's text, stripped, that must not be empty."""
    value = text.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def optional_text(text: str) -> Optional[str]:
    """A setting's text, stripped; empty means unset."""
    return text.strip() or None


def _input_size(text: str) -> Tuple[int, int]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise ValueError("must be SIZE or HEIGHT,WIDTH, e.g. 224 or 224,224")
    height, width = (positive_int(p) for p in parts)
    return height, width


def _channels(text: str) -> int:
    value = int(text.strip())
    if value not in (1, 3):
        raise ValueError("must be 3 (RGB) or 1 (grayscale)")
    return value


def _floats(text: str) -> Tuple[float, ...]:
    values = tuple(float(p) for p in text.split(","))
    if not values:
        raise ValueError("must be a comma-separated list of numbers")
    return values


def _positive_floats(text: str) -> Tuple[float, ...]:
    values = _floats(text)
    if any(v <= 0 for v in values):
        raise ValueError("every value must be > 0")
    return values


def _sha256(text: str) -> str:
    value = text.strip().lower()
    if not _SHA256.match(value):
        raise ValueError("must be 64 hexadecimal digits (a SHA-256 digest)")
    return value


def _cache_dir(text: str) -> str:
    # "~" stays as written: it is the home of the user each executor runs as, expanded
    # in the worker, not the driver's.
    return nonempty_text(text)


@dataclass(frozen=True)
class Key:
    """One configuration key: ``name`` is relative to its group (global or per model)."""

    name: str
    default: Optional[str]
    parse: Callable[[str], object]
    doc: str
    settable: bool = False  # may a session change it with SET after registration?


GLOBAL_KEYS: Tuple[Key, ...] = (
    Key("batchSize", "32", positive_int,
        "Images per forward pass of the network; a short batch runs in pieces of 4, the "
        "last padded with blank images (never with rows).",
        settable=True),
    Key("onError", "null", _choice("null", "fail"),
        "What a row that cannot be classified gives: null (NULL and a reason in "
        "mx_image_info) or fail (the query fails, naming the reason).",
        settable=True),
    Key("maxImagePixels", "89478485", positive_int,
        "Largest image, in pixels, that is decoded; larger ones are row errors "
        "(decompression-bomb guard, Pillow's default).",
        settable=True),
    Key("prefetch", "true", _choice("true", "false"),
        "Decode the next Arrow batch in a background thread, at idle CPU priority, while "
        "the network runs.",
        settable=True),
    Key("cacheDir", "~/.cache/mxsql", _cache_dir,
        "Local directory where model artifacts fetched from HTTP(S) or S3 are kept, one "
        "copy per machine."),
    Key("s3.endpoint", None, optional_text,
        "Endpoint URL for S3 (MinIO and other S3-compatible stores); unset = AWS."),
    Key("s3.region", None, optional_text, "AWS region for S3; unset = boto3's default chain."),
    Key("s3.profile", None, optional_text,
        "AWS profile for S3 credentials; unset = boto3's default credential chain."),
)

MODEL_KEYS: Tuple[Key, ...] = (
    Key("uri", None, nonempty_text,
        "Checkpoint prefix PREFIX (PREFIX-symbol.json, PREFIX-EPOCH.params): local path, "
        "file://, http(s):// or s3://."),
    Key("epoch", "0", _non_negative_int, "Checkpoint epoch: PREFIX-EPOCH.params, 4 digits."),
    Key("labels", None, optional_text,
        "Labels file, one label a line (a leading WordNet id is dropped); unset = "
        "synset.txt beside the prefix."),
    Key("inputSize", "224", _input_size, "Network input size: SIZE or HEIGHT,WIDTH."),
    Key("channels", "3", _channels, "Input channels: 3 = RGB, 1 = grayscale."),
    Key("mean", None, _floats,
        "Per-channel mean subtracted from 0-255 pixels, comma list; unset = none."),
    Key("std", None, _positive_floats,
        "Per-channel divisor applied after the mean, comma list; unset = none."),
    Key("resize", "stretch", _choice("stretch", "center-crop"),
        "stretch to the input size, or center-crop: shorter side to size, then crop."),
    Key("output", "auto", _choice("auto", "probabilities", "logits"),
        "auto: softmax unless the symbol already ends in one; or force probabilities/logits."),
    Key("engine", "mxnet", _choice("mxnet", "onnxruntime"),
        "mxnet, or onnxruntime: the checkpoint converted once to ONNX (cached in cacheDir) "
        "and run with ONNX Runtime; needs pip install 'mxsql[onnx]'."),
    Key("sha256.symbol", None, _sha256, "Expected SHA-256 of PREFIX-symbol.json."),
    Key("sha256.params", None, _sha256, "Expected SHA-256 of PREFIX-EPOCH.params."),
    Key("sha256.labels", None, _sha256, "Expected SHA-256 of the labels file."),
)

_GLOBAL = {k.name: k for k in GLOBAL_KEYS}
_MODEL = {k.name: k for k in MODEL_KEYS}


def model_key(model: str, name: str) -> str:
    """The full key of a model setting, e.g. ``spark.mxsql.model.default.uri``."""
    return f"{_MODEL_PREFIX}{model}.{name}"


def describe_keys() -> Tuple[Tuple[str, Optional[str], str], ...]:
    """(key, default, doc) for every key, model keys under the placeholder NAME."""
    rows = [(PREFIX + k.name, k.default, k.doc) for k in GLOBAL_KEYS]
    rows += [(model_key("NAME", k.name), k.default, k.doc) for k in MODEL_KEYS]
    return tuple(rows)


@dataclass(frozen=True)
class S3Settings:
    """Where and as whom boto3 talks to S3; never holds a secret."""

    endpoint: Optional[str] = None
    region: Optional[str] = None
    profile: Optional[str] = None


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to fetch, check and run one model; small and picklable."""

    name: str
    uri: str
    epoch: int = 0
    labels: Optional[str] = None
    input_size: Tuple[int, int] = (224, 224)
    channels: int = 3
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None
    resize: str = "stretch"
    output: str = "auto"
    engine: str = "mxnet"
    sha256_symbol: Optional[str] = None
    sha256_params: Optional[str] = None
    sha256_labels: Optional[str] = None

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


@dataclass(frozen=True)
class Settings:
    """The parsed ``spark.mxsql.*`` configuration that travels to the workers."""

    batch_size: int = 32
    on_error: str = "null"
    max_image_pixels: int = 89478485
    prefetch: bool = True
    cache_dir: str = _cache_dir(_GLOBAL["cacheDir"].default)
    s3: S3Settings = field(default_factory=S3Settings)
    models: Tuple[ModelSpec, ...] = ()
    raw: Tuple[Tuple[str, str], ...] = ()  # the spark.mxsql.* strings it was parsed from

    def model(self, name: str) -> ModelSpec:
        """The model called ``name``, or a ConfigError that names the key to set."""
        for spec in self.models:
            if spec.name == name:
                return spec
        known = [m.name for m in self.models]
        hint = _did_you_mean(name, known)
        if known:
            listing = "configured models: " + ", ".join(sorted(known))
        else:
            listing = "no model is configured"
        raise ConfigError(
            f"unknown model '{name}': set {model_key(name, 'uri')} in spark-defaults.conf "
            f"or with --conf ({listing}){hint}"
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

        Settable keys take effect; any other key that differs from what the functions were
        registered with is refused, because model sources are fixed at registration.
        """
        raw = dict(self.raw)
        changed = {
            k: v for k, v in props.items()
            if k.startswith(PREFIX) and raw.get(k) != v
        }
        if not changed:
            return self
        for key in changed:
            known = _GLOBAL.get(key[len(PREFIX):])
            if known is None or not known.settable:
                _check_known(key)
                raise ConfigError(
                    f"{key} cannot be changed with SET after the mx functions are registered "
                    "(model sources, cache and S3 settings are fixed when the session or server "
                    "starts): set it in spark-defaults.conf or with --conf and restart"
                )
        return parse_settings({**raw, **changed})


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _check_known(key: str) -> None:
    rest = key[len(PREFIX):]
    if rest in _GLOBAL:
        return
    if key.startswith(_MODEL_PREFIX):
        name, _, setting = key[len(_MODEL_PREFIX):].partition(".")
        if not name or not _MODEL_NAME.match(name):
            raise ConfigError(
                f"{key}: model names may hold letters, digits, '_' and '-' "
                f"(expected {model_key('NAME', 'uri')} and similar)"
            )
        if setting in _MODEL:
            return
        raise ConfigError(
            f"{key}: unknown model setting '{setting}'"
            + _did_you_mean(setting, _MODEL)
            + " (known: " + ", ".join(_MODEL) + ")"
        )
    candidates = [PREFIX + k for k in _GLOBAL] + [model_key("NAME", k) for k in _MODEL]
    raise ConfigError(f"unknown key {key}" + _did_you_mean(key, candidates))


def _parse(key: str, spec: Key, text: str):
    try:
        return spec.parse(text)
    except ValueError as e:
        reason = str(e) if "must" in str(e) else "is not a valid value"
        raise ConfigError(f"{key}={text!r}: {reason}") from e


def parse_settings(conf: Mapping[str, str]) -> Settings:
    """Parse the ``spark.mxsql.*`` entries of ``conf``; other keys are ignored.

    Raises ConfigError naming the key for an unknown key or a malformed value. It does
    not touch any model artifact: those are checked when a model is first used.
    """
    raw = {k: str(v) for k, v in conf.items() if k.startswith(PREFIX)}
    for key in raw:
        _check_known(key)

    def value(name: str):
        spec = _GLOBAL[name]
        key = PREFIX + name
        text = raw.get(key, spec.default)
        return None if text is None else _parse(key, spec, text)

    names = sorted({
        k[len(_MODEL_PREFIX):].partition(".")[0] for k in raw if k.startswith(_MODEL_PREFIX)
    })
    models = tuple(_parse_model(name, raw) for name in names)
    return Settings(
        batch_size=value("batchSize"),
        on_error=value("onError"),
        max_image_pixels=value("maxImagePixels"),
        prefetch=value("prefetch") == "true",
        cache_dir=value("cacheDir"),
        s3=S3Settings(
            endpoint=value("s3.endpoint"), region=value("s3.region"), profile=value("s3.profile")
        ),
        models=models,
        raw=tuple(sorted(raw.items())),
    )


def _parse_model(name: str, raw: Mapping[str, str]) -> ModelSpec:
    values = {}
    for spec in MODEL_KEYS:
        key = model_key(name, spec.name)
        text = raw.get(key, spec.default)
        values[spec.name] = None if text is None else _parse(key, spec, text)
    if values["uri"] is None:
        raise ConfigError(
            f"model '{name}' has settings but no {model_key(name, 'uri')}: set it to the "
            "checkpoint prefix (PREFIX-symbol.json, PREFIX-EPOCH.params)"
        )
    for stat in ("mean", "std"):
        if values[stat] is not None and len(values[stat]) != values["channels"]:
            raise ConfigError(
                f"{model_key(name, stat)}: {len(values[stat])} values but "
                f"{model_key(name, 'channels')} is {values['channels']}: give one per channel"
            )
    return ModelSpec(
        name=name,
        uri=values["uri"],
        epoch=values["epoch"],
        labels=values["labels"],
        input_size=values["inputSize"],
        channels=values["channels"],
        mean=values["mean"],
        std=values["std"],
        resize=values["resize"],
        output=values["output"],
        engine=values["engine"],
        sha256_symbol=values["sha256.symbol"],
        sha256_params=values["sha256.params"],
        sha256_labels=values["sha256.labels"],
    )

