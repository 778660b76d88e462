"""Unified requests served through a provider's chat call: completions and ``n`` > 1.

Cohere, AI21 (Jamba) and Gemini have no text-completion API of their own any more; a
completions query becomes one chat query per prompt, with the prompt as the only user
message, and the chat answer is turned back into the ``text_completion`` shape. Providers
whose chat API answers one choice per call get ``n`` choices from ``n`` concurrent calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from modelport.errors import InvalidParameterValue
from modelport.spec.llm import completion_chunk, completion_response, prompts_of, usage, usage_of

__all__ = [
    "chat_body_for_prompt",
    "choices_wanted",
    "complete_via_chat",
    "merge_chat_answers",
    "stream_completion_via_chat",
    "text_of",
]

ChatCall = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
ChatStream = Callable[[dict[str, Any]], AsyncIterator[dict[str, Any]]]

#: Completions fields that mean nothing to a chat API.
_COMPLETION_ONLY = frozenset({"prompt", "echo", "suffix", "best_of", "logprobs"})
_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})


def text_of(content: Any) -> str:
    """The text of an OpenAI message ``content``: a string, or the text parts of a list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text") or "")
            for part in content
            if isinstance(part, dict) and part.get("type") in _TEXT_PARTS
        )
    return str(content)


def choices_wanted(body: dict[str, Any], most: int = 5) -> int:
    """The body's ``n`` (1 when absent), checked to lie in ``1..most``."""
    n = body.get("n")
    if n is None:
        return 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= most:
        raise InvalidParameterValue(f"'n' must be an integer from 1 to {most}, not {n!r}.")
    return n


def chat_body_for_prompt(body: dict[str, Any], prompt: str) -> dict[str, Any]:
    """A chat body asking for the completion of ``prompt`` with the same sampling fields."""
    out = {k: v for k, v in body.items() if k not in _COMPLETION_ONLY}
    out["messages"] = [{"role": "user", "content": prompt}]
    return out


def merge_chat_answers(answers: list[dict[str, Any]]) -> dict[str, Any]:
    """One chat answer holding the choices of all ``answers`` (re-indexed), usage summed."""
    first = dict(answers[0])
    choices: list[dict[str, Any]] = []
    prompt_tokens = completion_tokens = 0
    for answer in answers:
        choices.extend(answer["choices"])
        prompt, completion, _ = usage_of(answer) or (0, 0, 0)
        prompt_tokens += prompt
        completion_tokens += completion
    first["choices"] = [{**choice, "index": i} for i, choice in enumerate(choices)]
    first["usage"] = usage(prompt_tokens, completion_tokens)
    return first


async def complete_via_chat(chat: ChatCall, body: dict[str, Any], model: str) -> dict[str, Any]:
    """A ``text_completion`` answer: one ``chat`` call per prompt, concurrently."""
    prompts = prompts_of(body)
    answers = await asyncio.gather(*(chat(chat_body_for_prompt(body, p)) for p in prompts))
    merged = merge_chat_answers(list(answers))
    texts = [(text_of(c["message"].get("content")), c["finish_reason"]) for c in merged["choices"]]
    return completion_response(model, texts, merged["usage"])


def stream_completion_via_chat(
    chat_stream: ChatStream, body: dict[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    """``text_completion`` chunks from the chat chunks of one prompt (the body is checked
    now, before the first chunk is asked for)."""
    prompts = prompts_of(body)
    if len(prompts) != 1:
        raise InvalidParameterValue("A streaming completions request takes exactly one prompt.")
    return _as_completion_chunks(chat_stream(chat_body_for_prompt(body, prompts[0])))


async def _as_completion_chunks(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    async for chunk in chunks:
        choice = chunk["choices"][0]
        text = choice["delta"].get("content") or ""
        if not text and choice["finish_reason"] is None and "usage" not in chunk:
            continue
        yield completion_chunk(
            chunk["id"], chunk["model"], chunk["created"], text, choice["finish_reason"], chunk.get("usage")
        )
