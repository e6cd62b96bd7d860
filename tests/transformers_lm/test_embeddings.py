"""Embeddings (POST /v1/embeddings, POST /embeddings): the mean of the last hidden state over a text's tokens,
L2-normalised, computed on the inference thread through the engines' queue and limits."""
import base64
import struct
import threading
import time
from concurrent.futures import CancelledError

import numpy
import openai
import pytest
import requests
import torch
import torch.nn.functional as F

from services.transformers_lm.api.dream_protocol import parse_embeddings as parse_texts
from services.transformers_lm.api.errors import classify
from services.transformers_lm.api.openai_protocol import embedding_list, parse_embeddings
from services.transformers_lm.engine.continuous import ContinuousEngine
from services.transformers_lm.engine.samples import EmbeddingJob
from services.transformers_lm.engine.errors import GenerationTimeout, QueueFull
from services.transformers_lm.engine.static import BatchEngine
from services.transformers_lm.errors import ClientGone, InvalidField, SampleFailed
from services.transformers_lm.service import LMService, Task
from services.transformers_lm.settings import Settings
from tests.helpers.processes import tiny_lm_server
from tests.helpers.tiny_model import tiny_loaded

TEXTS = ["Hi", "The cat sat on the mat.", "a", "A much longer text that pads every other row of its batch " * 3]
GREEDY = {"do_sample": False, "max_new_tokens": 200, "min_new_tokens": 200, "num_return_sequences": 1}


@pytest.fixture(scope="module")
def loaded():
    return tiny_loaded()


def reference(loaded, item) -> torch.Tensor:
    """A plain forward of the whole model on the text alone: its last hidden state averaged, normalised."""
    ids = loaded.tokenizer(item)["input_ids"] if isinstance(item, str) else item
    with torch.inference_mode():
        hidden = loaded.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1]
    return F.normalize(hidden[0].mean(dim=0), dim=-1)


ENGINES = {
    "continuous": lambda loaded: ContinuousEngine(loaded, max_batch_rows=16, prefill_chunk=8),
    "static, passes of 2 texts": lambda loaded: BatchEngine(loaded, max_batch_rows=2, batch_wait_s=0),
}


@pytest.mark.parametrize("engine", ENGINES)
def test_vectors_are_the_masked_mean_of_a_plain_forward_batched_or_alone(loaded, engine):
    service = LMService(Settings(), loaded, engine=ENGINES[engine](loaded))
    vectors, tokens = service.embeddings(TEXTS, "input")
    assert tokens == sum(len(loaded.tokenizer(text)["input_ids"]) for text in TEXTS)
    alone = [service.embeddings([text], "input")[0][0] for text in TEXTS]
    for text, vector, single in zip(TEXTS, vectors, alone):
        got = torch.tensor(vector)
        assert torch.allclose(got, reference(loaded, text), atol=1e-5), text
        assert torch.allclose(got, torch.tensor(single), atol=1e-5), text  # the padding changes nothing
        assert abs(float(got.norm()) - 1) < 1e-5
    assert len({tuple(vector) for vector in vectors}) == len(TEXTS)
    assert service.engine.stats["embedded_texts"] == 2 * len(TEXTS)


def test_token_ids_embed_as_their_text(loaded):
    service = LMService(Settings(), loaded, engine=BatchEngine(loaded, batch_wait_s=0))
    ids = loaded.tokenizer("The cat sat on the mat.")["input_ids"]
    request = parse_embeddings({"input": ids}, service.limits)
    (vector,), tokens = service.embeddings(request.inputs, "input")
    assert tokens == len(ids) and vector == service.embeddings(["The cat sat on the mat."], "input")[0][0]


def test_embeddings_run_between_the_decode_passes_of_a_full_batch(loaded):
    """With every row of the batch taken by a long reply, an embedding is not held until a row frees up."""
    engine = ContinuousEngine(loaded, max_batch_rows=1, prefill_chunk=8)
    service = LMService(Settings(), loaded, engine=engine)
    reply = engine.submit([service.sample(Task("Be brief.", ["Tell me a story."], GREEDY), service.defaults, "c")])[0]
    vectors, _ = service.embeddings(TEXTS, "input")
    assert not reply.done()
    assert all(torch.allclose(torch.tensor(vector), reference(loaded, text), atol=1e-5)
               for text, vector in zip(TEXTS, vectors))
    assert reply.result(60)[0].tokens == 200


def test_base64_is_little_endian_float32_of_the_floats():
    vectors = [[0.25, -1.0, 3.1415927410125732], [2.0 ** -20, 0.0, -0.5]]  # each exact in float32
    answer = embedding_list(vectors, "m", 7, "base64")
    assert [list(struct.unpack("<3f", base64.b64decode(item["embedding"]))) for item in answer["data"]] == vectors
    assert embedding_list(vectors, "m", 7)["data"][1] == {"object": "embedding", "index": 1, "embedding": vectors[1]}
    assert answer["usage"] == {"prompt_tokens": 7, "total_tokens": 7} and answer["object"] == "list"


