"""Values a caller forwards to an LLM service next to the dialog (API keys, extra kwargs).

One naming rule for everything forwarded: a name ``x`` travels as ``"<x>s": [value]``
(one value per sample). An environment variable ``VAR`` is named by its lowercase form,
which is also the utterance attribute it may come from: ``OPENAI_ORGANIZATION`` ->
attribute ``openai_organization`` -> key ``openai_organizations``.
"""
import os
from typing import Mapping, Optional

from common.json_files import load_json_file
from common.llm_endpoints import url_key


def forwarded_key(name: str) -> str:
    return f"{name}s"


def load_envvars_to_send(path) -> dict:
    """``{LLM URL: [VAR, ...]}`` from the ENVVARS_TO_SEND JSON file; ValueError if malformed."""
    mapping = load_json_file(path, "ENVVARS_TO_SEND file")
    if not isinstance(mapping, dict) or not all(
        isinstance(url, str) and isinstance(names, list) and all(isinstance(name, str) for name in names)
        for url, names in mapping.items()
    ):
        raise ValueError(f"ENVVARS_TO_SEND file {path} must map each LLM URL to a list of variable names")
    for url in mapping:
        try:
            url_key(url)
        except ValueError as error:  # checked here, or every request to any LLM would meet it
            raise ValueError(f"ENVVARS_TO_SEND file {path}: {url!r} is not a URL ({error})") from None
    return mapping


def envvars_for(envvars_to_send: Mapping, url: str) -> list:
    """The variable names ENVVARS_TO_SEND lists for the LLM at `url` (none for an unlisted URL)."""
    key = url_key(url)
    return next((names for listed, names in envvars_to_send.items() if url_key(listed) == key), [])


def compose_sending_variables(
    envvars_to_send,
    attributes: Mapping,
    environ: Mapping = os.environ,
    lm_service_kwargs: Optional[Mapping] = None,
) -> dict:
    """The extra request keys for one sample.

    Each ``VAR`` takes the attribute ``var`` when it is set (the caller's own key wins),
    else the environment's ``VAR``, else None (the receiver then falls back to its own).
    Each ``lm_service_kwargs`` item ``k: v`` is sent as ``"<k>s": [v]`` and wins over a
    variable of the same key.
    """
    sending_variables = {}
    for var in envvars_to_send:
        name = var.lower()
        value = attributes.get(name)
        if value is None or value == "":
            value = environ.get(var) or None
        sending_variables[forwarded_key(name)] = [value]
    for name, value in (lm_service_kwargs or {}).items():
        sending_variables[forwarded_key(name)] = [value]
    return sending_variables
