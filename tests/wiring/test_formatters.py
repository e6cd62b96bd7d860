"""state_formatters.dp_formatters: the agent's dialog -> the skill's request, the skill's reply -> hypotheses.

The dialogs are built as dp-agent's `Dialog.to_dict()` builds them (2.2.0, and 2.3.0a where it differs), which is
what both versions hand a dialog formatter.
"""
import ast
import json
import sys
from copy import deepcopy
from datetime import datetime
from pathlib import Path

import pytest

from skills.dff_universal_prompted_skill.lm_request import build_lm_request
from skills.dff_universal_prompted_skill.replies import CAN_NOT_CONTINUE, build_reply, empty_reply
from state_formatters import dp_formatters
from state_formatters.dp_formatters import dff_universal_prompted_skill_formatter, skill_with_attributes_formatter_service
from tests.helpers.skill_settings import skill_settings

SKILL = "dff_universal_prompted_skill"
UTTERANCE_KEYS = {"text", "attributes", "annotations", "active_skill", "user"}
WHEN = datetime(2024, 5, 1, 12, 30, 15, 123456)


class ObjectId:
    """Stands for bson's ObjectId: a value json.dumps cannot write."""

    def __str__(self):
        return "65f0c0ffee0123456789abcd"


def human_dict(attributes=None):
    return {
        "id": "65f0c0ffee0123456789abcd",
        "user_external_id": "user-1",
        "persona": {},
        "profile": dict.fromkeys(["name", "gender", "birthdate", "location", "home_coordinates", "work_coordinates",
                                  "occupation", "income_per_year"]),
        "attributes": attributes or {},
        "user_type": "human",
    }


BOT = {"id": "65f0c0ffee0123456789abce", "persona": {}, "attributes": {}, "user_type": "bot"}


def agent_dialog(*turns, human_attributes=None, version="2.2.0"):
    """`Dialog.to_dict()` for ``(text, attributes)`` turns, human first and alternating, ending with a human."""
    human = human_dict(human_attributes)
    utterances = []
    for index, (text, attributes) in enumerate(turns):
        common = {"utt_id": f"{index:032x}", "text": text, "annotations": {}, "date_time": str(WHEN),
                  "attributes": attributes}
        if index % 2 == 0:
            previous_hypotheses = [] if index == len(turns) - 1 else [
                {"skill_name": SKILL, "annotations": {}, "text": turns[index + 1][0], "confidence": 0.9,
                 "human_attributes": {}, "bot_attributes": {}, "can_continue": CAN_NOT_CONTINUE}
            ]
            utterances.append({**common, "user": deepcopy(human), "hypotheses": previous_hypotheses})
        else:
            utterances.append({**common, "orig_text": None, "active_skill": SKILL, "confidence": 0.9,
                               "user": dict(BOT)})
    dialog = {
        "dialog_id": "5b1f0e7c3d0a4b8c9e2f1a6d7c8b9e0f",
        "utterances": utterances,
        "human_utterances": deepcopy(utterances[::2]),
        "bot_utterances": deepcopy(utterances[1::2]),
        "human": human,
        "bot": dict(BOT),
        "channel_type": "http_client",
        "date_start": "None",
        "date_finish": "None",
    }
    if version == "2.3.0a":
        dialog.update({"_id": "None", "_active": "True", "attributes": {"pipeline": ["input", f"skills.{SKILL}"]}})
    return dialog


def the_request(dialog):
    bodies = dff_universal_prompted_skill_formatter(dialog)
    assert len(bodies) == 1
    # What the agent POSTs: it must survive JSON as the skill reads it.
    return json.loads(json.dumps(bodies[0], ensure_ascii=False))


def settings(**changes):
    return skill_settings(**{"default_lm_service_config": {"max_new_tokens": 120}, **changes})


PROMPT = {"prompt": "You are a travel agent.", "lm_service_url": "http://default-llm:1/respond",
          "lm_service_config": {"max_new_tokens": 32}}


# --- dialog formatter -------------------------------------------------------------------------------------------

