"""Turning one Dream dialog into the request the skill sends to an LLM service."""
import os
from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Tuple

from common.forwarded_variables import compose_sending_variables, envvars_for

from .context import dialog_context, last_human_attributes, prompt_of
from .settings import Settings

# A caller's timeout beyond this is a mistake, and an infinite one would hold a thread forever.
MAX_TIMEOUT_S = 3600.0


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
        envvars = envvars_for(settings.envvars_to_send, url)
    except ValueError:  # the URL itself stays out of the message: it may carry credentials
        raise ValueError("lm_service_url is not a valid URL") from None
    kwargs = attributes.get("lm_service_kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise ValueError("lm_service_kwargs must be an object")
    return LMRequest(
        url=url,
        dialog_context=dialog_context(dialog, settings.n_utterances_context),
        prompt=prompt,
        config=config,
        timeout=timeout,
        sending_variables=compose_sending_variables(envvars, attributes, environ, kwargs),
    )
