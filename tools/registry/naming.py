"""What names must look like: any component's /respond URL and service config folder, and `LLMNames`, every name
of an LLM component, derived from its short name."""

from __future__ import annotations

import re
from dataclasses import dataclass

SERVICE_DIR = "services/transformers_lm"  # the one service every LLM container is built from
DOCKERFILE = f"{SERVICE_DIR}/Dockerfile"
GEN_CONFIGS = "common/generative_configs"
# An LLM container's settings that the image has no build arg for: set in its compose `environment`, and in its
# environment.yml next to the build args. A PEFT adapter, and the engine server it fronts (ENGINE=openai).
ADAPTER = "ADAPTER_NAME_OR_PATH"
ENGINE, ENGINE_URL, ENGINE_MODEL = "ENGINE", "ENGINE_URL", "ENGINE_MODEL"
RUN_ENV = (ADAPTER, ENGINE, ENGINE_URL, ENGINE_MODEL)
# The build arg choosing what the image installs (the Dockerfile's): a front in front of an engine is built
# without torch; on CPU (cpu.yml), where it runs the model itself, with everything.
REQUIREMENTS, FRONT_REQUIREMENTS, FULL_REQUIREMENTS = "REQUIREMENTS", "requirements-front.txt", "requirements.txt"
# The engine container `add-model --engine vllm` writes: vLLM's official OpenAI server image, pinned.
VLLM_IMAGE = "vllm/vllm-openai:v0.32.0"
ENGINE_OFF = "engine-off"  # the compose profile no launch command names: cpu.yml and proxy.yml switch engines off
SHORT = re.compile(r"[a-z][a-z0-9]{0,39}")
_CONTAINER_PREFIX = "transformers-lm-"
_ENGINE_PREFIX = "vllm-"
_SERVICE_PREFIX = "transformers_lm_"


def respond_url(host: str, port: int | str | None) -> str:
    """The URL Dream posts a component's dialogs to."""
    return f"http://{host}:{port}/respond"


def service_config_dir(service_dir: str, container: str) -> str:
    """The folder of a container's environment.yml and service.yml."""
    return f"{service_dir}/service_configs/{container}"


def is_llm_container(name: str) -> bool:
    return name.startswith(_CONTAINER_PREFIX)


def is_model_container(name: str) -> bool:
    """An LLM container or the engine container behind one: new ones are written after the last of these."""
    return name.startswith((_CONTAINER_PREFIX, _ENGINE_PREFIX))


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

    @property
    def engine(self) -> str:
        """The vLLM container behind the LLM container (add-model --engine vllm)."""
        return f"{_ENGINE_PREFIX}{self.short}"

    def engine_url(self, port: int) -> str:
        """The front's ENGINE_URL: the engine's OpenAI API base."""
        return f"http://{self.engine}:{port}/v1"

    def host(self, port: int) -> str:
        """`container:port`, as WAIT_HOSTS lists it."""
        return f"{self.container}:{port}"

    def url(self, port: int) -> str:
        return respond_url(self.container, port)


PLACEHOLDER = LLMNames("<short>")  # the names as help texts and messages spell them
