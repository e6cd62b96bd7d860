"""Unit tests of transformers_lm's pure logic: settings, parameters, prompts, window fitting, reply cutting."""
import copy

import pytest

from common.generative_config_files import GENERATIVE_CONFIGS_DIR
from services.transformers_lm.errors import InvalidField
from services.transformers_lm.generation_params import Limits, load_defaults, merge, parse
from services.transformers_lm.prompting import PromptBuilder, apply_replacement, reverse_replacement, speaker_roles
from services.transformers_lm.replies import StopMatcher, finish_reply
from services.transformers_lm.api.dream_protocol import parse_goals, parse_respond
from services.transformers_lm.settings import Settings, parse_flag
from tests.helpers.tiny_model import tiny_tokenizer


# --- settings -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [("", False), ("0", False), ("1", True), ("true", True),
                                            ("False", False), (None, False), (" 1 ", True)])
def test_flags_parse_leniently(value, expected):
    assert parse_flag(value) is expected


def test_bad_flag_is_a_clear_error():
    with pytest.raises(ValueError, match="HALF|boolean"):
        parse_flag("maybe")


def test_settings_from_env_accept_dream_names_and_eos_alias():
    settings = Settings.from_env({"HALF_PRECISION": "", "EOS_TOKENS": "</s>,\\nUser", "LANGUAGE": "ru"})
    assert settings.half_precision is False
    assert settings.stop_strings == ("</s>", "\nUser")
    assert settings.speakers == ("Human", "Assistant")
    assert Settings.from_env({"ADDITIONAL_EOS_TOKENS": "###", "EOS_TOKENS": "x"}).stop_strings == ("###",)


# --- generation parameters ------------------------------------------------------------------------------------

def test_request_config_merges_over_defaults_without_mutating_either():
    defaults = {"max_new_tokens": 120, "temperature": 0.9, "do_sample": True, "replacement": [["a", "b"]]}
    request = {"temperature": 0.5, "num_return_sequences": 3}
    saved_defaults, saved_request = copy.deepcopy(defaults), copy.deepcopy(request)
    merged = merge(defaults, request)
    assert merged == {"max_new_tokens": 120, "temperature": 0.5, "do_sample": True, "replacement": [["a", "b"]],
                      "num_return_sequences": 3}
    assert defaults == saved_defaults and request == saved_request
    params = parse(merged, "configs[0]")
    assert params.generate_kwargs == {"temperature": 0.5, "do_sample": True}
    assert (params.max_new_tokens, params.num_return_sequences, params.replacement) == (120, 3, (("a", "b"),))


def test_max_length_means_reply_length_unless_max_new_tokens_given():
    assert merge({"max_new_tokens": 120}, {"max_length": 60})["max_new_tokens"] == 60
    assert merge({"max_new_tokens": 120}, {"max_length": 60, "max_new_tokens": 10})["max_new_tokens"] == 10
    assert "max_length" not in merge({}, {"max_length": 60})


def test_min_new_tokens_never_exceeds_max_new_tokens():
    params = parse(merge({"min_new_tokens": 8, "max_new_tokens": 120}, {"max_new_tokens": 1}), "c")
    assert params.generate_kwargs["min_new_tokens"] == 1


def test_temperature_zero_is_greedy_and_drops_sampling_knobs():
    params = parse({"do_sample": True, "temperature": 0, "top_p": 0.9}, "c")
    assert params.generate_kwargs == {"do_sample": False}


@pytest.mark.parametrize("config,field", [
    ({"temperature": -1}, "configs[2].temperature"),
    ({"top_p": 1.5}, "configs[2].top_p"),
    ({"max_new_tokens": 0}, "configs[2].max_new_tokens"),
    ({"max_new_tokens": "10"}, "configs[2].max_new_tokens"),
    ({"num_return_sequences": True}, "configs[2].num_return_sequences"),
    ({"do_sample": "yes"}, "configs[2].do_sample"),
    ({"foo": 1}, "configs[2].foo"),
    ({"output_scores": True}, "configs[2].output_scores"),
    ({"stop_strings": [""]}, "configs[2].stop_strings"),
    ({"replacement": [["x"]]}, "configs[2].replacement"),
    ({"eos_token_id": 10**9}, "configs[2].eos_token_id"),
    ({"num_beams": 2, "num_return_sequences": 3}, "configs[2].num_return_sequences"),
])
def test_invalid_parameters_name_their_field(config, field):
    with pytest.raises(InvalidField) as caught:
        parse(config, "configs[2]", Limits(vocab_size=1000))
    assert caught.value.field == field


