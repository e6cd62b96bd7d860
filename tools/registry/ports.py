"""The port inventory: every place a file writes a container's port (`port_uses`), and the ports taken."""

from __future__ import annotations

import re

from .naming import ENGINE_URL
from .repo import (DIST_FILES, ENVVARS, ROOT_COMPOSE, WAIT_HOSTS_AT, Repo, build_args, build_args_at, command_flags,
                   environment, host_port, proxy_passes)

_BIND = re.compile(r"-b\s+[\w.]+:(\d+)")  # gunicorn's; an engine server's command says `--port N`


def command_port(spec: dict) -> int | None:
    """The port a container's command serves on."""
    m = _BIND.search(str(spec.get("command", "")))
    port = m.group(1) if m else command_flags(spec).get("--port", "")
    return int(port) if port.isdigit() else None


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
            use(override, c, int(p) if p.isdigit() else None, "WAIT_HOSTS", *WAIT_HOSTS_AT, host)
        for name, spec in repo.components(dist).items():
            args = build_args(spec)
            if "SERVICE_PORT" in args:
                use(override, name, int(args["SERVICE_PORT"]), "build arg SERVICE_PORT", *build_args_at(name),
                    "SERVICE_PORT")
                if (url := args.get("DEFAULT_LM_SERVICE_URL")):
                    use(override, *host_port(url), "DEFAULT_LM_SERVICE_URL", *build_args_at(name),
                        "DEFAULT_LM_SERVICE_URL")
            use(override, name, command_port(spec), "command bind port", "services", name, "command")
        published(repo.dist_file(dist, "dev.yml"))
        for file in DIST_FILES:
            path = repo.dist_file(dist, file)
            for name, spec in repo.services(path).items():
                if (url := environment(spec).get(ENGINE_URL)):
                    use(path, *host_port(url), ENGINE_URL, "services", name, "environment", ENGINE_URL)
        proxy = repo.dist_file(dist, "proxy.yml")
        for name, spec in repo.services(proxy).items():
            env, at = environment(spec), ("services", name, "environment")
            if "PORT" not in env and "PROXY_PASS" not in env:  # an engine the proxied model needs no more
                continue
            use(proxy, name, int(env["PORT"]) if env.get("PORT", "").isdigit() else None, "PORT", *at, "PORT")
            # Every replica serves the container's own port (the remote hosts run the same dist).
            for upstream in proxy_passes(env.get("PROXY_PASS", "")) or [""]:
                use(proxy, name, host_port(upstream)[1], "PROXY_PASS port", *at, "PROXY_PASS")
    for path, card in repo.cards.items():
        use(path, *host_port((card.get("connector") or {}).get("url", "")), "connector url", "connector", "url")
    for url in repo.envvars:
        use(ENVVARS, *host_port(url), "key", url)
    for dist in repo.dists:
        for svc, keys in repo.pipeline_http_services(dist):
            path = repo.dist_file(dist, "pipeline_conf.json")
            use(path, *host_port(svc["connector"]["url"]), "connector url", "services", *keys, "connector", "url")
    return uses


def taken_ports(repo: Repo) -> set[int]:
    """Ports components.tsv lists or any file writes."""
    ports = {int(port) for _, port, _ in repo.tsv_rows if port.isdigit()}
    return ports | {port for *_, port, _ in port_uses(repo) if port is not None}
