"""Hypothesis profiles of the suite (``quick``, ``ci``, ``thorough``, ``smoke``) and run settings.

Run settings say how one run of a property is seeded, given its example database and counted.

Every profile sets ``deadline=None``: the machines drive real files on loaded CI machines, where a
slow fsync says nothing about correctness. ``too_slow`` and ``filter_too_much`` are suppressed for
the same reason (a store may take milliseconds per call, and the key bundles are drawn sparsely).
Every profile sets ``database=None``: a verdict must not depend on what ran in the working
directory before (an example database is an opt-in, keyed by store and property: see
:func:`run_settings`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import os
import pkgutil
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from hypothesis import HealthCheck, Phase, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.control import current_build_context
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import InvalidArgument, UnsatisfiedAssumption

from lance_offsets._interrupt import raise_if_interrupted

__all__ = [
    "BAD_NEWS_SECONDS",
    "DATABASE_ENV",
    "DEFAULT_PROFILE",
    "PROFILES",
    "BudgetSpent",
    "RunSettings",
    "Tally",
    "profile_settings",
    "property_seed",
    "run_settings",
]

#: The profile ``lance-offsets check`` uses when given no ``--profile``.
DEFAULT_PROFILE: Final = "quick"

#: Environment variable naming a directory for an example database (opt-in; unset: none).
DATABASE_ENV: Final = "LANCE_OFFSETS_EXAMPLE_DB"

_SUPPRESSED: Final = (HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large)
# No "explain" phase: its coverage lines point into the suite, not at the store's defect.
_PHASES: Final = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)

T = TypeVar("T")


def _profile(
    examples: int, steps: int, *, derandomize: bool = False, print_blob: bool = False
) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=derandomize,
        database=None,
        suppress_health_check=_SUPPRESSED,
        phases=_PHASES,
        report_multiple_bugs=False,
        print_blob=print_blob,
    )


#: Name -> settings. ``ci`` is derandomized so a CI verdict is reproducible run to run.
PROFILES: Final[dict[str, settings]] = {
    # The reference store passes every property in well under 60 s on 2 cores.
    "quick": _profile(20, 20),
    "ci": _profile(50, 30, derandomize=True, print_blob=True),
    "thorough": _profile(400, 60),
    # Few examples: enough for a broken store to fail fast in the project's own default tests.
    "smoke": _profile(15, 15, derandomize=True),
}

for _name, _settings in PROFILES.items():
    settings.register_profile(f"lance-offsets-{_name}", _settings)


def profile_settings(name: str) -> settings:
    """Return the settings of profile ``name``; an unknown name raises ValueError naming them."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(PROFILES)
        raise ValueError(f"unknown profile {name!r}; choose one of {known}") from None


