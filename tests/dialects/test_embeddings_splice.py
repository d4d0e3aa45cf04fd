"""The embeddings pass-through reads only `model` and `usage` of an OpenAI-shaped answer and
leaves the vectors as the upstream's bytes (`shared.dialects.embeddings.splice`); any answer whose
shape does not make that safe is parsed whole instead."""

from __future__ import annotations

import orjson
import pytest

from shared.dialects.embeddings import Spliced, splice

VECTORS = [{"object": "embedding", "index": 0, "embedding": [0.25, -1.5e-05, 3.0]}]


def rebuilt(found: tuple[Spliced, dict[str, object]] | None, usage: dict[str, object]) -> object:
    assert found is not None
    spliced, _ = found
    return orjson.loads(spliced.before + orjson.dumps(usage) + spliced.after)


@pytest.mark.parametrize("option", [0, orjson.OPT_INDENT_2])
def test_openais_order_is_spliced_with_the_vectors_untouched(option: int) -> None:
    upstream = {"object": "list", "data": VECTORS, "model": "text-embedding-3-small",
                "usage": {"prompt_tokens": 7, "total_tokens": 7}}  # fmt: skip
    raw = orjson.dumps(upstream, option=option)
    found = splice(raw, "openai/text-embedding-3-small")
    assert found is not None and found[1] == {"prompt_tokens": 7, "total_tokens": 7}
    mine = {"prompt_tokens": 7, "cost": 1}
    assert rebuilt(found, mine) == {**upstream, "model": "openai/text-embedding-3-small", "usage": mine}
    assert raw[: raw.index(b'"model"')] in found[0].before  # the upstream's own bytes up to the model


def test_usage_before_model_is_spliced_too() -> None:
    upstream = {
        "data": VECTORS,
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
        "model": "m",
        "object": "list",
    }
    found = splice(orjson.dumps(upstream), "org/m")
    assert rebuilt(found, {"x": 1}) == {**upstream, "model": "org/m", "usage": {"x": 1}}


@pytest.mark.parametrize(
    "upstream",
    [
        {"usage": {"prompt_tokens": 3, "total_tokens": 3}, "model": "m", "data": VECTORS},  # before the data
        {"data": VECTORS, "model": "m", "usage": {"prompt_tokens": 3, "details": {"cached": 0}}},  # nested
        {"data": VECTORS, "model": 'm"x', "usage": {"prompt_tokens": 3}},  # an escaped model name
        {"data": VECTORS, "usage": {"prompt_tokens": 3}},  # no model
        {"data": [], "model": "m"},  # no usage
    ],
)
def test_other_shapes_are_parsed_whole(upstream: dict[str, object]) -> None:
    assert splice(orjson.dumps(upstream), "org/m") is None


def test_not_an_object_is_parsed_whole() -> None:
    assert splice(b'[{"model": "m", "usage": {}}]', "org/m") is None
