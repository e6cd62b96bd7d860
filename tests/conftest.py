"""Shared fixtures: a real transformers_lm under gunicorn on the embedded SmolLM2."""
import os
import subprocess

import pytest

from tests.helpers.processes import LM_CONFIG, free_port, gunicorn, wait_http


@pytest.fixture(scope="session")
def lm_server():
    """Base URL of a real transformers_lm (embedded model, default generative config)."""
    port = free_port()
    process = gunicorn(LM_CONFIG, port, {"PRETRAINED_MODEL_NAME_OR_PATH": "", "SERVICE_PORT": str(port)})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", timeout=float(os.environ.get("LM_START_TIMEOUT", "180")), process=process)
        yield url
    finally:
        process.stop()



_running = {"item": None}
_popen_init = subprocess.Popen.__init__


def _marked_popen_init(self, *args, **kwargs):
    """A test that starts a process must say so (`@pytest.mark.processes`), so `make test-fast` can leave it out;
    a session fixture's process counts for the first test that asks for it."""
    item = _running["item"]
    if item is not None and item.get_closest_marker("processes") is None:
        raise RuntimeError(f"{item.nodeid} starts a process: mark it @pytest.mark.processes")
    _popen_init(self, *args, **kwargs)


subprocess.Popen.__init__ = _marked_popen_init


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _running["item"] = item
