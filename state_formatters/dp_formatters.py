"""The universal prompted skill's formatters: the agent's dialog -> the skill's request, its reply -> hypotheses.

Written for Dream's agent image (dp-agent 2.3.0a, commit cea048eb) and checked against PyPI's 2.2.0 as well. It runs
in the agent's interpreter (Python 3.7 there and in agent/local.py), so it needs nothing beyond the standard library.
- dialog formatter: both versions pass `Dialog.to_dict()` and POST each body of the returned list as is. Its
  `date_time` fields are strings, but utterance attributes may hold datetimes in 2.2.0 (a rating's `datetime`) and
  `{"$date": ...}` objects in 2.3.0a (bson's json_util), so every value sent is made JSON-safe here.
- response formatter: both pass element [0] of the skill's JSON reply and give the returned list to
  `add_hypothesis`, which stores `{"skill_name": <service>, "annotations": {}, **hypothesis}` per item.
Neither version catches a formatter's exception: it ends the agent's task for this turn, no later service runs,
and the user waits for the time limit's text or, with no limit (the default), for ever. Neither function raises.
"""
import logging
import math
from datetime import date, datetime, time
from typing import Any, Dict, List, Mapping

logger = logging.getLogger(__name__)

SKILL_NAME = "dff_universal_prompted_skill"
# Dream's window: the last 6 human and 5 bot utterances. The skill keeps N_UTTERANCES_CONTEXT of them (dists: 7).
HUMAN_UTTERANCES_SENT = 6
BOT_UTTERANCES_SENT = 5
UTTERANCES_SENT = HUMAN_UTTERANCES_SENT + BOT_UTTERANCES_SENT
UTTERANCE_KEYS = ("text", "attributes", "annotations", "active_skill", "user")


def dff_universal_prompted_skill_formatter(dialog: Dict) -> List[Dict]:
    """One request body for the skill: ``{"dialog_batch": [dialog'], <key>_batch: [value], ...}``.

    dialog' holds only ``utterances``, ``human_utterances`` and ``bot_utterances`` (the last 11, 6 and 5 of them,
    Dream's window), each utterance reduced to Dream's keys ``text``, ``attributes`` (the caller's prompt, LLM URL,
    config and keys live in the last human one's), ``annotations``, ``active_skill`` and ``user``. Hypotheses,
    ids and dates are dropped; texts stay as the user typed them (our dists run no sentence segmenter, whose text
    Dream substitutes). Beside it go the Dream DFF keys that describe this turn: ``dialog_id``,
    ``human_utter_index`` and the human attributes ``<skill>_state``, ``dff_shared_state``, ``prompts_goals``;
    Dream's ``entities`` (annotator output), ``used_links``, ``age_group``, ``disliked_skills`` (scripted-skill
    state) and ``clarification_request_flag`` (from an ASR check we do not run) are left out. The skill ignores
    every ``*_batch`` key but ``dialog_batch``.

    Never raises: a dialog it cannot read becomes an empty one, which the skill answers with an empty reply.
    """
    try:
        return [_skill_request(dialog)]
    except Exception:  # the agent's own dialogs always fit; anything else must still yield a turn
        logger.exception("%s: unreadable dialog state, the skill gets an empty dialog", SKILL_NAME)
        return [{"dialog_batch": [{"utterances": [], "human_utterances": [], "bot_utterances": []}]}]


def _skill_request(dialog: Mapping) -> Dict:
    human_utterances = list(dialog.get("human_utterances") or [])
    human = dialog.get("human")
    human_attributes = human.get("attributes") if isinstance(human, Mapping) else None
    if not isinstance(human_attributes, Mapping):
        human_attributes = {}
    sent = {
        "utterances": _last(dialog.get("utterances"), UTTERANCES_SENT),
        "human_utterances": _last(human_utterances, HUMAN_UTTERANCES_SENT),
        "bot_utterances": _last(dialog.get("bot_utterances"), BOT_UTTERANCES_SENT),
    }
    return {
        "dialog_batch": [sent],
        "dialog_id_batch": [json_safe(dialog.get("dialog_id"))],
        "human_utter_index_batch": [len(human_utterances) - 1],
        f"{SKILL_NAME}_state_batch": [json_safe(human_attributes.get(f"{SKILL_NAME}_state", {}))],
        "dff_shared_state_batch": [
            json_safe(human_attributes.get("dff_shared_state", {"cross_states": {}, "cross_links": {}}))
        ],
        "prompts_goals_batch": [json_safe(human_attributes.get("prompts_goals", {}))],
    }


