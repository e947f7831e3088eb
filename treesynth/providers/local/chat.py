"""Turning a DSPy request into the prompt text an embedded model was trained on (pure, no llama.cpp state).

Instruct GGUFs carry their chat template (``tokenizer.chat_template``, Jinja); it is rendered with the
system message kept, which is where DSPy puts the instructions and output format. GGUFs without a
template (Gemma 3 270M base) get Gemma's turn format, with the system text folded into the first user
turn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from dspy import lm15

__all__ = ["ChatMessage", "Turn", "gemma_turns", "render_gemma_prompt", "request_messages", "template_renderer"]

ChatMessage = dict[str, str]
Turn = tuple[Literal["user", "model"], str]


def _system_text(system: str | Sequence[Any] | None) -> str:
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    texts: list[str] = []
    for part in system:
        text = getattr(part, "text", None)
        if not isinstance(text, str):
            raise lm15.UnsupportedFeatureError(
                f"the embedded model takes text only; got a {type(part).__name__} in the system prompt",
                feature="system",
            )
        texts.append(text)
    return "".join(texts)


def request_messages(request: lm15.Request) -> list[ChatMessage]:
    """The request as chat messages: ``system`` first (with ``developer`` text appended), then the turns.

    ``tool`` messages become user turns; non-text parts are refused.
    """
    system = _system_text(request.system)
    turns: list[ChatMessage] = []
    for index, message in enumerate(request.messages):
        text = message.text
        if text is None or any(getattr(part, "type", "text") != "text" for part in message.parts):
            raise lm15.UnsupportedFeatureError(
                f"the embedded model takes text only; message {index} has {message.role} non-text content",
                feature=f"messages[{index}]",
            )
        if message.role == "developer":
            system = f"{system}\n\n{text}" if system else text
        else:
            turns.append({"role": "assistant" if message.role == "assistant" else "user", "content": text})
    return ([{"role": "system", "content": system}] if system else []) + turns


def gemma_turns(request: lm15.Request) -> tuple[str, list[Turn]]:
    """Split a request into (system text, Gemma turns)."""
    messages = request_messages(request)
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    turns: list[Turn] = [("model" if m["role"] == "assistant" else "user", m["content"])
                         for m in messages if m["role"] != "system"]
    return system, turns


def render_gemma_prompt(system: str | None, turns: Sequence[Turn]) -> str:
    """Render Gemma's turn format (without ``<bos>``, which the tokenizer adds).

    The system text is folded into the first user turn (Gemma has no system role). Consecutive
    turns of the same role are merged. The prompt always ends with an open model turn; if the
    last turn is already a model turn, it is left open so the model continues it (prefill).
    """
    merged: list[tuple[str, str]] = []
    for role, text in turns:
        if merged and merged[-1][0] == role:
            merged[-1] = (role, f"{merged[-1][1]}\n\n{text}")
        else:
            merged.append((role, text))
    if system:
        if merged and merged[0][0] == "user":
            merged[0] = ("user", f"{system}\n\n{merged[0][1]}")
        else:
            merged.insert(0, ("user", system))
    pieces: list[str] = []
    for index, (speaker, content) in enumerate(merged):
        body = content.strip()
        if speaker == "model" and index == len(merged) - 1:
            pieces.append(f"<start_of_turn>model\n{body}")
            return "".join(pieces)
        pieces.append(f"<start_of_turn>{speaker}\n{body}<end_of_turn>\n")
    pieces.append("<start_of_turn>model\n")
    return "".join(pieces)


def _render_gemma(messages: list[ChatMessage]) -> str:
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    turns: list[Turn] = [("model" if m["role"] == "assistant" else "user", m["content"])
                         for m in messages if m["role"] != "system"]
    return render_gemma_prompt(system, turns)


def template_renderer(template: str | None, *, eos_token: str, bos_token: str,
                      fallback: Literal["gguf", "gemma"]) -> Callable[[list[ChatMessage]], str]:
    """A function rendering chat messages to prompt text: the GGUF's Jinja ``template`` when there is one
    and the model asks for it, else the named fallback format.

    Raises:
        lm15.ConfigurationError: the model wants its GGUF template but the file carries none.
    """
    if fallback == "gemma":
        return _render_gemma
    if not template:
        raise lm15.ConfigurationError("the GGUF carries no tokenizer.chat_template; register the model with a "
                                      "fallback template")
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    formatter = Jinja2ChatFormatter(template=template, eos_token=eos_token, bos_token=bos_token)

    def render(messages: list[ChatMessage]) -> str:
        return str(formatter(messages=messages).prompt)

    return render
