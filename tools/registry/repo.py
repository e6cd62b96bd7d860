"""How the repository is read: `Repo`, a parsed view of the compose files, components.tsv, cards, service configs,
envvars_to_send.json, pipelines and MODELS.md, plus the compose value helpers the checks share."""

from __future__ import annotations

import json
import re
import shlex
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from .lines import Problem, locate
from .naming import DOCKERFILE, ENGINE_URL, RUN_ENV, respond_url, service_config_dir

ROOT_COMPOSE = "docker-compose.yml"
TSV = "components.tsv"
MODELS_MD = "MODELS.md"
ENVVARS = "common/envvars_to_send.json"
DIST_FILES = ("docker-compose.override.yml", "dev.yml", "cpu.yml", "proxy.yml")
WAIT_HOSTS_AT = ("services", "agent", "environment", "WAIT_HOSTS")  # key path of the agent's WAIT_HOSTS in an override


def norm_values(mapping: dict | None) -> dict:
    """Compose-style values: 1, "1" and 1.0 are the same build arg / env value."""
    return {str(k): "" if v is None else str(v) for k, v in (mapping or {}).items()}


def environment(spec: dict) -> dict:
    env = spec.get("environment") or {}
    if isinstance(env, list):  # compose also allows ["KEY=value", ...]
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return norm_values(env)


def build_args(spec: dict) -> dict:
    return norm_values((spec.get("build") or {}).get("args"))


def run_env(spec: dict) -> dict:
    """The `RUN_ENV` settings (adapter, engine) the container's environment sets, in `RUN_ENV` order."""
    env = environment(spec)
    return {key: env[key] for key in RUN_ENV if key in env}


def command_flags(spec: dict) -> dict[str, str]:
    """`--flag value` / `--flag=value` pairs of the container's command ("" for a flag without a value)."""
    command = spec.get("command") or []
    args = shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]
    flags = {}
    for i, arg in enumerate(args):
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            has_value = not eq and i + 1 < len(args) and not args[i + 1].startswith("--")
            flags[name] = value if eq else args[i + 1] if has_value else ""
    return flags


def gpu_count(spec: dict) -> int:
    """GPUs the container reserves (`deploy.resources.reservations.devices`)."""
    reservations = ((spec.get("deploy") or {}).get("resources") or {}).get("reservations") or {}
    counts = [str(device.get("count", 0)) for device in reservations.get("devices") or []
              if "gpu" in (device.get("capabilities") or [])]
    return sum(int(count) for count in counts if count.isdigit())  # `count: all` is no number to compare


def build_args_at(name: str) -> tuple[str, ...]:
    """Key path of a container's build args in a compose file."""
    return "services", name, "build", "args"


def host_port(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url if "//" in url else f"//{url}")
    try:
        return parts.hostname or "", parts.port
    except ValueError:  # a port that is no number
        return parts.hostname or "", None


def proxy_passes(value: str) -> list[str]:
    """The `host:port` upstreams of a proxy's PROXY_PASS: comma- or space-separated (proxy/README.md)."""
    return [item for item in re.split(r"[,\s]+", value) if item]


