"""What every engine counts: its `stats` (shown by /health) and, once the app attaches one, its Metrics."""
import time


class Instruments:
    def __init__(self, stats: dict):
        self.stats = stats
        self.metrics = None  # an api.metrics.Metrics, once the app attaches one

    def count(self, **amounts):
        for name, amount in amounts.items():
            self.stats[name] = self.stats.get(name, 0) + amount

    def observe_batch(self, rows: int):
        if self.metrics is not None:
            self.metrics.observe_batch(rows)

    def add_tokens(self, count: int):
        self.count(generated_tokens=count)
        if self.metrics is not None:
            self.metrics.add_tokens(count)

    def add_prompt_tokens(self, computed: int, cached: int = 0):
        self.count(prefix_cached_tokens=cached)
        if self.metrics is not None:
            self.metrics.add_prompt_tokens(computed, cached)

    def add_embedding_tokens(self, count: int):
        if self.metrics is not None:
            self.metrics.add_embedding_tokens(count)

    def first_token(self, sample):
        if self.metrics is not None:
            self.metrics.observe_ttft(time.monotonic() - sample.submitted_at)

    def observe_upstream(self, seconds: float, outcome: str):
        """ENGINE=openai: one request to the server, its duration and how it ended ("ok" or an error's kind)."""
        self.count(**{f"upstream_{outcome}": 1})
        if self.metrics is not None:
            self.metrics.observe_upstream(seconds, outcome)
