"""Generation parameters: per-model defaults, per-request overrides merged over them, validation.

Names are HF `GenerationConfig` names. Two Dream conventions are translated here:
- `max_length` / `min_length` count *new* tokens when the same config does not also give
  `max_new_tokens` / `min_new_tokens` (Dream's clients meant the reply's length; read literally, a
  prompt longer than `max_length` would silently yield nothing).
- `temperature: 0` means greedy decoding, as in OpenAI-style APIs (so does any value below 1e-5, as in vLLM:
  dividing logits by it would overflow float32).
- `min_new_tokens` is capped at `max_new_tokens` (a request for 1 token beats a default minimum of 8).
"""
import json
import math
from dataclasses import dataclass
from functools import cached_property

from transformers import GenerationConfig

from common.generative_config_files import load_generative_config

from .errors import RequestError
from .request_parsing import is_text

KNOWN_TO_HF = frozenset(GenerationConfig().to_dict())
SAMPLING_ONLY = ("temperature", "top_p", "top_k", "min_p", "typical_p")
GREEDY_BELOW_TEMPERATURE = 1e-5
# Bounds that keep one request from stalling the inference thread or overflowing its arithmetic.
MAX_BEAMS = 16  # each beam is a batch row
MAX_LIST_ITEMS = 256  # stop strings, replacement pairs, token id lists: each is checked at every step
MAX_STOP_STRING_CHARS = 256  # the tail decoded at every step is as long as the longest stop string
MAX_SEED = 2**63 - 1  # torch seeds are 64-bit, and sequence i of a request is seeded seed + i


def _int(minimum, maximum=math.inf):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        if value < minimum:
            raise ValueError(f"must be >= {minimum}")
        if value > maximum:
            raise ValueError(f"must be <= {maximum}")
        return value
    return check


def _float(low, high=math.inf, low_open=False):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError("must be a finite number")
        if value < low or (low_open and value == low) or value > high:
            left = "(" if low_open else "["
            raise ValueError(f"must be in {left}{low}, {high}]")
        return float(value)
    return check


def _bool(value):
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _token_ids(value):
    ids = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not _is_id_list(ids):
        raise ValueError(f"must be a token id or a non-empty list of at most {MAX_LIST_ITEMS} token ids")
    return tuple(ids)


def _bad_words(value):
    if not _is_short_list(value) or not all(_is_id_list(words) for words in value):
        raise ValueError(f"must be a list of at most {MAX_LIST_ITEMS} non-empty lists of at most "
                         f"{MAX_LIST_ITEMS} token ids")
    return tuple(tuple(words) for words in value)


def _is_short_list(value) -> bool:
    return isinstance(value, list) and len(value) <= MAX_LIST_ITEMS


def _is_id_list(value) -> bool:
    return _is_short_list(value) and bool(value) and all(_is_token_id(item) for item in value)


