"""What names must look like: any component's /respond URL and service config folder, and `LLMNames`, every name
of an LLM component, derived from its short name."""

from __future__ import annotations

import re
from dataclasses import dataclass

SERVICE_DIR = "services/transformers_lm"  # the one service every LLM container is built from
DOCKERFILE = f"{SERVICE_DIR}/Dockerfile"
GEN_CONFIGS = "common/generative_configs"
# An LLM container's PEFT adapter: set in its compose `environment` (the image has no build arg for it), and in
# its environment.yml next to the build args.
ADAPTER = "ADAPTER_NAME_OR_PATH"
SHORT = re.compile(r"[a-z][a-z0-9]{0,39}")
_CONTAINER_PREFIX = "transformers-lm-"
_SERVICE_PREFIX = "transformers_lm_"


def respond_url(host: str, port: int | str | None) -> str:
    """The URL Dream posts a component's dialogs to."""
    return f"http://{host}:{port}/respond"


def service_config_dir(service_dir: str, container: str) -> str:
    """The folder of a container's environment.yml and service.yml."""
    return f"{service_dir}/service_configs/{container}"


def is_llm_container(name: str) -> bool:
    return name.startswith(_CONTAINER_PREFIX)


@dataclass(frozen=True)
class LLMNames:
    """Every name of the LLM component `short` (lowercase letters and digits, see `valid`)."""

    short: str

    @classmethod
    def of(cls, container: str) -> LLMNames:
        return cls(container.removeprefix(_CONTAINER_PREFIX))

    @property
    def valid(self) -> bool:
        return bool(SHORT.fullmatch(self.short or ""))  # fullmatch: "$" would let a final newline through

    @property
    def container(self) -> str:
        return f"{_CONTAINER_PREFIX}{self.short}"

    @property
    def service_name(self) -> str:
        """SERVICE_NAME build arg and card name."""
        return f"{_SERVICE_PREFIX}{self.short}"

    @property
    def gen_config(self) -> str:
        """GENERATIVE_CONFIG build arg: a file name in GEN_CONFIGS."""
        return f"{self.service_name}.json"

    @property
    def gen_config_path(self) -> str:
        return f"{GEN_CONFIGS}/{self.gen_config}"

    @property
    def service_config_dir(self) -> str:
        return service_config_dir(SERVICE_DIR, self.container)

    def host(self, port: int) -> str:
        """`container:port`, as WAIT_HOSTS lists it."""
        return f"{self.container}:{port}"

    def url(self, port: int) -> str:
        return respond_url(self.container, port)


PLACEHOLDER = LLMNames("<short>")  # the names as help texts and messages spell them
