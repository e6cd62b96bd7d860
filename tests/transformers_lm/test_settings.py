"""transformers_lm's settings: declared once (README table in sync), read from the environment, gunicorn's included.

Also the generic loader of common/settings.py (a tests/common/test_settings.py would clash with this file's
module name: the test folders are not packages).
"""
import dataclasses
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from common.settings import declarations, load, setting
from tests.helpers.readme_tables import documented, readme_table
from services.transformers_lm.settings import Settings, default_threads

ROOT = Path(__file__).resolve().parents[2]
GUNICORN_CONF = ROOT / "services/transformers_lm/gunicorn.conf.py"


def test_the_readme_env_table_lists_exactly_the_declared_settings_and_defaults():
    assert sorted(readme_table(ROOT / "services/transformers_lm/README.md")) == sorted(documented(Settings))


def test_an_empty_environment_gives_the_defaults():
    settings = Settings.from_env({})
    assert settings == Settings()
    assert (settings.model_name_or_path, settings.prompt_format, settings.batching, settings.half_precision) == (
        "", "auto", "continuous", False)
    assert (settings.max_input_tokens, settings.max_body_bytes, settings.torch_threads) == (
        1 << 30, 4 * 1024 * 1024, default_threads())
    assert (settings.host, settings.port, settings.workers, settings.threads, settings.worker_timeout,
            settings.log_level) == ("0.0.0.0", 8130, 1, 0, 600, "info")
    assert settings.handler_threads == 5 * (16 + 256) + 32  # per admitted request, 1 + 4 to hold; the reserve


def test_an_empty_value_means_the_default():
    every_variable_empty = {decl.env: "" for decl in declarations(Settings).values()}
    assert Settings.from_env(every_variable_empty) == Settings.from_env({})


def test_values_are_parsed():
    settings = Settings.from_env({"SERVICE_PORT": "9000", "WORKERS": "3", "PREFIX_CACHE_MB": "0", "LOG_LEVEL": "WARNING",
                                  "PROMPT_FORMAT": " Dream ", "USE_FLASH_ATTENTION_2": "yes", "REQUEST_TIMEOUT": "1.5"})
    assert (settings.port, settings.workers, settings.prefix_cache_mb, settings.log_level, settings.prompt_format,
            settings.use_flash_attention_2, settings.request_timeout) == (9000, 3, 0.0, "warning", "dream", True, 1.5)


def test_the_alias_is_read_when_the_variable_is_unset_or_empty():
    assert Settings.from_env({"EOS_TOKENS": "</s>"}).stop_strings == ("</s>",)
    assert Settings.from_env({"ADDITIONAL_EOS_TOKENS": "", "EOS_TOKENS": "</s>"}).stop_strings == ("</s>",)


@pytest.mark.parametrize("name,value,message", [
    ("PROMPT_FORMAT", "jinja", "PROMPT_FORMAT must be auto, chat_template or dream, got 'jinja'"),
    ("BATCHING", "Dynamic", "BATCHING must be continuous or static, got 'dynamic'"),
    ("MAX_QUEUE", "0", "MAX_QUEUE must be a positive int, got '0'"),
    ("MAX_QUEUE", "many", "MAX_QUEUE must be a positive int, got 'many'"),
    ("BATCH_WAIT_MS", "-1", "BATCH_WAIT_MS must be a non-negative float, got '-1'"),
    ("TORCH_NUM_THREADS", "2.5", "TORCH_NUM_THREADS must be an int, got '2.5'"),
    ("HALF_PRECISION", "maybe", "HALF_PRECISION must be a boolean flag"),
    ("LOG_LEVEL", "loud", "LOG_LEVEL must be debug, info, warning, error or critical, got 'loud'"),
    ("SERVICE_PORT", "http", "SERVICE_PORT must be a non-negative int, got 'http'"),
])
def test_a_bad_value_is_an_error_naming_the_variable(name, value, message):
    with pytest.raises(ValueError) as error:
        Settings.from_env({name: value})
    assert str(error.value).startswith(message)


def test_secrets_stay_out_of_repr():
    settings = Settings.from_env({"HF_ACCESS_TOKEN": "hf_secret", "API_KEY": "sk-secret", "SENTRY_DSN": "https://k@s/1"})
    assert (settings.hf_token, settings.api_key, settings.sentry_dsn) == ("hf_secret", "sk-secret", "https://k@s/1")
    assert "secret" not in repr(settings) and "k@s" not in repr(settings)


def test_the_gunicorn_config_takes_its_values_from_the_settings(monkeypatch):
    for name, value in {"SERVICE_HOST": "127.0.0.1", "SERVICE_PORT": "9001", "WORKERS": "2", "GUNICORN_THREADS": "",
                        "GUNICORN_TIMEOUT": "60", "LOG_LEVEL": "DEBUG"}.items():
        monkeypatch.setenv(name, value)
    config = runpy.run_path(str(GUNICORN_CONF))
    assert (config["bind"], config["workers"], config["threads"], config["timeout"], config["loglevel"]) == (
        "127.0.0.1:9001", 2, 5 * (16 + 256) + 32, 60, "debug")  # per admitted request, 1 + 4 to hold; the reserve
    assert config["wsgi_app"] == "services.transformers_lm.server:create_app()"
    assert (config["worker_class"], config["graceful_timeout"], config["control_socket_disable"]) == (
        "gthread", 30, True)


@pytest.mark.processes
def test_gunicorn_runs_the_config_from_the_repo_root_without_torch_or_flask():
    # gunicorn execs the file with its working directory on sys.path, as `python -c` has it.
    code = (f"import runpy, sys; runpy.run_path({str(GUNICORN_CONF)!r}); "
            "print(sorted({'torch', 'transformers', 'flask'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- the generic loader ---------------------------------------------------------------------------------------

def loud(text):
    if text == "bad":
        raise ValueError("no good")
    return text.upper()


def three() -> int:
    """Three, computed."""
    return 3


@dataclasses.dataclass(frozen=True)
class Example:
    text: str = setting("EXAMPLE_TEXT", loud, "quiet", "a text default, parsed when needed")
    computed: int = setting("EXAMPLE_COMPUTED", int, three, "a factory default")
    plain: float = setting("EXAMPLE_PLAIN", float, 1.0, aliases=("OLD_PLAIN", "OLDER_PLAIN"))


def test_text_defaults_are_parsed_and_factories_run():
    assert load(Example, {}) == Example() == Example("QUIET", 3, 1.0)
    assert load(Example, {"OLDER_PLAIN": "2", "OLD_PLAIN": ""}).plain == 2.0


def test_a_foreign_parsers_message_follows_the_variable_name():
    with pytest.raises(ValueError, match="^EXAMPLE_TEXT: no good$"):
        load(Example, {"EXAMPLE_TEXT": "bad"})


def test_the_documented_defaults():
    assert documented(Example) == [("EXAMPLE_TEXT", (), "quiet"), ("EXAMPLE_COMPUTED", (), "three, computed"),
                                   ("EXAMPLE_PLAIN", ("OLD_PLAIN", "OLDER_PLAIN"), "1")]


def test_the_readme_table_reader(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Environment\n\n| variable | default | meaning |\n|---|---|---|\n"
                      "| `A` (alias `B`) | `1` | a |\n| `C` | the model window | c |\n\nText `D` | x |\n\n"
                      "## Next\n\n| `E` | `2` | e |\n")
    assert readme_table(readme) == [("A", ("B",), "1"), ("C", (), "the model window")]
