"""Bodies of the model families that Amazon Bedrock serves, one class per ``bedrock_provider``.

Bedrock's InvokeModel passes each family's own JSON body through; this module turns the
unified ``llm/v1`` bodies into them and their answers and stream events back into the
unified shapes. No I/O here: ``bedrock.py`` signs, sends and decodes the event stream.

=============  ============================  ===================  ======================  ===============
family         model ids                     chat                 completions             embeddings
=============  ============================  ===================  ======================  ===============
``anthropic``  ``anthropic.claude-*``        Messages API         Messages API, prompt    no
                                                                  as the user message
``amazon``     ``amazon.nova-*``             ``messages-v1``      the same, prompt as     no
                                                                  the user message
               ``amazon.titan-text-*``       transcript as        ``inputText``           no
                                             ``inputText``
               ``amazon.titan-embed-*``                                                   ``inputText``,
                                                                                          one per call
``cohere``     ``cohere.command-r*``         Command R chat       chat, prompt as the     no
                                                                  message
               ``cohere.command-*text*``     transcript as        ``prompt`` /            no
                                             ``prompt``           ``generations``
               ``cohere.embed-*``                                                         ``texts``, 96
                                                                                          per call
``ai21labs``   ``ai21.jamba-*``              Jamba chat           chat, prompt as the     no
                                             (OpenAI-like)        user message
=============  ============================  ===================  ======================  ===============

Model ids may carry a cross-region prefix (``us.anthropic...``) or be an ARN: the family
is picked by ``bedrock_provider``, the body variant by what the id contains.
Temperatures are halved for families whose range is 0-1 (Claude, Titan, Nova, Command R);
the unified range is 0-2. Tools are translated for Claude and passed through for Jamba;
other families refuse them. Usage comes from the body where the family reports it, else
from Bedrock's ``X-Amzn-Bedrock-*-Token-Count`` headers or, when streaming, from the
``amazon-bedrock-invocationMetrics`` of the last event.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

from modelport.entities.providers import anthropic
from modelport.entities.providers.via_chat import chat_body_for_prompt
from modelport.errors import BadGateway, InvalidParameterValue, NotImplementedByServer
from modelport.spec.images import refuse_images
from modelport.spec.llm import CHAT, COMPLETIONS, EMBEDDINGS, chat_chunk, messages_of, new_id, usage, usage_of

__all__ = ["FAMILIES", "ChunkStream", "EventTranslator", "Family", "family_for"]

METRICS = "amazon-bedrock-invocationMetrics"
ANTHROPIC_VERSION = "bedrock-2023-05-31"
#: Cohere Embed takes at most this many texts per call.
COHERE_EMBED_BATCH = 96


class EventTranslator(Protocol):
    def feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]: ...
    def close(self) -> list[dict[str, Any]]: ...


# ---- small shared pieces --------------------------------------------------------------------------
def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p if isinstance(p, str) else str(p.get("text", ""))
            for p in content
            if isinstance(p, str) or (isinstance(p, dict) and p.get("type") == "text")
        )
    raise InvalidParameterValue("A message's 'content' must be a string or a list of content parts.")


def _stops(body: Mapping[str, Any]) -> list[str] | None:
    stop = body.get("stop")
    if not stop:
        return None
    return [stop] if isinstance(stop, str) else list(stop)


def _max_tokens(body: Mapping[str, Any]) -> Any:
    return body.get("max_tokens") or body.get("max_completion_tokens")


def _half(body: Mapping[str, Any]) -> float | None:
    t = body.get("temperature")
    if t is None:
        return None
    if not isinstance(t, int | float) or isinstance(t, bool):
        raise InvalidParameterValue("'temperature' must be a number between 0 and 2.")
    return t / 2


def _only_one(body: Mapping[str, Any], family: str) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise InvalidParameterValue(f"'n' must be 1 for {family} models on Bedrock (got {n!r}).")


def _no_tools(body: Mapping[str, Any], family: str) -> None:
    if body.get("tools"):
        raise InvalidParameterValue(f"Tools are not supported for {family} models on Bedrock.")


def _set(out: dict[str, Any], **fields: Any) -> dict[str, Any]:
    out.update({k: v for k, v in fields.items() if v is not None})
    return out


def _extra(body: Mapping[str, Any]) -> dict[str, Any]:
    extra = body.get("extra_params")
    return dict(extra) if isinstance(extra, dict) else {}


def header_usage(headers: Mapping[str, str]) -> dict[str, int]:
    return usage(
        headers.get("x-amzn-bedrock-input-token-count"), headers.get("x-amzn-bedrock-output-token-count")
    )


def _transcript(messages: list[dict[str, Any]], user: str, bot: str) -> str:
    """A chat as one prompt, for text-only models: system text first, then ``User: ...``
    and ``Bot: ...`` lines, ending with the bot's cue."""
    lines: list[str] = []
    for m in messages:
        role, text = m["role"], _text(m.get("content"))
        if role in ("system", "developer"):
            lines.append(text)
        elif role == "user":
            lines.append(f"{user}: {text}")
        elif role == "assistant":
            lines.append(f"{bot}: {text}")
        else:
            raise InvalidParameterValue(f"Role '{role}' is not supported by this model on Bedrock.")
    return "\n".join([*lines, f"{bot}:"])


