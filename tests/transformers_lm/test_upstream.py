"""ENGINE=openai without vLLM: the front in front of a real tiny-model transformers_lm (an OpenAI-compatible
server too), and in front of a faulty server (refusing, failing, hanging, breaking mid-stream) for the fault paths.
The tests against a real vLLM are in test_upstream_vllm.py."""
import json
import select
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest
import requests

from services.transformers_lm.engine.samples import GenerationParams
from services.transformers_lm.engine.stops import StopMatcher
from services.transformers_lm.engine.upstream_protocol import SERVERS, error_message, server_of, upstream_stops
from services.transformers_lm.generation_params import parse
from tests.helpers.processes import (LM_CONFIG, REPO_ROOT, free_port, gunicorn, save_tiny_model, tiny_lm, wait_http,
                                     worker_pids)

GREEDY = {"do_sample": False, "min_new_tokens": 0, "max_new_tokens": 8, "num_return_sequences": 1}
DIALOG = {"dialog_contexts": [["Hello there", "Hi!", "How are you?"], ["Tell me a story"]],
          "prompts": ["You are kind.", "You tell stories."], "configs": [GREEDY, GREEDY]}
ONE = {"dialog_contexts": [["Tell me a story"]], "prompts": ["You tell stories."], "configs": [GREEDY]}


# --- the mapping of our parameters to each kind of server: plain functions ---

def test_greedy_sends_every_parameter_at_its_off_value():
    body = SERVERS["llama.cpp"].body("m", [1, 2], parse({"do_sample": False, "max_new_tokens": 5}, None), ())
    assert body["temperature"] == 0.0 and body["top_p"] == 1.0 and body["top_k"] == -1 and body["min_p"] == 0.0
    assert body["repeat_penalty"] == 1.0 and body["max_tokens"] == 5 and body["n"] == 1 and body["stream"] is True
    assert "stop" not in body and "seed" not in body


def test_sampling_parameters_go_under_the_servers_names():
    params = parse({"do_sample": True, "temperature": 0.5, "top_k": 7, "min_new_tokens": 3, "seed": 11,
                    "repetition_penalty": 1.2, "num_return_sequences": 2, "eos_token_id": [5, 6]}, None)
    body = SERVERS["vllm"].body("m", [1], params, ("END",))
    assert (body["temperature"], body["top_k"], body["min_tokens"], body["seed"], body["n"]) == (0.5, 7, 3, 11, 2)
    assert body["repetition_penalty"] == 1.2 and body["stop_token_ids"] == [5, 6] and body["stop"] == ["END"]


@pytest.mark.parametrize("kind, config, refused", [
    ("vllm", {"no_repeat_ngram_size": 3}, ["no_repeat_ngram_size"]),
    ("vllm", {"num_beams": 2}, ["num_beams"]),
    ("vllm", {"typical_p": 0.5, "do_sample": True}, ["typical_p"]),
    ("llama.cpp", {"min_new_tokens": 4}, ["min_new_tokens"]),
    ("openai", {"top_k": 5, "do_sample": True}, ["top_k"]),
    ("openai", {"repetition_penalty": 1.3}, ["repetition_penalty"]),
    # Values that change nothing are no reason to refuse.
    ("openai", {"min_new_tokens": 0, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "length_penalty": 2.0}, []),
    ("openai", {"top_k": 5, "do_sample": False}, []),  # greedy: sampling parameters are dropped
])
def test_a_parameter_the_server_cannot_honour_is_named(kind, config, refused):
    assert SERVERS[kind].unsupported(parse(config, None)) == refused


def test_engine_server_takes_every_kind_of_server_and_auto():
    from common.settings import declarations
    from services.transformers_lm.settings import Settings
    parse = declarations(Settings)["engine_server"].parse
    assert all(parse(kind) == kind for kind in [*SERVERS, "auto"])
    with pytest.raises(ValueError):
        parse("tgi")


def test_the_kind_of_server_comes_from_its_model_list_unless_set():
    assert server_of("auto", "vllm").kind == "vllm" and server_of("auto", "llamacpp").kind == "llama.cpp"
    assert server_of("auto", "someone").kind == "openai" and server_of("vllm", "someone").kind == "vllm"


