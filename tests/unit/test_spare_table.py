"""The table spare holds and spare admissions share (shared.spares): one spare per key, undone
when nobody takes it in time, when another waits already, or when the table closes — and a spare
taken and put back is still undone in time."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from shared.spares import SpareTable


@dataclass
class Item:
    key_id: str
    born: float = 0.0


class Table(SpareTable[Item]):
    def __init__(self, spare_s: float) -> None:
        super().__init__(spare_s)
        self.undone: list[Item] = []

    def key_of(self, spare: Item) -> str:
        return spare.key_id

    async def undo(self, spare: Item) -> None:
        self.undone.append(spare)


async def test_a_key_is_busy_when_its_requests_follow_closely_or_ran_on_a_spare() -> None:
    table = Table(0.2)
    assert not table.busy("k", took=False)  # its first request: nothing says more will come
    assert table.busy("k", took=False)  # the next, at once
    assert table.busy("other", took=True)  # on a spare
    table.wait(Item("k"))
    assert not table.busy("k", took=False)  # one waits already
    await asyncio.sleep(0.25)
    table.take("k")
    assert not table.busy("k", took=False)  # its last request ended too long ago


async def test_a_spare_nobody_takes_is_undone_and_a_second_one_at_once() -> None:
    table = Table(0.1)
    first, second = Item("k"), Item("k")
    table.wait(first)
    table.wait(second)
    await asyncio.sleep(0)
    assert table.undone == [second]  # one per key
    await asyncio.sleep(0.3)
    assert table.undone == [second, first] and table.take("k") is None


async def test_a_spare_put_back_after_its_sweeper_ended_is_still_undone_in_time() -> None:
    table = Table(0.2)
    spare = Item("k")
    table.wait(spare)
    assert table.take("k") is spare
    await asyncio.sleep(0.13)  # the sweeper woke up to an empty table and ended
    table.put_back(spare)  # its request was refused: the key's again, for the rest of its time
    await asyncio.sleep(0.4)
    assert table.undone == [spare]


async def test_closing_undoes_every_spare_and_takes_none_after() -> None:
    table = Table(30)
    a, b = Item("a"), Item("b")
    table.wait(a)
    table.wait(b)
    await table.close()
    assert sorted(i.key_id for i in table.undone) == ["a", "b"]
    late = Item("c")
    table.wait(late)
    await asyncio.sleep(0)
    assert table.undone[-1] is late and table.take("c") is None
