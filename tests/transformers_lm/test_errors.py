"""api/errors.py: every exception of the service and the engine answers with its status, none with a Dream field
it is not about."""
import pytest

from services.transformers_lm.api.errors import STATUSES, classify
from services.transformers_lm.engine.errors import EngineStopped, GenerationFailed, GenerationTimeout, QueueFull
from services.transformers_lm.errors import ClientGone, InvalidField, NotReady, SampleFailed


@pytest.mark.parametrize("error,status,field,retry_after", [
    (InvalidField("configs[0].top_p", "must be in (0.0, 1.0]"), 400, "configs[0].top_p", None),
    (NotReady("the model is loading"), 503, "model", "5"),
    (ClientGone(), 499, "request", None),
    (QueueFull(256), 429, None, "1"),
    (EngineStopped(), 503, None, "5"),
    (SampleFailed("dialog_contexts[1]", GenerationTimeout()), 504, "dialog_contexts[1]", None),
    (SampleFailed("prompt[0]", GenerationFailed()), 500, "prompt[0]", None),
])
def test_each_exception_has_its_status(error, status, field, retry_after):
    answer = classify(error)
    assert (answer.status, answer.field, answer.headers.get("Retry-After")) == (status, field, retry_after)
    assert answer.message == (error.message if hasattr(error, "message") else str(error))


def test_foreign_exceptions_are_not_ours():
    assert classify(ValueError("x")) is None and classify(SampleFailed("f", ValueError("x"))) is None


def test_engine_errors_know_no_http():
    """The engine's exceptions are plain: no status, no field, no Retry-After."""
    for error in (QueueFull(1), EngineStopped(), GenerationTimeout(), GenerationFailed()):
        assert not {"status", "field", "retry_after"} & set(vars(error))
    assert {kind for kind in STATUSES} >= {QueueFull, EngineStopped, GenerationTimeout, GenerationFailed}
