"""transformers_lm end to end: real gunicorn, the embedded SmolLM2, real HTTP on 127.0.0.1."""
import pytest
from concurrent.futures import ThreadPoolExecutor

import requests
import torch

from services.transformers_lm.model.precision import head_quantize

pytestmark = pytest.mark.processes  # every test here starts real processes

GREEDY = {"do_sample": False, "num_return_sequences": 1}


def post(url, path, body, timeout=120):
    return requests.post(f"{url}{path}", json=body, timeout=timeout)


def test_two_contexts_with_two_sequences_each(lm_server):
    response = post(lm_server, "/respond", {
        "dialog_contexts": [["Hi!", "Hello! How can I help you?", "Recommend a book, please."], ["Tell me a joke."]],
        "prompts": ["You are a helpful librarian.", "You are a funny assistant."],
        "configs": [{"num_return_sequences": 2, "max_new_tokens": 24}, {"num_return_sequences": 2, "max_new_tokens": 24}],
    })
    assert response.status_code == 200, response.text
    hypotheses = response.json()
    assert len(hypotheses) == 2
    for context_hypotheses in hypotheses:
        assert len(context_hypotheses) == 2
        assert all(isinstance(text, str) and text.strip() for text in context_hypotheses)


def test_greedy_answer_knows_paris(lm_server):
    response = post(lm_server, "/respond", {"dialog_contexts": [["What is the capital of France?"]],
                                            "prompts": ["You are a helpful assistant."], "configs": [GREEDY]})
    assert response.status_code == 200, response.text
    [[answer]] = response.json()
    assert "Paris" in answer


def test_request_config_overrides_the_default(lm_server):
    body = {"dialog_contexts": [["Describe the sea in detail."]], "prompts": ["You are a poet."]}
    default = post(lm_server, "/respond", dict(body, configs=[GREEDY])).json()[0][0]
    one_token = post(lm_server, "/respond", dict(body, configs=[dict(GREEDY, max_new_tokens=1)])).json()[0][0]
    assert len(default) > 40
    assert len(one_token) < 15 and len(one_token) * 4 < len(default)


def test_dream_clients_without_prompts_or_configs_get_default_hypotheses(lm_server):
    response = post(lm_server, "/respond", {"dialog_contexts": [["Hello!"]], "openai_api_keys": ["sk-not-used"]})
    assert response.status_code == 200
    assert len(response.json()[0]) == 2  # Dream's default config asks for two


def test_generate_goals_gives_one_description_per_prompt(lm_server):
    prompts = ["You are a travel agent. Help the user plan a trip to Italy and suggest hotels.",
               "You are a math tutor for children. Explain fractions with simple examples."]
    response = post(lm_server, "/generate_goals", {"prompts": prompts})
    assert response.status_code == 200, response.text
    goals = response.json()
    assert len(goals) == 2 and all(isinstance(goal, str) and len(goal) > 10 for goal in goals)


def test_ping_and_health(lm_server):
    assert requests.post(f"{lm_server}/ping", timeout=5).text == "pong"
    health = requests.get(f"{lm_server}/health", timeout=5)
    assert health.status_code == 200
    assert health.json()["model"] == "SmolLM2-135M-Instruct" and health.json()["status"] == "ok"
    # QUANTIZE=auto on a CPU: the embedded Q4_1 file runs in int4, on bfloat16 activations, its Q8_0 head in int8
    # (in bf16 OnednnLinear on a CPU with AMX)
    head = head_quantize("int4", torch.bfloat16, torch.device("cpu"))
    assert [health.json()[key] for key in ("dtype", "quantize", "head_quantize")] == ["bfloat16", "int4", head]


def test_bad_requests_get_json_errors_naming_the_field(lm_server):
    cases = [
        (b"not json", "body"),
        ({"dialog_contexts": "hello"}, "dialog_contexts"),
        ({"dialog_contexts": [["hi"]], "configs": [{"temperature": -0.5}]}, "configs[0].temperature"),
        ({"dialog_contexts": [["hi"]], "configs": [{"max_new_tokens": 100000}]}, "configs[0].max_new_tokens"),
        ({"dialog_contexts": [["hi"]], "configs": [{"no_such_parameter": 1}]}, "configs[0].no_such_parameter"),
    ]
    for body, field in cases:
        if isinstance(body, bytes):
            response = requests.post(f"{lm_server}/respond", data=body, timeout=10)
        else:
            response = post(lm_server, "/respond", body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["field"] == field
    response = post(lm_server, "/generate_goals", {"prompts": [1]})
    assert response.status_code == 400 and response.json()["field"] == "prompts[0]"
    assert requests.get(f"{lm_server}/respond", timeout=5).status_code == 405
    # The worker survived all of it.
    assert post(lm_server, "/respond", {"dialog_contexts": [["Hi"]], "configs": [GREEDY]}).status_code == 200


def test_concurrent_requests_are_batched(lm_server):
    before = requests.get(f"{lm_server}/health", timeout=5).json()["batching"]
    questions = ["What is 2 + 2?", "Name a color.", "Say hello.", "What is the sun?", "Name a fruit.", "Count to 3."]
    config = dict(GREEDY, max_new_tokens=16)

    def ask(question):
        return post(lm_server, "/respond", {"dialog_contexts": [[question]], "configs": [config]})

    with ThreadPoolExecutor(len(questions)) as pool:
        responses = list(pool.map(ask, questions))
    after = requests.get(f"{lm_server}/health", timeout=5).json()["batching"]
    assert all(response.status_code == 200 and response.json()[0][0] for response in responses)
    assert after["samples"] - before["samples"] == len(questions)
    assert after["batches"] - before["batches"] < len(questions)
