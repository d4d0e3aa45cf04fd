"""openai_to_bedrock without I/O: Converse request shapes and the error classification."""

from __future__ import annotations

import base64

import orjson
import pytest

from shared.dialects.openai_to_bedrock import OpenAIToBedrock
from shared.errors import InvalidRequest

CLAUDE = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
LLAMA = "us.meta.llama3-3-70b-instruct-v1:0"


def tr(native: str = CLAUDE) -> OpenAIToBedrock:
    return OpenAIToBedrock(model_id="m/x", native_id=native, supports=frozenset({"reasoning_effort"}))


def test_path_encodes_the_model_id() -> None:
    assert tr().path(False) == "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    assert tr().path(True).endswith("%3A0/converse-stream")


def test_documents_tool_choice_none_and_dropped_params() -> None:
    t = tr(LLAMA)
    pdf = base64.b64encode(b"%PDF-1.4").decode()
    out = t.request(
        {
            "model": "m/x",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "read", "cache_control": {"type": "ephemeral"}},
                        {
                            "type": "file",
                            "file": {
                                "filename": "q3_report.pdf",
                                "file_data": f"data:application/pdf;base64,{pdf}",
                            },
                        },
                    ],
                }
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": "none",
            "seed": 3,
            "reasoning_effort": "high",
            "temperature": 0.2,
        },
        False,
    )
    content = out["messages"][0]["content"]
    assert content[0] == {"text": "read"} and content[1] == {"cachePoint": {"type": "default"}}
    assert content[2] == {"document": {"format": "pdf", "name": "q3 report pdf", "source": {"bytes": pdf}}}
    assert "toolConfig" not in out  # "none": no tool offered
    assert out["inferenceConfig"] == {"temperature": 0.2}
    assert set(t.dropped) == {"seed", "reasoning_effort"}  # effort is Claude's only


def test_image_urls_are_refused_with_a_clear_400() -> None:
    with pytest.raises(InvalidRequest) as info:
        tr().request(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}],
                    }
                ]
            },
            False,
        )
    assert "base64" in str(info.value)


@pytest.mark.parametrize(
    ("name", "status", "failover"),
    [
        ("ValidationException", 400, False),
        ("AccessDeniedException", 403, True),
        ("ThrottlingException", 429, True),
        ("ModelNotReadyException", 503, True),
        ("ServiceUnavailableException", 503, True),
        ("ModelTimeoutException", 408, True),
        ("ResourceNotFoundException", 404, False),
    ],
)
def test_errors_are_classified_by_exception_name(name: str, status: int, failover: bool) -> None:
    headers = {"x-amzn-ErrorType": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    err = tr().error(
        429 if name == "ModelNotReadyException" else status, headers, orjson.dumps({"message": "why"})
    )
    assert (err.status, err.failover, err.message, err.vendor_type) == (status, failover, "why", name)


def test_stream_exception_frame_raises_with_its_status() -> None:
    from shared.transport.errors import UpstreamError

    with pytest.raises(UpstreamError) as info:
        tr().stream_event("exception:throttlingException", b'{"message":"slow"}')
    assert info.value.status == 429 and info.value.kind == "stream"
