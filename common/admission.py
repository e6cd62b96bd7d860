"""Requests in flight counted against a bound: the door of a service (the LLM service's, the skill's)."""
import threading


class Gate:
    """At most `capacity` inside at once: `enter()` tells whether one more may come in, and each `enter()`
    that said True is matched by one `leave()`."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.inside = 0
        self._lock = threading.Lock()

    def enter(self) -> bool:
        with self._lock:
            if self.inside >= self.capacity:
                return False
            self.inside += 1
            return True

    def leave(self):
        with self._lock:
            self.inside -= 1
