"""Settings declared once: a dataclass field names its environment variable, parser, default and meaning
(`setting`), and `load` builds the dataclass from an environment mapping.

An empty value means "unset": compose passes unset build args as "". A parser's ValueError names the
variable read, so a bad value stops the start with a message saying what to fix.
"""
import dataclasses
import functools
import os
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

TRUE_VALUES = frozenset({"1", "true", "yes", "on"})
FALSE_VALUES = frozenset({"", "0", "false", "no", "off", "none"})

_KEY = "setting"


class Declared(NamedTuple):
    env: str
    aliases: tuple
    parse: Callable[[str], Any]
    default: Any  # as written in the declaration: a value, a text or a factory
    doc: str
    shown: Optional[str]  # the default as the docs write it, where the value alone would mislead


def setting(env: str, parse: Callable[[str], Any] = str, default: Any = None, doc: str = "", *,
            aliases: Sequence[str] = (), shown: Optional[str] = None, secret: bool = False) -> dataclasses.Field:
    """A dataclass field read from `env` (else from the first set one of `aliases`) through `parse`.

    `default` is a value; or a text, parsed like the environment's when first needed (so it may name a
    file to load); or a factory (a callable, run per instance, whose docstring says what it gives).
    A `secret` stays out of repr.
    """
    if callable(default):
        initial = {"default_factory": default}
    elif isinstance(default, str):
        initial = {"default_factory": functools.partial(parse, default)}
    else:
        initial = {"default": default}
    declaration = Declared(env, tuple(aliases), parse, default, doc, shown)
    return dataclasses.field(**initial, repr=not secret, metadata={_KEY: declaration})


def declarations(cls) -> dict:
    """{field name: Declared} of the settings of dataclass `cls`."""
    return {field.name: field.metadata[_KEY] for field in dataclasses.fields(cls) if _KEY in field.metadata}


def load(cls, env: Optional[Mapping] = None):
    """An instance of `cls` from `env` (default os.environ); unset or empty variables keep their defaults."""
    env = os.environ if env is None else env
    values = {}
    for name, decl in declarations(cls).items():
        source = next((var for var in (decl.env, *decl.aliases) if env.get(var)), None)
        if source is not None:
            values[name] = _parse(decl.parse, source, env[source])
        elif isinstance(decl.default, str):  # parsed here so that its error names the variable too
            values[name] = _parse(decl.parse, decl.env, decl.default)
    return cls(**values)


def _parse(parse, var, text):
    try:
        return parse(text)
    except ValueError as error:
        message = str(error)
        # Our parsers say "must be ..."; others (file loaders) say a whole sentence.
        raise ValueError(f"{var} {message}" if message.startswith("must ") else f"{var}: {message}") from error


def parse_flag(value, default: bool = False) -> bool:
    """Lenient flag parsing: Dream crashed on int("") for HALF_PRECISION=""."""
    if value is None:
        return default
    text = str(value).strip().lower()
    if text in TRUE_VALUES:
        return True
    if text in FALSE_VALUES:
        return False
    raise ValueError(f"must be a boolean flag (0/1, true/false, yes/no, on/off), got {value!r}")


def one_of(*choices: str) -> Callable[[str], str]:
    """A parser of one of `choices`, in any case."""
    wording = f"{', '.join(choices[:-1])} or {choices[-1]}"

    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"must be {wording}, got {value!r}")
        return value

    return parse


def number(kind: type) -> Callable[[str], Any]:
    """A parser of an int or float."""
    return _number(kind, "", lambda value: True)


def positive(kind: type) -> Callable[[str], Any]:
    """A parser of an int or float above 0."""
    return _number(kind, "positive ", lambda value: value > 0)


def non_negative(kind: type) -> Callable[[str], Any]:
    """A parser of an int or float of 0 or more."""
    return _number(kind, "non-negative ", lambda value: value >= 0)


def _number(kind, adjective, accept):
    article = "an" if (adjective or kind.__name__)[0] in "aeiou" else "a"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise ValueError(f"must be {article} {adjective}{kind.__name__}, got {text!r}")
        return value

    return parse
