"""Building the LLM request: config merging, timeout, forwarded variables, config files."""
import pytest

from common.forwarded_variables import compose_sending_variables, load_envvars_to_send
from common.generative_config_files import load_generative_config
from common.llm_endpoints import UndeclaredEndpoint
from skills.dff_universal_prompted_skill.lm_request import build_lm_request, merge_config
from skills.dff_universal_prompted_skill.settings import Settings
from tests.helpers.dream_dialogs import make_dialog
from tests.helpers.skill_settings import DEFAULT_CONFIG, skill_settings



def test_no_caller_config_sends_the_default_config():
    assert merge_config(None, DEFAULT_CONFIG, 120) == (DEFAULT_CONFIG, 120.0)


def test_caller_config_overrides_the_default_and_its_timeout_is_taken_out():
    caller = {"temperature": 0.1, "timeout": 5}
    config, timeout = merge_config(caller, DEFAULT_CONFIG, 120)
    assert config == {"max_new_tokens": 120, "temperature": 0.1}
    assert timeout == 5.0
    assert caller == {"temperature": 0.1, "timeout": 5}
    assert DEFAULT_CONFIG == {"max_new_tokens": 120, "temperature": 0.9}


@pytest.mark.parametrize("caller", [{"timeout": 0}, {"timeout": "soon"}, {"timeout": True}, ["not", "a", "dict"]])
def test_bad_caller_config_is_a_value_error(caller):
    with pytest.raises(ValueError):
        merge_config(caller, DEFAULT_CONFIG, 120)


def test_attribute_value_wins_over_the_environment():
    sending = compose_sending_variables(
        ["SOME_API_KEY", "OPENAI_ORGANIZATION"],
        {"some_api_key": "from-attributes"},
        {"SOME_API_KEY": "from-env", "OPENAI_ORGANIZATION": "org-from-env"},
    )
    # One naming rule: OPENAI_ORGANIZATION travels as openai_organizations.
    assert sending == {"some_api_keys": ["from-attributes"], "openai_organizations": ["org-from-env"]}


def test_a_variable_set_nowhere_is_sent_as_none():
    assert compose_sending_variables(["SOME_API_KEY"], {"some_api_key": ""}, {}) == {"some_api_keys": [None]}


def test_kwargs_are_sent_one_value_per_sample_and_win():
    sending = compose_sending_variables(
        ["SOME_API_KEY"], {}, {"SOME_API_KEY": "env"}, {"some_api_key": "kwarg", "top_k": 5}
    )
    assert sending == {"some_api_keys": ["kwarg"], "top_ks": [5]}


def test_generative_configs_load_by_file_name():
    assert load_generative_config("default_generative_config.json")["max_new_tokens"] == 120


@pytest.mark.parametrize("name", ["", "missing.json", "../speaker_labels.py", "/etc/passwd"])
def test_bad_generative_config_names_are_value_errors(name):
    with pytest.raises(ValueError):
        load_generative_config(name)


def test_envvars_to_send_file_is_checked(tmp_path):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text('{"http://llm:1/respond": ["SOME_API_KEY"]}')
    bad.write_text('{"http://llm:1/respond": "SOME_API_KEY"}')
    assert load_envvars_to_send(good) == {"http://llm:1/respond": ["SOME_API_KEY"]}
    with pytest.raises(ValueError):
        load_envvars_to_send(bad)
    with pytest.raises(ValueError):
        load_envvars_to_send(tmp_path / "absent.json")
    unparsable = tmp_path / "unparsable.json"
    unparsable.write_text('{"http://[llm:1/respond": []}')
    with pytest.raises(ValueError, match="is not a URL"):
        load_envvars_to_send(unparsable)


def settings(**changes):
    return skill_settings(**{"envvars_to_send": {"http://keyed-llm:2/respond": ["SOME_API_KEY"]}, **changes})


def test_request_uses_the_defaults_when_the_caller_gives_nothing():
    request = build_lm_request(make_dialog(("hi", {})), settings(), environ={"SOME_API_KEY": "env"})
    assert (request.url, request.prompt, request.config, request.timeout) == (
        "http://default-llm:1/respond", "Respond like a friendly chatbot.", DEFAULT_CONFIG, 120.0
    )
    assert request.dialog_context == ["hi"]
    assert request.sending_variables == {}


def test_request_takes_the_callers_inputs_and_forwards_by_url():
    attributes = {
        "prompt": "Be brief.",
        "lm_service_url": "http://keyed-llm:2/respond",
        "lm_service_config": {"timeout": 3, "max_new_tokens": 10},
        "lm_service_kwargs": {"seed": 1},
        "some_api_key": "sk-secret",
    }
    request = build_lm_request(make_dialog(("hi", attributes)), settings(), environ={})
    assert request.url == "http://keyed-llm:2/respond"
    assert request.prompt == "Be brief."
    assert request.config == {"max_new_tokens": 10, "temperature": 0.9}
    assert request.timeout == 3.0
    assert request.sending_variables == {"some_api_keys": ["sk-secret"], "seeds": [1]}
    assert "sk-secret" not in repr(request)


