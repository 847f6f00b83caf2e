"""Deliveries as an at-least-once provider and a bad network bring them, for fault tests.

Off unless `SandboxConfig.chaos` is set. With it, each delivery is sent 1 to `max_copies` times
(every copy accepted: a provider that never saw our 2xx sends again), picked at random among what is
due (so out of order), to one of several receivers (`targets`, e.g. two intakes behind no balancer)
or to all of them at once. Non-2xx answers are retried as in normal mode, and every answer is
counted per receiver.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Tally:
    """What the chaotic sender did and what each receiver answered."""

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    answers: list[tuple[float, str, str, int | None]] = field(default_factory=list)  # (monotonic, provider, target, status)
    posts: int = 0
    duplicates: int = 0  # copies sent after one copy of the same delivery was accepted
    sent_to_all_at_once: int = 0
    deliveries_given_up: int = 0

    def answered(self, provider: str, target: str, status: int | None) -> None:
        with self._lock:
            self.answers.append((time.monotonic(), provider, target, status))
            self.posts += 1

    def count(self, *, duplicates: int = 0, all_at_once: int = 0, given_up: int = 0) -> None:
        with self._lock:
            self.duplicates += duplicates
            self.sent_to_all_at_once += all_at_once
            self.deliveries_given_up += given_up

    def statuses(self) -> dict[str, dict[str, int]]:
        """{target: {status: count}}; a status of "none" is a connection that got no answer."""
        with self._lock:
            counts = Counter((target, "none" if status is None else str(status)) for _, _, target, status in self.answers)
        by_target: dict[str, dict[str, int]] = {}
        for (target, status), number in sorted(counts.items()):
            by_target.setdefault(target, {})[status] = number
        return by_target

    def report(self) -> dict:
        with self._lock:
            figures = {"posts": self.posts, "duplicate_copies": self.duplicates,
                       "copies_sent_to_all_targets_at_once": self.sent_to_all_at_once,
                       "deliveries_given_up": self.deliveries_given_up}
        return {**figures, "statuses": self.statuses()}


@dataclass
class Chaos:
    """How deliveries misbehave. `targets` maps a provider to the URLs its copies go to."""

    targets: dict[str, tuple[str, ...]]
    max_copies: int = 5
    all_at_once: float = 0.25  # the share of copies sent to every target concurrently
    spread_seconds: float = 1.0  # a further copy goes out within this long, among the others
    senders: int = 4  # threads sending at once
    seed: int | None = None
    tally: Tally = field(default_factory=Tally)

    def __post_init__(self):
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def copies(self) -> int:
        with self._lock:
            return self._random.randint(1, self.max_copies)

    def pick(self, due: list):
        with self._lock:
            return self._random.choice(due)

    def receivers(self, provider: str) -> tuple[list[str], bool]:
        """Where the next copy goes, and whether that is every target at once."""
        targets = list(self.targets.get(provider, ()))
        with self._lock:
            if len(targets) > 1 and self._random.random() < self.all_at_once:
                return targets, True
            return ([self._random.choice(targets)] if targets else []), False

    def next_copy_delay(self) -> float:
        with self._lock:
            return self._random.uniform(0, self.spread_seconds)
