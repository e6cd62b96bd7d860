"""Asking a prompted generative service (DESIGN §1) for the hypotheses of one dialog."""
from typing import List, Mapping, Optional

import requests

# Keys of the request body itself; a forwarded value must not overwrite them.
REQUEST_KEYS = frozenset({"dialog_contexts", "prompts", "configs"})


class GenerativeServiceError(RuntimeError):
    """The service was unreachable, too slow, or answered something unusable.

    Messages name the URL and the cause, never the request body: it may carry
    forwarded secrets.
    """


def send_request_to_prompted_generative_service(
    dialog_context: List[str],
    prompt: str,
    url: str,
    config: Optional[dict],
    timeout: float,
    sending_variables: Mapping,
) -> List[str]:
    """The hypotheses the service at ``url`` generates for one dialog context.

    ``timeout`` bounds the connection and each wait for data, in seconds. Raises
    ValueError when a forwarded key clashes with the body's own keys, and
    GenerativeServiceError when the service fails.
    """
    clashing = REQUEST_KEYS.intersection(sending_variables)
    if clashing:
        raise ValueError(f"forwarded values may not replace request keys: {sorted(clashing)}")
    body = {"dialog_contexts": [dialog_context], "prompts": [prompt], "configs": [config], **sending_variables}
    try:
        # A redirect would lead where no setting declared: it is an answer like any other non-200.
        response = requests.post(url, json=body, timeout=timeout, allow_redirects=False)
    except requests.Timeout:
        raise GenerativeServiceError(f"{url} did not answer within {timeout}s") from None
    except requests.RequestException as exc:
        raise GenerativeServiceError(f"{url} could not be reached: {exc}") from None
    if response.status_code != 200:
        # The body is not quoted: an error page may echo the request.
        raise GenerativeServiceError(f"{url} answered HTTP {response.status_code}")
    try:
        answer = response.json()
    except ValueError:
        raise GenerativeServiceError(f"{url} answered something other than JSON") from None
    if not (
        isinstance(answer, list)
        and answer
        and isinstance(answer[0], list)
        and all(isinstance(hypothesis, str) for hypothesis in answer[0])
    ):
        raise GenerativeServiceError(f"{url} answered an unexpected shape (expected a list of lists of strings)")
    return answer[0]
