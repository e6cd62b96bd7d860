"""The skill's environment, read and checked once at start-up, gunicorn's included."""
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Mapping

from common.forwarded_variables import load_envvars_to_send
from common.llm_endpoints import Endpoints, url_key
from common.generative_config_files import load_generative_config
from common.settings import load, non_negative, one_of, positive, setting


def _urls(text: str) -> tuple:
    urls = tuple(url.strip() for url in text.split(",") if url.strip())
    for url in urls:
        url_key(url)  # a ValueError here names the variable
    return urls


@dataclass(frozen=True)
class Settings:
    service_name: str = setting("SERVICE_NAME", default="dff_universal_prompted_skill", doc="name in logs and /health")
    generative_timeout: float = setting("GENERATIVE_TIMEOUT", positive(float), 120.0,
                                        "seconds an LLM may take unless the caller's config says otherwise")
    n_utterances_context: int = setting("N_UTTERANCES_CONTEXT", positive(int), 7, "utterances sent as context")
    default_lm_service_url: str = setting("DEFAULT_LM_SERVICE_URL", str, "http://transformers-lm-smollm2:8186/respond",
                                          "the LLM used when the caller names none")
    default_lm_service_config: dict = setting("DEFAULT_LM_SERVICE_CONFIG", load_generative_config,
                                              "default_generative_config.json",
                                              "generation config, a file in common/generative_configs/")
    # A relative path is taken from the working directory, the repo root (/src in the image).
    envvars_to_send: dict = setting("ENVVARS_TO_SEND_FILE", load_envvars_to_send, "common/envvars_to_send.json",
                                    "the variables forwarded to each LLM URL")
    allowed_lm_service_urls: tuple = setting("ALLOWED_LM_SERVICE_URLS", _urls, (),
                                             "comma-separated LLM URLs callers may name beside the default and "
                                             "the ENVVARS_TO_SEND file's")
    max_concurrent_requests: int = setting("MAX_CONCURRENT_REQUESTS", positive(int), 64,
                                           "agent requests a worker answers at once; past it, empty replies at once")
    sentry_dsn: str = setting("SENTRY_DSN", doc="enables Sentry", secret=True)
    # gunicorn's, read by gunicorn.conf.py; compose's -b wins over the bind they make.
    host: str = setting("SERVICE_HOST", default="0.0.0.0", doc="address gunicorn listens on")
    port: int = setting("SERVICE_PORT", non_negative(int), 8147, "port gunicorn listens on")
    log_level: str = setting("LOG_LEVEL", one_of("debug", "info", "warning", "error", "critical"), "info",
                             "gunicorn's and the app's log level")

    @cached_property
    def endpoints(self) -> Endpoints:
        """The LLMs a caller's `lm_service_url` may name: the distribution's, and no other."""
        return Endpoints([self.default_lm_service_url, *self.envvars_to_send, *self.allowed_lm_service_urls])

    @classmethod
    def from_env(cls, environ: Mapping = os.environ) -> "Settings":
        return load(cls, environ)
