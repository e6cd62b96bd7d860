"""Consistency checks for the Dream wiring: compose files, registries, cards and configs.

Everything is derived from the files themselves; `components.tsv` is the one port registry.
Each `check_*` function takes the repository root and returns a list of `Problem`s (empty = consistent),
so a CLI can print them as `file:line: message`; only a problem about a missing file or a folder has no line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

import yaml

ROOT_COMPOSE = "docker-compose.yml"
TSV = "components.tsv"
MODELS_MD = "MODELS.md"
ENVVARS = "common/envvars_to_send.json"
GEN_CONFIGS = "common/generative_configs"
LLM_DOCKERFILE = "services/transformers_lm/Dockerfile"
DIST_FILES = ("docker-compose.override.yml", "dev.yml", "cpu.yml", "proxy.yml")
CARD_KEYS = (
    "name", "display_name", "component_type", "model_type", "is_customizable", "author", "description",
    "ram_usage", "gpu_usage", "group", "connector", "dialog_formatter", "response_formatter", "previous_services",
    "required_previous_services", "state_manager_method", "tags", "endpoint", "service", "date_created",
)
EXTRA_GEN_KEYS = {"replacement"}  # ours, applied to the prompt; not a transformers argument
_BIND = re.compile(r"-b\s+[\w.]+:(\d+)")
_INDENT = re.compile(r"\s*")
_WAIT_HOSTS = ("services", "agent", "environment", "WAIT_HOSTS")  # key path of the agent's WAIT_HOSTS in an override


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}" if self.line else f"{self.path}: {self.message}"


def _norm(mapping: dict | None) -> dict:
    """Compose-style values: 1, "1" and 1.0 are the same build arg / env value."""
    return {str(k): "" if v is None else str(v) for k, v in (mapping or {}).items()}


def _env(spec: dict) -> dict:
    env = spec.get("environment") or {}
    if isinstance(env, list):  # compose also allows ["KEY=value", ...]
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return _norm(env)


def _line(text: str, *needles: str) -> int:
    """1-based line of the last of `needles`, each looked up in the block of the one before (the lines below it
    indented deeper). A needle is a YAML/JSON key (`name:`, `"name":`, `- NAME=value`) or a whole item or scalar
    line (`- 8130:8130`, `mongo:27017,`). Where one is not found: the line of its parent, else 1."""
    lines = text.splitlines()
    found, lo, hi = 1, 0, len(lines)
    for needle in needles:
        key = re.compile(rf"""\s*(?:-\s+)?["']?{re.escape(needle)}(?:["',=]|:\s|:$|$)""")
        i = next((i for i in range(lo, hi) if key.match(lines[i])), None)
        if i is None:
            break
        found = lo = i + 1
        depth = _INDENT.match(lines[i]).end()
        hi = next((j for j in range(lo, hi) if lines[j].strip() and not lines[j].lstrip().startswith("#")
                   and _INDENT.match(lines[j]).end() <= depth), hi)
    return found


def _diff(a, b) -> list[str]:
    """Key path to the first difference of two parsed values ([] where they differ as a whole)."""
    if isinstance(a, dict) and isinstance(b, dict):
        key = next((k for k in [*a, *b] if a.get(k) != b.get(k)), None)
        return [] if key is None else [str(key), *_diff(a.get(key), b.get(key))]
    return []


def _args(name: str) -> tuple[str, ...]:
    """Key path of a container's build args in a compose file."""
    return "services", name, "build", "args"


def _host_port(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url if "//" in url else f"//{url}")
    return parts.hostname or "", parts.port


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
        """Line of `needles` (a key path, see `_line`) in the file `rel`."""
        return _line(self.text(rel), *needles)

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
        return [h.strip() for h in (_env(agent).get("WAIT_HOSTS") or "").split(",") if h.strip()]

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
        return (spec.get("build") or {}).get("dockerfile", "").lstrip("./") == LLM_DOCKERFILE

    @staticmethod
    def service_dir(spec: dict) -> str:
        return str(Path((spec.get("build") or {}).get("dockerfile", "").lstrip("./")).parent.as_posix())

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


def _llm_urls(repo: Repo) -> dict[str, str]:
    """container -> its /respond URL, for every LLM container of every dist."""
    return {name: f"http://{name}:{(specs[0][1].get('build') or {}).get('args', {}).get('SERVICE_PORT')}/respond"
            for name, specs in repo.all_components.items() if repo.is_llm(specs[0][1])}


def port_uses(repo: Repo) -> list[tuple[str, int, str, int | None, str]]:
    """Every place a container's port is written: (file, line, container, port, what)."""
    uses = []

    def use(path, name, port, what, *needles):
        uses.append((path, repo.line(path, *needles), name, port, what))

    def published(path):
        for name, spec in repo.services(path).items():
            for mapping in spec.get("ports") or []:
                host, _, cont = str(mapping).rpartition(":")
                use(path, name, int(host or cont), "published port", "services", name, "ports", str(mapping))
                use(path, name, int(cont), "port", "services", name, "ports", str(mapping))

    published(ROOT_COMPOSE)
    for dist in repo.dists:
        override = repo.dist_file(dist, DIST_FILES[0])
        for host in repo.wait_hosts(dist):
            c, _, p = host.partition(":")
            use(override, c, int(p) if p.isdigit() else None, "WAIT_HOSTS", *_WAIT_HOSTS, host)
        for name, spec in repo.components(dist).items():
            args = _norm((spec.get("build") or {}).get("args"))
            if "SERVICE_PORT" in args:
                use(override, name, int(args["SERVICE_PORT"]), "build arg SERVICE_PORT", *_args(name), "SERVICE_PORT")
                if (url := args.get("DEFAULT_LM_SERVICE_URL")):
                    use(override, *_host_port(url), "DEFAULT_LM_SERVICE_URL", *_args(name), "DEFAULT_LM_SERVICE_URL")
            m = _BIND.search(str(spec.get("command", "")))
            use(override, name, int(m.group(1)) if m else None, "command bind port", "services", name, "command")
        published(repo.dist_file(dist, "dev.yml"))
        proxy = repo.dist_file(dist, "proxy.yml")
        for name, spec in repo.services(proxy).items():
            env, at = _env(spec), ("services", name, "environment")
            use(proxy, name, int(env["PORT"]) if env.get("PORT", "").isdigit() else None, "PORT", *at, "PORT")
            use(proxy, name, _host_port(env.get("PROXY_PASS", ""))[1], "PROXY_PASS port", *at, "PROXY_PASS")
    for path, card in repo.cards.items():
        use(path, *_host_port((card.get("connector") or {}).get("url", "")), "connector url", "connector", "url")
    for url in repo.envvars:
        use(ENVVARS, *_host_port(url), "key", url)
    for dist in repo.dists:
        for svc, keys in _pipeline_http_services(repo, dist):
            path = repo.dist_file(dist, "pipeline_conf.json")
            use(path, *_host_port(svc["connector"]["url"]), "connector url", "services", *keys, "connector", "url")
    return uses


def _pipeline_http_services(repo: Repo, dist: str):
    """(service, key path under `services`) for each HTTP service of the dist's pipeline_conf.json."""
    conf = json.loads(repo.text(repo.dist_file(dist, "pipeline_conf.json")) or "{}")

    def walk(node, keys):
        if isinstance(node, dict) and isinstance(node.get("connector"), dict):
            if node["connector"].get("protocol") == "http":
                yield node, keys
        elif isinstance(node, dict):
            for key, child in node.items():
                yield from walk(child, (*keys, key))

    yield from walk(conf.get("services") or {}, ())


# --- checks -------------------------------------------------------------------------------------------------------


def check_components_tsv(root) -> list[Problem]:
    repo, problems, seen_port, seen_name = Repo(root), [], {}, {}
    if not (repo.root / TSV).exists():
        return [Problem(TSV, "missing")]
    for n, port, names in repo.tsv_rows:
        if not port.isdigit():
            problems.append(Problem(TSV, f"not '<port>\\t<name>[,<name>...]': {port!r}", n))
            continue
        if port in seen_port:
            problems.append(Problem(TSV, f"port {port} listed twice (also line {seen_port[port]})", n))
        seen_port.setdefault(port, n)
        for name in names:
            if name in seen_name:
                problems.append(Problem(TSV, f"{name} listed twice (also line {seen_name[name]})", n))
            seen_name.setdefault(name, n)
    return problems


def check_ports(root) -> list[Problem]:
    """Each written port equals the container's components.tsv port; each tsv name is a real container."""
    repo, problems = Repo(root), []
    known = set(repo.root_services)
    for dist in repo.dists:
        known |= set(repo.components(dist))
    for path, n, name, port, what in port_uses(repo):
        if name not in repo.tsv_ports:
            problems.append(Problem(path, f"{name}: {what} {port}, but {name} has no row in {TSV}", n))
        elif port != repo.tsv_ports[name]:
            problems.append(Problem(path, f"{name}: {what} is {port}, {TSV} says {repo.tsv_ports[name]}", n))
    for n, _, names in repo.tsv_rows:
        for name in names:
            if name not in known:
                problems.append(Problem(TSV, f"{name} is no container of {ROOT_COMPOSE} or any dist", n))
    return problems


def check_wait_hosts(root) -> list[Problem]:
    """The agent waits for exactly the containers of its dist (root compose included)."""
    repo, problems = Repo(root), []
    for dist in repo.dists:
        override = repo.dist_file(dist, DIST_FILES[0])
        agent = repo.services(override).get("agent") or {}
        listed = {host.partition(":")[0]: host for host in repo.wait_hosts(dist)}
        expected = (set(repo.root_services) | set(repo.components(dist))) - {"agent"}
        for name in sorted(expected - set(listed)):
            problems.append(repo.problem(override, f"WAIT_HOSTS lacks {name}", *_WAIT_HOSTS))
        for name in sorted(set(listed) - expected):
            problems.append(repo.problem(override, f"WAIT_HOSTS lists {name}, which this dist does not run",
                                         *_WAIT_HOSTS, listed[name]))
        if f"assistant_dists/{dist}/pipeline_conf.json" not in str(agent.get("command", "")):
            problems.append(repo.problem(override, "agent command does not run this dist's pipeline_conf.json",
                                         "services", "agent", "command"))
    return problems


def check_dist_overlays(root) -> list[Problem]:
    """dev/cpu/proxy only touch known containers; dev covers all; cpu.yml makes every LLM float32 on CPU."""
    repo, problems = Repo(root), []
    for dist in repo.dists:
        comps = repo.components(dist)
        for overlay in DIST_FILES[1:]:
            path = repo.dist_file(dist, overlay)
            if not (repo.root / path).exists():
                problems.append(Problem(path, "missing"))
                continue
            services = repo.services(path)
            for name in sorted(set(services) - set(comps) - set(repo.root_services)):
                problems.append(repo.problem(path, f"{name} is not a container of this dist", "services", name))
            if overlay == "dev.yml":
                for name in sorted(set(comps) - set(services)):
                    problems.append(repo.problem(path, f"{name} has no volumes/ports", "services"))
            if overlay == "cpu.yml":
                for name, spec in comps.items():
                    env = _env(services.get(name) or {})
                    on_cpu = env.get("CUDA_VISIBLE_DEVICES") == "" and env.get("HALF_PRECISION") == "0"
                    if repo.is_llm(spec) and not on_cpu:
                        key = "HALF_PRECISION" if env.get("CUDA_VISIBLE_DEVICES") == "" else "CUDA_VISIBLE_DEVICES"
                        message = f'{name} needs CUDA_VISIBLE_DEVICES: "" and HALF_PRECISION: 0'
                        problems.append(repo.problem(path, message, "services", name, "environment", key))
            if overlay == "proxy.yml":
                for name, spec in services.items():
                    context = ((spec.get("build") or {}).get("context") or "").strip("./")
                    if context != "proxy":
                        problems.append(repo.problem(path, f"{name} is not built from proxy/",
                                                     "services", name, "build", "context"))
    return problems


def check_same_definition(root) -> list[Problem]:
    """A container used by several dists is one component: same build args and command everywhere."""
    repo, problems = Repo(root), []
    for name, specs in repo.all_components.items():
        (dist0, spec0), *rest = specs
        for dist, spec in rest:
            for key in ("build", "command"):
                if spec.get(key) != spec0.get(key):
                    problems.append(repo.problem(repo.dist_file(dist, DIST_FILES[0]),
                                                 f"{name}: {key} differs from assistant_dists/{dist0}",
                                                 "services", name, key, *_diff(spec.get(key), spec0.get(key))))
    return problems


def check_service_configs(root) -> list[Problem]:
    """service_configs/<container>/{environment,service}.yml mirror the compose definition."""
    repo, problems = Repo(root), []
    proxies = {}
    for dist in repo.dists:
        proxies.update(repo.services(repo.dist_file(dist, "proxy.yml")))
    for name, specs in repo.all_components.items():
        spec = specs[0][1]
        base = f"{repo.service_dir(spec)}/service_configs/{name}"
        args = _norm((spec.get("build") or {}).get("args"))
        env_path, svc_path = f"{base}/environment.yml", f"{base}/service.yml"
        if not (repo.root / env_path).exists() or not (repo.root / svc_path).exists():
            problems.append(Problem(base, f"{name}: environment.yml or service.yml missing"))
            continue
        env = _norm(repo.read_yaml(env_path))
        if env != args:
            diff = sorted(k for k in env.keys() | args.keys() if env.get(k) != args.get(k))
            problems.append(repo.problem(env_path, f"{name}: differs from its build args in {', '.join(diff)}",
                                         *_diff(env, args)))
        svc = repo.read_yaml(svc_path)
        compose = svc.get("compose") or {}
        compose_args = _norm((compose.get("build") or {}).get("args"))
        if svc.get("name") != name:
            problems.append(repo.problem(svc_path, f"name is {svc.get('name')!r}, the container is {name}", "name"))
        if compose_args != args or compose.get("command") != spec.get("command"):
            at = ("build", "args", *_diff(compose_args, args)) if compose_args != args else ("command",)
            problems.append(repo.problem(svc_path, f"{name}: compose build args or command differ from the dist's",
                                         "compose", *at))
        if svc.get("proxy") != proxies.get(name):
            problems.append(repo.problem(svc_path, f"{name}: proxy differs from proxy.yml",
                                         "proxy", *_diff(svc.get("proxy"), proxies.get(name))))
    for path in sorted(repo.root.glob("*/*/service_configs/*/")):
        if path.name not in repo.all_components:
            problems.append(Problem(repo.rel(path), f"{path.name} is no container of any dist"))
    return problems


def check_cards(root) -> list[Problem]:
    """One card per container, exact keys, pointing at its service config."""
    repo, problems, by_service = Repo(root), [], {}
    for path, card in repo.cards.items():
        if set(card) != set(CARD_KEYS):
            extra, missing = sorted(set(card) - set(CARD_KEYS)), sorted(set(CARD_KEYS) - set(card))
            problems.append(repo.problem(path, f"keys differ: missing {missing}, unexpected {extra}", *extra[:1]))
        url = (card.get("connector") or {}).get("url", "")
        service = card.get("service") or ""
        by_service.setdefault(service, []).append(path)
        host, _ = _host_port(url)
        if not service.endswith(f"/service_configs/{host}"):
            problems.append(repo.problem(path, f"service {service!r} is not the service config of {host}", "service"))
        if card.get("endpoint") and not url.endswith(f"/{card['endpoint']}"):
            problems.append(repo.problem(path, f"connector url {url} does not end with endpoint {card['endpoint']}",
                                         "connector", "url"))
    for name, specs in repo.all_components.items():
        service = f"{repo.service_dir(specs[0][1])}/service_configs/{name}"
        cards = by_service.get(service, [])
        message = f"{name}: {len(cards)} cards with service {service}"
        if len(cards) != 1:  # a second card: at its service line; none: no file to point into
            problems.append(repo.problem(cards[1], message, "service") if cards else Problem("components", message))
    return problems


def check_models_md(root) -> list[Problem]:
    """Every LLM container has one MODELS.md row, and every row names a container."""
    repo = Repo(root)
    path = repo.root / MODELS_MD
    if not path.exists():
        return [Problem(MODELS_MD, "missing")]
    rows, col, header = {}, None, 1
    for n, line in enumerate(path.read_text().splitlines(), 1):
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else []
        if col is None and any("container" in c.lower() for c in cells):
            col, header = next(i for i, c in enumerate(cells) if "container" in c.lower()), n
        elif col is not None and len(cells) > col and not set(cells[col]) <= set("-: "):
            rows.setdefault(cells[col].strip("`"), []).append(n)
    llms = set(_llm_urls(repo))
    problems = [Problem(MODELS_MD, f"no row for {name}", header) for name in sorted(llms - set(rows))]
    problems += [Problem(MODELS_MD, f"{name} is no LLM container", ns[0])
                 for name, ns in rows.items() if name not in llms]
    problems += [Problem(MODELS_MD, f"{name} has {len(ns)} rows", ns[1]) for name, ns in rows.items() if len(ns) > 1]
    return problems


def check_envvars_to_send(root) -> list[Problem]:
    """Exactly one entry per LLM URL; values are lists of env var names."""
    repo = Repo(root)
    urls = set(_llm_urls(repo).values())
    problems = [repo.problem(ENVVARS, f"no entry for {url}") for url in sorted(urls - set(repo.envvars))]
    problems += [repo.problem(ENVVARS, f"{url} is no LLM container URL", url)
                 for url in sorted(set(repo.envvars) - urls)]
    problems += [repo.problem(ENVVARS, f"{url}: value must be a list of env var names", url)
                 for url, names in repo.envvars.items()
                 if not (isinstance(names, list) and all(isinstance(x, str) and x.isupper() for x in names))]
    return problems


def check_generative_configs(root) -> list[Problem]:
    """Each LLM has transformers_lm_<short>.json; every config uses only generate() argument names."""
    from transformers import GenerationConfig  # slow import: only when this check runs

    repo, problems, known = Repo(root), [], GenerationConfig()
    for name, specs in repo.all_components.items():
        spec = specs[0][1]
        args = _norm((spec.get("build") or {}).get("args"))
        skill_cfg = args.get("DEFAULT_LM_SERVICE_CONFIG")
        wanted = f"transformers_lm_{name.removeprefix('transformers-lm-')}.json" if repo.is_llm(spec) else skill_cfg
        if repo.is_llm(spec) and args.get("GENERATIVE_CONFIG") != wanted:
            problems.append(repo.problem(repo.dist_file(specs[0][0], DIST_FILES[0]),
                                         f"{name}: GENERATIVE_CONFIG should be {wanted}",
                                         *_args(name), "GENERATIVE_CONFIG"))
        if wanted and not (repo.root / GEN_CONFIGS / wanted).exists():
            problems.append(Problem(f"{GEN_CONFIGS}/{wanted}", f"missing (used by {name})"))
    for rel in sorted(repo.rel(p) for p in (repo.root / GEN_CONFIGS).glob("*.json")):
        try:
            config = json.loads(repo.text(rel))
        except ValueError as err:
            problems.append(Problem(rel, f"invalid JSON: {err}", getattr(err, "lineno", 1)))
            continue
        for key in config:
            if key not in EXTRA_GEN_KEYS and not hasattr(known, key):
                problems.append(repo.problem(rel, f"{key!r} is not a transformers GenerationConfig field", key))
    return problems


def check_pipelines(root) -> list[Problem]:
    """HTTP services of each pipeline_conf.json are containers of the dist and agree with their cards."""
    repo, problems = Repo(root), []
    for dist in repo.dists:
        path = repo.dist_file(dist, "pipeline_conf.json")
        comps = repo.components(dist)
        for svc, keys in _pipeline_http_services(repo, dist):
            svc_name, at = ".".join(keys), ("services", *keys)
            url = svc["connector"].get("url", "")
            host, _ = _host_port(url)
            if host not in comps:
                problems.append(repo.problem(path, f"{svc_name}: {host} is not a container of this dist",
                                             *at, "connector", "url"))
            card_path = (svc.get("source") or {}).get("component") or ""
            card = repo.cards.get(card_path)
            if card is None:
                problems.append(repo.problem(path, f"{svc_name}: source.component {card_path!r} is no card",
                                             *at, "source", "component"))
                continue
            if (card.get("connector") or {}).get("url") != url:
                problems.append(repo.problem(path, f"{svc_name}: url {url} differs from {card_path}",
                                             *at, "connector", "url"))
            if (svc.get("source") or {}).get("service") != card.get("service"):
                problems.append(repo.problem(path, f"{svc_name}: source.service differs from {card_path}",
                                             *at, "source", "service"))
    return problems


def check_skill_defaults(root) -> list[Problem]:
    """A skill's default LLM runs in the same dist and is in envvars_to_send.json."""
    repo, problems = Repo(root), []
    for dist in repo.dists:
        comps = repo.components(dist)
        for name, spec in comps.items():
            url = _norm((spec.get("build") or {}).get("args")).get("DEFAULT_LM_SERVICE_URL")
            if url is None:
                continue
            path = repo.dist_file(dist, DIST_FILES[0])
            host, _ = _host_port(url)
            at = (*_args(name), "DEFAULT_LM_SERVICE_URL")
            if host not in comps or not repo.is_llm(comps[host]):
                problems.append(repo.problem(path, f"{name}: DEFAULT_LM_SERVICE_URL {url} is no LLM of this dist", *at))
            if url not in repo.envvars:
                problems.append(repo.problem(path, f"{name}: DEFAULT_LM_SERVICE_URL {url} is not in {ENVVARS}", *at))
    return problems


CHECKS = (
    check_components_tsv, check_ports, check_wait_hosts, check_dist_overlays, check_same_definition,
    check_service_configs, check_cards, check_models_md, check_envvars_to_send, check_generative_configs,
    check_pipelines, check_skill_defaults,
)


def run_all(root) -> list[Problem]:
    return [problem for check in CHECKS for problem in check(root)]


def main(argv=None) -> int:
    """`python -m tools.registry_check [ROOT]`: prints `file:line: message` per disagreement, exit 1 if any."""
    import argparse

    parser = argparse.ArgumentParser(description="Check that the Dream wiring files agree with each other.")
    parser.add_argument("root", nargs="?", default=".", help="repository root (default: .)")
    problems = run_all(Path(parser.parse_args(argv).root))
    for problem in problems:
        print(problem)
    print(f"{len(problems)} disagreement(s)" if problems else "registry check: every file agrees")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
