"""OpenAI Chat Completions over the process's pooled ``urllib3.PoolManager``, always streaming.

Speaks to OpenAI, vLLM, Ollama, llama.cpp, LM Studio, OpenRouter, Groq and anything else with the
same wire format. Upstream failures become ``UpstreamError`` subclasses with the right status.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from ..agent.errors import (
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from ..agent.types import (
    CancelToken,
    Finish,
    Message,
    ProviderCall,
    ProviderEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    UsageReport,
)
from ..config import ProviderSettings
from .transport import SSEEvents, body_chunks, interrupt_on_cancel, read_error_message, release


def _content(message: Message) -> Any:
    if not message.images:
        return message.text
    parts: list[dict[str, Any]] = [{"type": "text", "text": message.text}] if message.text else []
    for image in message.images:
        url = f"data:{image.mime};base64,{image.data}" if image.data else image.url
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def to_openai_messages(system: str, messages: list[Message]) -> list[dict[str, Any]]:
    """Translate the run's conversation into Chat Completions messages."""
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for m in messages:
        if m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.text})
        elif m.role == "assistant" and m.tool_calls:
            out.append(
                {
                    "role": "assistant",
                    "content": m.text or None,
                    "tool_calls": [c.to_openai() for c in m.tool_calls],
                }
            )
        else:
            out.append({"role": m.role, "content": _content(m)})
    return out


class OpenAICompatProvider:
    """A provider entry with ``api: "openai-completions"``."""

    def __init__(self, settings: ProviderSettings, pool: urllib3.PoolManager) -> None:
        self.settings = settings
        self._pool = pool
        self._url = settings.base_url + "/chat/completions"
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            **settings.headers,
        }
        if settings.api_key:
            self._headers["Authorization"] = f"Bearer {settings.api_key}"
        self._timeout = urllib3.Timeout(
            connect=settings.connect_timeout_seconds, read=settings.timeout_seconds
        )

    def _body(self, call: ProviderCall) -> bytes:
        body: dict[str, Any] = {
            "model": call.model,
            "messages": to_openai_messages(call.system, call.messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        body.update(call.options)
        if call.tools:
            body["tools"] = call.tools
            if call.tool_choice is not None:
                body["tool_choice"] = call.tool_choice
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()

    def stream(self, call: ProviderCall, cancel: CancelToken) -> Iterator[ProviderEvent]:
        response = None
        chunks = None
        finished = False
        with interrupt_on_cancel(cancel):
            try:
                response = self._pool.urlopen(
                    "POST",
                    self._url,
                    body=self._body(call),
                    headers=self._headers,
                    preload_content=False,
                    retries=False,
                    redirect=False,
                    timeout=self._timeout,
                )
                if response.status >= 400:
                    raise self._status_error(response)
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    # A server that ignored "stream": answer from its JSON body.
                    yield from _events_from_completion(_json(response.read()))
                    finished = True
                    return
                # Keep the body iterator: after [DONE] its end is read so the connection is reused.
                chunks = body_chunks(response)
                for event in SSEEvents(chunks).events():
                    if event.data == "[DONE]":
                        finished = True
                        break
                    for item in _events_from_chunk(_json(event.data.encode())):
                        if isinstance(item, Finish):
                            finished = True
                        yield item
                if not finished:
                    raise UpstreamError("The model provider ended the stream early.")
            except NewConnectionError:
                raise UpstreamUnreachable() from None
            except (ConnectTimeoutError, ReadTimeoutError, TimeoutError):
                raise UpstreamTimeout() from None
            except (ProtocolError, HTTPError, OSError):
                raise UpstreamError("The model provider closed the connection.") from None
            finally:
                if response is not None:
                    if finished:
                        release(response, chunks)
                    else:
                        response.close()

    def _status_error(self, response: urllib3.BaseHTTPResponse) -> UpstreamError:
        status = response.status
        detail = read_error_message(response, secret=self.settings.api_key)
        response.close()
        if status == 429:
            retry = response.headers.get("retry-after", "")
            return UpstreamRateLimited(retry_after=int(retry) if retry.isdigit() else None)
        if status in (401, 403):
            return UpstreamError(
                f"The model provider rejected the gateway's credentials (HTTP {status})."
            )
        if status in (408, 504):
            return UpstreamTimeout()
        suffix = f": {detail}" if detail and status < 500 else "."
        return UpstreamError(f"The model provider returned HTTP {status}{suffix}")


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise UpstreamError("The model provider sent invalid JSON.") from None
    if not isinstance(value, dict):
        raise UpstreamError("The model provider sent invalid JSON.")
    if "error" in value and "choices" not in value:
        raise UpstreamError("The model provider reported an error mid-stream.")
    return value


def _usage(raw: Any) -> UsageReport | None:
    if not isinstance(raw, dict):
        return None
    return UsageReport(
        Usage(
            prompt_tokens=int(raw.get("prompt_tokens") or 0),
            completion_tokens=int(raw.get("completion_tokens") or 0),
        )
    )


def _events_from_chunk(chunk: dict[str, Any]) -> Iterator[ProviderEvent]:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        text = delta.get("content")
        if text:
            yield TextDelta(text)
        for call in delta.get("tool_calls") or ():
            function = call.get("function") or {}
            yield ToolCallDelta(
                index=int(call.get("index", 0)),
                id=call.get("id"),
                name=function.get("name"),
                arguments=function.get("arguments") or "",
            )
        if choice.get("finish_reason"):
            yield Finish(choice["finish_reason"])
    usage = _usage(chunk.get("usage"))
    if usage:
        yield usage


def _events_from_completion(body: dict[str, Any]) -> Iterator[ProviderEvent]:
    choices = body.get("choices") or [{}]
    message = choices[0].get("message") or {}
    if message.get("content"):
        yield TextDelta(message["content"])
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        yield ToolCallDelta(
            index, call.get("id"), function.get("name"), function.get("arguments") or ""
        )
    usage = _usage(body.get("usage"))
    if usage:
        yield usage
    yield Finish(choices[0].get("finish_reason") or "stop")