def test_labels_stop_the_server_only_at_a_line_start_and_openai_gets_at_most_four_stops():
    stops = upstream_stops(StopMatcher(("END",), labels=True))
    assert stops[0] == "END" and "\nAI:" in stops and "AI:" not in stops
    body = SERVERS["openai"].body("m", "text", GenerationParams({}, 4, 1), stops)
    assert body["stop"] == list(stops[:4])


def test_error_messages_as_servers_word_them():
    assert error_message({"error": {"message": "too long", "code": 400}}) == "too long"  # OpenAI, llama.cpp
    assert error_message({"object": "error", "message": "bad", "type": "BadRequestError"}) == "bad"  # vLLM
    assert error_message({"detail": "x"}) == "{'detail': 'x'}"


# --- a front in front of a real tiny-model transformers_lm ---

FRONT_PYTHON = REPO_ROOT / ".venv-front" / "bin" / "python"  # `make front-setup`: requirements-front.txt, no torch


def front(engine_url: str, model_folder, python=sys.executable, **env):
    port = free_port()
    settings = {"ENGINE": "openai", "ENGINE_URL": engine_url, "PRETRAINED_MODEL_NAME_OR_PATH": str(model_folder),
                "MAX_NEW_TOKENS": "64", **{name.upper(): str(value) for name, value in env.items()}}
    return gunicorn(LM_CONFIG, port, settings, python=python), f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def back_and_front(tiny_folder):
    """(back URL, front URL): the tiny model served by transformers_lm, and a front in front of it."""
    back, back_url = tiny_lm(tiny_folder, {"MAX_NEW_TOKENS": "64"})
    front_process, front_url = front(f"{back_url}/v1", tiny_folder)
    try:
        wait_http(f"{back_url}/health", timeout=120, process=back)
        wait_http(f"{front_url}/health", timeout=60, process=front_process)
        yield back_url, front_url
    finally:
        front_process.stop()
        back.stop()


@pytest.mark.processes
def test_front_answers_dreams_contract_as_the_engine_itself_does(back_and_front):
    back_url, front_url = back_and_front
    through_front = requests.post(f"{front_url}/respond", json=DIALOG, timeout=60)
    direct = requests.post(f"{back_url}/respond", json=DIALOG, timeout=60)
    assert through_front.status_code == 200, through_front.text
    assert through_front.json() == direct.json()
    assert all(len(hypotheses) == 1 for hypotheses in through_front.json())


