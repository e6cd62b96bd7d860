"""The quality gate on the embedded SmolLM2: the shipped default as it resolves on this machine (DTYPE=auto,
QUANTIZE=auto: int4 on bf16 activations on a CPU) and every precision that can be a default elsewhere (bfloat16,
which DTYPE=auto takes on CPUs with native bf16; int8; int4) keep perplexity on tests/data/perplexity.txt within
5 % of float32's and the held answers."""
import re

import pytest

from services.transformers_lm.model.loading import load_model
from services.transformers_lm.model.quality import perplexity
from services.transformers_lm.service import LMService, Task
from services.transformers_lm.settings import Settings
from tests.helpers.quality_gate import CANDIDATES, GATE, REFERENCE, TEXT

pytestmark = pytest.mark.slow

GREEDY = {"do_sample": False, "num_return_sequences": 1, "max_new_tokens": 24}


def settings(dtype: str, quantize: str, language: str = "EN") -> Settings:
    return Settings.from_env({"DTYPE": dtype, "QUANTIZE": quantize, "LANGUAGE": language})


@pytest.fixture(scope="module")
def reference() -> float:
    loaded = load_model(settings(*REFERENCE))
    return perplexity(loaded.model, loaded.tokenizer, TEXT)


def answer(svc, prompt: str, utterance: str) -> str:
    [[reply]], errors = svc.respond([Task(prompt, [utterance], GREEDY)])
    assert errors == [None]
    return reply


@pytest.mark.parametrize("dtype, quantize", CANDIDATES)
def test_perplexity_and_held_answers_pass_the_gate(reference, dtype, quantize):
    loaded = load_model(settings(dtype, quantize))
    svc = LMService(settings(dtype, quantize), loaded)
    figure = perplexity(loaded.model, loaded.tokenizer, TEXT)
    assert 10 < reference < 60  # the text is ordinary prose for this model
    precision = loaded.precision.describe()
    assert figure <= GATE * reference, f"{precision}: {figure:.2f} against float32's {reference:.2f}"
    assert "Paris" in answer(svc, "You are a helpful assistant.", "What is the capital of France?")
    russian_service = LMService(settings(dtype, quantize, "RU"), loaded)  # the same weights, Russian speakers
    russian = answer(russian_service, "Ты полезный ассистент. Отвечай по-русски.", "Привет! Как дела?")
    assert re.search("[а-яА-ЯёЁ]{3}", russian), russian
