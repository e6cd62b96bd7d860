"""The bounded queue every engine keeps: past `max_queue` waiting samples a request is refused whole (QueueFull),
so every accepted request is answered within its deadline instead of piling up. Callers hold their own lock."""
import time

from .errors import QueueFull


def enqueue(pending, samples: list, max_queue: int, free_rows: int = 0):
    """Past `max_queue` samples that would still wait once the batch's `free_rows` are taken, QueueFull: so a burst
    at an idle engine, or a request that comes just as rows free, is not refused for a wait of one step (the door
    admitted it: api/door.py counts what runs and what waits)."""
    waiting = len(pending) + len(samples)
    for sample in (*pending, *samples):  # the engine admits them in this order while their rows fit
        if not 0 < sample.rows <= free_rows:
            break
        free_rows -= sample.rows
        waiting -= 1
    if waiting > max_queue:
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