def test_the_request_keeps_the_utterance_lists_and_dreams_turn_keys():
    dialog = agent_dialog(("hi", PROMPT), ("Hello!", {}), ("Where to?", PROMPT),
                          human_attributes={f"{SKILL}_state": {"n": 1}, "prompts_goals": {"p": "g"}})
    body = the_request(dialog)
    assert body == {
        "dialog_batch": [body["dialog_batch"][0]],
        "dialog_id_batch": ["5b1f0e7c3d0a4b8c9e2f1a6d7c8b9e0f"],
        "human_utter_index_batch": [1],
        f"{SKILL}_state_batch": [{"n": 1}],
        "dff_shared_state_batch": [{"cross_states": {}, "cross_links": {}}],
        "prompts_goals_batch": [{"p": "g"}],
    }
    sent = body["dialog_batch"][0]
    assert set(sent) == {"utterances", "human_utterances", "bot_utterances"}
    for utterance in sent["utterances"] + sent["human_utterances"] + sent["bot_utterances"]:
        assert set(utterance) <= UTTERANCE_KEYS  # no hypotheses, ids or dates
    assert [u["text"] for u in sent["utterances"]] == ["hi", "Hello!", "Where to?"]
    assert [u["text"] for u in sent["human_utterances"]] == ["hi", "Where to?"]
    assert sent["bot_utterances"] == [
        {"text": "Hello!", "attributes": {}, "annotations": {}, "active_skill": SKILL, "user": BOT}
    ]
    assert sent["human_utterances"][-1]["attributes"] == PROMPT
    assert sent["human_utterances"][-1]["user"]["user_type"] == "human"


def test_the_dialog_given_is_not_modified():
    dialog = agent_dialog(("hi", PROMPT), ("Hello!", {}), ("Where to?", PROMPT))
    before = deepcopy(dialog)
    the_request(dialog)
    assert dialog == before


def test_non_ascii_text_travels_unchanged():
    dialog = agent_dialog(("Привет! Как дела?", {"prompt": "Отвечай вежливо."}), ("Хорошо, спасибо 🙂", {}),
                          ("Что посмотреть в Казани?", {"prompt": "Отвечай вежливо."}))
    sent = the_request(dialog)["dialog_batch"][0]
    assert [u["text"] for u in sent["utterances"]] == ["Привет! Как дела?", "Хорошо, спасибо 🙂",
                                                      "Что посмотреть в Казани?"]
    assert sent["human_utterances"][-1]["attributes"]["prompt"] == "Отвечай вежливо."


def test_values_json_cannot_write_are_converted():
    # 2.2.0 keeps a rating's datetime in the utterance attributes; Mongo may hand back other bson types.
    dialog = agent_dialog(("hi", {}), ("Hello!", {"ratings": [{"rating": 5, "datetime": WHEN}]}),
                          ("again", {"tags": ("a", "b"), "seen": {3}, "ref": ObjectId(), "score": float("nan"),
                                     7: "int key"}))
    with pytest.raises(TypeError):
        json.dumps(dialog)
    sent = the_request(dialog)["dialog_batch"][0]
    assert sent["bot_utterances"][0]["attributes"] == {"ratings": [{"rating": 5,
                                                                    "datetime": "2024-05-01T12:30:15.123456"}]}
    assert sent["human_utterances"][-1]["attributes"] == {
        "tags": ["a", "b"], "seen": [3], "ref": "65f0c0ffee0123456789abcd", "score": None, "7": "int key"
    }


def test_the_2_3_0a_dialog_is_read_the_same_way():
    # 2.3.0a adds `_id`, `_active` and dialog `attributes`, and writes attribute dates as bson's {"$date": ...}.
    rated = {"ratings": [{"rating": 5, "datetime": {"$date": 1714566615123}}]}
    old = agent_dialog(("hi", PROMPT), ("Hello!", rated), ("Where to?", PROMPT))
    new = agent_dialog(("hi", PROMPT), ("Hello!", rated), ("Where to?", PROMPT), version="2.3.0a")
    assert the_request(new) == the_request(old)
    assert the_request(new)["dialog_batch"][0]["bot_utterances"][0]["attributes"] == rated


