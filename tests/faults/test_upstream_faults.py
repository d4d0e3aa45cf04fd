"""The upstream or the caller goes away (issue 10's fault suite), on SQLite and PostgreSQL: a
provider that reads the paid request and hangs up without a byte of answer costs the caller
nothing and answers 502; a caller that hangs up mid-stream is billed for what was generated. In
both, the hold is closed, the balance equals its ledger and the caller's one slot is free."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.openai_fake import OpenAIFake
from tests.fakes.server import Reply
from tests.faults.conftest import Faulty, start_faulty, wait_until
from tests.faults.hangup import HangUpServer
from tests.store.support import BACKENDS

CLAUDE = "anthropic/claude-sonnet-4.5"  # served by the Anthropic fake: the check after the fault


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def hung(backend: str, fakes: dict[str, Any], tmp_path: Path) -> Iterator[tuple[Faulty, HangUpServer]]:
    """A gateway whose every offer of gpt-4o (OpenAI, OpenRouter) hangs up after the request."""
    server = HangUpServer().start()
    with ExitStack() as stack:
        stack.callback(server.stop)
        env = {"OPENAI_BASE_URL": f"{server.url}/v1", "OPENROUTER_BASE_URL": f"{server.url}/api/v1"}
        yield start_faulty(fakes, backend, tmp_path, stack, warm=CLAUDE, **env), server


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_that_hangs_up_after_reading_the_request_costs_nothing(
    hung: tuple[Faulty, HangUpServer], stream: bool
) -> None:
    gw, server = hung
    before = gw.balance_pico()
    response = gw.chat(stream=stream)
    assert response.status_code == 502, response.text
    assert response.json()["error"]["type"] == "upstream_error"
    assert server.requests >= 2  # both offers were tried, and both took the request
    assert gw.invariants(model=CLAUDE) == before


def test_a_caller_that_hangs_up_mid_stream_is_billed_for_what_was_generated(
    backend: str, fakes: dict[str, Any], openai_fake: OpenAIFake, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        gw = start_faulty(fakes, backend, tmp_path, stack)
        before = gw.balance_pico()
        openai_fake.script("gpt-4o", Reply(chunks=8, chunk_delay=0.15))
        with gw.stream() as response:
            assert response.status_code == 200
            next(line for line in response.iter_lines() if line.startswith("data:"))
        # The gateway notices, closes the upstream and settles what was generated (estimated).
        wait_until(lambda: gw.balance_pico() < before and not gw.open_holds(), "the settlement")
        assert not openai_fake.requests[-1].completed  # the upstream stream was cut, not drained
        assert gw.invariants() < before
