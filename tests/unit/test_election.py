"""Leader election (store.election) stepped with a fake clock against a fake leader key that
keeps etcd's semantics: one holder, a lease that expires `ttl` after its last renewal."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest

from mayu_py.store.election import Election, call_budget, lease_ttl
from mayu_py.store.errors import StoreUnavailable

TTL = 9


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeKey:
    """etcd's side: leases expiring on the shared clock, one key created under one of them."""

    clock: Clock
    expiry: dict[int, float] = field(default_factory=dict)
    holder_lease: int | None = None
    unreachable: bool = False
    call_cost: float = 0.0  # seconds each call takes (a member that does not answer)
    revoked: list[int] = field(default_factory=list)
    _next: int = 1

    def _check(self) -> None:
        self.clock.now += self.call_cost
        if self.unreachable:
            raise StoreUnavailable("store etcd://test is unavailable")
        for lease, until in list(self.expiry.items()):
            if until <= self.clock.now:
                del self.expiry[lease]
                if self.holder_lease == lease:
                    self.holder_lease = None

    def holder(self) -> str | None:
        self._check()
        return None if self.holder_lease is None else f"lease {self.holder_lease}"

    def grant(self, ttl: int) -> int:
        self._check()
        lease, self._next = self._next, self._next + 1
        self.expiry[lease] = self.clock.now + ttl
        return lease

    def claim(self, lease: int) -> bool:
        self._check()
        if self.holder_lease is not None:
            return False
        self.holder_lease = lease
        return True

    def keepalive(self, lease: int) -> int:
        self._check()
        if lease not in self.expiry:
            return 0
        self.expiry[lease] = self.clock.now + TTL
        return TTL

    def revoke(self, lease: int) -> None:
        self._check()
        self.revoked.append(lease)
        self.expiry.pop(lease, None)
        if self.holder_lease == lease:
            self.holder_lease = None


@dataclass
class Candidate:
    election: Election
    events: list[str]
    next_step: float = 0.0


def candidate(key: FakeKey, clock: Clock, fail_start: bool = False) -> Candidate:
    events: list[str] = []

    def elected() -> None:
        if fail_start:
            raise RuntimeError("dnsmasq would not start")
        events.append("elected")

    election = Election(
        key, TTL, on_elected=elected, on_deposed=lambda why: events.append(why), clock=clock
    )
    return Candidate(election, events)


def run_until(clock: Clock, candidates: list[Candidate], until: float) -> None:
    """Step each candidate when its next round is due, advancing the clock in small ticks."""
    while clock.now < until:
        for c in candidates:
            if clock.now >= c.next_step:
                c.next_step = clock.now + c.election.step()
        clock.now += 0.05


def leaders(candidates: list[Candidate]) -> list[int]:
    return [i for i, c in enumerate(candidates) if c.election.leading]


def test_exactly_one_of_several_candidates_leads_and_keeps_leading() -> None:
    clock = Clock()
    key = FakeKey(clock)
    candidates = [candidate(key, clock) for _ in range(3)]
    run_until(clock, candidates, clock.now + 10 * TTL)
    assert leaders(candidates) == [0]
    assert candidates[0].events == ["elected"]
    assert all(c.events == [] for c in candidates[1:])


def test_a_dead_leader_is_replaced_within_ttl_and_a_poll() -> None:
    clock = Clock()
    key = FakeKey(clock)
    first, second = candidate(key, clock), candidate(key, clock)
    run_until(clock, [first, second], clock.now + 2 * TTL)
    assert leaders([first, second]) == [0]
    died = clock.now  # the leader's process dies: it never steps again
    run_until(clock, [second], died + TTL + second.election.poll_interval + 0.2)
    assert second.election.leading and second.events == ["elected"]
    # the last renewal was at most TTL/3 before the death: the lease ran out TTL after it
    assert key.holder_lease is not None


def test_a_leader_cut_off_from_the_store_stops_before_its_lease_can_expire() -> None:
    clock = Clock()
    key = FakeKey(clock)
    first = candidate(key, clock)
    run_until(clock, [first], clock.now + 1)
    assert first.election.leading
    renewed = first.election.renewed
    key.unreachable = True
    # The lease expires at renewed + TTL at the earliest; the leader is down well before.
    run_until(clock, [first], renewed + TTL * 2 / 3 + 0.5)
    assert not first.election.leading
    assert first.events == ["elected", "the lease could not be renewed in time (store unreachable)"]
    assert clock.now < renewed + TTL - call_budget(TTL)
    # Back again: it campaigns, and leads again once its old lease has run out.
    key.unreachable = False
    run_until(clock, [first], renewed + TTL + 2)
    assert first.election.leading and first.events[-1] == "elected"


def test_calls_that_hang_until_their_budget_still_leave_the_fence_before_expiry() -> None:
    clock = Clock()
    key = FakeKey(clock)
    first = candidate(key, clock)
    first.election.step()
    renewed = first.election.renewed
    key.unreachable, key.call_cost = True, call_budget(TTL)
    deposed_at = None
    while first.election.leading:
        first.election.step()
        deposed_at = clock.now
        clock.now += 0.05
    assert deposed_at is not None and deposed_at <= renewed + TTL * 2 / 3 + call_budget(TTL)
    assert deposed_at < renewed + TTL


def test_a_leader_whose_lease_expired_steps_down_at_once() -> None:
    clock = Clock()
    key = FakeKey(clock)
    first = candidate(key, clock)
    first.election.step()
    assert first.election.leading
    key.expiry.clear()  # etcd forgot the lease (expired while this process was stopped)
    clock.now += TTL / 3
    first.election.step()
    assert not first.election.leading
    assert first.events == ["elected", "the lease has expired"]


def test_resigning_ends_the_lease_so_another_leads_at_once() -> None:
    clock = Clock()
    key = FakeKey(clock)
    first, second = candidate(key, clock), candidate(key, clock)
    run_until(clock, [first, second], clock.now + 1)
    lease = first.election.lease
    first.election.resign()
    assert first.events == ["elected", "shutting down"] and key.revoked == [lease]
    run_until(clock, [second], clock.now + second.election.poll_interval + 0.1)
    assert second.election.leading


def test_a_candidate_that_cannot_start_gives_the_leadership_back() -> None:
    clock = Clock()
    key = FakeKey(clock)
    broken = candidate(key, clock, fail_start=True)
    assert broken.election.step() == TTL  # waits a TTL before trying again
    assert not broken.election.leading and key.holder_lease is None
    assert broken.events == ["starting as leader failed"]


@pytest.mark.parametrize("ttl", [lease_ttl(5), lease_ttl(10), 60])
def test_renewal_and_fencing_intervals_leave_room(ttl: int) -> None:
    election = Election(FakeKey(Clock()), ttl, on_elected=lambda: None, on_deposed=print)
    # renewals are tried twice before the fence; the fence plus one call is before expiry
    assert election.renew_interval * 2 <= election.fence_after
    assert election.fence_after + call_budget(ttl) < ttl
    assert 0.2 <= election.poll_interval <= 0.5


def test_the_loop_survives_an_unexpected_error_by_resigning() -> None:
    clock = Clock()
    key = FakeKey(clock)
    first = candidate(key, clock)
    first.election.step()
    stopping = threading.Event()
    calls = []

    def broken(lease: int) -> int:
        calls.append(lease)
        stopping.set()
        raise KeyError("a bug")

    key.keepalive = broken  # type: ignore[method-assign]
    first.election.run(stopping)
    assert calls and not first.election.leading and key.holder_lease is None
    assert first.events == ["elected", "unexpected error"]
