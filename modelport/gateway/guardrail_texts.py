"""The texts of request and answer bodies that guardrails check, and writing masked texts back.

:func:`input_texts` and :func:`output_texts` find the texts of each body shape (chat,
completions, embeddings, custom models' records, agents' Responses items and ChatAgent messages;
see ``guardrails.py`` for the list) as
:class:`TextSlots`, which can replace them with masked ones; :func:`chunk_text` gives the text
of one streamed chunk.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from modelport.errors import ModelportError

__all__ = ["Path", "TextSlots", "chunk_text", "input_texts", "output_texts"]

Path = tuple[str | int, ...]


@dataclass
class TextSlots:
    """The texts of a body, where each came from, and the means to write replacements back.

    ``texts[i]`` sits at ``paths[i]`` (keys and indexes from the body's root) and belongs to
    a message of role ``roles[i]`` (None outside chat messages).
    """

    body: Any
    texts: list[str]
    paths: list[Path]
    roles: list[str | None]

    def __len__(self) -> int:
        return len(self.texts)

    def replace(self, new_texts: Sequence[str]) -> Any:
        """A copy of the body with ``new_texts`` in place of :attr:`texts` (the body is not changed).

        Only the containers on the way to a text are copied; the rest is shared.
        """
        if len(new_texts) != len(self.texts):
            raise ModelportError(f"replace() got {len(new_texts)} texts for {len(self.texts)} slots.")
        copies: dict[Path, Any] = {}

        def copy_of(path: Path) -> Any:
            if path in copies:
                return copies[path]
            node = copy_of(path[:-1])[path[-1]] if path else self.body
            node = dict(node) if isinstance(node, dict) else list(node)
            if path:
                copy_of(path[:-1])[path[-1]] = node
            copies[path] = node
            return node

        if not self.paths:
            return self.body
        for path, text in zip(self.paths, new_texts, strict=True):
            copy_of(path[:-1])[path[-1]] = text
        return copies[()]


def _content_slots(content: Any, base: Path) -> Iterator[tuple[Path, str]]:
    """The texts of a chat ``content``: the string, or the ``text`` of its text parts."""
    if isinstance(content, str):
        yield base, content
    elif isinstance(content, list):
        for j, part in enumerate(content):
            if isinstance(part, str):
                yield (*base, j), part
            elif (
                isinstance(part, dict)
                and isinstance(part.get("text"), str)
                and part.get("type", "text") in ("text", "input_text", "output_text")
            ):
                yield (*base, j, "text"), part["text"]


def _strings_in(value: Any, base: Path) -> Iterator[tuple[Path, str]]:
    """Every string value at any depth (not dict keys), depth first, in order."""
    stack: list[tuple[Path, Any]] = [(base, value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            yield path, node
        elif isinstance(node, dict):
            stack.extend(((*path, k), v) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend(((*path, i), v) for i, v in reversed(list(enumerate(node))))


def _string_or_list(value: Any, base: Path) -> Iterator[tuple[Path, str]]:
    if isinstance(value, str):
        yield base, value
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                yield (*base, i), item


def _slots(body: Any, found: Iterator[tuple[Path, str, str | None]]) -> TextSlots:
    texts: list[str] = []
    paths: list[Path] = []
    roles: list[str | None] = []
    for path, text, role in found:
        paths.append(path)
        texts.append(text)
        roles.append(role)
    return TextSlots(body, texts, paths, roles)


_CUSTOM_INPUT_KEYS = ("dataframe_records", "instances", "inputs")


def _input_slots(body: Any) -> Iterator[tuple[Path, str, str | None]]:
    if not isinstance(body, dict):
        return
    messages = body.get("messages")
    if isinstance(messages, list):
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                continue
            role = message.get("role")
            if role == "assistant":
                continue
            for path, text in _content_slots(message.get("content"), ("messages", i, "content")):
                yield path, text, role if isinstance(role, str) else None
        return
    if "prompt" in body:
        for path, text in _string_or_list(body["prompt"], ("prompt",)):
            yield path, text, None
        return
    if "input" in body:
        if isinstance(body["input"], list):  # the Responses API's items (agents): messages too
            for i, item in enumerate(body["input"]):
                if isinstance(item, str):
                    yield ("input", i), item, None
                elif isinstance(item, dict) and item.get("role") not in ("assistant", None):
                    role = item["role"] if isinstance(item["role"], str) else None
                    for path, text in _content_slots(item.get("content"), ("input", i, "content")):
                        yield path, text, role
            return
        for path, text in _string_or_list(body["input"], ("input",)):
            yield path, text, None
        return
    for key in _CUSTOM_INPUT_KEYS:
        if key in body:
            for path, text in _strings_in(body[key], (key,)):
                yield path, text, None
    split = body.get("dataframe_split")
    if isinstance(split, dict) and "data" in split:
        for path, text in _strings_in(split["data"], ("dataframe_split", "data")):
            yield path, text, None


def _output_slots(body: Any) -> Iterator[tuple[Path, str, str | None]]:
    if isinstance(body, dict) and isinstance(body.get("choices"), list):
        for i, choice in enumerate(body["choices"]):
            if not isinstance(choice, dict):
                continue
            message = choice.get("message")
            if isinstance(message, dict):
                role = message.get("role", "assistant")
                for path, text in _content_slots(
                    message.get("content"), ("choices", i, "message", "content")
                ):
                    yield path, text, role if isinstance(role, str) else "assistant"
            elif isinstance(choice.get("text"), str):
                yield ("choices", i, "text"), choice["text"], None
        return
    if isinstance(body, dict) and isinstance(body.get("output"), list):  # a Responses agent's items
        for i, item in enumerate(body["output"]):
            if isinstance(item, dict) and item.get("type", "message") == "message":
                for path, text in _content_slots(item.get("content"), ("output", i, "content")):
                    yield path, text, "assistant"
        return
    if isinstance(body, dict) and isinstance(body.get("messages"), list):  # a ChatAgent's answer
        for i, message in enumerate(body["messages"]):
            if isinstance(message, dict) and message.get("role", "assistant") == "assistant":
                for path, text in _content_slots(message.get("content"), ("messages", i, "content")):
                    yield path, text, "assistant"
        return
    if isinstance(body, dict) and "predictions" in body:
        for path, text in _strings_in(body["predictions"], ("predictions",)):
            yield path, text, None


def input_texts(body: Any) -> TextSlots:
    """The texts of a request body (chat, completions, embeddings, agent or custom model)."""
    return _slots(body, _input_slots(body))


def output_texts(body: Any) -> TextSlots:
    """The texts of an answer body (chat, completions, a Responses agent's ``output``, a ChatAgent's
    ``messages`` or a custom model's ``predictions``)."""
    return _slots(body, _output_slots(body))


def chunk_text(chunk: Any) -> str:
    """The text of one streamed chunk: ``choices[*].delta.content`` (chat), ``choices[*].text``,
    an agent's ``response.output_text.delta`` event's ``delta`` or a ChatAgent chunk's
    ``delta.content``.

    Output guardrails on streams work on buffered text (module docstring).
    """
    if isinstance(chunk, dict) and chunk.get("type") == "response.output_text.delta":
        return chunk["delta"] if isinstance(chunk.get("delta"), str) else ""
    if isinstance(chunk, dict) and isinstance(chunk.get("delta"), dict) and "choices" not in chunk:
        return "".join(text for _, text in _content_slots(chunk["delta"].get("content"), ()))
    if not isinstance(chunk, dict) or not isinstance(chunk.get("choices"), list):
        return ""
    parts: list[str] = []
    for choice in chunk["choices"]:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict):
            parts.extend(text for _, text in _content_slots(delta.get("content"), ()))
        elif isinstance(choice.get("text"), str):
            parts.append(choice["text"])
    return "".join(parts)
