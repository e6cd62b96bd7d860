"""Generation parameters: per-model defaults, per-request overrides merged over them, validation.

Names are HF `GenerationConfig` names. Two Dream conventions are translated here:
- `max_length` / `min_length` count *new* tokens when the same config does not also give
  `max_new_tokens` / `min_new_tokens` (Dream's clients meant the reply's length; read literally, a
  prompt longer than `max_length` would silently yield nothing).
- `temperature: 0` means greedy decoding, as in OpenAI-style APIs (so does any value below 1e-5, as in vLLM:
  dividing logits by it would overflow float32).
- `min_new_tokens` is capped at `max_new_tokens` (a request for 1 token beats a default minimum of 8).
"""
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated

from pydantic import ConfigDict, Field, Strict, TypeAdapter, ValidationError
from transformers import GenerationConfig
from typing_extensions import TypedDict

from common.generative_config_files import load_generative_config

from .engine.samples import GenerationParams
from .errors import InvalidField
from .validation import STRICT, integer, invalid_field, listed, text

KNOWN_TO_HF = frozenset(GenerationConfig().to_dict())
SAMPLING_ONLY = ("temperature", "top_p", "top_k", "min_p", "typical_p")
GREEDY_BELOW_TEMPERATURE = 1e-5
# Bounds that keep one request from stalling the inference thread or overflowing its arithmetic.
MAX_BEAMS = 16  # each beam is a batch row
MAX_LIST_ITEMS = 256  # stop strings, replacement pairs, token id lists: each is checked at every step
MAX_STOP_STRING_CHARS = 256  # the tail decoded at every step is as long as the longest stop string
MAX_SEED = 2**63 - 1  # torch seeds are 64-bit, and sequence i of a request is seeded seed + i


@dataclass(frozen=True)
class Limits:
    """What this service accepts beyond the fixed bounds: its settings, and the loaded model's window,
    vocabulary and embedding size (None: no limit)."""
    max_new_tokens: int = None
    max_return_sequences: int = None
    max_contexts: int = None
    vocab_size: int = None
    embedding_size: int = None  # the only `dimensions` /v1/embeddings accepts


def _int(low: int, high: int = None):
    return integer(ge=low, le=high)


def _float(low: float = None, high: float = None, above: float = None):
    return Annotated[float, Field(ge=low, gt=above, le=high)]


class Replacement(tuple):
    """[pattern, substitute] pairs, and the config field they came from: applying them can fail later
    (prompting.MAX_REPLACED_CHARS), and that error names the field."""
    field = "replacement"


CONFIG_DOC = ("Generation parameters (HF GenerationConfig names) merged key by key over the model's defaults. "
              "`max_length`/`min_length` count reply tokens when `max_new_tokens`/`min_new_tokens` are not given. "
              "With `num_beams` > 1 the merged config's `num_return_sequences` must be <= `num_beams`.")


@lru_cache(maxsize=16)
def config_type(limits: Limits = Limits()):
    """The generation parameters this service accepts, declared once: they validate configs (the model's
    defaults, and each request's) and are the `GenerationConfig` schema of /openapi.json. Every key is
    optional and none is nullable. The HF ones go to generate() unchanged."""
    token = _int(0, None if limits.vocab_size is None else limits.vocab_size - 1)
    token_ids = Annotated[list[token], Field(min_length=1, max_length=MAX_LIST_ITEMS)]
    new_tokens = _int(1, limits.max_new_tokens)
    config = TypedDict("GenerationConfig", {
        "max_new_tokens": new_tokens,
        "max_length": new_tokens,
        "min_new_tokens": _int(0),
        "min_length": _int(0),
        "do_sample": bool,
        "temperature": _float(0.0, 100.0),
        "top_p": _float(above=0.0, high=1.0),
        "top_k": _int(0),
        "min_p": _float(0.0, 1.0),
        "typical_p": _float(above=0.0, high=1.0),
        "repetition_penalty": _float(0.01, 100.0),
        "no_repeat_ngram_size": _int(0),
        "num_beams": _int(1, MAX_BEAMS),
        "length_penalty": _float(-10.0, 10.0),  # beam scores divide by length ** length_penalty
        "early_stopping": bool,
        "num_return_sequences": _int(1, limits.max_return_sequences),
        "eos_token_id": listed(token, lone=(int, float), min_length=1, max_length=MAX_LIST_ITEMS),
        "bad_words_ids": Annotated[list[token_ids], Field(max_length=MAX_LIST_ITEMS)],
        "stop_strings": listed(text(min_length=1, max_length=MAX_STOP_STRING_CHARS), max_length=MAX_LIST_ITEMS),
        "seed": _int(0, MAX_SEED),
        # [pattern, substitute]; an empty pattern would insert the substitute between every two characters
        "replacement": Annotated[list[Annotated[tuple[text(min_length=1), text()], Strict(False)]],
                                 Field(max_length=MAX_LIST_ITEMS)],
    }, total=False)
    config.__doc__ = CONFIG_DOC
    config.__pydantic_config__ = ConfigDict(**STRICT, extra="forbid")
    return config


PARAMETERS = frozenset(config_type().__annotations__)


@lru_cache(maxsize=16)
def _adapter(limits: Limits) -> TypeAdapter:
    return TypeAdapter(config_type(limits))


def config_error(error: ValidationError, field=None, names: dict = None) -> InvalidField:
    """An InvalidField naming the parameter (`configs[0].temperature`, under `field` if given); an unknown key is
    told apart from an HF argument this service does not implement."""
    invalid = invalid_field(error, field, names, leaves=PARAMETERS)
    if error.errors()[0]["type"] == "extra_forbidden":
        name = error.errors()[0]["loc"][-1]
        invalid.message = "is not supported by this service" if name in KNOWN_TO_HF else "is not a generation parameter"
    return invalid


# Handled by this module, never passed to generate() as such.
OWN_KEYS = ("max_new_tokens", "num_return_sequences", "stop_strings", "seed", "replacement")
DEFAULT_MAX_NEW_TOKENS = 120  # Dream's default when a config gives none
LENGTH_ALIASES = {"max_length": "max_new_tokens", "min_length": "min_new_tokens"}


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


def parse(config: dict, field, limits: Limits = Limits(), names: dict = None) -> GenerationParams:
    """Validate a merged config into GenerationParams; InvalidField names `<field>.<parameter>`, or the
    parameter alone when `field` is None. `names` maps our parameter names to the caller's (OpenAI's)."""
    try:
        values = _with_length_aliases(_adapter(limits).validate_python(config))
    except ValidationError as error:
        raise config_error(error, field, names) from None
    for name in ("eos_token_id", "stop_strings"):
        if name in values:
            values[name] = tuple(values[name])
    if not values.get("bad_words_ids", True):  # [] bans nothing, and generate() refuses it
        del values["bad_words_ids"]

    if values.get("temperature", 1.0) < GREEDY_BELOW_TEMPERATURE:
        values["do_sample"] = False
    if "replacement" in values:
        values["replacement"] = Replacement(tuple(pair) for pair in values["replacement"])
        values["replacement"].field = f"{field}.replacement" if field else "replacement"
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
        name = (names or {}).get("num_return_sequences", "num_return_sequences")
        raise InvalidField(f"{field}.{name}" if field else name, f"must be <= num_beams ({kwargs['num_beams']})")
    return params