def _turns(messages: list[dict[str, Any]], family: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(system texts, [(user|assistant, text)]) with consecutive turns of a role merged."""
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    for m in messages:
        role = m["role"]
        if role in ("system", "developer"):
            system.append(_text(m.get("content")))
        elif role in ("user", "assistant"):
            text = _text(m.get("content"))
            if turns and turns[-1][0] == role:
                turns[-1] = (role, f"{turns[-1][1]}\n{text}")
            else:
                turns.append((role, text))
        else:
            raise InvalidParameterValue(f"Role '{role}' is not supported by {family} models on Bedrock.")
    return system, turns


class ChunkStream:
    """Builds the unified chat chunks of one stream; subclasses read one family's events
    (:meth:`feed`), :meth:`close` ends the stream with the finish reason and usage."""

    def __init__(self, provider: str, model: str) -> None:
        self.provider = provider
        self.model = model
        self.id = new_id("chatcmpl")
        self.created = int(time.time())
        self.finish_reason: str | None = None
        self.usage = usage(0, 0)
        self._started = False

    def chunk(self, delta: dict[str, Any]) -> dict[str, Any]:
        return chat_chunk(self.id, self.model, self.created, delta)

    def text(self, text: str | None) -> list[dict[str, Any]]:
        out = []
        if not self._started:
            self._started = True
            out.append(self.chunk({"role": "assistant", "content": ""}))
        if text:
            out.append(self.chunk({"content": text}))
        return out

    def metrics(self, event: Mapping[str, Any]) -> None:
        m = event.get(METRICS)
        if isinstance(m, dict):
            self.usage = usage(m.get("inputTokenCount"), m.get("outputTokenCount"))

    def feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def close(self) -> list[dict[str, Any]]:
        if self.finish_reason is None:
            raise BadGateway(f"Provider '{self.provider}' ended its stream before the model finished.")
        last = chat_chunk(self.id, self.model, self.created, {}, self.finish_reason, self.usage)
        return [*self.text(None), last]


# ---- the families ---------------------------------------------------------------------------------
class Family:
    """One ``bedrock_provider``: its bodies for one model id. Unsupported tasks raise 501;
    :attr:`tasks` says which tasks the model id is given bodies for (what the table above
    says), so that a config asking for another one can be refused when it is written."""

    name: ClassVar[str] = ""

    def __init__(self, provider: str, model_id: str) -> None:
        self.provider = provider
        self.model_id = model_id
        self.key = model_id.lower()

    @property
    def tasks(self) -> frozenset[str]:
        return frozenset({CHAT, COMPLETIONS})

    def _unsupported(self, what: str) -> NotImplementedByServer:
        return NotImplementedByServer(
            f"Bedrock model '{self.model_id}' ({self.name}) does not support {what} through modelport."
        )

    def chat_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        raise self._unsupported("chat")

    def _text_only(self, body: Mapping[str, Any]) -> None:
        """The 400 for image parts: only Claude's bodies carry images here."""
        refuse_images(body, f"Bedrock model '{self.model_id}' ({self.name} family) through this server")

    def prompt_body(self, body: Mapping[str, Any], prompt: str) -> dict[str, Any]:
        """The body for one completions prompt; by default a chat with the prompt as the user message."""
        return self.chat_body(chat_body_for_prompt(dict(body), prompt))

    def answer(self, data: Any, headers: Mapping[str, str]) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """(choices as ``{"message", "finish_reason"}``, usage) of an InvokeModel answer."""
        raise self._unsupported("chat")

    def stream(self, model: str) -> EventTranslator:
        raise self._unsupported("streaming")

    def embed_bodies(self, body: Mapping[str, Any], inputs: list[str]) -> list[dict[str, Any]]:
        """One body per InvokeModel call needed for ``inputs`` (answers come back in order)."""
        raise self._unsupported("embeddings")

    def embed_answer(self, data: Any, headers: Mapping[str, str]) -> tuple[list[list[float]], int]:
        raise self._unsupported("embeddings")

    def _shape(self, data: Any, key: str) -> Any:
        if not isinstance(data, dict) or key not in data:
            raise BadGateway(f"Bedrock model '{self.model_id}' answered without '{key}': {str(data)[:200]}")
        return data[key]


class AnthropicFamily(Family):
    name = "anthropic"

    def chat_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        out = {"anthropic_version": ANTHROPIC_VERSION, **anthropic.messages_request(body, image_urls=False)}
        if "metadata" not in _extra(body):
            out.pop("metadata", None)  # Bedrock refuses the key that ``user`` becomes
        return out

    def answer(self, data: Any, headers: Mapping[str, str]) -> tuple[list[dict[str, Any]], dict[str, int]]:
        choice, usage_ = anthropic.chat_answer(data)
        return [choice], usage_

    def stream(self, model: str) -> EventTranslator:
        return anthropic.MessagesStream(self.provider, model)


_TITAN_REASONS = {"FINISH": "stop", "STOP_CRITERIA_MET": "stop", "LENGTH": "length", "MAX_TOKENS": "length"}
_NOVA_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}


