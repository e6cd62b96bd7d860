"""What every service process sets up before serving: one log format, secret redaction, Sentry."""
import logging

from common import redaction

LOG_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"


def bootstrap(log_level: str, sentry_dsn: str = None):
    """Log at `log_level` in LOG_FORMAT with secrets redacted, and report errors to Sentry if a DSN is set.
    Secrets: the values of secret-named environment variables (HF_ACCESS_TOKEN, OPENAI_API_KEY, ...)."""
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    redaction.install_logging_filter()
    redaction.remember_environ()
    if sentry_dsn:
        init_sentry(sentry_dsn)


def init_sentry(dsn: str):
    import sentry_sdk
    from sentry_sdk.integrations.flask import FlaskIntegration

    # Request bodies and stack locals may hold forwarded API keys: never send them.
    sentry_sdk.init(dsn=dsn, integrations=[FlaskIntegration()], send_default_pii=False,
                    max_request_body_size="never", include_local_variables=False,
                    before_send=redaction.before_send)
