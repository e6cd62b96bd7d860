"""The Dream wiring registry: how the repo is read (`repo`), what a name must look like (`naming`), where a problem
is (`lines`), which ports are written where (`ports`) and which checks exist (`checks`).
`python -m tools.registry_check` runs every check."""

from .checks import (CHECKS, check_cards, check_components_tsv, check_dist_overlays, check_engines,
                     check_envvars_to_send, check_generative_configs, check_models_md, check_pipelines, check_ports,
                     check_same_definition, check_service_configs, check_skill_llm_urls, check_wait_hosts, run_all)
from .lines import Problem
from .naming import LLMNames
from .repo import Repo

__all__ = [
    "CHECKS", "LLMNames", "Problem", "Repo", "check_cards", "check_components_tsv", "check_dist_overlays",
    "check_engines", "check_envvars_to_send", "check_generative_configs", "check_models_md", "check_pipelines",
    "check_ports", "check_same_definition", "check_service_configs", "check_skill_llm_urls", "check_wait_hosts",
    "run_all",
]
