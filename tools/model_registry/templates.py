"""Text of the new entries and files, written in exactly the style of the existing ones."""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath

import yaml

from tools.registry.naming import ADAPTER, DOCKERFILE, SERVICE_DIR

LLM_DOCKERFILE = f"./{DOCKERFILE}"  # compose files spell build paths from the context
GUNICORN = f"gunicorn -c {SERVICE_DIR}/gunicorn.conf.py -b 0.0.0.0:{{port}}"
EMBEDDED = ("SmolLM2-135M-Instruct", "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct")
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
    """The compose `environment` lines besides CUDA_VISIBLE_DEVICES (also in environment.yml): the adapter."""
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
            "  deploy:\n    resources:\n"
            f"      limits:\n        memory: {spec.memory}\n"
            f"      reservations:\n        memory: {spec.memory}\n")


def dev_entry(spec) -> str:
    return (f"{spec.names.container}:\n  volumes:\n"
            f"    - ./{SERVICE_DIR}:/src/{SERVICE_DIR}\n"
            "    - ./common:/src/common\n"
            "    - ~/.deeppavlov/cache:/root/.cache\n"
            f"  ports:\n    - {spec.port}:{spec.port}\n")


def cpu_entry(spec) -> str:
    return f'{spec.names.container}:\n  environment:\n    CUDA_VISIBLE_DEVICES: ""\n    HALF_PRECISION: 0\n'


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
    proxy = "proxy:\n" + _body(proxy_entry(spec)) if spec.proxy_host else "proxy: null\n"
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
            f"date_created: '{date_created}'\n")


def models_md_row(spec) -> str:
    name, url = model_link(spec.model)
    cell = f"[{name}]({url})" if url else f"`{name}`"
    if not spec.model:
        cell += " (embedded)"
    if spec.adapter:
        adapter_name, adapter_url = model_link(spec.adapter)
        cell += f" + adapter [{adapter_name}]({adapter_url})" if adapter_url else f" + adapter `{adapter_name}`"
    cells = [cell, spec.names.container, spec.open_source, spec.size, spec.gpu_memory or "none (CPU)",
             str(spec.max_tokens), spec.license, " ".join(spec.description.split())]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |\n"
