"""Text of the new entries and files, written in exactly the style of the existing ones."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import PurePosixPath

import yaml

from tools.registry.naming import (ADAPTER, DOCKERFILE, ENGINE, ENGINE_MODEL, ENGINE_OFF, ENGINE_URL,
                                   FULL_REQUIREMENTS, REQUIREMENTS, SERVICE_DIR, VLLM_IMAGE)

LLM_DOCKERFILE = f"./{DOCKERFILE}"  # compose files spell build paths from the context
GUNICORN = f"gunicorn -c {SERVICE_DIR}/gunicorn.conf.py -b 0.0.0.0:{{port}}"
EMBEDDED = ("SmolLM2-135M-Instruct", "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct")
# Several nodes: the engine container is the Ray head and vLLM's API server (workers: MODELS.md). Host networking,
# as Ray's nodes must reach each other's addresses; `$$` is compose's escaped `$`.
RAY_HEAD = ["/bin/sh", "-c", 'ray start --head --port=6379 && exec vllm serve "$$@"', "vllm"]
_HF_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def scalar(value) -> str:
    """A YAML scalar: plain when it reads back as the same string, else double-quoted (JSON is valid YAML)."""
    if not isinstance(value, str):
        return str(value)
    if value and "\n" not in value and " #" not in value and ": " not in value and value == value.strip():
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value)


def is_hf_id(model: str) -> bool:
    return bool(_HF_ID.match(model)) and not model.startswith((".", "/", "~"))


def model_link(model: str) -> tuple[str, str | None]:
    """(display name, hub URL or None) of a model reference."""
    if not model:
        return EMBEDDED
    name = PurePosixPath(model.rstrip("/")).name
    return (name, f"https://huggingface.co/{model}") if is_hf_id(model) else (name, None)


def build_args(spec) -> str:
    """The build args block (also environment.yml), one `KEY: value` per line, no indent."""
    return "".join(f"{key}: {scalar(value) if key == 'PRETRAINED_MODEL_NAME_OR_PATH' else value}\n"
                   for key, value in spec.build_args().items())


def run_env(spec) -> str:
    """The compose `environment` lines besides CUDA_VISIBLE_DEVICES (also in environment.yml): the adapter, or the
    engine the container fronts (it then loads only the model's tokenizer)."""
    if spec.vllm:
        return f"{ENGINE}: openai\n{ENGINE_URL}: {spec.engine_url}\n{ENGINE_MODEL}: {spec.short}\n"
    return f"{ADAPTER}: {scalar(spec.adapter)}\n" if spec.adapter else ""


def _indent(text: str, n: int) -> str:
    return "".join(" " * n + line if line.strip() else line for line in text.splitlines(True))


def override_entry(spec) -> str:
    """`docker-compose.override.yml` container, at indent 0."""
    return (f"{spec.names.container}:\n"
            "  env_file:\n    - .env\n"
            "  build:\n    args:\n" + _indent(build_args(spec), 6) +
            f"    context: .\n    dockerfile: {LLM_DOCKERFILE}\n"
            f"  command: {GUNICORN.format(port=spec.port)}\n"
            f"  environment:\n    CUDA_VISIBLE_DEVICES: {json.dumps(spec.cuda_visible_devices)}\n" +
            _indent(run_env(spec), 4) +
            # With several nodes the engine is on the host's network: its name is the host seen from here.
            (f"  extra_hosts:\n    - {spec.names.engine}:host-gateway\n" if spec.multi_node else "") +
            _deploy(spec))


def _deploy(spec, gpus: int = 0) -> str:
    devices = ("        devices:\n          - driver: nvidia\n"
               f"            count: {gpus}\n            capabilities: [gpu]\n") if gpus else ""
    return ("  deploy:\n    resources:\n"
            f"      limits:\n        memory: {spec.memory}\n"
            f"      reservations:\n        memory: {spec.memory}\n" + devices)


def vllm_command(spec) -> str:
    """vLLM's OpenAI server arguments: the model, its name for ENGINE_MODEL, the port and the parallelism."""
    args = ["--model", spec.model, "--served-model-name", spec.short, "--port", str(spec.engine_port),
            "--tensor-parallel-size", str(spec.tensor_parallel_size),
            "--pipeline-parallel-size", str(spec.pipeline_parallel_size), "--max-model-len", str(spec.max_model_len)]
    return shlex.join(args + (["--distributed-executor-backend", "ray"] if spec.multi_node else []))


def engine_override_entry(spec) -> str:
    """The vLLM container in `docker-compose.override.yml`: the image's entrypoint is vLLM's server."""
    entrypoint = "".join(f"    - {scalar(arg)}\n" for arg in RAY_HEAD) if spec.multi_node else ""
    return (f"{spec.names.engine}:\n"
            f"  image: {VLLM_IMAGE}\n" +
            (f"  entrypoint:\n{entrypoint}" if entrypoint else "") +
            f"  command: {scalar(vllm_command(spec))}\n"
            "  env_file:\n    - .env\n"
            # vLLM reads the hub token as HF_TOKEN (gated models).
            "  environment:\n    HF_TOKEN: ${HF_ACCESS_TOKEN:-}\n"
            # PyTorch's workers share tensors through /dev/shm (tensor parallelism).
            "  ipc: host\n" +
            ("  network_mode: host\n" if spec.multi_node else "") +
            _deploy(spec, spec.gpus_per_node))


def dev_entry(spec) -> str:
    return (f"{spec.names.container}:\n  volumes:\n"
            f"    - ./{SERVICE_DIR}:/src/{SERVICE_DIR}\n"
            "    - ./common:/src/common\n"
            "    - ~/.deeppavlov/cache:/root/.cache\n"
            f"  ports:\n    - {spec.port}:{spec.port}\n")


def engine_dev_entry(spec) -> str:
    return (f"{spec.names.engine}:\n  volumes:\n    - ~/.deeppavlov/cache:/root/.cache\n"
            f"  ports:\n    - {spec.engine_port}:{spec.engine_port}\n")


def cpu_entry(spec) -> str:
    """On CPU a front runs the model itself (its engine, GPU-only here, is off), so its image needs torch."""
    engine = f"    {ENGINE}: transformers\n" if spec.vllm else ""
    full = f"  build:\n    args:\n      {REQUIREMENTS}: {FULL_REQUIREMENTS}\n" if spec.vllm else ""
    return (f'{spec.names.container}:\n{full}  environment:\n    CUDA_VISIBLE_DEVICES: ""\n    HALF_PRECISION: 0\n'
            + engine)


def engine_off_entry(spec) -> str:
    """An overlay's entry that keeps the engine from starting (cpu.yml, and proxy.yml when its front is proxied)."""
    return f"{spec.names.engine}:\n  profiles:\n    - {ENGINE_OFF}\n"


def proxy_entry(spec) -> str:
    return (f"{spec.names.container}:\n"
            "  command:\n    - nginx\n    - -g\n    - daemon off;\n"
            "  build:\n    context: ./proxy\n    dockerfile: Dockerfile\n"
            f"  environment:\n    PORT: {spec.port}\n    PROXY_PASS: {scalar(spec.proxy_pass)}\n"
            "  deploy:\n    resources:\n"
            "      limits:\n        memory: 100M\n"
            "      reservations:\n        memory: 100M\n")


def _body(entry: str) -> str:
    """An entry's mapping without its `name:` line."""
    return entry.split("\n", 1)[1]


def service_yml(spec) -> str:
    compose = _body(override_entry(spec)) + _body(dev_entry(spec))
    proxy = "proxy:\n" + _body(proxy_entry(spec)) if spec.proxy_hosts else "proxy: null\n"
    return (f"name: {spec.names.container}\n"
            "endpoints:\n  - respond\n  - generate_goals\n  - ping\n"
            "compose:\n" + compose + proxy)


def card(spec, date_created: str) -> str:
    name, url = model_link(spec.model)
    description = " ".join(spec.description.split())
    if url:
        description += f" Details: [model page]({url})."
    if spec.adapter:
        adapter_name, adapter_url = model_link(spec.adapter)
        name += f" + {adapter_name}"
        description += f" PEFT adapter: {spec.adapter}" + (f" ([adapter page]({adapter_url}))." if adapter_url else ".")
    return (f"name: {spec.names.service_name}\n"
            f"display_name: {scalar(spec.display_name or name)}\n"
            "component_type: Generative\nmodel_type: NN-based\nis_customizable: false\n"
            f"author: {scalar(spec.author)}\n"
            f"description: >-\n  {description}\n"
            f"ram_usage: {spec.memory}\n"
            f"gpu_usage: {spec.gpu_memory or 'null'}\n"
            "group: services\n"
            f"connector:\n  protocol: http\n  timeout: 120.0\n  url: {spec.url}\n"
            "dialog_formatter: null\nresponse_formatter: null\nprevious_services: null\n"
            "required_previous_services: null\nstate_manager_method: null\ntags: null\n"
            "endpoint: respond\n"
            f"service: {spec.names.service_config_dir}\n"
            f"date_created: '{date_created}'\n" + (engine_card(spec) if spec.vllm else ""))


def engine_card(spec) -> str:
    """The card's `engine`: what its engine container runs (checked against it: tools/registry/checks.py)."""
    return (f"engine:\n  container: {spec.names.engine}\n  image: {VLLM_IMAGE}\n"
            f"  served_model_name: {spec.short}\n  tensor_parallel_size: {spec.tensor_parallel_size}\n"
            f"  pipeline_parallel_size: {spec.pipeline_parallel_size}\n  max_model_len: {spec.max_model_len}\n"
            f"  nodes: {spec.nodes}\n")


def models_md_row(spec) -> str:
    name, url = model_link(spec.model)
    cell = f"[{name}]({url})" if url else f"`{name}`"
    if not spec.model:
        cell += " (embedded)"
    if spec.adapter:
        adapter_name, adapter_url = model_link(spec.adapter)
        cell += f" + adapter [{adapter_name}]({adapter_url})" if adapter_url else f" + adapter `{adapter_name}`"
    description = " ".join(spec.description.split())
    if spec.vllm:
        description += (f" Served by vLLM ({spec.names.engine}: tensor parallel {spec.tensor_parallel_size}, "
                        f"pipeline parallel {spec.pipeline_parallel_size}, {spec.nodes} node(s)).")
    cells = [cell, spec.names.container, spec.open_source, spec.size, spec.gpu_memory or "none (CPU)",
             str(spec.max_tokens), spec.license, description]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |\n"