@pytest.mark.parametrize("body,field,words", [
    ({"input": ""}, "input", "non-empty string"),
    ({"input": []}, "input", "non-empty"),
    ({"input": ["a", 5]}, "input", "list of at most 64"),
    ({"input": ["a"] * 65}, "input", "at most 64"),
    ({"input": [[1, 2], [259]]}, "input", "token ids below 259"),
    ({"input": "a", "dimensions": 16}, "dimensions", "must be 32"),
    ({"input": "a", "encoding_format": "int8"}, "encoding_format", "'base64'"),
    ({"input": "a", "frobnicate": 1}, "frobnicate", "not a parameter"),
    ({}, "input", "required"),
])
def test_openai_body_errors_name_the_field(loaded, body, field, words):
    limits = LMService(Settings(), loaded, engine=BatchEngine(loaded, batch_wait_s=0)).limits
    with pytest.raises(InvalidField) as error:
        parse_embeddings(body, limits)
    assert error.value.field == field and words in error.value.message


def test_openai_body_accepts_openais_parameters(loaded):
    limits = LMService(Settings(), loaded, engine=BatchEngine(loaded, batch_wait_s=0)).limits
    request = parse_embeddings({"input": "a", "model": "m", "encoding_format": "base64", "dimensions": 32,
                                "user": "u"}, limits)
    assert (request.inputs, request.encoding_format, request.dimensions) == (["a"], "base64", 32)
    assert parse_embeddings({"input": [[1], [2, 3]]}, limits).inputs == [[1], [2, 3]]


@pytest.mark.parametrize("body,field", [({"texts": ["a", ""]}, "texts[1]"), ({"texts": []}, "texts"),
                                        ({"texts": "a"}, "texts"), ({}, "texts")])
def test_dream_body_errors_name_the_field(body, field):
    with pytest.raises(InvalidField) as error:
        parse_texts(body)
    assert error.value.field == field


def test_texts_past_the_token_limits_are_refused_by_index(loaded):
    service = LMService(Settings(max_input_tokens=600), loaded, engine=BatchEngine(loaded, batch_wait_s=0))
    with pytest.raises(InvalidField) as error:
        service.embeddings(["short", "x" * 513], "texts")
    assert error.value.field == "texts[1]" and "context length (512 tokens)" in error.value.message
    with pytest.raises(InvalidField) as error:
        LMService(Settings(max_input_tokens=10), loaded, engine=service.engine).embeddings(["x" * 11], "input")
    assert error.value.field == "input[0]" and "MAX_INPUT_TOKENS" in error.value.message
    with pytest.raises(InvalidField) as error:
        service.embeddings(["a", []], "input")
    assert error.value.field == "input[1]" and "empty" in error.value.message


@pytest.fixture
def blocked(loaded):
    """A static engine whose inference thread is held in a generation until `release` is set."""
    release = threading.Event()

    def held(loaded, group):
        release.wait(30)
        raise RuntimeError("released")

    engine = BatchEngine(loaded, batch_wait_s=0, run_group=held, max_queue=4)
    service = LMService(Settings(), loaded, engine=engine)
    engine.submit([service.sample(Task("", ["hold"], GREEDY), service.defaults, "c")])
    while engine.pending:
        time.sleep(0.01)
    yield engine
    release.set()


def test_a_departed_client_takes_its_texts_out_of_the_queue(loaded, blocked):
    service = LMService(Settings(), loaded, engine=blocked)
    with pytest.raises(ClientGone):
        service.embeddings(TEXTS, "input", gone=lambda: True)
    assert not blocked.pending


def test_past_the_request_timeout_the_texts_leave_the_queue_with_504(loaded, blocked):
    service = LMService(Settings(request_timeout=0.3), loaded, engine=blocked)
    with pytest.raises(SampleFailed) as error:
        service.embeddings(TEXTS, "input")
    assert isinstance(error.value.cause, GenerationTimeout) and classify(error.value).status == 504
    assert not blocked.pending


def test_more_texts_than_the_queue_holds_are_refused_whole(loaded, blocked):
    service = LMService(Settings(), loaded, engine=blocked)
    with pytest.raises(QueueFull):
        service.embeddings(["a"] * 5, "input")
    assert not blocked.pending


def test_a_job_withdrawn_after_it_left_the_queue_is_not_computed(loaded):
    engine = BatchEngine(loaded, max_batch_rows=1, batch_wait_s=0)
    jobs = [EmbeddingJob([1, 2]), EmbeddingJob([3])]
    jobs[0].future.set_running_or_notify_cancel()
    jobs[1].future.set_running_or_notify_cancel()
    jobs[0].abandoned = True
    engine._embed(jobs)
    with pytest.raises(CancelledError):
        jobs[0].future.result(0)
    assert len(jobs[1].future.result(0)) == 32 and engine.stats["embedding_passes"] == 1


# -- a real server ---------------------------------------------------------------------------------------------

