"""Where a generated reply ends: stop strings and the speaker labels of a next turn."""
import re

from common.speaker_labels import ALL_LABELS, LABEL_STOP_STRINGS, LEADING_LABEL

LABEL_PATTERN = r"(?<!\w)(?:" + "|".join(map(re.escape, ALL_LABELS)) + r")\s*:"


class StopMatcher:
    """Finds the first stop string or speaker label in a reply (a label the reply *starts* with is the
    model echoing its own turn, not a new turn, and is skipped).

    Dream's endpoints cut at speaker labels; the OpenAI endpoints (chat templates) pass labels=False and
    stop only at the caller's and the service's stop strings.
    """

    def __init__(self, stop_strings=(), labels: bool = True):
        parts = [re.escape(text) for text in sorted(set(stop_strings), key=len, reverse=True)]
        self.labels = labels
        self.stop_strings = tuple(stop_strings)
        self.pattern = re.compile("|".join(parts + [LABEL_PATTERN] if labels else parts or [r"(?!)"]))
        self.prefixes = tuple(stop_strings) + (LABEL_STOP_STRINGS if labels else ())
        self.longest = max([len(text) for text in stop_strings] + ([len(label) + 2 for label in ALL_LABELS]
                                                                     if labels else [0]))

    def body_start(self, text: str) -> int:
        match = LEADING_LABEL.match(text) if self.labels else None
        return match.end() if match else 0

    def find(self, text: str, changed_from: int = 0):
        """Index where the reply ends, or None. Text before `changed_from` was already searched
        (minus the longest stop), so a growing reply costs the same to check at every step."""
        start = max(self.body_start(text), changed_from - self.longest)
        match = self.pattern.search(text, start)
        return match.start() if match else None

    def holdback(self, text: str) -> int:
        """Characters at the end of `text` that may be the start of a stop string: not safe to stream yet."""
        for size in range(min(len(text), self.longest), 0, -1):
            tail = text[-size:]
            if any(prefix.startswith(tail) for prefix in self.prefixes) or (
                    self.labels and tail[-1:].isspace() and tail.rstrip() in ALL_LABELS):
                return size
        return 0

    def cut(self, text: str) -> str:
        start = self.body_start(text)
        end = self.find(text)
        return text[start:end]