def property_seed(run_seed: int, pid: str) -> int:
    """The seed of property ``pid`` in a run seeded ``run_seed``.

    Properties draw differently, and the same run seed replays each one exactly.
    """
    digest = hashlib.sha256(f"{run_seed}:{pid}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


#: Seconds a property's run goes on after its first violation (its own property's or another's).
#: Shrinking, and examples discarded because another property broke first, replay the store's
#: failing path each time; when that path is slow (a handle that keeps the others waiting for
#: its busy timeout), one property's run took more than a quarter of an hour.
BAD_NEWS_SECONDS: Final = 30.0


class BudgetSpent(BaseException):
    """A run's time after its first violation is spent: stop it.

    A BaseException, not an Exception: Hypothesis takes it for an interruption and lets it
    through at once, instead of taking it for a failure to shrink.
    """


@dataclass
class Tally:
    """How many examples one property's run executed and discarded.

    Counted by the suite itself, not read from Hypothesis' statistics (whose shape changes
    between releases).

    :ivar examples: test cases run (generated, replayed and shrunk alike).
    :ivar discarded: of those, the ones thrown away because another property broke first.
    :ivar broke_first: property ID -> how many discards it caused (the machines know; a
        Hypothesis test that discards does not say which).
    :ivar steps: the store operations of the latest example, for reports Hypothesis gives none.
    :ivar running: the store operation started last, for an error that is not a verdict.
    :ivar bad_news_at: when (``time.monotonic()``) the run first saw a violation, of its own
        property or another's; None before. Starts the machines' time budget.
    :ivar latest: the latest violation of the run's own property and the steps that made it:
        what a run stopped by its budget reports (while shrinking, the smallest so far).
    """

    examples: int = 0
    discarded: int = 0
    broke_first: Counter[str] = field(default_factory=Counter)
    steps: list[str] = field(default_factory=list)
    running: str = ""
    bad_news_at: float | None = None
    #: The budget stopped the run. Hypothesis may then report the stop as something else (an
    #: example cut short before its draws reads as flaky data generation): the run's own
    #: failure, if any, is :attr:`latest`, whatever Hypothesis says.
    stopped: bool = False
    latest: tuple[Exception, list[str]] | None = None

    def bad_news(self, failure: Exception | None = None) -> None:
        """A violation: start the time budget at the first; keep the latest of the property's own.

        :param failure: the failure of the run's own property (None: another property broke).
        """
        if self.bad_news_at is None:
            self.bad_news_at = time.monotonic()
        if failure is not None:
            self.latest = (failure, list(self.steps))

    def within_budget(self) -> None:
        """Raise :class:`BudgetSpent` once the run's time after its first violation is up.

        Never in Hypothesis' final replay of the failing example (the run is over by then): cut
        short, it would draw less than the first time, which Hypothesis reports as flaky.
        """
        if self.bad_news_at is None or time.monotonic() - self.bad_news_at <= BAD_NEWS_SECONDS:
            return
        try:
            final = current_build_context().is_final
        except InvalidArgument:  # outside a Hypothesis test: nothing to stop
            return
        if not final:
            self.stopped = True
            raise BudgetSpent

    def evidence(self) -> dict[str, int | float | str]:
        """The counts as :attr:`PropertyResult.evidence` entries."""
        return {"examples": self.examples, "discarded": self.discarded}

    def too_few_kept(self) -> str:
        """Why the run is no verdict when most of its examples were discarded, else ""."""
        if self.discarded == 0 or self.discarded * 2 <= self.examples:
            return ""
        culprits = ", ".join(pid for pid, _ in self.broke_first.most_common()) or (
            "another property"
        )
        return (
            f"{self.discarded} of {self.examples} examples discarded because {culprits} broke "
            "first: fix that, then check again"
        )


class RunSettings(settings):
    """The settings of one property's run: a profile plus a seed and a :class:`Tally`.

    Used as a decorator exactly like ``settings`` (``@ctx.settings`` over ``@given``), it also
    seeds the test (so ``--seed`` replays the Hypothesis parts) and counts its examples, so the
    property checks need no code of their own for either.
    """

    def __init__(
        self, parent: settings, *, seed: int | None, tally: Tally, database: Any = None
    ) -> None:
        if parent.derandomize:
            # A derandomized profile is reproducible already (and takes no database); a seed
            # would override derandomize, making ci's verdict depend on the seed.
            super().__init__(parent)
            seed = None
        else:
            super().__init__(parent, database=database)
        self._seed = seed
        self._tally = tally

    @property
    def run_seed(self) -> int | None:
        """The Hypothesis seed of this run (None: derandomized or fresh)."""
        return self._seed

    @property
    def tally(self) -> Tally:
        """What this run executed."""
        return self._tally

    def seeded(self, test: T) -> T:
        """Apply the seed (if any) to a test or a state machine class."""
        if self._seed is None:
            return test
        seeded: T = hypothesis_seed(self._seed)(test)  # type: ignore[type-var]
        return seeded

    def plain(self) -> settings:
        """The same settings as a plain ``settings`` object (no seeding or counting)."""
        return settings(self)

    def __call__(self, test: T) -> T:
        test = super().__call__(self.seeded(test))
        if self._seed is not None and self.database is not None:
            # hypothesis.seed() turns the database off for the test; the opt-in turns it back on.
            test._hypothesis_internal_use_settings = self  # type: ignore[attr-defined]
        handle = getattr(test, "hypothesis", None)
        inner = getattr(handle, "inner_test", None)
        if inner is not None:
            handle.inner_test = self._counted(inner)  # type: ignore[union-attr]
        return test

    def _counted(self, inner: Any) -> Any:
        tally = self._tally

        @functools.wraps(inner)
        def counted(*args: Any, **kwargs: Any) -> Any:
            raise_if_interrupted()  # a signal swallowed where it landed stops the next example
            tally.within_budget()
            tally.examples += 1
            try:
                return inner(*args, **kwargs)
            except UnsatisfiedAssumption:
                tally.discarded += 1  # reject(): another property broke first
                tally.bad_news()
                raise
            except Exception as exc:
                tally.bad_news(exc)
                raise

        return counted


def _database(root: str | None, spec: str | None, pid: str) -> Any:
    if not root or spec is None:
        return None
    # One directory per store and property: entries are never shared between them, whatever
    # digest Hypothesis keys them by (a machine's digest is the same for every store).
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", spec)[:60]
    digest = hashlib.sha256(spec.encode()).hexdigest()[:12]
    return DirectoryBasedExampleDatabase(os.path.join(root, f"{slug}-{digest}", pid))


@functools.cache
def _load_every_module_of_the_kit() -> None:
    # Hypothesis also draws constants found in the "local" (not site-packages) modules loaded so
    # far; from a checkout (an editable install) ours are local. Without this, what a property
    # draws would depend on which checks ran earlier in the process (a serial run, a worker of
    # --workers, pytest), and a seed would not replay. Loaded once, they are the same for all.
    # Subpackages too (stress/crash, stress/batch, ...): a check that imports one of them would
    # otherwise add its constants mid-process, and a serial run would draw unlike a fresh worker.
    for package in ("lance_offsets", "lance_offsets.conformance", "lance_offsets.stress"):
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}.", onerror=_ignore):
            if not info.name.endswith("__main__"):
                with contextlib.suppress(Exception):  # a platform's module missing elsewhere
                    importlib.import_module(info.name)


def _ignore(_: str) -> None:
    pass


def run_settings(
    profile: str,
    *,
    pid: str,
    seed: int | None,
    spec: str | None,
    database: str | None = None,
) -> RunSettings:
    """The settings of one run of property ``pid``.

    :param seed: the run seed (``--seed``); each property gets its own seed derived from it.
        None: Hypothesis picks a fresh one. Derandomized profiles ignore it.
    :param database: directory for an example database, keyed by ``spec`` and ``pid``; None
        reads :data:`DATABASE_ENV`, and with neither there is no database.
    """
    _load_every_module_of_the_kit()
    root = database if database is not None else os.environ.get(DATABASE_ENV)
    return RunSettings(
        profile_settings(profile),
        seed=None if seed is None else property_seed(seed, pid),
        tally=Tally(),
        database=_database(root, spec, pid),
    )
