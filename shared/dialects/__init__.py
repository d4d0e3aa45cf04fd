"""Dialects: one translator class per wire format, looked up by the provider row's `dialect`.

Imported lazily so that a cold start pays only for the dialects it uses.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module

from shared.dialects.base import ChatTranslator

_TRANSLATORS = {
    "openai": ("shared.dialects.openai_to_openai", "OpenAIToOpenAI"),
    "anthropic": ("shared.dialects.openai_to_anthropic", "OpenAIToAnthropic"),
    "gemini": ("shared.dialects.openai_to_gemini", "OpenAIToGemini"),
}


@cache
def translator_class(dialect: str) -> type[ChatTranslator]:
    module, name = _TRANSLATORS[dialect]
    cls: type[ChatTranslator] = getattr(import_module(module), name)
    return cls
