"""Run proxy/templates/default.conf.template in a real nginx, rendered the way the proxy image renders it: its
/docker-entrypoint.d/*.envsh sourced by /bin/sh, then envsubst over the filtered variables.

Reusable by any test that needs the proxy in front of a server on 127.0.0.1 (e.g. streaming tests).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.helpers.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "proxy/templates/default.conf.template"
DOCKERFILE = ROOT / "proxy/Dockerfile"
ENTRYPOINT_D = ROOT / "proxy/docker-entrypoint.d"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)

MAIN_CONF = """\
{user}worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/conf.d/*.conf;
}}
"""


def envsubst_filter() -> str:
    """The NGINX_ENVSUBST_FILTER regex the proxy image sets (proxy/Dockerfile is the source of truth)."""
    match = re.search(r'NGINX_ENVSUBST_FILTER="([^"]*)"', DOCKERFILE.read_text())
    assert match, "proxy/Dockerfile must set NGINX_ENVSUBST_FILTER"
    return match.group(1)


def render(template: str, env: dict[str, str]) -> str:
    """The image's 20-envsubst-on-templates.sh: envsubst over the defined variables the filter lets through.

    `$NAME` and `${NAME}` of those variables are replaced; every other `$...` (nginx's own variables) is kept.
    """
    names = [name for name in env if re.search(envsubst_filter(), name)]
    if not names:
        return template
    alternation = "|".join(map(re.escape, sorted(names, key=len, reverse=True)))
    pattern = re.compile(r"\$(?:\{(%s)\}|(%s)(?![A-Za-z0-9_]))" % (alternation, alternation))
    return pattern.sub(lambda m: env[m.group(1) or m.group(2)], template)


class EntrypointError(RuntimeError):
    """A /docker-entrypoint.d script exited non-zero: the container would not start."""


def entrypoint_env(env: dict[str, str]) -> dict[str, str]:
    """The environment the image's 20-envsubst-on-templates.sh sees: `env` after its entrypoint has sourced our
    /docker-entrypoint.d/*.envsh scripts (in sorted order, as it does)."""
    sources = "".join(f'. "{script}" && ' for script in sorted(ENTRYPOINT_D.glob("*.envsh")))
    result = subprocess.run(["sh", "-c", sources + "env -0"], env={"PATH": os.environ["PATH"], **env},
                            capture_output=True, text=True, timeout=10)
    if result.returncode:
        raise EntrypointError(result.stderr.strip())
    return dict(item.split("=", 1) for item in result.stdout.split("\0") if "=" in item)


def render_conf(env: dict[str, str]) -> str:
    """default.conf as the container renders it from `env` (PORT, PROXY_PASS)."""
    return render(TEMPLATE.read_text(), entrypoint_env(env))


def _wait_listening(port: int, proc: subprocess.Popen, workdir: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    log = (workdir / "error.log").read_text() if (workdir / "error.log").exists() else ""
    raise RuntimeError(f"nginx did not start listening on {port} (exit {proc.poll()}):\n{log}")


@contextlib.contextmanager
def nginx_proxy(proxy_pass: str, workdir: Path):
    """Start nginx with the rendered proxy server block, forwarding to `proxy_pass` (PROXY_PASS: host:port, or
    several, comma- or space-separated).

    Yields the proxy's base URL ("http://127.0.0.1:PORT"); stops nginx on exit.
    """
    if NGINX is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx)")
    workdir = Path(workdir)
    (workdir / "conf.d").mkdir(parents=True, exist_ok=True)
    port = free_port()
    # PORT may be host:port in `listen`; binding to loopback keeps the test off other interfaces.
    env = {"PORT": f"127.0.0.1:{port}", "PROXY_PASS": proxy_pass}
    (workdir / "conf.d/default.conf").write_text(render_conf(env))
    user = "user root;\n" if os.geteuid() == 0 else ""  # as root, workers would switch to nobody and lose the tmp dir
    (workdir / "nginx.conf").write_text(MAIN_CONF.format(d=workdir, user=user))
    with open(workdir / "stderr.log", "wb") as stderr:
        proc = subprocess.Popen(
            [NGINX, "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", str(workdir / "nginx.conf"),
             "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=stderr,
        )
    try:
        _wait_listening(port, proc, workdir)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
