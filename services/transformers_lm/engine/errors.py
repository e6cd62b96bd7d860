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