@pytest.mark.processes
def test_front_samples_several_hypotheses_per_context(back_and_front):
    _, front_url = back_and_front
    sampled = {"do_sample": True, "temperature": 1.0, "num_return_sequences": 2, "min_new_tokens": 0,
               "max_new_tokens": 8}
    answer = requests.post(f"{front_url}/respond", json={**DIALOG, "configs": [sampled, sampled]}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert [len(hypotheses) for hypotheses in answer.json()] == [2, 2]


@pytest.mark.processes
def test_front_streams_openai_chat_and_its_health_names_the_engine(back_and_front, tiny_folder):
    _, front_url = back_and_front
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16, "temperature": 0}
    whole = requests.post(f"{front_url}/v1/chat/completions", json=body, timeout=60).json()
    pieces = []
    with requests.post(f"{front_url}/v1/chat/completions", json={**body, "stream": True}, stream=True,
                       timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith(b"data: {"):
                delta = json.loads(line[6:])["choices"][0]["delta"]
                pieces += [delta["content"]] if delta.get("content") else []
    assert len(pieces) > 1 and "".join(pieces) == whole["choices"][0]["message"]["content"]
    health = requests.get(f"{front_url}/health", timeout=5).json()
    assert health["engine"] == "openai" and health["engine_server"] == "transformers_lm"
    assert health["engine_model"] == str(tiny_folder) and health["status"] == "ok"


@pytest.mark.processes
def test_a_front_installed_without_torch_serves_in_a_worker_under_300_mb(back_and_front, tiny_folder):
    back_url, front_url = back_and_front
    assert subprocess.run([FRONT_PYTHON, "-c", "import torch"], capture_output=True).returncode != 0
    lean, lean_url = front(f"{back_url}/v1", tiny_folder, python=FRONT_PYTHON)
    try:
        wait_http(f"{lean_url}/health", timeout=60, process=lean)
        answer = requests.post(f"{lean_url}/respond", json=DIALOG, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json() == requests.post(f"{front_url}/respond", json=DIALOG, timeout=60).json()
        rss = [psutil.Process(pid).memory_info().rss for pid in worker_pids(lean)]
        assert rss and max(rss) <= 300 << 20, f"worker RSS {max(rss) >> 20} MB"
    finally:
        lean.stop()


@pytest.mark.processes
def test_a_parameter_the_server_cannot_honour_is_a_400_naming_it(back_and_front):
    _, front_url = back_and_front
    answer = requests.post(f"{front_url}/respond", json={**DIALOG, "configs": [GREEDY, {"top_k": 3, "do_sample": True,
                                                                                       "min_new_tokens": 0}]})
    assert answer.status_code == 400 and answer.json()["field"] == "configs[1].top_k"
    assert "not supported by the engine" in answer.json()["error"]


@pytest.mark.processes
def test_front_waits_for_an_engine_that_is_down_at_start_and_serves_once_it_is_up(tiny_folder):
    port = free_port()
    front_process, front_url = front(f"http://127.0.0.1:{port}/v1", tiny_folder)
    back = None
    try:
        wait_http(f"{front_url}/ping", timeout=60, process=front_process)
        deadline = time.monotonic() + 60
        while "waiting for the engine" not in (requests.get(f"{front_url}/health", timeout=5).json()["error"] or ""):
            assert time.monotonic() < deadline, "the front never said it waits for its engine"
            time.sleep(0.2)  # the tokenizer is loading
        started = time.monotonic()
        health = requests.get(f"{front_url}/health", timeout=5)
        answer = requests.post(f"{front_url}/respond", json=DIALOG, timeout=5)
        assert time.monotonic() - started < 1
        assert health.status_code == 503 and f"127.0.0.1:{port}" in health.json()["error"]
        assert answer.status_code == 503 and "waiting for the engine" in answer.json()["error"]
        back = gunicorn(LM_CONFIG, port, {"PRETRAINED_MODEL_NAME_OR_PATH": str(tiny_folder)})
        wait_http(f"{front_url}/health", timeout=120, process=front_process)
        assert requests.post(f"{front_url}/respond", json=DIALOG, timeout=60).status_code == 200
        back.stop()
        deadline = time.monotonic() + 10
        while requests.get(f"{front_url}/health", timeout=5).status_code == 200:
            assert time.monotonic() < deadline, "the front still says healthy 10 s after its engine went down"
            time.sleep(0.2)
        answer = requests.post(f"{front_url}/respond", json=DIALOG, timeout=10)
        assert answer.status_code == 503 and "cannot connect" in answer.json()["error"]
        assert front_process.alive()
    finally:
        front_process.stop()
        if back is not None:
            back.stop()


# --- a front in front of a faulty server ---

class FaultyServer:
    """An OpenAI-compatible server's outside that generates nothing: /v1/models lists one model (owned by "vllm", so
    prompts come as token ids); POST /v1/completions does what `mode` says: "500" or "400" answers an error, "hang"
    sends nothing after its headers until the client leaves, "break" sends one event and closes the connection
    mid-stream. It records the bodies it got and when a client left a hanging request."""

    def __init__(self, mode: str):
        self.mode = mode
        self.bodies = []
        self.left_at = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": "faulty", "object": "model", "owned_by": "vllm",
                                                             "max_model_len": 256}]})

            def do_POST(self):
                server.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                if server.mode in ("500", "400"):
                    self._send(int(server.mode), {"object": "error", "message": f"the {server.mode} we were told to"})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                if server.mode == "break":  # one chunk, then the connection closes as if the server died
                    event = b'data: {"choices": [{"index": 0, "text": "Once", "finish_reason": null}]}\n\n'
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                while True:  # hang: nothing is sent; the socket turns readable (EOF) when the client leaves
                    if select.select([self.connection], [], [], 0.05)[0] and not self.connection.recv(1):
                        server.left_at = time.monotonic()
                        return

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def faulty_front(tiny_folder):
    """(FaultyServer, front URL): one front (1 row in flight, 1 waiting, ENGINE_TIMEOUT 3 s) whose server's mode each
    test sets."""
    server = FaultyServer("500")
    process, url = front(server.url, tiny_folder, max_batch_size=1, max_queue=1, engine_timeout=3)
    try:
        wait_http(f"{url}/health", timeout=60, process=process)
        yield server, url
    finally:
        process.stop()
        server.close()