class AmazonFamily(Family):
    """Nova (``messages-v1``), Titan Text (``inputText``) and Titan Embeddings."""

    name = "amazon"

    @property
    def nova(self) -> bool:
        return "nova" in self.key

    @property
    def embedder(self) -> bool:
        return "embed" in self.key

    @property
    def tasks(self) -> frozenset[str]:
        return frozenset({EMBEDDINGS}) if self.embedder else frozenset({CHAT, COMPLETIONS})

    def _titan(self, body: Mapping[str, Any], text: str) -> dict[str, Any]:
        _only_one(body, "Titan")
        _no_tools(body, "Titan")
        config = _set(
            {},
            maxTokenCount=_max_tokens(body),
            temperature=_half(body),
            topP=body.get("top_p"),
            stopSequences=_stops(body),
        )
        out: dict[str, Any] = {"inputText": text}
        if config:
            out["textGenerationConfig"] = config
        return {**out, **_extra(body)}

    def chat_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self._text_only(body)
        if self.embedder:
            raise self._unsupported("chat")
        messages = messages_of(body)
        if not self.nova:
            return self._titan(body, _transcript(messages, "User", "Bot"))
        _only_one(body, "Nova")
        _no_tools(body, "Nova")
        system, turns = _turns(messages, "Nova")
        out: dict[str, Any] = {
            "schemaVersion": "messages-v1",
            "messages": [{"role": role, "content": [{"text": text}]} for role, text in turns],
        }
        if any(system):
            out["system"] = [{"text": "\n".join(s for s in system if s)}]
        config = _set(
            {},
            maxTokens=_max_tokens(body),
            temperature=_half(body),
            topP=body.get("top_p"),
            topK=body.get("top_k"),
            stopSequences=_stops(body),
        )
        if config:
            out["inferenceConfig"] = config
        return {**out, **_extra(body)}

    def prompt_body(self, body: Mapping[str, Any], prompt: str) -> dict[str, Any]:
        if self.embedder:
            raise self._unsupported("completions")
        return super().prompt_body(body, prompt) if self.nova else self._titan(body, prompt)

    def answer(self, data: Any, headers: Mapping[str, str]) -> tuple[list[dict[str, Any]], dict[str, int]]:
        if isinstance(data, dict) and "output" in data:  # Nova
            content = (data["output"].get("message") or {}).get("content") or []
            text = "".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
            reason = _NOVA_REASONS.get(str(data.get("stopReason")), "stop")
            if data.get("stopReason") == "content_filtered":
                reason = "content_filter"
            u = data.get("usage") or {}
            message = {"role": "assistant", "content": text}
            return [{"message": message, "finish_reason": reason}], usage(
                u.get("inputTokens"), u.get("outputTokens")
            )
        results = self._shape(data, "results")
        choices = []
        for r in results:
            reason = _TITAN_REASONS.get(str(r.get("completionReason")), "stop")
            if r.get("completionReason") == "CONTENT_FILTERED":
                reason = "content_filter"
            choices.append(
                {
                    "message": {"role": "assistant", "content": r.get("outputText", "")},
                    "finish_reason": reason,
                }
            )
        output = sum(int(r.get("tokenCount") or 0) for r in results)
        return choices, usage(data.get("inputTextTokenCount"), output)

    def stream(self, model: str) -> EventTranslator:
        if self.embedder:
            raise self._unsupported("streaming")
        return _NovaStream(self.provider, model) if self.nova else _TitanStream(self.provider, model)

    def embed_bodies(self, body: Mapping[str, Any], inputs: list[str]) -> list[dict[str, Any]]:
        if not self.embedder:
            raise self._unsupported("embeddings")
        fields = _set({}, dimensions=body.get("dimensions"))
        return [{"inputText": text, **fields, **_extra(body)} for text in inputs]

    def embed_answer(self, data: Any, headers: Mapping[str, str]) -> tuple[list[list[float]], int]:
        return [self._shape(data, "embedding")], int(data.get("inputTextTokenCount") or 0)


