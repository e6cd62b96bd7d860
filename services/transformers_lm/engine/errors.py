"""What the engine raises. Only the HTTP edge (api/errors.py) knows which status each one is."""


class EngineError(Exception):
    """Base of the engine's exceptions; str() is a message for the caller."""


class QueueFull(EngineError):
    def __init__(self, capacity: int):
        super().__init__(f"the queue is full ({capacity} samples waiting); retry later")
        self.capacity = capacity


class EngineStopped(EngineError):
    def __init__(self):
        super().__init__("the inference thread stopped; this worker is restarting")


class GenerationTimeout(EngineError):
    def __init__(self):
        super().__init__("generation timed out (REQUEST_TIMEOUT)")


class GenerationFailed(EngineError):
    def __init__(self):
        super().__init__("generation failed")


class EngineUnavailable(EngineError):
    """ENGINE=openai: the server can't be reached (or has not answered yet)."""

    def __init__(self, reason: str):
        super().__init__(f"the engine is unavailable: {reason}")


class EngineFailed(EngineError):
    """ENGINE=openai: the server answered with an error of its own (5xx) or something unreadable."""

    def __init__(self, reason: str):
        super().__init__(f"the engine failed: {reason}")


class EngineRejected(EngineError):
    """ENGINE=openai: the server refused the request (4xx); its message says why."""

    def __init__(self, reason: str):
        super().__init__(f"the engine refused the request: {reason}")


class EngineTimeout(GenerationTimeout):
    def __init__(self, seconds: float):
        EngineError.__init__(self, f"the engine sent nothing for {seconds:g} s (ENGINE_TIMEOUT)")