@pytest.mark.parametrize("url", ["http://keyed-llm:2/respond/", "HTTP://Keyed-LLM:2/respond"])
def test_the_same_llm_url_written_differently_still_gets_its_variables(url):
    attributes = {"lm_service_url": url, "some_api_key": "sk-secret"}
    request = build_lm_request(make_dialog(("hi", attributes)), settings(), environ={})
    assert request.sending_variables == {"some_api_keys": ["sk-secret"]}


def test_an_unparsable_llm_url_is_a_value_error_naming_the_field_not_the_url():
    attributes = {"lm_service_url": "http://user:sk-secret@[llm/respond"}
    with pytest.raises(ValueError, match="^lm_service_url is not a valid URL$"):
        build_lm_request(make_dialog(("hi", attributes)), settings(), environ={})


@pytest.mark.parametrize("url", ["http://keyed-llm:2/generate", "http://keyed-llm:3/respond",
                                 "http://keyed-llm:2/respond?x=1", "https://keyed-llm:2/respond",
                                 "http://user:pw@keyed-llm:2/respond", "http://169.254.169.254/latest/meta-data"])
def test_another_path_port_query_scheme_or_host_is_an_undeclared_llm(url):
    with pytest.raises(UndeclaredEndpoint, match="^an undeclared LLM URL was refused: [^?@]*$"):
        build_lm_request(make_dialog(("hi", {"lm_service_url": url, "some_api_key": "k"})), settings(), environ={})


@pytest.mark.parametrize("url", ["http://default-llm:1/respond", "http://default-llm:1/respond/",
                                 "http://EXTRA:80/respond", "http://extra/respond"])
def test_the_default_and_the_allowed_urls_are_declared(url):
    request = build_lm_request(make_dialog(("hi", {"lm_service_url": url})),
                               settings(allowed_lm_service_urls=("http://extra/respond",)), environ={})
    assert request.url == url and request.sending_variables == {}


def test_allowed_urls_are_read_comma_separated_and_checked(tmp_path):
    envvars = tmp_path / "envvars.json"
    envvars.write_text("{}")
    base = {"ENVVARS_TO_SEND_FILE": str(envvars)}
    allowed = Settings.from_env({**base, "ALLOWED_LM_SERVICE_URLS": " http://a:1/respond, ,http://b/respond "})
    assert allowed.allowed_lm_service_urls == ("http://a:1/respond", "http://b/respond")
    with pytest.raises(ValueError, match="^ALLOWED_LM_SERVICE_URLS: "):
        Settings.from_env({**base, "ALLOWED_LM_SERVICE_URLS": "http://a:port/respond"})


@pytest.mark.parametrize("kwargs", [{"seed": 1, "user": "u", "p": 0.5, "flag": True, "none": None},
                                    {f"k{index}": index for index in range(16)}, {"text": "x" * 1000}])
def test_flat_short_kwargs_are_forwarded(kwargs):
    request = build_lm_request(make_dialog(("hi", {"lm_service_kwargs": kwargs})), settings(), environ={})
    assert request.sending_variables == {f"{name}s": [value] for name, value in kwargs.items()}


@pytest.mark.parametrize("kwargs", [{"seed": [1]}, {"seed": {"a": 1}}, {"text": "x" * 1001}, {"seed": float("inf")},
                                    {f"k{index}": index for index in range(17)}, {"a b": 1}, {"": 1}, {"1a": 1}])
def test_nested_long_or_many_kwargs_are_refused(kwargs):
    with pytest.raises(ValueError, match="^lm_service_kwargs"):
        build_lm_request(make_dialog(("hi", {"lm_service_kwargs": kwargs})), settings(), environ={})


@pytest.mark.parametrize(
    "attributes", [{"prompt": None}, {"lm_service_url": 5}, {"lm_service_kwargs": [1]}, {"lm_service_config": "x"}]
)
def test_malformed_inputs_are_value_errors(attributes):
    with pytest.raises(ValueError):
        build_lm_request(make_dialog(("hi", attributes)), settings(), environ={})


def test_settings_reject_bad_numbers(tmp_path):
    envvars = tmp_path / "envvars.json"
    envvars.write_text("{}")
    base = {"ENVVARS_TO_SEND_FILE": str(envvars)}
    assert Settings.from_env({**base, "GENERATIVE_TIMEOUT": ""}).generative_timeout == 120.0
    with pytest.raises(ValueError, match="GENERATIVE_TIMEOUT"):
        Settings.from_env({**base, "GENERATIVE_TIMEOUT": "abc"})
    with pytest.raises(ValueError, match="N_UTTERANCES_CONTEXT"):
        Settings.from_env({**base, "N_UTTERANCES_CONTEXT": "0"})
