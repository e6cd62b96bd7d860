"""What the service logic raises about a request. Only the HTTP edge (api/errors.py) maps them to statuses."""


class ServiceError(Exception):
    """A message for the caller and the request field it is about (None: the request as a whole)."""

    def __init__(self, field, message: str):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class InvalidField(ServiceError):
    """The caller sent something this service refuses; `field` names it (`configs[0].temperature`)."""


class NotReady(ServiceError):
    """The model is still loading, or loading failed."""

    def __init__(self, message: str):
        super().__init__("model", message)


class ClientGone(ServiceError):
    """The client closed the connection while its request waited: nobody reads the answer."""

    def __init__(self):
        super().__init__("request", "the client closed the connection")


class SampleFailed(ServiceError):
    """One sample of a request got no answer; `cause` is the engine's error."""

    def __init__(self, field: str, cause: Exception):
        super().__init__(field, str(cause))
        self.cause = cause
