"""Per-model inference slots: admission against the queue limit, slots in order, background work last."""

from __future__ import annotations

import functools
import importlib.util

import anyio
import pytest

from app.serving.deadline import Deadline
from app.serving.errors import QueueFull, TimedOut
from app.serving.scheduler import MAX_RETRY_AFTER_SECONDS, ModelSlots, Reservation

pytestmark = pytest.mark.anyio

WAIT = 10.0  # seconds before a test calls a wait stuck


# The server runs on asyncio; trio (there with selenium) checks that nothing relies on asyncio's scheduling.
BACKENDS = ["asyncio", "trio"] if importlib.util.find_spec("trio") is not None else ["asyncio"]


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


async def test_admission_stops_at_slots_plus_queue() -> None:
    slots = ModelSlots("m", concurrency=2, max_queue=3)
    places = [slots.reserve() for _ in range(5)]
    assert slots.reserved == 5 and slots.waiting == 5 and slots.running == 0
    with pytest.raises(QueueFull) as refused:
        slots.reserve()
    assert 1 <= refused.value.retry_after <= MAX_RETRY_AFTER_SECONDS
    assert "'m'" in str(refused.value)
    assert slots.reserved == 5  # a refusal takes nothing
    for place in places:
        place.release()
    assert slots.reserved == 0


async def test_no_queue_means_only_the_slots() -> None:
    slots = ModelSlots("m", concurrency=1, max_queue=0)
    slots.reserve()
    with pytest.raises(QueueFull):
        slots.reserve()


async def test_release_frees_a_place_once() -> None:
    slots = ModelSlots("m", concurrency=1, max_queue=1)
    first, _ = slots.reserve(), slots.reserve()
    with pytest.raises(QueueFull):
        slots.reserve()
    first.release()
    first.release()  # safe, and frees nothing more
    assert slots.reserved == 1
    slots.reserve()
    with pytest.raises(QueueFull):
        slots.reserve()


async def test_admitted_work_is_never_refused_but_counts() -> None:
    slots = ModelSlots("m", concurrency=1, max_queue=0)
    turns = [slots.reserve(admitted=True) for _ in range(3)]
    assert slots.reserved == 3
    with pytest.raises(QueueFull):
        slots.reserve()
    for turn in turns:
        turn.release()
    slots.reserve()


async def test_a_reservation_runs_once_then_gives_its_place_back() -> None:
    slots = ModelSlots("m", concurrency=1, max_queue=0)
    reservation = slots.reserve()
    async with reservation.running():
        assert (slots.reserved, slots.running, slots.waiting) == (1, 1, 0)
    assert (slots.reserved, slots.running) == (0, 0)
    with pytest.raises(RuntimeError):
        async with reservation.running():
            pass
    async with slots.reserve().running():  # the slot came back too
        pass


async def test_a_failing_run_gives_slot_and_place_back() -> None:
    slots = ModelSlots("m", concurrency=1, max_queue=0)
    with pytest.raises(ValueError):
        async with slots.reserve().running():
            raise ValueError("the decode failed")
    assert (slots.reserved, slots.running) == (0, 0)
    with anyio.fail_after(WAIT):
        async with slots.reserve().running():
            pass


async def test_no_more_than_concurrency_run_at_once() -> None:
    slots = ModelSlots("m", concurrency=2, max_queue=10)
    running = peak = finished = 0

    async def request(reservation: Reservation) -> None:
        nonlocal running, peak, finished
        async with reservation.running():
            running += 1
            peak = max(peak, running)
            assert slots.running == running <= 2
            await anyio.sleep(0.01)
            running -= 1
        finished += 1

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as group:
            for _ in range(12):
                group.start_soon(request, slots.reserve())  # admitted up front, as the service does
    assert (peak, finished) == (2, 12)
    assert (slots.reserved, slots.running) == (0, 0)


async def test_waiters_get_slots_in_arrival_order() -> None:
    slots = ModelSlots("m", concurrency=1, max_queue=5)
    order: list[int] = []
    blocker = slots.reserve()

    async def request(index: int, reservation: Reservation) -> None:
        async with reservation.running():
            order.append(index)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as group, blocker.running():
            for index in range(5):
                group.start_soon(request, index, slots.reserve())
                await anyio.wait_all_tasks_blocked()
    assert order == [0, 1, 2, 3, 4]