def _is_token_id(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _strings(value):
    items = [value] if isinstance(value, str) else value
    if not _is_short_list(items) or not all(is_text(item) and 0 < len(item) <= MAX_STOP_STRING_CHARS
                                            for item in items):
        raise ValueError(f"must be a non-empty string of at most {MAX_STOP_STRING_CHARS} characters "
                         f"or a list of at most {MAX_LIST_ITEMS} of them")
    return tuple(items)


class Replacement(tuple):
    """[pattern, substitute] pairs, and the config field they came from: applying them can fail later
    (prompting.MAX_REPLACED_CHARS), and that error names the field."""
    field = "replacement"


def _replacement(value):
    if not _is_short_list(value) or not all(
            isinstance(pair, list) and len(pair) == 2 and all(is_text(part) for part in pair) and pair[0]
            for pair in value):
        raise ValueError(f"must be a list of at most {MAX_LIST_ITEMS} [pattern, substitute] string pairs "
                         "with non-empty patterns")
    return Replacement(tuple(pair) for pair in value)


# Parameters this service accepts, with their checks. The HF ones go to generate() unchanged.
CHECKS = {
    "max_new_tokens": _int(1),
    "min_new_tokens": _int(0),
    "do_sample": _bool,
    "temperature": _float(0.0, 100.0),
    "top_p": _float(0.0, 1.0, low_open=True),
    "top_k": _int(0),
    "min_p": _float(0.0, 1.0),
    "typical_p": _float(0.0, 1.0, low_open=True),
    "repetition_penalty": _float(0.01, 100.0),
    "no_repeat_ngram_size": _int(0),
    "num_beams": _int(1, MAX_BEAMS),
    "length_penalty": _float(-10.0, 10.0),  # beam scores divide by length ** length_penalty
    "early_stopping": _bool,
    "num_return_sequences": _int(1),
    "eos_token_id": _token_ids,
    "bad_words_ids": _bad_words,
    "stop_strings": _strings,
    "seed": _int(0, MAX_SEED),
    "replacement": _replacement,
}
# Handled by this module, never passed to generate() as such.
OWN_KEYS = ("max_new_tokens", "num_return_sequences", "stop_strings", "seed", "replacement")
DEFAULT_MAX_NEW_TOKENS = 120  # Dream's default when a config gives none
LENGTH_ALIASES = {"max_length": "max_new_tokens", "min_length": "min_new_tokens"}


@dataclass(frozen=True)
class GenerationParams:
    generate_kwargs: dict  # batch-wide generate() arguments: decoding mode, sampling, penalties
    max_new_tokens: int
    num_return_sequences: int
    stop_strings: tuple = ()
    seed: int = None
    replacement: tuple = ()

    @property
    def beam_search(self) -> bool:
        return self.generate_kwargs.get("num_beams", 1) > 1

    @cached_property  # compared against every waiting sample each time a batch forms
    def batch_key(self) -> str:
        """Samples with equal keys can share one generate() call. Length, stop strings and the
        number of returned sequences are handled per row, so they don't split batches; beam
        search returns its sequences itself, and a seeded sample runs alone to stay reproducible."""
        key = dict(self.generate_kwargs)
        if self.beam_search:
            key["num_return_sequences"] = self.num_return_sequences
        if self.seed is not None:
            key["seed"] = self.seed
            key["solo"] = id(self)
        return json.dumps(key, sort_keys=True, default=list)


def load_defaults(file_name: str) -> dict:
    """A model's default config from common/generative_configs/, validated at start-up."""
    config = load_generative_config(file_name)
    parse(config, field=file_name)
    return config


def _with_length_aliases(layer: dict) -> dict:
    layer = dict(layer)
    for alias, target in LENGTH_ALIASES.items():
        if alias in layer:
            value = layer.pop(alias)
            layer.setdefault(target, value)
    return layer


def merge(defaults: dict, override) -> dict:
    """The request's config over the model's defaults, key by key; neither input is modified."""
    merged = _with_length_aliases(defaults)
    if override:
        merged.update(_with_length_aliases(override))
    return merged


def capped_defaults(defaults: dict, max_new_tokens: int, max_return_sequences: int) -> dict:
    """A model's defaults lowered to the service limits: the limits refuse what a request asks for,
    not what the operator configured."""
    capped = merge(defaults, None)
    capped["max_new_tokens"] = min(capped.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS), max_new_tokens)
    capped["num_return_sequences"] = min(capped.get("num_return_sequences", 1), max_return_sequences)
    return capped


def parse(config: dict, field: str, max_new_tokens_limit: int = None, max_return_sequences: int = None,
          vocab_size: int = None) -> GenerationParams:
    """Validate a merged config into GenerationParams; RequestError names `<field>.<parameter>`."""
    values = {}
    for name, value in _with_length_aliases(config).items():
        where = f"{field}.{name}"
        if name not in CHECKS:
            reason = "is not supported by this service" if name in KNOWN_TO_HF else "is not a generation parameter"
            raise RequestError(where, f"{name} {reason}")
        try:
            values[name] = CHECKS[name](value)
        except ValueError as error:
            raise RequestError(where, f"{name} {error}") from None
    limits = {"max_new_tokens": max_new_tokens_limit, "num_return_sequences": max_return_sequences}
    for name, limit in limits.items():
        if limit is not None and values.get(name, 1) > limit:
            raise RequestError(f"{field}.{name}", f"{name} must be <= {limit}")
    if vocab_size is not None:
        for name in ("eos_token_id", "bad_words_ids"):
            flat = values.get(name, ())
            ids = [token for item in flat for token in (item if isinstance(item, tuple) else (item,))]
            if any(token >= vocab_size for token in ids):
                raise RequestError(f"{field}.{name}", f"{name} holds token ids outside the vocabulary ({vocab_size})")

    if values.get("temperature", 1.0) < GREEDY_BELOW_TEMPERATURE:
        values["do_sample"] = False
    if "replacement" in values:
        values["replacement"].field = f"{field}.replacement"
    if "min_new_tokens" in values:
        # A request asking for fewer tokens than the model's default minimum gets what it asked for.
        values["min_new_tokens"] = min(values["min_new_tokens"], values.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
    kwargs = {name: value for name, value in values.items() if name not in OWN_KEYS}
    if not kwargs.get("do_sample", False):
        for name in SAMPLING_ONLY:
            kwargs.pop(name, None)
    params = GenerationParams(
        generate_kwargs=kwargs,
        max_new_tokens=values.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS),
        num_return_sequences=values.get("num_return_sequences", 1),
        stop_strings=values.get("stop_strings", ()),
        seed=values.get("seed"),
        replacement=values.get("replacement", ()),
    )
    if params.beam_search and params.num_return_sequences > kwargs["num_beams"]:
        raise RequestError(f"{field}.num_return_sequences", "num_return_sequences must be <= num_beams")
    return params