def test_every_shipped_generative_config_is_valid():
    names = [path.name for path in GENERATIVE_CONFIGS_DIR.glob("*.json")]
    assert "default_generative_config.json" in names
    for name in names:
        load_defaults(name)


def test_dream_default_config_matches_dream():
    assert load_defaults("default_generative_config.json") == {
        "max_new_tokens": 120, "min_new_tokens": 8, "top_p": 0.9, "temperature": 0.9, "do_sample": True,
        "num_return_sequences": 2}


def test_seeded_samples_never_share_a_batch_but_lengths_do():
    first = parse({"do_sample": True, "max_new_tokens": 5}, "c")
    second = parse({"do_sample": True, "max_new_tokens": 50, "num_return_sequences": 3}, "c")
    assert first.batch_key == second.batch_key
    seeded = [parse({"do_sample": True, "seed": 1}, "c") for _ in range(2)]
    assert seeded[0].batch_key != seeded[1].batch_key


# --- request bodies -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body,field", [
    ([], "body"),
    ({}, "dialog_contexts"),
    ({"dialog_contexts": []}, "dialog_contexts"),
    ({"dialog_contexts": "hi"}, "dialog_contexts"),
    ({"dialog_contexts": [[]]}, "dialog_contexts[0]"),
    ({"dialog_contexts": [["a", 3]]}, "dialog_contexts[0][1]"),
    ({"dialog_contexts": [["a", "b\ud800"]]}, "dialog_contexts[0][1]"),  # a lone surrogate
    ({"dialog_contexts": [["a"]], "prompts": ["\udfff"]}, "prompts[0]"),
    ({"dialog_contexts": [["a"]], "configs": [{"stop_strings": ["x\ud800"]}]}, "configs[0].stop_strings"),
    ({"dialog_contexts": [["a"]], "prompts": ["x", "y"]}, "prompts"),
    ({"dialog_contexts": [["a"]], "prompts": [5]}, "prompts[0]"),
    ({"dialog_contexts": [["a"]], "configs": [[1]]}, "configs[0]"),
    ({"dialog_contexts": [["a"]], "configs": {"x": 1}}, "configs"),
])
def test_malformed_respond_bodies_name_the_field(body, field):
    with pytest.raises(InvalidField) as caught:
        parse_respond(body)
    assert caught.value.field == field


def test_respond_body_defaults_and_forwarded_keys_are_accepted():
    tasks = parse_respond({"dialog_contexts": [["a"], ["b", "c"]], "prompts": [], "configs": None,
                           "openai_api_keys": ["sk-secret", "sk-secret"]})
    assert [(task.prompt, task.turns, task.config) for task in tasks] == [("", ["a"], None), ("", ["b", "c"], None)]


def test_goals_body():
    assert parse_goals({"prompts": ["p"]}) == (["p"], [None])
    with pytest.raises(InvalidField) as caught:
        parse_goals({"prompts": ["p", None]})
    assert caught.value.field == "prompts[1]"


# --- prompts and the window -----------------------------------------------------------------------------------

def test_roles_count_back_from_the_last_human_turn():
    assert speaker_roles(["a", "b", "c"]) == ["user", "assistant", "user"]
    assert speaker_roles(["a", "b"]) == ["assistant", "user"]


def test_dream_format_without_chat_template():
    builder = PromptBuilder(tiny_tokenizer(chat_template=False), "auto", ("Human", "AI"))
    text = builder.text("Be brief.", ["Hi", "Hello!", "How are you?"])
    assert text == "Be brief.\nHuman: Hi\nAI: Hello!\nHuman: How are you?\nAI:"
    assert builder.text("", ["Hi"]) == "Human: Hi\nAI:"


def test_russian_speakers_in_dream_format():
    builder = PromptBuilder(tiny_tokenizer(chat_template=False), "dream", Settings(language="RU").speakers)
    assert builder.text("", ["Привет", "Здравствуйте", "Как дела?"]).endswith(
        "Human: Привет\nAssistant: Здравствуйте\nHuman: Как дела?\nAssistant:")


