"""Every name of an LLM component derives from its short name, the one way the checker and add_model spell it."""

import pytest

from tools.registry import LLMNames


def test_names_of_a_short_name():
    names = LLMNames("qwen05b")
    assert names.valid
    assert names.container == "transformers-lm-qwen05b"
    assert names.service_name == "transformers_lm_qwen05b"
    assert names.gen_config == "transformers_lm_qwen05b.json"
    assert names.gen_config_path == "common/generative_configs/transformers_lm_qwen05b.json"
    assert names.service_config_dir == "services/transformers_lm/service_configs/transformers-lm-qwen05b"
    assert names.host(8187) == "transformers-lm-qwen05b:8187"
    assert names.url(8187) == "http://transformers-lm-qwen05b:8187/respond"


def test_names_of_a_container_round_trip():
    assert LLMNames.of("transformers-lm-gptj") == LLMNames("gptj")
    assert LLMNames.of(LLMNames("gptj").container).gen_config == "transformers_lm_gptj.json"


@pytest.mark.parametrize("short", ["", "Bad-Name", "qwen-05b", "qwen_05b", "0qwen", "QWEN", "a" * 41, None, "gptj\n"])
def test_invalid_short_names_are_refused(short):
    assert not LLMNames(short).valid


@pytest.mark.parametrize("short", ["a", "gptj", "a" * 40])
def test_valid_short_names(short):
    assert LLMNames(short).valid
