"""The official `openai` client against the real service on the embedded SmolLM2 (and through the real nginx proxy)."""
import time
from urllib.parse import urlsplit

import openai
import pytest
import requests
from transformers import AutoTokenizer

from services.transformers_lm.model.gguf import embedded_gguf_path, gguf_cache_folder
from services.transformers_lm.settings import default_cache_dir
from tests.helpers.nginx_proxy import NGINX, nginx_proxy
from tests.helpers.processes import tiny_lm_server

pytestmark = pytest.mark.processes  # every test here starts real processes

MESSAGES = [{"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "Name three colours of the rainbow."}]
GREEDY = {"temperature": 0, "max_tokens": 24}


@pytest.fixture(scope="module")
def client(lm_server):
    return openai.OpenAI(base_url=f"{lm_server}/v1", api_key="not-needed", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def tokenizer(lm_server):
    # The server converted the embedded GGUF into this folder while starting.
    return AutoTokenizer.from_pretrained(gguf_cache_folder(embedded_gguf_path(), default_cache_dir()))


def test_chat_completion_counts_tokens_like_the_tokenizer(client, tokenizer):
    reply = client.chat.completions.create(model="smollm2", messages=MESSAGES, **GREEDY)
    choice = reply.choices[0]
    assert reply.object == "chat.completion" and reply.model == "smollm2" and reply.id.startswith("chatcmpl-")
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    prompt = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert reply.usage.prompt_tokens == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    generated = len(tokenizer(choice.message.content, add_special_tokens=False)["input_ids"])
    # EOS ends a "stop" reply: it was generated but is not part of the text.
    assert reply.usage.completion_tokens == generated
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_completion_of_two_prompts(client, tokenizer):
    prompts = ["The capital of France is", "One, two, three,"]
    reply = client.completions.create(model="smollm2", prompt=prompts, **GREEDY)
    assert [choice.index for choice in reply.choices] == [0, 1]
    assert all(choice.text for choice in reply.choices)
    assert reply.usage.prompt_tokens == sum(len(tokenizer(prompt)["input_ids"]) for prompt in prompts)


def test_n_choices(client):
    reply = client.chat.completions.create(model="smollm2", messages=MESSAGES, n=2, temperature=1.0, seed=7,
                                           max_tokens=12)
    assert [choice.index for choice in reply.choices] == [0, 1]
    assert all(choice.message.content for choice in reply.choices)


def test_stop_strings_end_the_reply_where_they_begin(client):
    free = client.chat.completions.create(model="smollm2", messages=MESSAGES, **GREEDY).choices[0].message.content
    words = free.split()
    stop = next(word for word in words[2:] if free.index(word) > 0)
    stopped = client.chat.completions.create(model="smollm2", messages=MESSAGES, stop=[stop, "zzz"], **GREEDY)
    assert stopped.choices[0].message.content == free[:free.index(stop)]
    assert stopped.choices[0].finish_reason == "stop"


def stream_pieces(client, **kwargs) -> tuple:
    """(arrival time and chunk of each event, usage chunk) of a streamed chat completion."""
    arrivals, usage = [], None
    for chunk in client.chat.completions.create(model="smollm2", messages=MESSAGES, stream=True, **kwargs):
        if chunk.usage is not None:
            usage = chunk.usage
        else:
            arrivals.append((time.monotonic(), chunk))
    return arrivals, usage


def spread(times: list) -> bool:
    """Did the pieces arrive over the generation, not in one buffered burst at its end? A burst comes in one read
    (microseconds apart); a decode step of SmolLM2 on a CPU takes milliseconds (8-40 on 2 cores)."""
    return len(times) >= 5 and times[-1] - times[0] > 0.003 * (len(times) - 1)


def test_streaming_sends_pieces_as_they_are_generated(client):
    whole = client.chat.completions.create(model="smollm2", messages=MESSAGES, **GREEDY)
    arrivals, usage = stream_pieces(client, stream_options={"include_usage": True}, **GREEDY)
    content = [(at, chunk.choices[0].delta.content) for at, chunk in arrivals if chunk.choices[0].delta.content]
    assert "".join(text for _, text in content) == whole.choices[0].message.content
    assert spread([at for at, _ in content])
    assert arrivals[0][1].choices[0].delta.role == "assistant"
    assert arrivals[-1][1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert usage.completion_tokens == whole.usage.completion_tokens and usage.prompt_tokens == whole.usage.prompt_tokens


def test_streaming_through_the_nginx_proxy(lm_server, tmp_path):
    if NGINX is None:
        pytest.skip("needs nginx (apt-get install nginx)")
    with nginx_proxy(urlsplit(lm_server).netloc, tmp_path) as proxy_url:
        proxied = openai.OpenAI(base_url=f"{proxy_url}/v1", api_key="x", max_retries=0, timeout=120)
        arrivals, _ = stream_pieces(proxied, **GREEDY)
    content = [at for at, chunk in arrivals if chunk.choices and chunk.choices[0].delta.content]
    assert spread(content)


def test_models_lists_the_served_model(client):
    assert [model.id for model in client.models.list()] == ["SmolLM2-135M-Instruct"]


def test_errors_come_in_openai_shape(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="smollm2", messages=MESSAGES, temperature=-1)
    assert caught.value.body["param"] == "temperature" and caught.value.body["type"] == "invalid_request_error"


def test_an_api_key_guards_v1_but_not_dream_endpoints(tmp_path):
    process, url = tiny_lm_server(tmp_path, {"API_KEY": "sk-local-test"})
    try:
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
        assert requests.get(f"{url}/v1/models", timeout=10).status_code == 401
        good = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-local-test", max_retries=0)
        assert good.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=3).choices
        dream = requests.post(f"{url}/respond", json={"dialog_contexts": [["hi"]], "prompts": [""]}, timeout=30)
        assert dream.status_code == 200
        assert "sk-local-test" not in process.log()
    finally:
        process.stop()