async def test_background_work_waits_behind_every_normal_request() -> None:
    slots = ModelSlots("m", concurrency=1, max_queue=5)
    order: list[str] = []

    async def background(name: str) -> None:
        async with slots.run_in_background():
            order.append(name)

    async def normal(name: str, reservation: Reservation) -> None:
        async with reservation.running():
            order.append(name)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as group, slots.reserve().running():
            group.start_soon(background, "delta-1")
            await anyio.wait_all_tasks_blocked()
            group.start_soon(normal, "file", slots.reserve())
            await anyio.wait_all_tasks_blocked()
            group.start_soon(background, "delta-2")
            await anyio.wait_all_tasks_blocked()
            group.start_soon(normal, "final", slots.reserve(admitted=True))
            await anyio.wait_all_tasks_blocked()
            # background waiters take no queue place until they run; the normal ones do
            assert (slots.reserved, slots.running, slots.waiting) == (3, 1, 2)
    assert order == ["file", "final", "delta-1", "delta-2"]
    assert (slots.reserved, slots.running) == (0, 0)


async def test_urgent_background_work_goes_before_other_background_work_but_after_normal() -> None:
    slots = ModelSlots("m", concurrency=1, max_queue=5)
    order: list[str] = []

    async def background(name: str, *, urgent: bool) -> None:
        async with slots.run_in_background(urgent=urgent):
            order.append(name)

    async def normal(name: str) -> None:
        async with slots.reserve(admitted=True).running():
            order.append(name)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as group, slots.reserve().running():
            for name, urgent in [("later words", False), ("first words", True), ("more later words", False)]:
                group.start_soon(functools.partial(background, name, urgent=urgent))
                await anyio.wait_all_tasks_blocked()
            group.start_soon(normal, "final")
            await anyio.wait_all_tasks_blocked()
            group.start_soon(functools.partial(background, "other first words", urgent=True))
            await anyio.wait_all_tasks_blocked()
    assert order == ["final", "first words", "other first words", "later words", "more later words"]


async def test_background_work_past_the_first_words_leaves_a_slot_free() -> None:
    slots = ModelSlots("m", concurrency=2, max_queue=5)
    order: list[str] = []
    release_first = anyio.Event()

    async def background(name: str, *, urgent: bool, hold: anyio.Event | None = None) -> None:
        async with slots.run_in_background(urgent=urgent):
            order.append(name)
            if hold is not None:
                await hold.wait()

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as group:
            group.start_soon(functools.partial(background, "later words", urgent=False, hold=release_first))
            await anyio.wait_all_tasks_blocked()
            group.start_soon(functools.partial(background, "more later words", urgent=False))
            await anyio.wait_all_tasks_blocked()
            # one slot is free, but not for more of the same: it stays for a final or a first word
            assert (slots.running, order) == (1, ["later words"])
            group.start_soon(functools.partial(background, "first words", urgent=True))
            await anyio.wait_all_tasks_blocked()
            assert order == ["later words", "first words"]
            release_first.set()
    assert order == ["later words", "first words", "more later words"]
    assert (slots.reserved, slots.running) == (0, 0)


async def test_background_work_takes_a_free_slot_at_once() -> None:
    slots = ModelSlots("m", concurrency=1, max_queue=0)
    with anyio.fail_after(WAIT):
        async with slots.run_in_background():
            assert (slots.reserved, slots.running) == (1, 1)
            with pytest.raises(QueueFull):  # it holds the one slot: a file request finds no place
                slots.reserve()
    assert slots.reserved == 0


async def test_waiting_stops_at_the_deadline_and_frees_the_place() -> None:
    slots = ModelSlots("m", concurrency=1, max_queue=1)
    async with slots.reserve().running():
        late = slots.reserve()
        with pytest.raises(TimedOut) as timed_out:
            async with late.running(Deadline(0.05)):
                pytest.fail("ran without a slot")
        assert timed_out.value.seconds == 0.05
        assert (slots.reserved, slots.running) == (1, 1)
    async with slots.reserve().running():  # the slot was not lost to the timed-out waiter
        pass


async def test_a_cancelled_waiter_leaves_the_slot_for_the_next() -> None:
    slots = ModelSlots("m", concurrency=1, max_queue=5)
    ran: list[str] = []

    async def request(name: str, reservation: Reservation) -> None:
        async with reservation.running():
            ran.append(name)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as group, slots.reserve().running():
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as doomed:
                    doomed.start_soon(request, "cancelled", slots.reserve())
                    await anyio.wait_all_tasks_blocked()
                    scope.cancel()
            group.start_soon(request, "next", slots.reserve())
            await anyio.wait_all_tasks_blocked()
            assert slots.reserved == 2  # the cancelled request gave its place back
    assert ran == ["next"]
    assert (slots.reserved, slots.running) == (0, 0)


async def test_retry_after_grows_with_the_queue_within_bounds() -> None:
    slots = ModelSlots("m", concurrency=2, max_queue=1000)
    hints = []
    for _ in range(50):
        hints.append(slots.retry_after())
        slots.reserve()
    assert hints == sorted(hints)
    assert hints[0] >= 1 and hints[-1] > hints[0]
    assert max(hints) <= MAX_RETRY_AFTER_SECONDS
