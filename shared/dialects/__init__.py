"""Dialects: the upstream wire formats, one translator class per pair (the API a request is in,
the provider row's `dialect`), named by the pair.

Inside, the pipeline's pivot is OpenAI chat: `openai_to_<dialect>` translators serve every
front end. A pair whose two sides are the same API other than the pivot (`anthropic_to_anthropic`)
is a pass-through for callers of that API. A pass-through may need more of the provider than its
dialect (`_REQUIRES`): OpenAI's Responses API is served by OpenAI itself, not by every
OpenAI-compatible server, so that pair needs the row's `responses` feature. Modules are imported
lazily so that a cold start pays only for the dialects it uses.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module

from shared.dialects.base import ChatTranslator

PIVOT = "openai"
_TRANSLATORS: dict[tuple[str, str], tuple[str, str]] = {
    ("openai", "openai"): ("shared.dialects.openai_to_openai", "OpenAIToOpenAI"),
    ("openai", "anthropic"): ("shared.dialects.openai_to_anthropic", "OpenAIToAnthropic"),
    ("openai", "gemini"): ("shared.dialects.openai_to_gemini", "OpenAIToGemini"),
    ("openai", "anthropic-vertex"): ("shared.dialects.openai_to_anthropic_vertex", "OpenAIToAnthropicVertex"),
    ("openai", "bedrock"): ("shared.dialects.openai_to_bedrock", "OpenAIToBedrock"),
    ("anthropic", "anthropic"): ("shared.dialects.anthropic_to_anthropic", "AnthropicToAnthropic"),
    ("responses", "openai"): ("shared.dialects.responses_to_responses", "ResponsesToResponses"),
    # Embeddings have no pivot: every offer is served in the caller's API, or translated from it.
    ("embeddings", "openai"): ("shared.dialects.embeddings", "EmbeddingsToOpenAI"),
    ("embeddings", "gemini"): ("shared.dialects.embeddings", "EmbeddingsToGemini"),
    ("images", "openai"): ("shared.dialects.images", "ImagesToOpenAI"),
}
# The provider feature (providers.toml `supports`) a pass-through needs beyond its dialect.
_REQUIRES: dict[tuple[str, str], str] = {("responses", "openai"): "responses"}


@cache
def _load(source: str, dialect: str) -> type[ChatTranslator]:
    module, name = _TRANSLATORS[(source, dialect)]
    cls: type[ChatTranslator] = getattr(import_module(module), name)
    return cls


def translator_class(dialect: str) -> type[ChatTranslator]:
    """The translator from the pivot to `dialect`."""
    return _load(PIVOT, dialect)


def native_translator_class(api: str, dialect: str, supports: frozenset[str]) -> type[ChatTranslator] | None:
    """The pass-through for a caller of `api` to an upstream of `dialect` whose provider row has
    the features `supports`, when there is one."""
    if api == PIVOT or (api, dialect) not in _TRANSLATORS:
        return None
    needed = _REQUIRES.get((api, dialect))
    if needed is not None and needed not in supports:
        return None
    return _load(api, dialect)
