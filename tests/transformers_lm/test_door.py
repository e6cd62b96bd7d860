"""The door (api/door.py): past capacity an immediate 429, every admitted request answered, probes never waiting
behind generation, and a client that left before its turn costs nothing."""
import contextlib
import http.client
import json
import socket
import threading
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import EnvironBuilder

from scripts.bench.bench_respond import percentile
from scripts.soak import Probes
from services.transformers_lm.api.door import Door, refusable
from services.transformers_lm.api.openapi import openapi_document
from services.transformers_lm.service import service_limits
from services.transformers_lm.settings import HOLD_FACTOR, THREAD_RESERVE, Settings
from tests.helpers.processes import tiny_lm_server

PROMPT = "Tell me a story about the sea."
TOKENS = 48
CAPACITY = {"MAX_BATCH_SIZE": "2", "MAX_QUEUE": "2", "MAX_NEW_TOKENS": str(TOKENS)}  # 4 requests at once


def inner(environ, start_response):
    """The app behind the door in the unit tests: it answers at once."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"inner"]


def connection():
    """The server side of a connection whose client stays: what gunicorn hands the app as `gunicorn.socket`."""
    server_side, client_side = socket.socketpair()
    OPEN.append((server_side, client_side))
    return server_side


OPEN = []  # the connections of a test, open until it ends


@pytest.fixture(autouse=True)
def close_connections():
    yield
    for sockets in OPEN:
        for sock in sockets:
            sock.close()
    OPEN.clear()


def call(door, path, method="POST", on=None) -> tuple:
    """(status line, headers, the answer's iterable, not closed yet) of one request through `door`, on the
    connection `on` (its server-side socket; default: a new one)."""
    seen = {}
    environ = {**EnvironBuilder(path=path, method=method).get_environ(), "gunicorn.socket": on or connection()}
    answer = door(environ, lambda status, headers: seen.update(status=status, headers=dict(headers)))
    return seen["status"], seen["headers"], answer


def test_past_capacity_the_door_refuses_at_once_in_the_shape_of_the_path_and_counts_it():
    counted = []
    door = Door(inner, 2, {("POST", "/respond"), ("POST", "/v1/completions")}, lambda *answer: counted.append(answer))
    first, second = call(door, "/respond")[2], call(door, "/v1/completions")[2]
    assert door.in_flight == 2
    status, headers, body = call(door, "/respond")
    assert (status, headers["Retry-After"]) == ("429 Too Many Requests", "1")
    assert json.loads(b"".join(body)) == {"error": "the server is at capacity (2 requests in flight); retry later",
                                          "field": None}
    status, headers, body = call(door, "/v1/completions")
    error = json.loads(b"".join(body))["error"]
    assert status.startswith("429") and (error["type"], error["param"], error["code"]) == (
        "rate_limit_error", None, "rate_limit_exceeded")
    assert counted == [("/respond", 429), ("/v1/completions", 429)]
    for method, path in (("GET", "/health"), ("POST", "/ping"), ("GET", "/respond"), ("POST", "/nowhere")):
        assert call(door, path, method)[0] == "200 OK"  # neither counted nor refused: they wait for no engine
    first.close()  # the last byte is out (or the stream closed): its place frees
    assert door.in_flight == 1 and call(door, "/respond")[0] == "200 OK"
    second.close()


def timed(door, on) -> tuple:
    """(status line, seconds) of a /respond through `door` on the connection `on`."""
    started = time.monotonic()
    status = call(door, "/respond", on=on)[0]
    return status, time.monotonic() - started


def test_a_connection_back_before_its_retry_after_is_held_until_it_is_over_then_admitted_if_there_is_room():
    door = Door(inner, 1, {("POST", "/respond")}, lambda *answer: None, holding=1)
    running = call(door, "/respond")[2]
    spinner, other = connection(), connection()
    status, seconds = timed(door, spinner)
    assert status.startswith("429") and seconds < 0.2  # a first refusal is immediate
    status, seconds = timed(door, spinner)  # back at once: held out the Retry-After, still full
    assert status.startswith("429") and 0.8 < seconds < 1.5
    assert timed(door, other)[1] < 0.2  # another connection's first refusal is not held
    threading.Timer(0.3, running.close).start()  # room appears while it is held
    status, seconds = timed(door, spinner)
    assert status == "200 OK" and 0.8 < seconds < 1.5
    time.sleep(1.1)  # a client that waits what Retry-After says is never held
    assert timed(door, other)[1] < 0.2


def test_past_its_places_to_hold_the_door_refuses_a_spinning_connection_at_once():
    door = Door(inner, 1, {("POST", "/respond")}, lambda *answer: None, holding=0)
    running = call(door, "/respond")[2]
    spinner = connection()
    assert [timed(door, spinner)[1] < 0.2 for _ in range(3)] == [True] * 3
    running.close()


def test_requests_whose_connection_is_not_known_are_never_held():
    door = Door(inner, 1, {("POST", "/respond")}, lambda *answer: None, holding=4)
    running = call(door, "/respond")[2]
    unknown = EnvironBuilder(path="/respond", method="POST").get_environ()  # no gunicorn.socket
    for _ in range(3):
        started, seen = time.monotonic(), []
        door(dict(unknown), lambda status, headers: seen.append(status))
        assert seen[0].startswith("429") and time.monotonic() - started < 0.2
    running.close()


def test_a_request_whose_client_has_left_is_not_run():
    ran = []
    door = Door(lambda *request: ran.append(request), 2, {("POST", "/respond")}, lambda *answer: None)
    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        client_side.close()  # gave up while the request waited for a thread
        environ = EnvironBuilder(path="/respond", method="POST").get_environ()
        seen = []
        assert door({**environ, "gunicorn.socket": server_side}, lambda *answer: seen.append(answer)) == [b""]
    assert seen[0][0].startswith("499") and not ran and door.in_flight == 0


def test_the_door_gates_what_the_document_says_may_answer_429():
    document = openapi_document("transformers_lm", service_limits(Settings.from_env({})))
    assert refusable(document) == {("POST", path) for path in (
        "/respond", "/generate_goals", "/embeddings", "/v1/chat/completions", "/v1/completions", "/v1/embeddings")}


def test_the_handler_threads_default_to_one_per_admitted_or_held_request_and_a_reserve():
    settings = Settings.from_env({"MAX_BATCH_SIZE": "8", "MAX_QUEUE": "24"})
    assert (settings.capacity, settings.held_refusals) == (32, HOLD_FACTOR * 32)
    assert settings.handler_threads == 32 + HOLD_FACTOR * 32 + THREAD_RESERVE
    assert (Settings.from_env({"GUNICORN_THREADS": "5"}).handler_threads,
            Settings.from_env({"GUNICORN_THREADS": "5"}).held_refusals) == (5, 0)
    given = Settings.from_env({"MAX_BATCH_SIZE": "8", "MAX_QUEUE": "24", "GUNICORN_THREADS": "100"})
    assert given.held_refusals == 100 - 32 - THREAD_RESERVE


def parsed(text: str) -> dict:
    """{(name, labels): value} of a Prometheus scrape."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def scrape(url) -> dict:
    return parsed(requests.get(f"{url}/metrics", timeout=10).text)


def completion(session, url, stream=False, timeout=60, **options):
    body = {"prompt": PROMPT, "max_tokens": TOKENS, "temperature": 0, "stream": stream, **options}
    return session.post(f"{url}/v1/completions", json=body, timeout=timeout, stream=stream)


def text_of(response) -> str:
    """The completion's text, whole or streamed."""
    if not response.headers["Content-Type"].startswith("text/event-stream"):
        return response.json()["choices"][0]["text"]
    events = [json.loads(line[len(b"data: "):]) for line in response.iter_lines() if line.startswith(b"data: {")]
    return "".join(choice["text"] for event in events for choice in event["choices"])


@pytest.mark.processes
def test_at_four_times_capacity_admitted_requests_are_answered_the_rest_refused_and_probes_stay_instant(tmp_path):
    process, url = tiny_lm_server(tmp_path, {**CAPACITY, "LOG_LEVEL": "warning"})
    try:
        expected = text_of(completion(requests, url))
        outcomes, stages, stop = [], [], threading.Event()

        def client(number: int):
            """Every other client streams; a refused client waits what Retry-After says, but one in eight doesn't."""
            with requests.Session() as session:
                while not stop.is_set():
                    with completion(session, url, stream=number % 2 == 0) as response:
                        outcomes.append((response.status_code, text_of(response) if response.ok else None))
                    if response.status_code == 429 and number % 8:
                        stop.wait(float(response.headers["Retry-After"]))

        def watch():
            while not stop.wait(0.05):
                stages.append(scrape(url))

        threads = [threading.Thread(target=client, args=(number,)) for number in range(16)]
        threads.append(threading.Thread(target=watch))
        probes = Probes([f"{url}/health", f"{url}/ping", f"{url}/metrics"], 0.02)  # a process of their own
        for thread in threads:
            thread.start()
        time.sleep(6)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        probed = probes.stop()
        after = scrape(url)
    finally:
        process.stop()

    statuses = {status for status, _ in outcomes}
    assert statuses == {200, 429}, statuses
    assert all(text == expected for status, text in outcomes if status == 200)
    assert sum(status == 200 for status, _ in outcomes) >= 8
    assert {status for _, status, _ in probed} == {200} and len(probed) > 50
    assert percentile([seconds for _, _, seconds in probed], 0.99) < 0.1, sorted(probed, key=lambda p: p[2])[-5:]
    in_flight = [stage[("transformers_lm_requests_in_flight", ())] for stage in stages]
    assert 0 < max(in_flight) <= 4
    assert max(stage[("transformers_lm_running_sequences", ())] for stage in stages) > 0
    assert after[("transformers_lm_requests_in_flight", ())] == 0 and after[("transformers_lm_capacity", ())] == 4
    assert after[("transformers_lm_requests_total", (("endpoint", "/v1/completions"), ("status", "429")))] > 0


@pytest.mark.processes
def test_a_client_that_gives_up_waiting_at_the_door_costs_no_generation(tmp_path):
    """One handler thread: while a long generation holds it (~5 s here, a second to take the thread), the next
    request waits for it; its client gives up there. When the thread frees, the door sees the peer gone and runs
    nothing of it."""
    process, url = tiny_lm_server(tmp_path, {"GUNICORN_THREADS": "1", "MAX_NEW_TOKENS": "4000"}, window=4096)
    long = {"dialog_contexts": [[PROMPT]], "configs": [{"max_new_tokens": 4000, "min_new_tokens": 4000,
                                                         "do_sample": False, "num_return_sequences": 1}]}
    try:
        [prompt] = requests.post(f"{url}/respond/prompts", json=long, timeout=30).json()
        before = scrape(url)
        holder = threading.Thread(target=requests.post, args=(f"{url}/respond",), kwargs={"json": long, "timeout": 60})
        holder.start()
        time.sleep(1)
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.post(f"{url}/respond", json={"dialog_contexts": [["Nobody waits for this one."]]}, timeout=0.5)
        holder.join()
        after = scrape(url)
    finally:
        process.stop()
    computed = [key for key in after if key[0] == "transformers_lm_prompt_tokens_total"]
    assert sum(after[key] - before.get(key, 0) for key in computed) == prompt["tokens"]  # the long request's alone
    assert after[("transformers_lm_requests_total", (("endpoint", "/respond"), ("status", "499")))] == 1


@pytest.mark.processes
def test_under_gunicorn_a_keep_alive_connection_back_at_once_is_held_and_a_new_one_is_not(tmp_path):
    """Capacity 2, both places taken by long generations: a session's first refusal is immediate, its retry at once
    waits out Retry-After (the same socket under gunicorn's keep-alive), another connection's refusal is immediate."""
    process, url = tiny_lm_server(tmp_path, {"MAX_BATCH_SIZE": "1", "MAX_QUEUE": "1", "MAX_NEW_TOKENS": "4000",
                                             "LOG_LEVEL": "warning"}, window=4096)
    long = {"dialog_contexts": [[PROMPT]], "configs": [{"max_new_tokens": 4000, "min_new_tokens": 4000,
                                                         "do_sample": False, "num_return_sequences": 1}]}

    def hold():
        with contextlib.suppress(requests.RequestException):  # cut short when the server stops
            requests.post(f"{url}/respond", json=long, timeout=120)

    try:
        holders = [threading.Thread(target=hold) for _ in range(2)]
        for holder in holders:
            holder.start()
        deadline = time.monotonic() + 30
        while scrape(url)[("transformers_lm_requests_in_flight", ())] < 2:
            assert time.monotonic() < deadline, "the long generations never filled the door"
            time.sleep(0.05)
        timings = []
        with requests.Session() as session:
            for _ in range(2):
                started = time.monotonic()
                status = completion(session, url).status_code
                timings.append((status, time.monotonic() - started))
        started = time.monotonic()
        other = completion(requests, url).status_code  # a connection of its own
        timings.append((other, time.monotonic() - started))
        # Otherwise a place freed meanwhile and the statuses say nothing about keep-alive (a machine this fast
        # needs longer generations).
        assert scrape(url)[("transformers_lm_requests_in_flight", ())] == 2, timings
    finally:
        process.stop()
        for holder in holders:
            holder.join(30)
    [(first, first_s), (again, again_s), (new, new_s)] = timings
    assert (first, again, new) == (429, 429, 429), timings
    assert first_s < 0.5 and 0.8 < again_s < 2 and new_s < 0.5, timings


@pytest.mark.processes
def test_with_the_default_thread_count_a_client_keeps_its_connection(tmp_path):
    """The default settings give gunicorn over a thousand handler threads; its connection limit follows them, or
    it would close the connection after every response and refuse connections past the limit unseen."""
    log = tmp_path / "server.log"
    process, url = tiny_lm_server(tmp_path / "model", log_path=log)
    try:
        connection = http.client.HTTPConnection(*url.removeprefix("http://").split(":"), timeout=30)
        answers = []
        for _ in range(3):
            connection.request("POST", "/v1/completions", body=json.dumps({"prompt": PROMPT, "max_tokens": 4}),
                               headers={"Content-Type": "application/json"})
            answer = connection.getresponse()
            answer.read()
            answers.append((answer.status, answer.getheader("Connection"), connection.sock is not None))
        connection.close()
    finally:
        process.stop()
    assert answers == [(200, "keep-alive", True)] * 3, answers
    assert "No keepalived connections" not in log.read_text()
