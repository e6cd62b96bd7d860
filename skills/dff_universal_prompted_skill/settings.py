"""The skill's environment, read and checked once at start-up, gunicorn's included."""
import os
from dataclasses import dataclass
from typing import Mapping

from common.forwarded_variables import load_envvars_to_send
from common.generative_config_files import load_generative_config
from common.settings import load, non_negative, one_of, positive, setting


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
    sentry_dsn: str = setting("SENTRY_DSN", doc="enables Sentry", secret=True)
    # gunicorn's, read by gunicorn.conf.py; compose's -b wins over the bind they make.
    host: str = setting("SERVICE_HOST", default="0.0.0.0", doc="address gunicorn listens on")
    port: int = setting("SERVICE_PORT", non_negative(int), 8147, "port gunicorn listens on")
    log_level: str = setting("LOG_LEVEL", one_of("debug", "info", "warning", "error", "critical"), "info",
                             "gunicorn's and the app's log level")

    @classmethod
    def from_env(cls, environ: Mapping = os.environ) -> "Settings":
        return load(cls, environ)