class Repo:
    """Parsed view of the files the checks read (each parsed once)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._texts: dict[str, str] = {}

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def text(self, rel: str) -> str:
        """The file's text ("" where it does not exist)."""
        if rel not in self._texts:
            path = self.root / rel
            self._texts[rel] = path.read_text() if path.is_file() else ""
        return self._texts[rel]

    def line(self, rel: str, *needles: str) -> int:
        """Line of `needles` (a key path, see `locate`) in the file `rel`."""
        return locate(self.text(rel), *needles)

    def problem(self, rel: str, message: str, *needles: str) -> Problem:
        return Problem(rel, message, self.line(rel, *needles))

    def read_yaml(self, rel: str) -> dict:
        return yaml.safe_load(self.text(rel)) or {}

    @cached_property
    def dists(self) -> list[str]:
        return sorted(p.parent.name for p in (self.root / "assistant_dists").glob("*/docker-compose.override.yml"))

    def dist_file(self, dist: str, name: str) -> str:
        return f"assistant_dists/{dist}/{name}"

    def services(self, rel: str) -> dict:
        return self.read_yaml(rel).get("services") or {}

    @cached_property
    def root_services(self) -> dict:
        return self.services(ROOT_COMPOSE)

    def components(self, dist: str) -> dict[str, dict]:
        """Containers a dist adds (everything in its override but the agent)."""
        return {k: v for k, v in self.services(self.dist_file(dist, DIST_FILES[0])).items() if k != "agent"}

    def wait_hosts(self, dist: str) -> list[str]:
        """The agent's WAIT_HOSTS items (`container:port`) in the dist's override."""
        agent = self.services(self.dist_file(dist, DIST_FILES[0])).get("agent") or {}
        return [h.strip() for h in (environment(agent).get("WAIT_HOSTS") or "").split(",") if h.strip()]

    @cached_property
    def all_components(self) -> dict[str, list[tuple[str, dict]]]:
        """container -> [(dist, spec), ...] over all dists."""
        out: dict[str, list[tuple[str, dict]]] = {}
        for dist in self.dists:
            for name, spec in self.components(dist).items():
                out.setdefault(name, []).append((dist, spec))
        return out

    @staticmethod
    def is_llm(spec: dict) -> bool:
        return (spec.get("build") or {}).get("dockerfile", "").lstrip("./") == DOCKERFILE

    @staticmethod
    def is_engine(spec: dict) -> bool:
        """An engine server run from its own image (vLLM), not built from this repo: a front's ENGINE_URL names it;
        it has no card or service config of its own (the front's card carries its settings)."""
        return bool(spec.get("image")) and not spec.get("build")

    def engines(self, dist: str) -> dict[str, dict]:
        return {name: spec for name, spec in self.components(dist).items() if self.is_engine(spec)}

    def fronts(self, dist: str) -> dict[str, str]:
        """LLM container -> the engine container of this dist its ENGINE_URL names (in the dist's override)."""
        engines = self.engines(dist)
        hosts = {name: host_port(environment(spec).get(ENGINE_URL, ""))[0]
                 for name, spec in self.components(dist).items() if self.is_llm(spec)}
        return {name: host for name, host in hosts.items() if host in engines}

    @staticmethod
    def service_dir(spec: dict) -> str:
        return str(Path((spec.get("build") or {}).get("dockerfile", "").lstrip("./")).parent.as_posix())

    def service_config_dir(self, name: str) -> str:
        """The service config folder a container of the dists should have."""
        return service_config_dir(self.service_dir(self.all_components[name][0][1]), name)

    @cached_property
    def llm_urls(self) -> dict[str, str]:
        """container -> its /respond URL, for every LLM container of every dist."""
        return {name: respond_url(name, build_args(specs[0][1]).get("SERVICE_PORT"))
                for name, specs in self.all_components.items() if self.is_llm(specs[0][1])}

    @cached_property
    def tsv_rows(self) -> list[tuple[int, str, list[str]]]:
        """(line number, raw port text, names) per non-empty line."""
        path = self.root / TSV
        rows = []
        for n, line in enumerate(path.read_text().splitlines() if path.exists() else [], 1):
            if line.strip():
                port, _, names = line.partition("\t")
                rows.append((n, port, [x for x in names.split(",") if x]))
        return rows

    @cached_property
    def tsv_ports(self) -> dict[str, int]:
        return {name: int(port) for _, port, names in self.tsv_rows if port.isdigit() for name in names}

    @cached_property
    def cards(self) -> dict[str, dict]:
        paths = sorted((self.root / "components").glob("*.yml"))
        return {self.rel(p): self.read_yaml(self.rel(p)) for p in paths}

    @cached_property
    def envvars(self) -> dict:
        return json.loads(self.text(ENVVARS) or "{}")

    def pipeline_http_services(self, dist: str):
        """(service, key path under `services`) for each HTTP service of the dist's pipeline_conf.json."""
        conf = json.loads(self.text(self.dist_file(dist, "pipeline_conf.json")) or "{}")

        def walk(node, keys):
            if isinstance(node, dict) and isinstance(node.get("connector"), dict):
                if node["connector"].get("protocol") == "http":
                    yield node, keys
            elif isinstance(node, dict):
                for key, child in node.items():
                    yield from walk(child, (*keys, key))

        yield from walk(conf.get("services") or {}, ())

    @cached_property
    def models_md_rows(self) -> tuple[int, dict[str, list[int]]]:
        """(line of the table header, container -> the lines of its rows) of MODELS.md's table."""
        rows, col, header = {}, None, 1
        for n, line in enumerate(self.text(MODELS_MD).splitlines(), 1):
            cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else []
            if col is None and any("container" in c.lower() for c in cells):
                col, header = next(i for i, c in enumerate(cells) if "container" in c.lower()), n
            elif col is not None and len(cells) > col and not set(cells[col]) <= set("-: "):
                rows.setdefault(cells[col].strip("`"), []).append(n)
        return header, rows
