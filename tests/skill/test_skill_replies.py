"""Reply building: confidence rule, speaker-label stripping, Dream's five-part shape."""
import pytest

from skills.dff_universal_prompted_skill.replies import (
    CAN_NOT_CONTINUE,
    DEFAULT_CONFIDENCE,
    LOW_CONFIDENCE,
    build_reply,
    confidence,
    empty_reply,
)


@pytest.mark.parametrize("text", ["Hello.", "Really?", "Wow!", "Well…", 'He said "hi."', "(Indeed!)"])
def test_finished_sentences_get_the_default_confidence(text):
    assert confidence(text) == DEFAULT_CONFIDENCE == 0.9


@pytest.mark.parametrize("text", ["Hello", "Hello,", "Hello:", 'She said "Paris"'])
def test_unfinished_sentences_get_the_low_confidence(text):
    assert confidence(text) == LOW_CONFIDENCE == 0.7


def test_one_entry_per_hypothesis_in_five_parts():
    assert build_reply(["Hi there!", "AI: How can I help"]) == [
        ["Hi there!", "How can I help."],
        [0.9, 0.7],
        [{}, {}],
        [{}, {}],
        [{"can_continue": CAN_NOT_CONTINUE}, {"can_continue": CAN_NOT_CONTINUE}],
    ]


def test_empty_hypotheses_are_dropped():
    assert build_reply(["", "  ", "Human:  ", "Fine."])[0] == ["Fine."]


def test_no_usable_hypothesis_gives_the_empty_reply():
    assert build_reply([]) == build_reply([" "]) == empty_reply() == [[""], [0.0], [{}], [{}], [{}]]
