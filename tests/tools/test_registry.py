"""The registries agree with the compose files, and each check names the problem when they do not."""

import re
from pathlib import Path

import pytest

from tests.helpers.repo_copy import copy_repo
from tools import registry as rc

ROOT = Path(__file__).resolve().parents[2]
EN = "assistant_dists/universal_prompted_assistant"
RU = "assistant_dists/universal_ru_prompted_assistant"
GPTJ_CARD = next(p for p, card in rc.Repo(ROOT).cards.items() if card["name"] == "transformers_lm_gptj")


@pytest.mark.processes
@pytest.mark.parametrize("check", rc.CHECKS, ids=lambda c: c.__name__)
def test_repository_is_consistent(check):
    assert [str(p) for p in check(ROOT)] == []


def test_every_container_is_registered():
    repo = rc.Repo(ROOT)
    names = set(repo.all_components) | set(repo.root_services)
    assert names == set(repo.tsv_ports)
    assert "transformers-lm-smollm2" in repo.components("universal_ru_prompted_assistant")


@pytest.fixture
def broken_repo(tmp_path):
    """A copy of the repository's wiring files, to be broken by one edit."""
    copy = tmp_path / "repo"
    copy_repo(copy)

    def edit(rel, old, new):
        path = copy / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {rel}: update this test"
        path.write_text(text.replace(old, new, 1))
        return copy

    return edit


OASST = "services/transformers_lm/service_configs/transformers-lm-oasst12b/service.yml"
GPTJ_GEN = "common/generative_configs/transformers_lm_gptj.json"