def test_chat_template_gets_system_prompt_and_alternating_turns():
    builder = PromptBuilder(tiny_tokenizer(), "auto")
    assert builder.text("Be brief.", ["Hello!", "How are you?"]) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n")


def test_prompt_format_can_be_forced():
    assert PromptBuilder(tiny_tokenizer(), "dream").text("", ["Hi"]) == "Human: Hi\nAI:"
    with pytest.raises(ValueError, match="chat template"):
        PromptBuilder(tiny_tokenizer(chat_template=False), "chat_template")


def test_template_that_rejects_system_and_assistant_first_still_works():
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = (
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}{% endif %}"
        "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}")
    text = PromptBuilder(tokenizer).text("Be brief.", ["Hello!", "How are you?"])
    assert text == "[user]Be brief.\n\nHow are you?"


def test_fit_drops_oldest_turns_first_and_keeps_the_prompt():
    builder = PromptBuilder(tiny_tokenizer(chat_template=False), "dream")
    prompt, turns = "PROMPT", ["one " * 20, "two " * 20, "three " * 5]
    full = len(builder.ids(prompt, turns))
    ids = builder.fit(prompt, turns, budget=full, field="dialog_contexts[0]")
    assert len(ids) == full
    ids = builder.fit(prompt, turns, budget=full - 1, field="dialog_contexts[0]")
    text = builder.tokenizer.decode(ids)
    assert text.startswith("PROMPT\n") and "one" not in text and "two" in text and "three" in text
    ids = builder.fit(prompt, turns, budget=len(builder.ids(prompt, turns[-1:])), field="dialog_contexts[0]")
    assert builder.tokenizer.decode(ids) == "PROMPT\nHuman: " + "three " * 5 + "\nAI:"


def test_fit_reports_a_dialog_that_cannot_fit():
    builder = PromptBuilder(tiny_tokenizer(), "auto")
    with pytest.raises(InvalidField) as caught:
        builder.fit("p" * 50, ["hello"], budget=20, field="dialog_contexts[3]")
    assert caught.value.field == "dialog_contexts[3]" and "20" in caught.value.message


# --- replies ----------------------------------------------------------------------------------------------------

def test_reply_is_cut_at_the_next_speaker_label_and_stop_strings():
    matcher = StopMatcher(("###",))
    assert matcher.cut(" Paris is the capital.\nHuman: And Spain?") == " Paris is the capital.\n"
    assert matcher.cut("Sure!\nUser: hi") == "Sure!\n"
    assert matcher.cut("Да.\nЧеловек: а ещё?") == "Да.\n"
    assert matcher.cut("Done ### trailing") == "Done "
    assert matcher.cut("AI: I echo my label. Human: x") == "I echo my label. "
    assert matcher.cut("The MAI: suffix is not a label") == "The MAI: suffix is not a label"


def test_finish_reply_drops_noise_and_undoes_replacement():
    matcher = StopMatcher()
    assert finish_reply(" a\nHuman: b", matcher) == ""
    pairs = (("Dream", "D#"), ("bot", "B#"))
    original = "Dream is a bot platform."
    replaced = apply_replacement(original, pairs)
    assert "Dream" not in replaced and "bot" not in replaced
    assert reverse_replacement(replaced, pairs) == original
    assert finish_reply(" " + replaced + "\nHuman: more", matcher, pairs) == original


def test_model_defaults_above_the_service_limits_are_lowered_not_refused():
    from services.transformers_lm.generation_params import capped_defaults
    defaults = {"max_length": 300, "num_return_sequences": 5, "do_sample": True}
    assert capped_defaults(defaults, 100, 2) == {"max_new_tokens": 100, "num_return_sequences": 2, "do_sample": True}
    assert defaults["max_length"] == 300
    with pytest.raises(InvalidField, match="100"):
        parse(merge(capped_defaults(defaults, 100, 2), {"max_new_tokens": 101}), "c", Limits(max_new_tokens=100))


@pytest.mark.parametrize("messages", [[{"role": "system", "content": ""}], [{"role": "assistant", "content": "hi"}]])
def test_a_chat_of_one_system_or_assistant_message_renders(messages):
    """Found by schemathesis: both were a 500 (the template refused an empty conversation)."""
    text = PromptBuilder(tiny_tokenizer()).messages_text(messages)
    assert text.endswith("<|im_start|>assistant\n") and text.startswith(f"<|im_start|>{messages[0]['role']}")
