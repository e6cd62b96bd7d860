"""Dream's post-processing of a generated hypothesis into the reply a skill gets."""
from .engine.stops import StopMatcher
from .prompting import reverse_replacement


def finish_reply(text: str, matcher: StopMatcher, replacement=()) -> str:
    """Dream's post-processing: cut at the next turn, undo prompt replacements, drop 0-1 char noise."""
    reply = reverse_replacement(matcher.cut(text), replacement).strip()
    return reply if len(reply) >= 2 else ""