def test_a_long_dialog_sends_dreams_window():
    turns = [(f"h{i}", PROMPT) if i % 2 == 0 else (f"b{i}", {}) for i in range(41)]
    body = the_request(agent_dialog(*turns))
    sent = body["dialog_batch"][0]
    assert [u["text"] for u in sent["utterances"]] == [text for text, _ in turns[-11:]]
    assert [u["text"] for u in sent["human_utterances"]] == [f"h{i}" for i in range(30, 41, 2)]
    assert [u["text"] for u in sent["bot_utterances"]] == [f"b{i}" for i in range(31, 40, 2)]
    assert body["human_utter_index_batch"] == [20]  # of the whole dialog
    assert len(sent["utterances"]) > settings().n_utterances_context


@pytest.mark.parametrize("dialog", [None, "dialog", {"utterances": 5}, {"human": {"attributes": []}}, {}])
def test_an_unreadable_dialog_still_gives_one_request_the_skill_answers_empty(dialog):
    body = the_request(dialog)
    assert "dialog_batch" in body and len(body["dialog_batch"]) == 1
    with pytest.raises(ValueError):  # the skill's empty reply, hence the last-chance text
        build_lm_request(body["dialog_batch"][0], settings(), environ={})


# --- the skill reads what the formatter sends -------------------------------------------------------------------

def test_the_skill_builds_its_llm_request_from_the_formatted_dialog():
    dialog = agent_dialog(("hi", PROMPT), ("Hello! How can I help?", {}), ("A weekend in Rome?", PROMPT))
    request = build_lm_request(the_request(dialog)["dialog_batch"][0], settings(), environ={})
    assert request.prompt == "You are a travel agent."
    assert request.dialog_context == ["hi", "Hello! How can I help?", "A weekend in Rome?"]
    assert request.config == {"max_new_tokens": 32}
    assert request.url == "http://default-llm:1/respond"


def test_the_skill_keeps_its_window_and_the_prompt_cut_on_the_formatted_dialog():
    other = {"prompt": "You are a poet."}
    turns = [(f"h{i}", other if i < 6 else PROMPT) if i % 2 == 0 else (f"b{i}", {}) for i in range(21)]
    request = build_lm_request(the_request(agent_dialog(*turns))["dialog_batch"][0], settings(), environ={})
    assert request.dialog_context == [f"{'h' if i % 2 == 0 else 'b'}{i}" for i in range(14, 21)]
    request = build_lm_request(the_request(agent_dialog(*turns[:11]))["dialog_batch"][0], settings(), environ={})
    assert request.dialog_context == ["h6", "b7", "h8", "b9", "h10"]  # the poet's turns are cut


# --- response formatter -----------------------------------------------------------------------------------------

def hypotheses_of(reply):
    # What the agent passes: element [0] of the skill's JSON reply to a one-dialog batch.
    return skill_with_attributes_formatter_service(json.loads(json.dumps([reply]))[0])


def test_the_skills_reply_becomes_one_hypothesis_per_entry():
    hypotheses = hypotheses_of(build_reply(["Rome in spring is lovely!", "AI: Try the Trastevere quarter"]))
    assert hypotheses == [
        {"text": "Rome in spring is lovely!", "confidence": 0.9, "human_attributes": {}, "bot_attributes": {},
         "can_continue": CAN_NOT_CONTINUE},
        {"text": "Try the Trastevere quarter.", "confidence": 0.7, "human_attributes": {}, "bot_attributes": {},
         "can_continue": CAN_NOT_CONTINUE},
    ]


def test_a_failed_llms_reply_gives_no_hypothesis():
    assert empty_reply() == [[""], [0.0], [{}], [{}], [{}]]
    assert hypotheses_of(empty_reply()) == []
    assert hypotheses_of(build_reply(["", "   "])) == []


