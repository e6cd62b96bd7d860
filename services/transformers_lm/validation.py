"""Pieces of the pydantic declarations that both validate requests and generate /openapi.json, and the one
translation of a pydantic ValidationError into an InvalidField naming the offending field."""
from typing import Annotated, Any, Optional, Union

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints,
                      ValidationError, WithJsonSchema)

from .errors import InvalidField

# Strict: "2" is not 2 and true is not 1, as JSON Schema says; NaN (which Python's json reads) is no number.
STRICT = ConfigDict(strict=True, allow_inf_nan=False)
MESSAGES = {"string_unicode": "must be valid Unicode text (it holds a lone surrogate)"}


def _utf8(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # JSON escapes may carry lone surrogates ("\ud800"), which tokenizers reject
        raise ValueError(MESSAGES["string_unicode"]) from None
    return value


def text(**constraints):
    """A string that UTF-8 can encode, with string constraints (min_length, max_length). pydantic refuses lone
    surrogates itself only when it checks a length."""
    return Annotated[str, StringConstraints(**constraints), AfterValidator(_utf8)]


Text = text()


def integer(**constraints):
    """JSON Schema's integer, with constraints (ge, le): 2.0 is one, as it is to JSON; true is none."""
    return Annotated[Annotated[int, Field(**constraints)], BeforeValidator(
        lambda value: int(value) if isinstance(value, float) and value.is_integer() else value)]


def listed(item, lone=str, **constraints):
    """A list of `item`, where a lone `item` (a `lone`) stands for a list of one (OpenAI's `stop`, `prompt`)."""
    many = Annotated[list[item], Field(**constraints)]
    return Annotated[many, BeforeValidator(lambda value: [value] if isinstance(value, lone) and not
                                           isinstance(value, bool) else value,
                                           json_schema_input_type=Union[item, many])]


def only(*values):
    """A parameter this service does not implement: accepted only with its do-nothing values (or null).
    Compared as JSON compares: false is not 0."""
    def check(value):
        if value is not None and not any(value == allowed and isinstance(value, bool) == isinstance(allowed, bool)
                                         for allowed in values):
            shown = " or ".join("null" if allowed is None else repr(allowed) for allowed in (None, *values))
            raise ValueError(f"is not supported by this service: leave it out or send {shown}")
        return value
    return Annotated[Optional[Any], BeforeValidator(check),
                     WithJsonSchema({"enum": [None, *values], "description": "not supported: only these values"})]


class Strict(BaseModel):
    model_config = ConfigDict(**STRICT, extra="forbid")


def invalid_field(error: ValidationError, prefix: str = None, names: dict = None, leaves=frozenset(),
                  messages: dict = None) -> InvalidField:
    """The first problem of `error` as an InvalidField. Its field is the location, `a[0].b` style, under `prefix`,
    cut after the first name in `leaves` (a parameter is named, not the item inside it) and with each name
    as `names` maps it (OpenAI's names for ours). `messages` replaces pydantic's text by error type."""
    names = names or {}
    problem = error.errors(include_url=False)[0]
    field = prefix or ""
    for part in problem["loc"]:
        if isinstance(part, int):
            field += f"[{part}]"
            continue
        field += f"{'.' if field else ''}{names.get(part, part)}"
        if part in leaves:
            break
    message = {**MESSAGES, **(messages or {})}.get(problem["type"]) or problem["msg"]
    if message.startswith("Value error, "):  # our validators' own ValueErrors
        message = message[len("Value error, "):]
    return InvalidField(field or "body", message)