# (file, old text, new text, check, words the report must contain[, text on the line the report must name]):
# the report has a line `file:N: ...` holding words[0], N the line of that text in the broken file, else of the edit.
BREAKAGES = {
    "duplicate port": ("components.tsv", "8130\ttransformers-lm-gptj\n", "8130\ttransformers-lm-gptj\n8130\tother\n",
                       rc.check_components_tsv, ["port 8130 listed twice"], "8130\tother"),
    "misspelled tsv name": ("components.tsv", "transformers-lm-vicuna13b", "transformers-lm-vicuna-13b",
                            rc.check_ports, ["transformers-lm-vicuna-13b is no container",
                                             "transformers-lm-vicuna13b has no row"]),
    "dev port": (f"{EN}/dev.yml", "8130:8130", "8131:8131", rc.check_ports,
                 ["components.tsv says 8130", "transformers-lm-gptj", "8131"]),
    "root compose port": ("docker-compose.yml", "- 4242:4242", "- 4243:4243", rc.check_ports,
                          ["agent: published port is 4243"]),
    "WAIT_HOSTS port": (f"{EN}/docker-compose.override.yml", "lm-gptjt:8161,", "lm-gptjt:8162,",
                        rc.check_ports, ["transformers-lm-gptjt: WAIT_HOSTS is 8162"]),
    "build arg port": (f"{EN}/docker-compose.override.yml", "SERVICE_PORT: 8146", "SERVICE_PORT: 8145", rc.check_ports,
                       ["transformers-lm-bloomz7b: build arg SERVICE_PORT is 8145"]),
    "command port": (f"{EN}/docker-compose.override.yml", "-b 0.0.0.0:8146", "-b 0.0.0.0:8999", rc.check_ports,
                     ["transformers-lm-bloomz7b: command bind port is 8999"]),
    "proxy port": (f"{RU}/proxy.yml", "proxy.deeppavlov.ai:8178", "proxy.deeppavlov.ai:8177", rc.check_ports,
                   ["transformers-lm-rugpt35: PROXY_PASS port is 8177"]),
    "proxy PORT": (f"{RU}/proxy.yml", "PORT: 8178", "PORT: 8177", rc.check_ports,
                   ["transformers-lm-rugpt35: PORT is 8177"]),
    "card url": (GPTJ_CARD, "transformers-lm-gptj:8130", "transformers-lm-gptj:8131", rc.check_ports,
                 ["connector url is 8131"]),
    "card key": (GPTJ_CARD, "tags: null\n", "tag: null\n", rc.check_cards, ["missing ['tags']", "['tag']"]),
    "card service": (GPTJ_CARD, "service_configs/transformers-lm-gptj", "service_configs/transformers-lm-gpt",
                     rc.check_cards, ["is not the service config of transformers-lm-gptj"]),
    "card endpoint": (GPTJ_CARD, "endpoint: respond", "endpoint: generate", rc.check_cards,
                      ["does not end with endpoint generate"], "  url: "),
    "pipeline url": (f"{RU}/pipeline_conf.json", "ru-prompted-skill:8162", "ru-prompted-skill:8163",
                     rc.check_pipelines, ["differs from components/"]),
    "pipeline host": (f"{RU}/pipeline_conf.json", "ru-prompted-skill:8162", "prompted-skill:8147", rc.check_pipelines,
                      ["dff-universal-prompted-skill is not a container of this dist"]),
    "pipeline component": (f"{RU}/pipeline_conf.json", '"component": "components/', '"component": "components/x',
                           rc.check_pipelines, ["is no card"]),
    "pipeline service": (f"{RU}/pipeline_conf.json", '"service": "skills/', '"service": "skills/x', rc.check_pipelines,
                         ["source.service differs"]),
    "environment.yml": ("services/transformers_lm/service_configs/transformers-lm-gptj/environment.yml",
                        "HALF_PRECISION: 1", "HALF_PRECISION: 0", rc.check_service_configs,
                        ["transformers-lm-gptj/environment.yml", "HALF_PRECISION"]),
    "service.yml proxy": ("services/transformers_lm/service_configs/transformers-lm-oasst12b/service.yml",
                          "PROXY_PASS: proxy.deeppavlov.ai:8158", "PROXY_PASS: elsewhere:8158",
                          rc.check_service_configs, ["transformers-lm-oasst12b: proxy differs"]),
    "service.yml name": (OASST, "name: transformers-lm-oasst12b", "name: transformers-lm-oasst",
                         rc.check_service_configs, ["name is 'transformers-lm-oasst'"]),
    "service.yml args": (OASST, "HALF_PRECISION: 1", "HALF_PRECISION: 0", rc.check_service_configs,
                         ["compose build args or command differ"]),
    "service.yml command": (OASST, "command: gunicorn -c", "command: gunicorn --reload -c", rc.check_service_configs,
                            ["compose build args or command differ"]),
    "MODELS.md row": ("MODELS.md", "| transformers-lm-rugpt35 |", "| transformers-lm-rugpt-35 |", rc.check_models_md,
                      ["transformers-lm-rugpt-35 is no LLM container", "no row for transformers-lm-rugpt35"]),
    "MODELS.md missing row": ("MODELS.md", "| transformers-lm-rugpt35 |", "| transformers-lm-rugpt-35 |",
                              rc.check_models_md, ["no row for transformers-lm-rugpt35"], "| container |"),
    "envvars entry": ("common/envvars_to_send.json", '"http://transformers-lm-bloomz7b:8146/respond": [],', "",
                      rc.check_envvars_to_send, ["no entry for http://transformers-lm-bloomz7b:8146/respond"], "{"),
    "envvars key": ("common/envvars_to_send.json", "bloomz7b:8146/respond", "bloomz7b:8145/respond",
                    rc.check_envvars_to_send, ["bloomz7b:8145/respond is no LLM container URL"]),
    "envvars value": ("common/envvars_to_send.json", "gptj:8130/respond\": []", "gptj:8130/respond\": [\"lower\"]",
                      rc.check_envvars_to_send, ["value must be a list of env var names"]),
    "generation key": (GPTJ_GEN, '"max_new_tokens"', '"max_tokenz"', rc.check_generative_configs, ["'max_tokenz'"]),
    "invalid generative config": (GPTJ_GEN, '"top_p": 0.9,', '"top_p": 0.9,,', rc.check_generative_configs,
                                  ["invalid JSON"]),
    "GENERATIVE_CONFIG arg": (f"{EN}/docker-compose.override.yml", "GENERATIVE_CONFIG: transformers_lm_gptj.json",
                              "GENERATIVE_CONFIG: default_generative_config.json", rc.check_generative_configs,
                              ["transformers-lm-gptj: GENERATIVE_CONFIG should be transformers_lm_gptj.json"]),
    "WAIT_HOSTS": (f"{EN}/docker-compose.override.yml", "transformers-lm-gptjt:8161,\n", "",
                   rc.check_wait_hosts, ["WAIT_HOSTS lacks transformers-lm-gptjt"], "WAIT_HOSTS:"),
    "WAIT_HOSTS stray": (f"{EN}/docker-compose.override.yml", "transformers-lm-gptjt:8161,\n",
                         "transformers-lm-gptjt:8161,\n        transformers-lm-ruxglm:8171,\n", rc.check_wait_hosts,
                         ["WAIT_HOSTS lists transformers-lm-ruxglm"], "transformers-lm-ruxglm:8171"),
    "agent pipeline": (f"{EN}/docker-compose.override.yml", "pipeline_config=assistant_dists/", "pipeline_config=x/",
                       rc.check_wait_hosts, ["agent command does not run"]),
    "overlay stray container": (f"{EN}/cpu.yml", "services:\n", "services:\n  transformers-lm-ruxglm: {}\n",
                                rc.check_dist_overlays, ["transformers-lm-ruxglm is not a container"],
                                "transformers-lm-ruxglm:"),
    "dev lacks container": (f"{RU}/dev.yml", "  dff-universal-ru-prompted-skill:", "  dff-universal-ru-skill:",
                            rc.check_dist_overlays, ["dff-universal-ru-prompted-skill has no volumes/ports"],
                            "services:"),
    "proxy context": (f"{RU}/proxy.yml", "context: ./proxy", "context: ./services", rc.check_dist_overlays,
                      ["transformers-lm-ruxglm is not built from proxy/"]),
    "cpu half precision": (f"{RU}/cpu.yml", "HALF_PRECISION: 0", "HALF_PRECISION: 1", rc.check_dist_overlays,
                           ["transformers-lm-ruxglm needs"]),
    "shared container drift": (f"{RU}/docker-compose.override.yml", "LANGUAGE: EN", "LANGUAGE: RU",
                               rc.check_same_definition, ["transformers-lm-smollm2: build differs"]),
    "skill default LLM": (f"{RU}/docker-compose.override.yml", "URL: http://transformers-lm-ruxglm:8171",
                          "URL: http://transformers-lm-gptj:8130", rc.check_skill_llm_urls,
                          ["dff-universal-ru-prompted-skill", "is no LLM of this dist"]),
    "skill allowed URL": (f"{RU}/dev.yml", "    ports:\n      - 8162:8162",
                          "    environment:\n      ALLOWED_LM_SERVICE_URLS: http://transformers-lm-ruxglm:8171/respond,"
                          " http://mongo:27017/\n    ports:\n      - 8162:8162", rc.check_skill_llm_urls,
                          ["dff-universal-ru-prompted-skill: ALLOWED_LM_SERVICE_URLS http://mongo:27017/ is no LLM"],
                          "ALLOWED_LM_SERVICE_URLS"),
}


