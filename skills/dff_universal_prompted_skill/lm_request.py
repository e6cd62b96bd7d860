"""Turning one Dream dialog into the request the skill sends to an LLM service."""
import math
import os
import re
from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Tuple

from common.forwarded_variables import compose_sending_variables, envvars_for
from common.llm_endpoints import UndeclaredEndpoint

from .context import dialog_context, last_human_attributes, prompt_of
from .settings import Settings

# A caller's timeout beyond this is a mistake, and an infinite one would hold a thread forever.
MAX_TIMEOUT_S = 3600.0
# lm_service_kwargs are end users' values forwarded to the LLM: a few flat, short ones.
MAX_KWARGS = 16
MAX_KWARG_CHARS = 1000
KWARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True)
class LMRequest:
    url: str
    dialog_context: List[str]
    prompt: str
    config: dict
    timeout: float
    # Kept out of repr so that logging a request can never print a secret.
    sending_variables: dict = field(repr=False)


def merge_config(
    caller_config: Optional[Mapping], default_config: Mapping, default_timeout: float
) -> Tuple[dict, float]:
    """(generation config, HTTP timeout) for one request; neither input is modified.

    The caller's keys override the default config; its ``timeout`` is the HTTP timeout,
    not a generation parameter, so it is taken out of the config.
    """
    if caller_config is not None and not isinstance(caller_config, Mapping):
        raise ValueError("lm_service_config must be an object")
    config = {**default_config, **(caller_config or {})}
    timeout = config.pop("timeout", default_timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_TIMEOUT_S:
        raise ValueError(f"lm_service_config.timeout must be a number of seconds in (0, {MAX_TIMEOUT_S:g}], "
                         f"got {timeout!r}")
    return config, float(timeout)


def check_kwargs(kwargs) -> Mapping:
    """lm_service_kwargs as the LLM may get them: at most MAX_KWARGS names, each value null, a boolean, a number
    or a string of at most MAX_KWARG_CHARS characters, so nothing large or nested travels through them."""
    if not isinstance(kwargs, Mapping):
        raise ValueError("lm_service_kwargs must be an object")
    if len(kwargs) > MAX_KWARGS:
        raise ValueError(f"lm_service_kwargs may hold at most {MAX_KWARGS} values")
    for name, value in kwargs.items():
        if not isinstance(name, str) or not KWARG_NAME.fullmatch(name):
            raise ValueError("lm_service_kwargs names must be identifiers of at most 64 characters")
        scalar = value is None or isinstance(value, (bool, int)) or isinstance(value, float) and math.isfinite(value)
        if not (scalar or isinstance(value, str) and len(value) <= MAX_KWARG_CHARS):
            raise ValueError(f"lm_service_kwargs.{name} must be null, a boolean, a finite number or a string of at most "
                             f"{MAX_KWARG_CHARS} characters")
    return kwargs


def build_lm_request(dialog, settings: Settings, environ: Mapping = os.environ) -> LMRequest:
    """The LLM request for a dialog; ValueError when the dialog or its inputs are malformed."""
    attributes = last_human_attributes(dialog)
    prompt = prompt_of(attributes)
    if not isinstance(prompt, str):
        raise ValueError("prompt must be a string")
    url = attributes.get("lm_service_url") or settings.default_lm_service_url
    if not isinstance(url, str):
        raise ValueError("lm_service_url must be a string")
    config, timeout = merge_config(
        attributes.get("lm_service_config"), settings.default_lm_service_config, settings.generative_timeout
    )
    try:
        settings.endpoints.check(url)  # UndeclaredEndpoint: only the distribution's LLMs are called
        envvars = envvars_for(settings.envvars_to_send, url)
    except UndeclaredEndpoint:
        raise
    except ValueError:  # the URL itself stays out of the message: it may carry credentials
        raise ValueError("lm_service_url is not a valid URL") from None
    kwargs = check_kwargs(attributes.get("lm_service_kwargs") or {})
    return LMRequest(
        url=url,
        dialog_context=dialog_context(dialog, settings.n_utterances_context),
        prompt=prompt,
        config=config,
        timeout=timeout,
        sending_variables=compose_sending_variables(envvars, attributes, environ, kwargs),
    )
