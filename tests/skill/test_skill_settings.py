"""The skill's settings: declared once (README table in sync), read from the environment, gunicorn's included."""
import runpy
from pathlib import Path

import pytest

from common.forwarded_variables import load_envvars_to_send
from common.generative_config_files import load_generative_config
from common.settings import declarations
from tests.helpers.readme_tables import documented, readme_table
from skills.dff_universal_prompted_skill.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def from_the_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the default ENVVARS_TO_SEND_FILE is relative to the working directory


def test_the_readme_env_table_lists_exactly_the_declared_settings_and_defaults():
    assert sorted(readme_table(ROOT / "skills/dff_universal_prompted_skill/README.md")) == sorted(documented(Settings))


def test_an_empty_environment_gives_the_defaults():
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings == Settings(
        service_name="dff_universal_prompted_skill",
        generative_timeout=120.0,
        n_utterances_context=7,
        default_lm_service_url="http://transformers-lm-smollm2:8186/respond",
        default_lm_service_config=load_generative_config("default_generative_config.json"),
        envvars_to_send=load_envvars_to_send("common/envvars_to_send.json"),
        sentry_dsn=None,
        host="0.0.0.0",
        port=8147,
        log_level="info",
    )


def test_an_empty_value_means_the_default():
    every_variable_empty = {decl.env: "" for decl in declarations(Settings).values()}
    assert Settings.from_env(every_variable_empty) == Settings.from_env({})


def test_values_are_parsed_and_files_loaded(tmp_path):
    envvars = tmp_path / "envvars.json"
    envvars.write_text('{"http://llm:1/respond": ["SOME_API_KEY"]}')
    settings = Settings.from_env({"GENERATIVE_TIMEOUT": "2.5", "N_UTTERANCES_CONTEXT": "3", "SERVICE_PORT": "9002",
                                  "ENVVARS_TO_SEND_FILE": str(envvars), "SENTRY_DSN": "https://key@sentry/1",
                                  "DEFAULT_LM_SERVICE_CONFIG": "transformers_lm_smollm2.json"})
    assert (settings.generative_timeout, settings.n_utterances_context, settings.port) == (2.5, 3, 9002)
    assert settings.envvars_to_send == {"http://llm:1/respond": ["SOME_API_KEY"]}
    assert settings.default_lm_service_config == load_generative_config("transformers_lm_smollm2.json")
    assert settings.sentry_dsn == "https://key@sentry/1" and "key@sentry" not in repr(settings)


@pytest.mark.parametrize("name,value,message", [
    ("GENERATIVE_TIMEOUT", "-1", "GENERATIVE_TIMEOUT must be a positive float, got '-1'"),
    ("N_UTTERANCES_CONTEXT", "0", "N_UTTERANCES_CONTEXT must be a positive int, got '0'"),
    ("DEFAULT_LM_SERVICE_CONFIG", "../secrets.json", "DEFAULT_LM_SERVICE_CONFIG: generative config must be a file"),
    ("ENVVARS_TO_SEND_FILE", "absent.json", "ENVVARS_TO_SEND_FILE: ENVVARS_TO_SEND file absent.json not found"),
    ("LOG_LEVEL", "verbose", "LOG_LEVEL must be debug, info, warning, error or critical, got 'verbose'"),
])
def test_a_bad_value_is_an_error_naming_the_variable(name, value, message):
    with pytest.raises(ValueError) as error:
        Settings.from_env({name: value})
    assert str(error.value).startswith(message)


def test_the_gunicorn_config_takes_its_values_from_the_settings(monkeypatch):
    for name, value in {"SERVICE_HOST": "127.0.0.1", "SERVICE_PORT": "9003", "GENERATIVE_TIMEOUT": "45.5",
                        "LOG_LEVEL": "", "MAX_CONCURRENT_REQUESTS": "20"}.items():
        monkeypatch.setenv(name, value)
    config = runpy.run_path(str(ROOT / "skills/dff_universal_prompted_skill/gunicorn.conf.py"))
    # a thread for every request the door admits, and a reserve for /health and refusals
    assert (config["bind"], config["workers"], config["threads"], config["timeout"], config["loglevel"]) == (
        "127.0.0.1:9003", 2, 28, 75, "info")
    assert config["wsgi_app"] == "skills.dff_universal_prompted_skill.server:create_app()"
    assert (config["worker_class"], config["control_socket_disable"]) == ("gthread", True)
