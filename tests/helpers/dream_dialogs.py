"""Dream agent requests for skill tests: dialogs alternate human and bot utterances."""


def make_dialog(*turns) -> dict:
    """A dialog from ``(text, attributes)`` pairs, human first and alternating, ending with a human."""
    utterances = []
    for index, (text, attributes) in enumerate(turns):
        utterance = {"text": text, "attributes": attributes, "annotations": {}}
        if index % 2:
            utterance["active_skill"] = "dff_universal_prompted_skill"
        utterances.append(utterance)
    return {"utterances": utterances, "human_utterances": utterances[::2], "bot_utterances": utterances[1::2]}


def agent_request(*dialogs) -> dict:
    return {"dialog_batch": list(dialogs)}