@pytest.mark.processes
@pytest.mark.parametrize("mode, status, words", [
    ("500", 502, "the engine failed: HTTP 500: the 500 we were told to"),
    ("400", 400, "the engine refused the request: the 400 we were told to"),
    ("hang", 504, "the engine sent nothing for 3 s (ENGINE_TIMEOUT)"),
    ("break", 502, "the connection to 127.0.0.1"),  # and broke
])
def test_an_upstream_fault_is_a_clear_error_per_sample(faulty_front, mode, status, words):
    server, url = faulty_front
    server.mode = mode
    started = time.monotonic()
    answer = requests.post(f"{url}/respond", json=ONE, timeout=30)
    assert answer.status_code == status and words in answer.json()["error"], answer.text
    assert answer.json()["field"] == "dialog_contexts[0]"
    assert time.monotonic() - started < 10
    assert requests.get(f"{url}/health", timeout=5).status_code == 200  # the server is up: only requests fail


@pytest.mark.processes
def test_upstream_gets_token_ids_and_our_parameters(faulty_front):
    server, url = faulty_front
    server.mode = "400"
    server.bodies.clear()
    config = {"do_sample": True, "temperature": 0.3, "top_k": 9, "seed": 5, "min_new_tokens": 2, "max_new_tokens": 7,
              "stop_strings": ["END"]}
    requests.post(f"{url}/respond", json={"dialog_contexts": [["Hi"]], "prompts": ["Be brief."], "configs": [config]})
    prompt_ids = requests.post(f"{url}/respond/prompts", json={"dialog_contexts": [["Hi"]], "prompts": ["Be brief."],
                                                                "configs": [config]}).json()
    body = server.bodies[0]
    assert isinstance(body["prompt"], list) and len(body["prompt"]) == prompt_ids[0]["tokens"]
    assert (body["model"], body["temperature"], body["top_k"], body["seed"], body["min_tokens"], body["max_tokens"]) \
        == ("faulty", 0.3, 9, 5, 2, 7)
    assert body["stop"][0] == "END" and "\nHuman:" in body["stop"]


@pytest.mark.processes
def test_a_departed_client_cancels_its_upstream_request_and_a_full_queue_is_a_429(faulty_front):
    server, url = faulty_front
    server.mode = "hang"
    server.left_at = None
    body = {"prompt": "Once upon a time", "max_tokens": 8}

    def leaving():  # gives up after 1 s, long before ENGINE_TIMEOUT
        with pytest.raises(requests.Timeout):
            requests.post(f"{url}/v1/completions", json=body, timeout=1)
        return time.monotonic()

    clients = [threading.Thread(target=lambda: left.append(leaving())) for _ in range(2)]
    left = []
    for client in clients:  # one in flight at the server (MAX_BATCH_SIZE=1), one waiting here (MAX_QUEUE=1)
        client.start()
        time.sleep(0.2)
    refused = requests.post(f"{url}/v1/completions", json=body, timeout=5)
    assert refused.status_code == 429 and refused.headers["Retry-After"] and refused.json()["error"]["message"]
    for client in clients:
        client.join(10)
    deadline = time.monotonic() + 2
    while server.left_at is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.left_at is not None, "the front kept its upstream request open after its client left"
    assert server.left_at - min(left) < 1.5  # the front's check every 0.5 s, not ENGINE_TIMEOUT's 3 s


@pytest.mark.processes
def test_a_streaming_client_that_leaves_before_any_piece_cancels_its_upstream_request(faulty_front):
    server, url = faulty_front
    server.mode = "hang"
    server.left_at = None
    with requests.post(f"{url}/v1/completions", json={"prompt": "Once", "max_tokens": 8, "stream": True},
                       stream=True, timeout=5) as response:
        assert response.status_code == 200
        time.sleep(0.3)
    closed_at = time.monotonic()
    while server.left_at is None and time.monotonic() < closed_at + 2:
        time.sleep(0.05)
    assert server.left_at is not None and server.left_at - closed_at < 1.5
