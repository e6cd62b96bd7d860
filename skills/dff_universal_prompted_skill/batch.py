"""Answering a dialog batch: one LLM request per dialog, sent concurrently, each bounded in time."""
import logging
import time
from concurrent.futures import Executor, TimeoutError as FutureTimeout

from common.llm_endpoints import UndeclaredEndpoint
from common.prompted_generative import GenerativeServiceError, send_request_to_prompted_generative_service

from .lm_request import LMRequest, build_lm_request
from .replies import build_reply, empty_reply
from .settings import Settings

logger = logging.getLogger(__name__)

# requests' timeout bounds each socket wait, not the whole exchange (DNS, a trickling
# answer); past the timeout plus this slack the dialog is answered empty regardless.
DEADLINE_SLACK_S = 1.0


def respond_to_batch(dialog_batch: list, settings: Settings, executor: Executor) -> list:
    """One five-part reply per dialog, in order; a dialog that fails gets an empty reply."""
    pending = [_submit(index, dialog, settings, executor) for index, dialog in enumerate(dialog_batch)]
    return [_collect(index, *job) if job else empty_reply() for index, job in enumerate(pending)]


def _submit(index, dialog, settings, executor):
    try:
        lm_request = build_lm_request(dialog, settings)
    except UndeclaredEndpoint as exc:  # no connection is made
        logger.warning("dialog %d: empty reply: %s", index, exc)
        return None
    except ValueError as exc:
        logger.warning("dialog %d: malformed, empty reply: %s", index, exc)
        return None
    except Exception:
        logger.exception("dialog %d: empty reply: unexpected error reading the dialog", index)
        return None
    deadline = time.monotonic() + lm_request.timeout + DEADLINE_SLACK_S
    return lm_request, executor.submit(_generate, lm_request, deadline - DEADLINE_SLACK_S), deadline


def _generate(lm_request: LMRequest, answer_by: float) -> list:
    """The reply from the LLM; the wait for a free executor slot counts, so a call that starts late gets only
    the time its dialog has left, and frees its slot when the dialog's empty reply is sent."""
    logger.debug("prompt %r, context %r", lm_request.prompt, lm_request.dialog_context)
    started = time.monotonic()
    time_left = round(answer_by - started, 1)  # to a tenth of a second, as the log line says it
    if time_left <= 0:
        raise GenerativeServiceError(f"no LLM call could start within {lm_request.timeout}s")
    hypotheses = send_request_to_prompted_generative_service(
        lm_request.dialog_context,
        lm_request.prompt,
        lm_request.url,
        lm_request.config,
        time_left,
        lm_request.sending_variables,
    )
    logger.info(
        "%s answered in %.2fs with %d hypotheses (forwarded: %s)",
        lm_request.url,
        time.monotonic() - started,
        len(hypotheses),
        sorted(lm_request.sending_variables) or "nothing",
    )
    logger.debug("hypotheses %r", hypotheses)
    return build_reply(hypotheses)


def _collect(index, lm_request: LMRequest, future, deadline) -> list:
    try:
        return future.result(timeout=max(0.0, deadline - time.monotonic()))
    except FutureTimeout:
        future.cancel()
        logger.warning(
            "dialog %d: empty reply: %s gave no answer within %ss", index, lm_request.url, lm_request.timeout
        )
    except (GenerativeServiceError, ValueError) as exc:
        logger.warning("dialog %d: empty reply: %s", index, exc)
    except Exception:
        # Never a 500 for the batch: a bug met by one dialog must not cost the others their replies.
        logger.exception("dialog %d: empty reply: unexpected error calling %s", index, lm_request.url)
    return empty_reply()

