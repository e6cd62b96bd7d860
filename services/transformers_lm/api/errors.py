"""The status (and Retry-After) each exception of the service and the engine answers with over HTTP."""
from common.http import HTTPError

from ..engine.errors import (EngineFailed, EngineRejected, EngineStopped, EngineUnavailable, GenerationFailed,
                             GenerationTimeout, QueueFull)
from ..errors import ClientGone, InvalidField, NotReady, SampleFailed

# Exception type -> (status, Retry-After seconds or None). 499 is nginx's "client closed request", for the log.
STATUSES = {
    InvalidField: (400, None),
    ClientGone: (499, None),
    NotReady: (503, 5),
    QueueFull: (429, 1),
    EngineStopped: (503, 5),
    GenerationTimeout: (504, None),
    GenerationFailed: (500, None),
    EngineRejected: (400, None),
    EngineFailed: (502, None),
    EngineUnavailable: (503, 5),
}


def classify(error: Exception):
    """The HTTPError of one of our exceptions (a failed sample answers as its cause does), else None."""
    cause = error.cause if isinstance(error, SampleFailed) else error
    for kind, (status, retry_after) in STATUSES.items():
        if isinstance(cause, kind):
            headers = {"Retry-After": str(retry_after)} if retry_after else None
            return HTTPError(status, getattr(error, "message", str(error)), getattr(error, "field", None), headers)
    return None