API_KEY = "test-key"
SERVER_LIMITS = {"API_KEY": API_KEY, "MAX_QUEUE": "3", "MAX_CONTEXTS": "4", "MAX_INPUT_TOKENS": "64"}


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("embeddings")
    process, url = tiny_lm_server(folder / "model", SERVER_LIMITS, log_path=folder / "server.log")
    yield url
    process.stop()


@pytest.fixture(scope="module")
def client(tiny_server):
    return openai.OpenAI(base_url=f"{tiny_server}/v1", api_key=API_KEY, max_retries=0, timeout=60)


@pytest.mark.processes
def test_the_openai_client_gets_the_models_vectors_as_floats_and_base64(tiny_server, client, loaded):
    texts = TEXTS[:3]
    floats = client.embeddings.create(model="tiny", input=texts, encoding_format="float")
    assert floats.model == "tiny" and [item.index for item in floats.data] == [0, 1, 2]
    for text, item in zip(texts, floats.data):
        assert torch.allclose(torch.tensor(item.embedding), reference(loaded, text), atol=1e-5)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == sum(len(text.encode()) for text in texts)
    # The client asks for base64 unless told otherwise, and decodes it itself.
    assert [item.embedding for item in client.embeddings.create(model="tiny", input=texts).data] == \
        [item.embedding for item in floats.data]
    raw = client.embeddings.create(model="tiny", input=texts[1], encoding_format="base64", user="u1", dimensions=32)
    assert numpy.frombuffer(base64.b64decode(raw.data[0].embedding), "<f4").tolist() == floats.data[1].embedding
    ids = client.embeddings.create(model="tiny", input=[loaded.tokenizer(texts[1])["input_ids"]],
                                   encoding_format="float")
    assert ids.data[0].embedding == floats.data[1].embedding
    dream = requests.post(f"{tiny_server}/embeddings", json={"texts": texts}, timeout=60)  # no key: Dream's side
    assert dream.status_code == 200 and dream.json() == [item.embedding for item in floats.data]
    embedded = 3 * floats.usage.prompt_tokens + raw.usage.prompt_tokens + ids.usage.prompt_tokens
    metrics = requests.get(f"{tiny_server}/metrics", timeout=10).text
    assert f"transformers_lm_embedding_tokens_total {float(embedded)}" in metrics


@pytest.mark.processes
def test_the_server_refuses_with_errors_naming_the_field(tiny_server, client):
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model="tiny", input="a", dimensions=8)
    assert error.value.body["param"] == "dimensions"
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model="tiny", input=["fine", "x" * 65])
    assert error.value.body["param"] == "input[1]" and "MAX_INPUT_TOKENS" in error.value.body["message"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{tiny_server}/v1", api_key="wrong", max_retries=0).embeddings.create(
            model="tiny", input="a")
    dream = requests.post(f"{tiny_server}/embeddings", json={"texts": ["a"] * 5}, timeout=60)
    assert dream.status_code == 400 and dream.json()["field"] == "texts"
    too_long = requests.post(f"{tiny_server}/embeddings", json={"texts": ["a", "x" * 65]}, timeout=60)
    assert too_long.status_code == 400 and too_long.json()["field"] == "texts[1]"
    huge = requests.post(f"{tiny_server}/embeddings", json={"texts": ["x" * 5_000_000]}, timeout=60)
    assert huge.status_code == 413


@pytest.mark.processes
def test_more_texts_than_the_queue_holds_get_429_with_retry_after(tiny_server):
    """MAX_QUEUE is 3: four texts can never all wait, so the request is refused whole, as a burst would be."""
    openai_side = requests.post(f"{tiny_server}/v1/embeddings", json={"input": ["a", "b", "c", "d"]}, timeout=60,
                                headers={"Authorization": f"Bearer {API_KEY}"})
    assert openai_side.status_code == 429 and openai_side.headers["Retry-After"] == "1"
    assert openai_side.json()["error"]["type"] == "rate_limit_error"
    dream = requests.post(f"{tiny_server}/embeddings", json={"texts": ["a", "b", "c", "d"]}, timeout=60)
    assert dream.status_code == 429 and dream.json()["field"] is None
    assert requests.post(f"{tiny_server}/embeddings", json={"texts": ["a", "b", "c"]}, timeout=60).status_code == 200


@pytest.mark.processes
def test_a_paraphrase_is_closer_than_an_unrelated_sentence_on_smollm2(lm_server):
    client = openai.OpenAI(base_url=f"{lm_server}/v1", api_key="unused", max_retries=0, timeout=120)
    texts = ["The cat sat on the mat.", "A cat was sitting on the mat.", "Stock markets fell sharply today."]
    vectors = numpy.array([item.embedding for item in client.embeddings.create(model="smollm2", input=texts).data])
    assert numpy.allclose(numpy.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    similarity = vectors @ vectors.T  # unit vectors: dot products are cosines
    assert similarity[0, 1] > similarity[0, 2] and similarity[0, 1] > similarity[1, 2], similarity