def _last(utterances, count: int) -> List:
    return [_utterance(utterance) for utterance in list(utterances or [])[-count:]]


def _utterance(utterance):
    if not isinstance(utterance, Mapping):
        return json_safe(utterance)  # the skill reports it as malformed
    return {key: json_safe(utterance[key]) for key in UTTERANCE_KEYS if key in utterance}


def json_safe(value: Any) -> Any:
    """``value`` as JSON can carry it: dates as ISO strings, tuples and sets as lists, keys as strings,
    non-finite floats as null, anything else (ObjectId, Decimal, ...) as its ``str``."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(item) for item in value]
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value)


def skill_with_attributes_formatter_service(payload: Any) -> List[Dict]:
    """The skill's reply for one dialog -> the hypotheses ``add_hypothesis`` stores, one per usable entry.

    ``payload`` is Dream's five parallel lists ``[texts, confidences, human_attributes, bot_attributes,
    hyp_attributes]``; Dream's shorter forms are read too (``[texts, confidences]``, ``[..., hyp_attributes]``,
    ``[..., human_attributes, bot_attributes]``, or one hypothesis as ``[text, confidence, ...]``). Each entry
    becomes ``{**hyp_attributes, "text", "confidence", "human_attributes", "bot_attributes"}``: the four keys the
    agent relies on win over an attribute of the same name, and the attribute dicts are always dicts.

    An entry with an empty (or blank) text or a confidence that is not a positive finite number, as the skill's
    failed-LLM reply ``[[""], [0.0], ...]``, yields no hypothesis, so with none the response selector fails and
    the pipeline's last-chance text answers. A malformed payload yields [] and a warning, never an exception.
    """
    try:
        return _hypotheses(payload)
    except Exception:
        logger.exception("%s: unreadable reply, no hypothesis", SKILL_NAME)
        return []


def _hypotheses(payload) -> List[Dict]:
    if not isinstance(payload, (list, tuple)) or not 2 <= len(payload) <= 5:
        return _malformed(payload, "not a list of 2 to 5 parts")
    parts = list(payload)
    if isinstance(parts[0], str):  # one hypothesis, not lists of them
        parts = [[part] for part in parts]
    if not all(isinstance(part, (list, tuple)) for part in parts) or len({len(part) for part in parts}) != 1:
        return _malformed(payload, "parts are not lists of one length")
    count = len(parts[0])
    empty = [{}] * count
    human_attributes, bot_attributes = (parts[2], parts[3]) if len(parts) >= 4 else (empty, empty)
    hyp_attributes = parts[-1] if len(parts) in (3, 5) else empty
    hypotheses = []
    for text, confidence, human, bot, attributes in zip(
        parts[0], parts[1], human_attributes, bot_attributes, hyp_attributes
    ):
        if not isinstance(text, str) or not text.strip() or not _positive_number(confidence):
            continue  # a failed or empty answer: the other entries may still stand
        if not all(item is None or isinstance(item, Mapping) for item in (human, bot, attributes)):
            logger.warning("%s: a hypothesis with non-object attributes was dropped", SKILL_NAME)
            continue
        hypothesis = dict(attributes or {})
        hypothesis.update(
            text=text,
            confidence=float(confidence),
            human_attributes=dict(human or {}),
            bot_attributes=dict(bot or {}),
        )
        hypotheses.append(hypothesis)
    return hypotheses


def _positive_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _malformed(payload, why: str) -> List[Dict]:
    # The reply's texts are the user's dialog: only its shape is logged.
    logger.warning("%s: malformed reply (%s: %s), no hypothesis", SKILL_NAME, type(payload).__name__, why)
    return []
