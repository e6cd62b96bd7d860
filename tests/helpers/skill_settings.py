"""Skill settings for unit tests: no environment, no files."""
from skills.dff_universal_prompted_skill.settings import Settings

DEFAULT_CONFIG = {"max_new_tokens": 120, "temperature": 0.9}


def skill_settings(**changes) -> Settings:
    values = dict(service_name="skill", generative_timeout=120.0, n_utterances_context=7,
                  default_lm_service_url="http://default-llm:1/respond", default_lm_service_config=DEFAULT_CONFIG,
                  envvars_to_send={})
    return Settings(**{**values, **changes})
