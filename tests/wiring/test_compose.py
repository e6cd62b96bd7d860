"""Every supported launch combination of each dist is a valid compose project (docker-compose config)."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tools.registry import Repo


ROOT = Path(__file__).resolve().parents[2]
REPO = Repo(ROOT)
COMBOS = {
    "override": ["docker-compose.override.yml"],
    "dev": ["docker-compose.override.yml", "dev.yml"],
    "cpu": ["docker-compose.override.yml", "dev.yml", "cpu.yml"],
    "proxy": ["docker-compose.override.yml", "dev.yml", "proxy.yml"],
}
COMPOSE = shutil.which("docker-compose")
pytestmark = [pytest.mark.processes,
              pytest.mark.skipif(COMPOSE is None, reason="needs docker-compose (apt-get install docker-compose)")]


def compose_config(dist: str, files: list[str]) -> dict:
    args = [COMPOSE, "-f", "docker-compose.yml"]
    for name in files:
        args += ["-f", f"assistant_dists/{dist}/{name}"]
    result = subprocess.run(args + ["config"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_dists_found():
    assert REPO.dists == ["universal_prompted_assistant", "universal_ru_prompted_assistant"]


@pytest.mark.parametrize("combo", COMBOS)
@pytest.mark.parametrize("dist", REPO.dists)
def test_config_is_valid(dist, combo):
    services = compose_config(dist, COMBOS[combo])["services"]
    assert set(services) == {"agent", "mongo", *REPO.components(dist)}
    assert f"assistant_dists/{dist}/pipeline_conf.json" in services["agent"]["command"]


@pytest.mark.parametrize("dist", REPO.dists)
def test_cpu_runs_every_llm_in_float32_without_gpu(dist):
    services = compose_config(dist, COMBOS["cpu"])["services"]
    llms = [name for name, spec in REPO.components(dist).items() if REPO.is_llm(spec)]
    assert llms
    for name in llms:
        env = services[name]["environment"]
        assert env["CUDA_VISIBLE_DEVICES"] == "", name
        assert str(env["HALF_PRECISION"]) == "0", name


@pytest.mark.parametrize("dist", REPO.dists)
def test_proxy_replaces_gpu_models_by_nginx(dist):
    services = compose_config(dist, COMBOS["proxy"])["services"]
    proxied = REPO.services(f"assistant_dists/{dist}/proxy.yml")
    assert proxied and "transformers-lm-smollm2" not in proxied
    for name in proxied:
        spec = services[name]
        port = REPO.tsv_ports[name]
        assert Path(spec["build"]["context"]) == ROOT / "proxy", name
        assert spec["command"][0] == "nginx"
        assert str(spec["environment"]["PORT"]) == str(port)
        assert spec["environment"]["PROXY_PASS"] == f"proxy.deeppavlov.ai:{port}"
