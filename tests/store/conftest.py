"""The store contract fixtures: every test here runs on SQLite and on the real PostgreSQL.

`db` is a migrated database shared by the tests of one module (a SQLite file, or a schema of its
own in PostgreSQL); tests isolate themselves by making their own users. `fresh_db` is empty and
private to one test (migrations, and counts over the whole database).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shared.store import Database, open_database
from tests.store.support import BACKENDS, database_url, migrate_url


@pytest.fixture(scope="module", params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with database_url(request.param, tmp_path_factory.mktemp("store")) as url:
        migrate_url(url)
        yield url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = open_database(db_url)
    yield database
    await database.close()


@pytest.fixture(params=BACKENDS)
async def fresh_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    with database_url(request.param, tmp_path) as url:
        database = open_database(url)
        try:
            yield database
        finally:
            await database.close()
