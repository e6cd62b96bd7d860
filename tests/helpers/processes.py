"""Starting, waiting for and stopping real server processes in tests (127.0.0.1 only)."""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, and not one handed out before: the kernel may
    give a just-closed port again, and two servers told the same one collide (a CI run saw the agent and the
    skill of one stack do so)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in GIVEN_PORTS:
            GIVEN_PORTS.add(port)
            return port


GIVEN_PORTS = set()  # free_port's answers in this process


class Process:
    """A server started in its own process group, its stdout and stderr in one log file."""

    def __init__(self, cmd: Sequence[str], env: Optional[Mapping[str, str]] = None, log_path=None, cwd=None):
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix="process-", suffix=".log")
            os.close(fd)
        self.log_path = Path(log_path)
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                list(cmd),
                cwd=cwd or REPO_ROOT,
                env={**os.environ, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the whole group (gunicorn and its workers), SIGKILL it if it lingers."""
        if not self.alive():
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


def start(cmd: Sequence[str], env: Optional[Mapping[str, str]] = None, log_path=None, cwd=None) -> Process:
    """Run ``cmd`` from ``cwd`` (default: the repo root) with ``env`` added to the current environment."""
    return Process(cmd, env, log_path, cwd)


def gunicorn(config: str, port: int, env: Optional[Mapping[str, str]] = None, log_path=None,
             cwd=None, python: str = sys.executable) -> Process:
    """gunicorn with ``config`` (a path from ``cwd``, default the repo root) on 127.0.0.1:``port``, run by ``python``
    (another venv's, to test an install without some package).

    Debug logging with captured output, so app logs and prints reach the log file.
    """
    cmd = [
        str(python), "-m", "gunicorn", "-c", config, "-b", f"127.0.0.1:{port}",
        "--log-level", "debug", "--capture-output", "--error-logfile", "-",
        # One default control socket path per user: concurrent servers would fight over it.
        "--no-control-socket",
    ]
    return start(cmd, env, log_path, cwd)


def wait_http(url: str, timeout: float = 30.0, process: Optional[Process] = None) -> None:
    """Wait until GET ``url`` answers 200; fail early, with its log, if ``process`` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            code = process.popen.returncode
            raise RuntimeError(f"process exited with {code} before {url} answered:\n{process.log()}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s")


LM_CONFIG = "services/transformers_lm/gunicorn.conf.py"


def save_tiny_model(folder, window: int = 512) -> str:
    """The tiny random model of tests/tiny_model.py saved as a local folder PRETRAINED_MODEL_NAME_OR_PATH can name."""
    from tests.helpers.tiny_model import tiny_loaded  # torch is slow to import; only callers that serve a model pay

    loaded = tiny_loaded(window=window)
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return str(folder)


def tiny_lm(model_folder, env: Optional[Mapping[str, str]] = None, log_path=None, config: str = LM_CONFIG) -> tuple:
    """(Process, base URL) of transformers_lm under gunicorn on the model saved in ``model_folder``, just
    started (several can then start side by side): wait for ``{url}/health`` before use. float32 as the tests'
    in-process tiny model (DTYPE=auto would take bfloat16 on a CPU with native bf16)."""
    port = free_port()
    env = {"PRETRAINED_MODEL_NAME_OR_PATH": str(model_folder), "MAX_NEW_TOKENS": "8", "DTYPE": "float32",
           "BATCH_WAIT_MS": "0", "TORCH_NUM_THREADS": "1", **(env or {})}
    return gunicorn(config, port, env, log_path), f"http://127.0.0.1:{port}"


def tiny_lm_server(folder, env: Optional[Mapping[str, str]] = None, log_path=None,
                   config: str = LM_CONFIG, window: int = 512) -> tuple:
    """(Process, base URL) of transformers_lm under gunicorn serving the tiny model saved in ``folder``,
    once /health says 200. Generation is fast: few new tokens, no batch wait."""
    process, url = tiny_lm(save_tiny_model(folder, window), env, log_path, config)
    try:
        wait_http(f"{url}/health", timeout=120, process=process)
    except BaseException:
        process.stop()
        raise
    return process, url


def worker_pids(process: Process) -> list:
    """PIDs of a gunicorn's workers: the children of its master, read from /proc (no psutil needed)."""
    children = []
    for tasks in Path(f"/proc/{process.popen.pid}/task").glob("*/children"):
        try:
            children += [int(pid) for pid in tasks.read_text().split()]
        except FileNotFoundError:  # a thread that just ended
            continue
    return sorted(children)


def config_with_hook(folder, hook: str, base: str = LM_CONFIG) -> str:
    """Path of a gunicorn config written in ``folder``: the settings of ``base`` plus ``hook``, Python source
    such as a ``post_worker_init(worker)`` that injects a fault into each worker."""
    path = Path(folder) / "gunicorn_with_hook.conf.py"
    base_path = REPO_ROOT / base
    settings = f"{{name: value for name, value in runpy.run_path({str(base_path)!r}).items() if name[0] != '_'}}"
    path.write_text(f"import runpy\n\nglobals().update({settings})\n\n\n{textwrap.dedent(hook).strip()}\n")
    return str(path)
