"""gunicorn settings of the prompted skill, from Settings (compose adds -b 0.0.0.0:<port>, which wins over bind).

gunicorn puts its working directory (the repo root) on sys.path before it runs this file.
"""
from skills.dff_universal_prompted_skill.settings import Settings

settings = Settings.from_env()

wsgi_app = "skills.dff_universal_prompted_skill.server:create_app()"
bind = f"{settings.host}:{settings.port}"
# The work is waiting on LLMs: a few processes with many threads each. A request that finds no free thread waits
# unseen in gthread's queue, past the agent's timeout, so every request the door admits has one (server.py), and
# a reserve answers /health and the door's refusals at once.
worker_class = "gthread"
workers = 2
threads = settings.max_concurrent_requests + 8
# Above GENERATIVE_TIMEOUT: a worker busy waiting on an LLM must not count as hung.
timeout = int(settings.generative_timeout) + 30
# gunicorn's control socket has one default path per user: two servers on a host
# (this skill next to an LLM outside Docker) would fight over it, and nothing uses it.
control_socket_disable = True
loglevel = settings.log_level
