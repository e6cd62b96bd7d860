"""Wait until a URL answers 200 (a component's /health), then run the rest of the command line in its place.

    python -m scripts.dist.wait http://127.0.0.1:8186/health -- gunicorn -c ...
"""
import os
import sys
import time
import urllib.request

TIMEOUT_S = 600  # a cold first start converts the embedded GGUF (~30 s) on a slow machine


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:  # refused, reset, timed out, or an HTTP error status
        return False


def main(argv):
    url, _, command = argv[0], argv[1], argv[2:]
    deadline = time.monotonic() + TIMEOUT_S
    while not ready(url):
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not become ready within {TIMEOUT_S} s")
        time.sleep(0.5)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
