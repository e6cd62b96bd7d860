"""gunicorn settings of transformers_lm, from Settings; every value can be overridden on the command line.

gunicorn puts its working directory (the repo root) on sys.path before it runs this file.
"""
from services.transformers_lm.settings import Settings

settings = Settings.from_env()

wsgi_app = "services.transformers_lm.server:create_app()"
bind = f"{settings.host}:{settings.port}"
# One model copy per worker; more workers only pay off with more cores or GPUs than one worker uses.
workers = settings.workers
# Handler threads just wait on the inference thread's queue, so many are cheap and allow batching. A connection
# that finds no free thread waits unseen in gthread's pool queue, so there is one for every request the door
# admits or holds (api/door.py) and a reserve: probes and refusals are answered at once, never behind generation.
worker_class = "gthread"
threads = settings.handler_threads
# gthread accepts no connection beyond worker_connections, and keeps idle keep-alive ones only up to
# worker_connections - threads (at or under 0 it closes every response's connection). Room for every thread's
# client to come back on its connection.
worker_connections = 2 * threads
# gthread workers heartbeat from their main loop, so long generations don't trip this; it bounds a hung worker.
timeout = settings.worker_timeout
graceful_timeout = 30
# Idle keep-alive connections close after this. gunicorn's 2 s was short: a client that waits what a 429's
# Retry-After (1 s) says and is a moment late meets its connection closing, a reset it cannot tell from a dropped
# request (13 of 259 requests idle 1.95-2.1 s were reset).
keepalive = 5
# gunicorn 27 gives every server the same default control socket path; two local servers would clash.
control_socket_disable = True
accesslog = "-"
errorlog = "-"
loglevel = settings.log_level