def test_only_the_usable_entries_become_hypotheses():
    reply = [["Ciao!", "", "Buongiorno.", "  "], [0.9, 0.9, 0.8, 0.9], [{}, {}, {"lang": "it"}, {}],
             [{}, {}, {}, {}], [{"a": 1}, {}, {"b": 2}, {}]]
    assert hypotheses_of(reply) == [
        {"text": "Ciao!", "confidence": 0.9, "human_attributes": {}, "bot_attributes": {}, "a": 1},
        {"text": "Buongiorno.", "confidence": 0.8, "human_attributes": {"lang": "it"}, "bot_attributes": {}, "b": 2},
    ]


def test_non_ascii_replies_are_kept():
    hypotheses = hypotheses_of(build_reply(["Конечно! Казанский кремль — с него и начните."]))
    assert [h["text"] for h in hypotheses] == ["Конечно! Казанский кремль — с него и начните."]


def test_dreams_shorter_forms_are_read():
    assert hypotheses_of(["Hi.", 0.5]) == [{"text": "Hi.", "confidence": 0.5, "human_attributes": {},
                                            "bot_attributes": {}}]
    assert hypotheses_of([["Hi."], [1], [{"x": 1}]]) == [{"text": "Hi.", "confidence": 1.0, "human_attributes": {},
                                                          "bot_attributes": {}, "x": 1}]
    assert hypotheses_of([["Hi."], [0.5], [{"h": 1}], [None]]) == [
        {"text": "Hi.", "confidence": 0.5, "human_attributes": {"h": 1}, "bot_attributes": {}}
    ]


def test_the_agents_keys_win_over_hypothesis_attributes():
    reply = [["Hi."], [0.9], [{}], [{}], [{"text": "other", "confidence": "high", "human_attributes": None,
                                          "can_continue": CAN_NOT_CONTINUE}]]
    assert hypotheses_of(reply) == [{"text": "Hi.", "confidence": 0.9, "human_attributes": {}, "bot_attributes": {},
                                     "can_continue": CAN_NOT_CONTINUE}]


def test_the_response_selector_picks_among_the_stored_hypotheses():
    # add_hypothesis stores {"skill_name", "annotations", **hypothesis}; ConfidenceResponseSelectorConnector takes
    # the max confidence, and with none (max of []) fails, which leads to the last-chance service.
    stored = [{"skill_name": SKILL, "annotations": {}, **h} for h in hypotheses_of(build_reply(["Sure", "Sure!"]))]
    assert max(stored, key=lambda h: h["confidence"])["text"] == "Sure!"
    assert all(isinstance(h["human_attributes"], dict) and isinstance(h["bot_attributes"], dict) for h in stored)


@pytest.mark.parametrize("payload", [
    None, {}, "text", 0.9, [], [["a"]], [["a"], 0.9], [["a", "b"], [0.9]],
    [["a"], [0.9], [{}], [{}], [{}], [{}]], {"error": "bad request"},
    [[1], [0.9]], [["a"], ["0.9"]], [["a"], [None]], [["a"], [True]], [["a"], [float("nan")]],
    [["a"], [float("inf")]], [["a"], [-0.5]], [["a"], [0]], [["a"], [0.9], [[]], [{}], [{}]],
    [["a"], [0.9], [{}], ["x"], [{}]], [["a"], [0.9], [{}], [{}], [["can_continue"]]],
])
def test_malformed_replies_give_no_hypothesis(payload):
    assert skill_with_attributes_formatter_service(payload) == []


# --- the module runs in the agent's interpreter -----------------------------------------------------------------

def test_the_module_is_python_3_7_and_standard_library_only():
    # Dream's agent image and the local 2.2.0 agent run Python 3.7, with only dp-agent installed.
    for path in Path(dp_formatters.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"), feature_version=(3, 7))
        for node in ast.walk(tree):
            assert not isinstance(node, ast.NamedExpr), f"{path.name}: := is Python 3.8"
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module] if node.level == 0 else []
            else:
                continue
            assert {name.split(".")[0] for name in names} <= set(sys.stdlib_module_names), path.name
