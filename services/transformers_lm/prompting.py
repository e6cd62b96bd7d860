"""Turning (prompt, dialog context) into model input ids that fit the model window."""
from jinja2.exceptions import TemplateError

from .errors import InvalidField


# A few replacement pairs applied in turn can multiply a text's length: refuse past this size.
MAX_REPLACED_CHARS = 1_000_000


def apply_replacement(text: str, pairs) -> str:
    for pattern, substitute in pairs:
        text = _replace(text, pattern, substitute, pairs)
    return text


def reverse_replacement(text: str, pairs) -> str:
    for pattern, substitute in reversed(pairs):
        if substitute:  # a deletion can't be undone; replacing "" would insert the pattern everywhere
            text = _replace(text, substitute, pattern, pairs)
    return text


def _replace(text: str, old: str, new: str, pairs) -> str:
    grown = len(text) + text.count(old) * (len(new) - len(old))
    if grown > max(len(text), MAX_REPLACED_CHARS):
        raise InvalidField(getattr(pairs, "field", "replacement"),
                           f"the replacement would grow a text to {grown} characters (at most {MAX_REPLACED_CHARS})")
    return text.replace(old, new)


def speaker_roles(turns: list) -> list:
    """Roles counted back from the last turn, which is always the user's (Dream sends human last)."""
    count = len(turns)
    return ["user" if (count - index) % 2 == 1 else "assistant" for index in range(count)]


class PromptBuilder:
    """Builds the model input with the tokenizer's chat template, or Dream's Human:/AI: text."""

    def __init__(self, tokenizer, prompt_format: str = "auto", speakers=("Human", "AI")):
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if prompt_format == "chat_template" and not has_template:
            raise ValueError("PROMPT_FORMAT=chat_template but the tokenizer has no chat template")
        self.tokenizer = tokenizer
        self.use_chat_template = has_template if prompt_format == "auto" else prompt_format == "chat_template"
        self.human, self.assistant = speakers

    def text(self, prompt: str, turns: list) -> str:
        system = [{"role": "system", "content": prompt}] if prompt else []
        return self.messages_text(system + [{"role": role, "content": text}
                                            for role, text in zip(speaker_roles(turns), turns)])

    def ids(self, prompt: str, turns: list) -> list:
        return self._encode(self.text(prompt, turns))

    def message_ids(self, messages: list) -> list:
        """Input ids of OpenAI-style messages ({"role": system|user|assistant, "content": str})."""
        return self._encode(self.messages_text(messages))

    def messages_text(self, messages: list) -> str:
        if self.use_chat_template:
            return self._chat_text(messages)
        return self._dream_text(messages)

    def _encode(self, text: str) -> list:
        # A rendered chat template already holds its special tokens (BOS included where the model wants it).
        return self.tokenizer(text, add_special_tokens=not self.use_chat_template)["input_ids"]

    def fit(self, prompt: str, turns: list, budget: int, field: str) -> list:
        """Input ids of the longest suffix of `turns` that fits `budget` tokens; the prompt is never cut.

        Binary search over the first kept turn: fewer turns never make the input longer.
        """
        low, high = 0, len(turns) - 1
        best = None
        while low <= high:
            start = (low + high) // 2
            ids = self.ids(prompt, turns[start:])
            if len(ids) <= budget:
                best, high = ids, start - 1
            else:
                low = start + 1
        if best is None:
            raise InvalidField(field, f"the prompt and the last utterance take {len(self.ids(prompt, turns[-1:]))} "
                                      f"tokens; {budget} fit (the model window minus max_new_tokens, "
                                      "and at most MAX_INPUT_TOKENS)")
        return best

    def _dream_text(self, messages: list) -> str:
        names = {"user": self.human, "assistant": self.assistant}
        system = "\n".join(message["content"] for message in messages if message["role"] == "system")
        lines = [f"{names[message['role']]}: {message['content']}" for message in messages
                 if message["role"] != "system"]
        head = f"{system}\n" if system else ""
        return head + "\n".join(lines) + f"\n{self.assistant}:"

    def _chat_text(self, messages: list) -> str:
        system = "\n".join(message["content"] for message in messages if message["role"] == "system")
        dialog = [message for message in messages if message["role"] != "system"]
        # Some templates insist on user-first or reject a system role: try the closest variant they accept.
        variants = [dialog]
        if dialog and dialog[0]["role"] == "assistant":
            variants.append(dialog[1:])
        if len(dialog) < len(messages):  # a system message, even an empty one, is a turn of the conversation
            variants = [[{"role": "system", "content": system}] + variant for variant in variants] + [
                _merge_system(system, variant) for variant in variants]
        variants = [variant for variant in variants if variant]  # templates refuse an empty conversation
        for variant in variants[:-1]:
            try:
                return self._render(variant)
            except TemplateError:
                continue
        return self._render(variants[-1])

    def _render(self, messages: list) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _merge_system(prompt: str, messages: list) -> list:
    first_user = next((index for index, message in enumerate(messages) if message["role"] == "user"), None)
    if first_user is None:
        return [{"role": "user", "content": prompt}] + messages
    merged = [dict(message) for message in messages]
    merged[first_user]["content"] = f"{prompt}\n\n{merged[first_user]['content']}"
    return merged
