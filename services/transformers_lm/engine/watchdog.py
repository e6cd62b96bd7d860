"""A worker whose inference thread died can never answer again: stop it so gunicorn forks a fresh one.

gunicorn's arbiter replaces any worker that exits (except with its boot-failure codes 3 and 4, which
stop the whole server), so the watchdog only has to make the worker exit. SIGTERM asks gthread for its
graceful stop; requests still waiting on the dead engine would hold that stop (and the interpreter's
exit, which joins the request threads) until REQUEST_TIMEOUT, so after a short grace the process ends hard.
The service reports an unhealthy engine from the moment the thread is gone.
"""
import logging
import os
import signal
import sys
import threading
import time

logger = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0
EXIT_GRACE_S = 5.0
EXIT_CODE = 1  # anything but gunicorn's 3 (worker boot error) and 4 (app load error)


def exit_worker(grace_s: float = EXIT_GRACE_S):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace_s)
    logger.error("worker still running %.0f s after SIGTERM; exiting now", grace_s)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(EXIT_CODE)


def watch(get_engine, on_death=exit_worker, interval_s: float = CHECK_INTERVAL_S, stop: threading.Event = None):
    """Check `get_engine()` (None while the model loads) every `interval_s`; once its `alive` turns
    False, log and call `on_death` once."""
    stop = stop or threading.Event()
    while not stop.wait(interval_s):
        engine = get_engine()
        if engine is not None and not engine.alive:
            logger.error("the inference thread died; stopping this worker (pid %d) so gunicorn starts a new one",
                         os.getpid())
            on_death()
            return


def start_watchdog(get_engine, **options) -> threading.Thread:
    thread = threading.Thread(target=watch, args=(get_engine,), kwargs=options, name="watchdog", daemon=True)
    thread.start()
    return thread
