"""Shape checks of Dream request bodies; each failure names the field it is about."""
from dataclasses import dataclass

from common.redaction import remember_fields

from .errors import RequestError


@dataclass(frozen=True)
class Task:
    """One thing to generate for: an instruction, the dialog so far, the caller's config (or None)."""
    prompt: str
    turns: list
    config: dict = None
    field: str = ""  # where the context sits in the body, for error messages


def require_object(body) -> dict:
    if not isinstance(body, dict):
        raise RequestError("body", "the body must be a JSON object")
    remember_fields(body)  # forwarded keys (openai_api_keys, ...) are cut out of any log line or Sentry event
    return body


def is_text(value) -> bool:
    """A str that UTF-8 can encode: JSON escapes may carry lone surrogates ("\\ud800"), which tokenizers reject."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(value, field: str):
    if not is_text(value):
        raise RequestError(field, "must be a string" if not isinstance(value, str) else
                           "must be valid Unicode text (it holds a lone surrogate)")


def _string_list(value, field: str) -> list:
    if not isinstance(value, list):
        raise RequestError(field, "must be a list of strings")
    for index, item in enumerate(value):
        check_text(item, f"{field}[{index}]")
    return value


def _per_item(body: dict, name: str, count: int, check) -> list:
    """An optional list parallel to the main one: missing/null/[] means None for every item."""
    value = body.get(name)
    if value is None or value == []:
        return [None] * count
    if not isinstance(value, list):
        raise RequestError(name, "must be a list")
    if len(value) != count:
        raise RequestError(name, f"must have one item per context ({count}), got {len(value)}")
    for index, item in enumerate(value):
        check(item, f"{name}[{index}]")
    return value


def _check_prompt(item, field):
    if item is not None:
        check_text(item, field)


def _check_config(item, field):
    if item is not None and not isinstance(item, dict):
        raise RequestError(field, "must be an object of generation parameters or null")


def parse_respond(body) -> list:
    """POST /respond: `dialog_contexts`, optional `prompts` and `configs`; other keys are forwarded
    values (API keys and the like) that this service accepts and ignores."""
    body = require_object(body)
    contexts = body.get("dialog_contexts")
    if not isinstance(contexts, list) or not contexts:
        raise RequestError("dialog_contexts", "must be a non-empty list of dialog contexts (lists of strings)")
    for index, context in enumerate(contexts):
        field = f"dialog_contexts[{index}]"
        _string_list(context, field)
        if not context:
            raise RequestError(field, "must hold at least one utterance")
    prompts = _per_item(body, "prompts", len(contexts), _check_prompt)
    configs = _per_item(body, "configs", len(contexts), _check_config)
    return [Task(prompt or "", context, config, f"dialog_contexts[{index}]")
            for index, (context, prompt, config) in enumerate(zip(contexts, prompts, configs))]


def parse_goals(body) -> tuple:
    """POST /generate_goals: `prompts` and optional `configs` -> (prompts, configs)."""
    body = require_object(body)
    prompts = body.get("prompts")
    if not isinstance(prompts, list) or not prompts:
        raise RequestError("prompts", "must be a non-empty list of strings")
    _string_list(prompts, "prompts")
    return prompts, _per_item(body, "configs", len(prompts), _check_config)