class _TitanStream(ChunkStream):
    def feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        out = self.text(event.get("outputText"))
        reason = event.get("completionReason")
        if reason:
            self.finish_reason = (
                "content_filter" if reason == "CONTENT_FILTERED" else _TITAN_REASONS.get(reason, "stop")
            )
            self.usage = usage(event.get("inputTextTokenCount"), event.get("totalOutputTextTokenCount"))
        self.metrics(event)
        return out


class _NovaStream(ChunkStream):
    def feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if "messageStart" in event:
            out = self.text(None)
        elif "contentBlockDelta" in event:
            out = self.text(((event["contentBlockDelta"] or {}).get("delta") or {}).get("text"))
        elif "messageStop" in event:
            reason = str((event["messageStop"] or {}).get("stopReason"))
            self.finish_reason = (
                "content_filter" if reason == "content_filtered" else _NOVA_REASONS.get(reason, "stop")
            )
        elif "metadata" in event:
            u = (event["metadata"] or {}).get("usage") or {}
            self.usage = usage(u.get("inputTokens"), u.get("outputTokens"))
        self.metrics(event)
        return out


_COHERE_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "ERROR_TOXIC": "content_filter",
}


class CohereFamily(Family):
    """Command R/R+ (chat API), legacy Command text models (generate API) and Embed."""

    name = "cohere"

    @property
    def chat_api(self) -> bool:
        return "command-r" in self.key

    @property
    def embedder(self) -> bool:
        return "embed" in self.key

    @property
    def tasks(self) -> frozenset[str]:
        return frozenset({EMBEDDINGS}) if self.embedder else frozenset({CHAT, COMPLETIONS})

    def _generate(self, body: Mapping[str, Any], prompt: str) -> dict[str, Any]:
        _no_tools(body, "Cohere Command")
        return _set(
            {"prompt": prompt},
            max_tokens=_max_tokens(body),
            temperature=body.get("temperature"),  # Command's range (0-5) contains ours
            p=body.get("top_p"),
            k=body.get("top_k"),
            stop_sequences=_stops(body),
            num_generations=body.get("n"),
        ) | _extra(body)

    def chat_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self._text_only(body)
        if self.embedder:
            raise self._unsupported("chat")
        messages = messages_of(body)
        if not self.chat_api:
            return self._generate(body, _transcript(messages, "User", "Chatbot"))
        _only_one(body, "Cohere Command R")
        _no_tools(body, "Cohere Command R")
        system, turns = _turns(messages, "Cohere Command R")
        if not turns or turns[-1][0] != "user":
            raise InvalidParameterValue(
                "The last message sent to a Cohere Command R model must be a user message."
            )
        history = [{"role": "USER" if r == "user" else "CHATBOT", "message": t} for r, t in turns[:-1]]
        out: dict[str, Any] = {"message": turns[-1][1]}
        if history:
            out["chat_history"] = history
        if any(system):
            out["preamble"] = "\n".join(s for s in system if s)
        return _set(
            out,
            max_tokens=_max_tokens(body),
            temperature=_half(body),
            p=body.get("top_p"),
            k=body.get("top_k"),
            stop_sequences=_stops(body),
            seed=body.get("seed"),
            frequency_penalty=body.get("frequency_penalty"),
            presence_penalty=body.get("presence_penalty"),
        ) | _extra(body)

    def prompt_body(self, body: Mapping[str, Any], prompt: str) -> dict[str, Any]:
        if self.embedder:
            raise self._unsupported("completions")
        return super().prompt_body(body, prompt) if self.chat_api else self._generate(body, prompt)

    def answer(self, data: Any, headers: Mapping[str, str]) -> tuple[list[dict[str, Any]], dict[str, int]]:
        if isinstance(data, dict) and "generations" in data:
            choices = [
                {
                    "message": {"role": "assistant", "content": g.get("text", "")},
                    "finish_reason": _COHERE_REASONS.get(str(g.get("finish_reason")), "stop"),
                }
                for g in data["generations"]
            ]
            return choices, header_usage(headers)
        text = self._shape(data, "text")
        reason = _COHERE_REASONS.get(str(data.get("finish_reason")), "stop")
        billed = (data.get("meta") or {}).get("billed_units") or {}
        usage_ = header_usage(headers)
        if billed:
            usage_ = usage(billed.get("input_tokens"), billed.get("output_tokens"))
        return [{"message": {"role": "assistant", "content": text}, "finish_reason": reason}], usage_

    def stream(self, model: str) -> EventTranslator:
        if self.embedder:
            raise self._unsupported("streaming")
        return _CohereStream(self.provider, model)

    def embed_bodies(self, body: Mapping[str, Any], inputs: list[str]) -> list[dict[str, Any]]:
        if not self.embedder:
            raise self._unsupported("embeddings")
        extra = {"input_type": "search_document", **_extra(body)}
        return [
            {"texts": inputs[i : i + COHERE_EMBED_BATCH], **extra}
            for i in range(0, len(inputs), COHERE_EMBED_BATCH)
        ]

    def embed_answer(self, data: Any, headers: Mapping[str, str]) -> tuple[list[list[float]], int]:
        vectors = self._shape(data, "embeddings")
        if isinstance(vectors, dict):  # embedding_types given: {"float": [...], ...}
            vectors = vectors.get("float") or next(iter(vectors.values()), [])
        return list(vectors), header_usage(headers)["prompt_tokens"]


