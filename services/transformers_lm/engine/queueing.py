"""The bounded queue every engine keeps: past `max_queue` waiting samples a request is refused whole (QueueFull),
so every accepted request is answered within its deadline instead of piling up. Callers hold their own lock."""
import time

from .errors import QueueFull


def enqueue(pending, samples: list, max_queue: int):
    if len(pending) + len(samples) > max_queue:
        raise QueueFull(max_queue)
    now = time.monotonic()
    for sample in samples:
        sample.submitted_at = now  # for time-to-first-token
    pending.extend(samples)


def take_back(pending, sample) -> bool:
    """True if `sample` was still waiting (it is removed); False if it already left the queue."""
    if sample not in pending:
        return False
    pending.remove(sample)
    return True
