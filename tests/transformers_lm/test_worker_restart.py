"""Process faults: a worker that dies, or whose inference thread dies, is replaced and service resumes.

Unit tests drive services/transformers_lm/watchdog.py with a fake engine; the real tests run gunicorn (one
worker, tiny model), kill the worker with SIGKILL mid-request, and kill only its inference thread (a test
hook raises SystemExit inside it on SIGUSR2), then wait for a new worker to answer.
"""
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from services.transformers_lm.engine.watchdog import watch
from tests.helpers.processes import REPO_ROOT, config_with_hook, save_tiny_model, tiny_lm, wait_http, worker_pids

LONG = {"do_sample": False, "max_new_tokens": 300, "min_new_tokens": 300, "num_return_sequences": 1}
KILL_INFERENCE_ON_SIGUSR2 = """
def post_worker_init(worker):
    import ctypes
    import signal
    import threading

    def kill_inference_thread(signum, frame):
        # SystemExit is raised in the engine's thread at its next bytecode: it ends as on a fatal fault.
        for thread in threading.enumerate():
            if thread.name == "inference":
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(SystemExit))

    signal.signal(signal.SIGUSR2, kill_inference_thread)
"""


class FakeEngine:
    def __init__(self):
        self.alive = True


def test_watchdog_waits_for_the_engine_and_acts_once_when_its_thread_dies():
    engine, calls, stop = FakeEngine(), [], threading.Event()
    current = {"engine": None}  # None: the model is still loading
    thread = threading.Thread(target=watch, args=(lambda: current["engine"],),
                              kwargs={"on_death": lambda: calls.append(time.monotonic()), "interval_s": 0.01,
                                      "stop": stop})
    thread.start()
    time.sleep(0.1)
    current["engine"] = engine
    time.sleep(0.1)
    assert calls == [] and thread.is_alive()
    died = time.monotonic()
    engine.alive = False
    thread.join(timeout=2)
    assert not thread.is_alive() and len(calls) == 1 and calls[0] - died < 0.5


def test_watchdog_stops_when_told():
    stop = threading.Event()
    thread = threading.Thread(target=watch, args=(FakeEngine,), kwargs={"interval_s": 0.01, "stop": stop})
    thread.start()
    stop.set()
    thread.join(timeout=2)
    assert not thread.is_alive()


@pytest.mark.processes
def test_exit_worker_terminates_then_exits_hard_when_shutdown_hangs():
    # A process whose SIGTERM handler, like a worker stuck on requests, does not end it.
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: print('SIGTERM', flush=True))\n"
            "from services.transformers_lm.engine.watchdog import exit_worker\n"
            "exit_worker(grace_s=0.3)\n"
            "print('still running')\n")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (1, "SIGTERM\n"), result.stderr
    assert time.monotonic() - started < 30


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("restart")
    process, url = tiny_lm(save_tiny_model(folder / "model"), {"MAX_NEW_TOKENS": "300", "WORKERS": "1"},
                           config=config_with_hook(folder, KILL_INFERENCE_ON_SIGUSR2))
    try:
        wait_http(f"{url}/health", timeout=120, process=process)
        yield process, url
    finally:
        process.stop()


def respond(url, config=None, timeout=60, contexts=1):
    body = {"dialog_contexts": [["Tell me a story."]] * contexts, "configs": [config or {"max_new_tokens": 4}] * contexts}
    return requests.post(f"{url}/respond", json=body, timeout=timeout)


def await_new_worker(process, url, old_worker, timeout=90) -> list:
    """Poll /health until a worker other than `old_worker` answers 200; returns the statuses seen."""
    deadline, statuses = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        try:
            statuses.append(requests.get(f"{url}/health", timeout=1).status_code)
        except requests.RequestException:
            statuses.append(None)
        if statuses[-1] == 200 and worker_pids(process) not in ([], [old_worker]):
            return statuses
        time.sleep(0.2)
    raise AssertionError(f"no new healthy worker within {timeout}s: {statuses[-20:]}\n{process.log()[-3000:]}")


@pytest.mark.processes
def test_a_killed_worker_is_replaced_and_the_next_requests_succeed(server):
    process, url = server
    [worker] = worker_pids(process)
    with ThreadPoolExecutor(3) as pool:
        # 3 x 64 samples x 300 tokens, 16 rows at a time: seconds of work for the tiny model
        in_flight = [pool.submit(respond, url, LONG, contexts=64) for _ in range(3)]
        while not requests.get(f"{url}/health", timeout=5).json()["batching"].get("passes"):
            time.sleep(0.05)  # until the requests are being generated
        assert not any(future.done() for future in in_flight)
        os.kill(worker, signal.SIGKILL)
        for future in in_flight:
            with pytest.raises(requests.ConnectionError):
                future.result()
    await_new_worker(process, url, worker)
    assert all(respond(url).status_code == 200 for _ in range(3))
    assert process.alive()


@pytest.mark.processes
def test_a_dead_inference_thread_makes_the_worker_exit_and_a_new_one_serves(server):
    process, url = server
    [worker] = worker_pids(process)
    os.kill(worker, signal.SIGUSR2)
    try:  # wakes the engine, which dies: a waiting request is told at once (or the worker is gone already)
        assert respond(url, timeout=10).status_code == 503
    except requests.ConnectionError:
        pass
    statuses = await_new_worker(process, url, worker)
    assert 503 in statuses  # the dying worker, then the new one while it loads
    assert "the inference thread died; stopping this worker" in process.log()
    assert all(respond(url).status_code == 200 for _ in range(3))