@pytest.mark.parametrize("name", BREAKAGES)
def test_check_names_the_problem_and_its_line(broken_repo, name):
    rel, old, new, check, words, *at = BREAKAGES[name]
    copy = broken_repo(rel, old, new)
    report = [str(p) for p in check(copy)]
    for word in words:
        assert word in "\n".join(report), report
    text = (copy / rel).read_text() if at else (ROOT / rel).read_text()  # the edit starts where `old` stood
    line = text[:text.index(at[0] if at else old)].count("\n") + 1
    assert any(p.startswith(f"{rel}:{line}: ") and words[0] in p for p in report), (f"{rel}:{line}", report)


def test_second_card_is_reported_at_its_service_line(tmp_path):
    copy_repo(tmp_path / "repo")
    text = (ROOT / GPTJ_CARD).read_text()
    (tmp_path / "repo/components/zzzzzzzzzzzzzzzzzzzz.yml").write_text(text)
    line = text[:text.index("\nservice:")].count("\n") + 2
    report = [str(p) for p in rc.check_cards(tmp_path / "repo")]
    assert report == [f"components/zzzzzzzzzzzzzzzzzzzz.yml:{line}: transformers-lm-gptj: 2 cards with service "
                      "services/transformers_lm/service_configs/transformers-lm-gptj"], report


def test_stray_service_config_is_reported(tmp_path):
    copy_repo(tmp_path / "repo")
    stray = tmp_path / "repo/services/transformers_lm/service_configs/transformers-lm-gone"
    stray.mkdir()
    report = [str(p) for p in rc.check_service_configs(tmp_path / "repo")]
    assert report == ["services/transformers_lm/service_configs/transformers-lm-gone: "
                      "transformers-lm-gone is no container of any dist"]


def test_missing_card_is_reported(tmp_path):
    copy_repo(tmp_path / "repo")
    (tmp_path / "repo" / GPTJ_CARD).unlink()
    report = [str(p) for p in rc.check_cards(tmp_path / "repo")]
    assert any("transformers-lm-gptj: 0 cards" in line for line in report), report


@pytest.mark.processes
def test_cli_exits_zero_on_the_repo_and_one_with_file_and_line_on_a_broken_copy(broken_repo):
    import subprocess
    import sys

    ok = subprocess.run([sys.executable, "-m", "tools.registry_check", str(ROOT)], cwd=ROOT,
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout
    copy = broken_repo("components.tsv", "8186\t", "8187\t")
    broken = subprocess.run([sys.executable, "-m", "tools.registry_check", str(copy)], cwd=ROOT,
                            capture_output=True, text=True)
    assert broken.returncode == 1
    *problems, summary = broken.stdout.splitlines()
    assert summary == f"{len(problems)} disagreement(s)"
    assert problems and all(re.match(r"[\w./-]+:\d+: \S", p) for p in problems), broken.stdout
    dev = (copy / EN / "dev.yml").read_text()
    line = dev[:dev.index("8186:8186")].count("\n") + 1
    assert f"{EN}/dev.yml:{line}: transformers-lm-smollm2: port is 8186, components.tsv says 8187" in problems