class _CohereStream(ChunkStream):
    """Both APIs' events: chat ``event_type`` events, and generate chunks (``generations``
    or ``text``, with ``is_finished``)."""

    def feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("event_type")
        generations = event.get("generations")
        first = generations[0] if isinstance(generations, list) and generations else {}
        if kind is None:  # the generate API
            text = first.get("text", event.get("text"))
        else:
            text = event.get("text") if kind == "text-generation" else None
        out = self.text(text)
        if kind == "stream-end" or event.get("is_finished"):
            reason = event.get("finish_reason") or first.get("finish_reason")
            self.finish_reason = _COHERE_REASONS.get(str(reason), "stop")
        self.metrics(event)
        return out


def _jamba_message(message: Mapping[str, Any]) -> dict[str, Any]:
    out = {"role": "assistant", **message}
    if not out.get("tool_calls"):
        out.pop("tool_calls", None)  # Jamba sends "tool_calls": null
    return out


class AI21Family(Family):
    """Jamba: OpenAI-like chat bodies, answers and stream chunks."""

    name = "ai21labs"

    def chat_body(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self._text_only(body)
        messages = []
        for m in messages_of(body):
            message = dict(m)
            if isinstance(message.get("content"), list):
                message["content"] = _text(message["content"])
            messages.append(message)
        return _set(
            {"messages": messages},
            max_tokens=_max_tokens(body),
            temperature=body.get("temperature"),  # Jamba's range is ours
            top_p=body.get("top_p"),
            stop=_stops(body),
            n=body.get("n"),
            tools=body.get("tools") or None,
            response_format=body.get("response_format"),
        ) | _extra(body)

    def answer(self, data: Any, headers: Mapping[str, str]) -> tuple[list[dict[str, Any]], dict[str, int]]:
        choices = [
            {
                "message": _jamba_message(c.get("message") or {}),
                "finish_reason": c.get("finish_reason") or "stop",
            }
            for c in self._shape(data, "choices")
        ]
        used = usage_of(data)
        return choices, header_usage(headers) if used is None else usage(used[0], used[1])

    def stream(self, model: str) -> EventTranslator:
        return _JambaStream(self.provider, model)


class _JambaStream(ChunkStream):
    def feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for choice in event.get("choices") or []:
            delta = dict(choice.get("delta") or {})
            role_only = set(delta) <= {"role", "content"} and not delta.get("content")
            if role_only:
                out += self.text(None)
            elif set(delta) <= {"role", "content"}:
                out += self.text(delta["content"])
            else:
                out += [*self.text(None), self.chunk({k: v for k, v in delta.items() if k != "role"})]
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        u = event.get("usage")
        if isinstance(u, dict):
            self.usage = usage(u.get("prompt_tokens"), u.get("completion_tokens"))
        self.metrics(event)
        return out


FAMILIES: dict[str, type[Family]] = {
    "anthropic": AnthropicFamily,
    "amazon": AmazonFamily,
    "cohere": CohereFamily,
    "ai21labs": AI21Family,
}


def family_for(provider: str, bedrock_provider: str, model_id: str) -> Family:
    cls = FAMILIES.get(bedrock_provider.lower())
    if cls is None:
        raise InvalidParameterValue(
            f"bedrock_provider '{bedrock_provider}' is not one of {', '.join(FAMILIES)}."
        )
    return cls(provider, model_id)
