"""Dialog context: last N utterances, cut where the prompt last changed."""
import pytest

from skills.dff_universal_prompted_skill.context import DEFAULT_PROMPT, dialog_context, last_human_attributes
from tests.helpers.dream_dialogs import make_dialog

A = {"prompt": "Prompt A"}
B = {"prompt": "Prompt B"}


def test_keeps_the_last_n_utterances():
    dialog = make_dialog(("h1", A), ("b1", {}), ("h2", A), ("b2", {}), ("h3", A))
    assert dialog_context(dialog, 3) == ["h2", "b2", "h3"]
    assert dialog_context(dialog, 7) == ["h1", "b1", "h2", "b2", "h3"]


def test_drops_the_turns_of_an_earlier_prompt():
    dialog = make_dialog(("h1", A), ("b1", {}), ("h2", B), ("b2", {}), ("h3", B))
    # b1 answered h1 under prompt A: both go.
    assert dialog_context(dialog, 7) == ["h2", "b2", "h3"]


def test_prompt_changed_on_the_last_utterance_keeps_only_it():
    dialog = make_dialog(("h1", A), ("b1", {}), ("h2", B))
    assert dialog_context(dialog, 7) == ["h2"]


def test_window_and_prompt_cut_together_take_the_shorter():
    dialog = make_dialog(("h1", A), ("b1", {}), ("h2", B), ("b2", {}), ("h3", B), ("b3", {}), ("h4", B))
    assert dialog_context(dialog, 2) == ["b3", "h4"]
    assert dialog_context(dialog, 7) == ["h2", "b2", "h3", "b3", "h4"]


def test_a_missing_prompt_counts_as_the_default_prompt():
    dialog = make_dialog(("h1", {}), ("b1", {}), ("h2", {"prompt": DEFAULT_PROMPT}))
    assert dialog_context(dialog, 7) == ["h1", "b1", "h2"]


def test_a_prompt_change_before_the_window_does_not_matter():
    dialog = make_dialog(("h1", A), ("b1", {}), ("h2", B), ("b2", {}), ("h3", B))
    assert dialog_context(dialog, 1) == ["h3"]


@pytest.mark.parametrize(
    "dialog",
    [
        None,
        {},
        {"human_utterances": [], "utterances": []},
        {"human_utterances": [{"text": "hi", "attributes": []}], "utterances": [{"text": "hi"}]},
        {"human_utterances": [{"text": "hi"}], "utterances": [{"text": None}]},
        {"human_utterances": [{"text": "hi"}]},
    ],
)
def test_malformed_dialogs_raise_value_error(dialog):
    with pytest.raises(ValueError):
        dialog_context(dialog, 7)


def test_inputs_come_from_the_last_human_utterance():
    dialog = make_dialog(("h1", A), ("b1", {"prompt": "bot"}), ("h2", B))
    assert last_human_attributes(dialog) == B
