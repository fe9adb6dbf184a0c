"""Keyed locks: one holder per key at a time, none kept once nobody holds or waits."""

from __future__ import annotations

import asyncio

import pytest

from switchboard.keylocks import KeyedLocks


def test_a_second_holder_of_a_key_waits_for_the_first_and_other_keys_do_not() -> None:
    async def run() -> list[str]:
        locks, order = KeyedLocks(), []

        async def work(name: str, *keys: str) -> None:
            async with locks.hold(*keys):
                order.append(f"{name} in")
                await asyncio.sleep(0.01)
                order.append(f"{name} out")

        await asyncio.gather(work("a", "k1", "k2"), work("b", "k2"), work("c", "k3"))
        assert locks._held == {}  # nothing kept once done
        return order

    order = asyncio.run(run())
    assert order.index("a out") < order.index("b in")  # b waited for a on k2
    assert order.index("c in") < order.index("a out")  # c, on its own key, did not


def test_a_holder_that_fails_gives_its_keys_back() -> None:
    async def run() -> None:
        locks = KeyedLocks()
        with pytest.raises(RuntimeError):
            async with locks.hold("k1", "k2"):
                raise RuntimeError("boom")
        assert locks._held == {}
        async with locks.hold("k2", "k1"):  # the same keys, in another order
            pass

    asyncio.run(run())


def test_a_waiter_cancelled_leaves_nothing_behind() -> None:
    async def run() -> None:
        locks = KeyedLocks()
        entered = asyncio.Event()

        async def hold_long() -> None:
            async with locks.hold("k"):
                entered.set()
                await asyncio.sleep(10)

        first = asyncio.create_task(hold_long())
        await entered.wait()
        second = asyncio.create_task(locks.hold("k").__aenter__())
        await asyncio.sleep(0)
        second.cancel()
        first.cancel()
        await asyncio.gather(first, second, return_exceptions=True)
        assert locks._held == {}

    asyncio.run(run())
