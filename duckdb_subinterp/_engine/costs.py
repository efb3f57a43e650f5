"""What a UDF's calls cost, learned from its own calls, and the decisions that follow from it.

A call of ``n`` rows takes ``per_call + per_row * n`` seconds: a service
call or a model's set-up is paid once a call, a pure-Python loop once a
row. The dispatcher times every batch and every slice it runs (their sizes
differ: full batches, a table's last batch, slices of all sizes), and
``CallCosts`` fits the two parts from the recent ones. As Dask's work
stealing does, every decision weighs the time it saves against what moving
the work costs, from these measurements, and does nothing where moving
costs more:

- ``FanOutPlan``: cut a batch into slices for idle workers only where
  ``per_call`` (paid again by every slice) and the backend's cost of one
  more slice leave a saving; slices go down to one row where rows are
  costly. While only one size has been seen the two parts cannot be told
  apart: a batch is then cut into one slice per worker at most, which costs
  no wall time even if the cost is all per call (the slices run at once),
  and tells the two parts apart for the next batch. Once told apart, they
  stay so while only full batches, or slices of one size, follow (the
  window keeps their ratio); a fan-out planned on that kept ratio is cut
  with its last slice half the others' once in REPROBE_EVERY, so a ratio
  that noise made wrong (or that the UDF's costs left) is told apart again
  rather than kept for good; so is a costly batch a fit runs whole, once in
  RECHECK_EVERY. A cost all per call on a busy machine fits some per-row
  slope by chance, and slicing it only adds calls: where a cut would not
  pay with the per-row part as low as the samples' noise allows (CAUTION
  standard errors), every UNSURE_EVERY-th batch is cut in two as a probe,
  whose two slices, timed at once, tell; the others run whole. Such a
  probe, and a recheck, is a CHECK: cut over idle workers or not at all,
  never waiting for a worker to start. How finely a batch is cut is the
  fit's own choice.
  A native UDF's function runs once a row, so a slice adds no call of it:
  its cost is all per row, and its batches are cut evenly from the first.
- ``Placement`` (``backend="auto"``): run a batch in the calling DuckDB
  thread, as DuckDB's own UDFs do, or on the pool, from the measured cost
  of each and how many DuckDB threads call at once.
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

# Samples a fit uses: the most recent calls, so a UDF whose cost changes is
# followed within a few batches.
WINDOW = 16
# A fan-out must save this share of the batch's predicted time, and more
# than the cost of the slices it adds, or the batch runs whole.
MIN_SAVING = 0.1
# The extra calls of a finer cut (slices beyond one per worker, which let a
# worker on a busier core take fewer) may cost this share of a worker's work.
BALANCE_SHARE = 0.1
# A fan-out the fit is sure of pays with the per-row part lowered by this
# many standard errors of it (see plan_fan_out): over a full window, about
# 95% sure that rows cost enough for slicing to save time (over three
# samples, one degree of freedom, about 85%), not a slope read into noise.
CAUTION = 2.0
# A fan-out planned on a ratio kept from an earlier window (see
# CallCosts.fit) is cut as a probe this often: the even slices that follow
# it are of one size, which can neither confirm nor refute it.
REPROBE_EVERY = 16
# A costly batch that a told-apart fit runs whole is cut as a probe this
# often: a fit that noise read as all per call (or a UDF whose rows came to
# cost) is told apart again, at two calls of one batch in RECHECK_EVERY.
RECHECK_EVERY = 64
# A batch the fit would cut but whose error leaves it unsure that cutting
# pays (see plan_fan_out) is cut as a probe this often, else run whole: the
# probes' slices of two sizes, timed at once, tell whether rows cost.
UNSURE_EVERY = 2


class CallCosts:
    """The per-call and per-row seconds of one UDF's calls on one kind of worker."""

    __slots__ = (
        "_error",
        "_fitted",
        "_kept",
        "_kept_plans",
        "_per_call",
        "_per_row",
        "_samples",
        "_split",
        "_told_apart",
        "_unsure_plans",
        "_whole_plans",
    )

    def __init__(self) -> None:
        self._samples: deque[tuple[int, float]] = deque(maxlen=WINDOW)
        self._fitted = True  # nothing to fit yet
        self._per_call = 0.0
        self._per_row = 0.0
        self._error = 0.0  # the standard error of _per_row (0: not known)
        self._split = False  # whether the two parts were told apart (samples of different sizes)
        self._told_apart: tuple[float, float, float] | None = None  # the last split fit: (per_call, per_row, error)
        self._kept = False  # whether the fit uses that ratio, the window holding one size
        self._kept_plans = 0  # fan-outs planned on a kept ratio (see take_reprobe_turn)
        self._whole_plans = 0  # costly batches a told-apart fit ran whole (see take_recheck_turn)
        self._unsure_plans = 0  # batches the fit would cut, unsure that it pays (see take_unsure_turn)

    def observe(self, rows: int, seconds: float) -> None:
        """Add a call of ``rows`` rows that took ``seconds`` (the hot path: O(1), no fit)."""
        if rows > 0:
            self._samples.append((rows, seconds))
            self._fitted = False

    @property
    def known(self) -> bool:
        """Tell whether any call was timed."""
        return bool(self._samples)

    def __len__(self) -> int:
        """Return how many recent calls the fit uses."""
        return len(self._samples)

    def last_per_row(self) -> float:
        """Return seconds per row of the cheaper of the last two calls: a quick look, no fit."""
        samples = self._samples
        if not samples:
            return 0.0
        rows, seconds = samples[-1]
        last = seconds / rows
        if len(samples) > 1:
            rows, seconds = samples[-2]
            last = min(last, seconds / rows)
        return last

    def fit(self) -> tuple[float, float, bool]:
        """Return (per_call, per_row, split): the two parts of a call's seconds, and whether they were told apart."""
        if not self._fitted:
            samples = list(self._samples)
            per_call, per_row, error, split = _fit(samples)
            self._kept = False
            if split:
                self._told_apart = (per_call, per_row, error)
            elif self._told_apart is not None:
                # One size in the window now (full batches, no slices): the
                # parts keep the ratio last told apart, scaled to this cost.
                known_call, known_row, known_error = self._told_apart
                rows = samples[-1][0]
                known = known_call + known_row * rows
                if known > 0:
                    scale = per_row * rows / known
                    per_call, per_row, split = known_call * scale, known_row * scale, True
                    error = known_error * scale
                    self._kept = True
            self._per_call, self._per_row, self._error, self._split = per_call, per_row, error, split
            self._fitted = True
        return self._per_call, self._per_row, self._split

    @property
    def error(self) -> float:
        """Return the standard error of the last fit's per-row part (0 where the samples cannot tell it)."""
        return self._error

    @property
    def kept(self) -> bool:
        """Tell whether the last fit kept a ratio told apart before the window (which holds one size)."""
        return self._kept

    def take_reprobe_turn(self) -> bool:
        """Count a fan-out planned on a kept ratio; return True once in REPROBE_EVERY: cut that one as a probe."""
        self._kept_plans += 1
        return self._kept_plans % REPROBE_EVERY == 0

    def take_unsure_turn(self) -> bool:
        """Count a batch the fit would cut, unsure that it pays; return True once in UNSURE_EVERY: probe it."""
        self._unsure_plans += 1
        return self._unsure_plans % UNSURE_EVERY == 0

    def take_recheck_turn(self) -> bool:
        """Count a costly batch planned whole on a told-apart fit; return True once in RECHECK_EVERY."""
        self._whole_plans += 1
        return self._whole_plans % RECHECK_EVERY == 0

    def predict(self, rows: int) -> float:
        """Return the seconds a call of ``rows`` rows should take (0 before any call was timed)."""
        per_call, per_row, _ = self.fit()
        return per_call + per_row * rows


def _fit(samples: list[tuple[int, float]]) -> tuple[float, float, float, bool]:
    """Fit seconds = per_call + per_row * rows, both >= 0, robustly.

    Return (per_call, per_row, error, split): ``error`` is per_row's standard
    error, split is False where all sizes were alike.
    """
    if not samples:
        return 0.0, 0.0, 0.0, False
    sizes = [rows for rows, _ in samples]
    if max(sizes) < 1.25 * min(sizes):
        # One size: the parts cannot be told apart. Read it all as per row
        # (what slicing would divide); FanOutPlan allows for the other case.
        return 0.0, _median([seconds / rows for rows, seconds in samples]), 0.0, False
    per_call, per_row = _least_squares(samples)
    # One pass without the samples far off the line (a batch slowed by
    # something else: a busy core, a worker's first import).
    residuals = [abs(seconds - per_call - per_row * rows) for rows, seconds in samples]
    spread = _median(residuals)
    kept = [sample for sample, residual in zip(samples, residuals, strict=True) if residual <= 3 * spread]
    if len(kept) >= 3 and len(kept) < len(samples):
        kept_sizes = [rows for rows, _ in kept]
        if max(kept_sizes) >= 1.25 * min(kept_sizes):
            samples = kept
            per_call, per_row = _least_squares(kept)
    return per_call, per_row, _slope_error(samples, per_call, per_row), True


def _slope_error(samples: list[tuple[int, float]], per_call: float, per_row: float) -> float:
    """Return the standard error of ``per_row`` fitted to ``samples`` (0 for two samples: no freedom left)."""
    count = len(samples)
    if count < 3:
        return 0.0
    residuals = sum((seconds - per_call - per_row * rows) ** 2 for rows, seconds in samples)
    if per_call == 0.0:  # fitted through the origin (see _least_squares): one part, one freedom used
        return math.sqrt(residuals / (count - 1) / sum(rows * rows for rows, _ in samples))
    mean_rows = sum(rows for rows, _ in samples) / count
    variance = sum((rows - mean_rows) ** 2 for rows, _ in samples)
    return math.sqrt(residuals / (count - 2) / variance)


def _least_squares(samples: list[tuple[int, float]]) -> tuple[float, float]:
    count = len(samples)
    mean_rows = sum(rows for rows, _ in samples) / count
    mean_seconds = sum(seconds for _, seconds in samples) / count
    covariance = sum((rows - mean_rows) * (seconds - mean_seconds) for rows, seconds in samples)
    variance = sum((rows - mean_rows) ** 2 for rows, _ in samples)
    per_row = covariance / variance if variance else 0.0
    per_call = mean_seconds - per_row * mean_rows
    if per_row < 0:  # costs do not fall with more rows: all per call
        return max(mean_seconds, 0.0), 0.0
    if per_call < 0:  # a line through the origin, fitted as such
        return 0.0, sum(rows * seconds for rows, seconds in samples) / sum(rows * rows for rows, _ in samples)
    return per_call, per_row


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


class FanOut(NamedTuple):
    """How to cut one batch: into ``slices`` for up to ``workers`` workers (this thread's included).

    ``probe``: the last slice half the others' size, so the calls are of two sizes (see the module
    docstring); one slice per worker where nothing told the two parts apart. ``idle_only``: a
    check (see CHECK): cut over workers idle now or not at all, never waiting for one to start.
    """

    workers: int
    slices: int
    probe: bool = False
    idle_only: bool = False


# A check of a fit that doubts a cut pays (an unsure cut, a recheck: see plan_fan_out): two
# slices, timed at once, tell whether rows cost. At once or not at all: where the second
# waited for a worker to start, this thread would run both, a cost per call paid twice.
CHECK = FanOut(2, 2, probe=True, idle_only=True)


def plan_fan_out(
    costs: CallCosts,
    rows: int,
    max_workers: int,
    slice_seconds: float,
    slices_per_worker: int,
    *,
    unseen: bool = False,
    per_row_calls: bool = False,
) -> FanOut | None:
    """Return how to cut a batch of ``rows`` rows for at most ``max_workers`` workers, or None to run it whole.

    ``slice_seconds`` is what one more slice costs besides its call (handing
    it to a helper thread, joining its result): the backend's own figure.
    ``unseen``: cut the first batch too, before any cost is known (a native
    UDF, whose rows never see how a batch is cut; a vectorized UDF sees its
    slice as the batch, so its first batch runs whole). ``per_row_calls``:
    the function runs once a row (a native UDF), so a slice adds no call of
    it, only ``slice_seconds``: the whole cost is divided by the slices.
    """
    if max_workers < 2 or rows < 2:
        return None
    if not costs.known:
        if not unseen:
            return None
        # The first batch of a native UDF: nothing is known. One slice per
        # worker costs no wall time whatever the cost is, and tells it.
        workers = min(max_workers, rows)
        return FanOut(workers, workers, probe=not per_row_calls)
    whole = costs.last_per_row() * rows
    if whole < 2 * slice_seconds / MIN_SAVING:  # the quick look: too cheap to cut (no fit); see Placement
        return None
    per_call, per_row, split = costs.fit()
    whole = per_call + per_row * rows
    if per_row_calls:
        per_call, per_row, split = 0.0, whole / rows, True
    best: FanOut | None = None
    best_seconds = whole
    for workers in range(2, min(max_workers, rows) + 1):
        if not split:
            # Unknown parts: at worst every slice costs a whole call, run at
            # once. The last slice is half the others: (workers - 0.5) shares.
            seconds = per_row * rows / (workers - 0.5) + slice_seconds * (workers - 1)
            slices = workers
        else:
            share = per_row * rows / workers
            per_worker = 1
            # Finer cuts balance uneven workers, where their calls cost little beside the work.
            while (
                per_worker < slices_per_worker
                and (per_worker + 1) * (per_call + slice_seconds) <= BALANCE_SHARE * share
                and (per_worker + 1) * workers <= rows
            ):
                per_worker += 1
            seconds = per_worker * per_call + share + slice_seconds * (per_worker * workers - 1)
            slices = per_worker * workers
        if seconds < best_seconds:
            best, best_seconds = FanOut(workers, slices), seconds
    floor = max(MIN_SAVING * whole, 2 * slice_seconds)
    if best is not None and split and not per_row_calls and whole - best_seconds >= floor:
        # Would cutting at all (one slice per worker) pay with less of the batch's time
        # per row, as far as the samples cannot rule it out? The whole batch's time as
        # predicted, the part slicing divides CAUTION standard errors lower, the rest
        # paid by every slice. If not, the fit may be reading noise as a cost per row:
        # probe every UNSURE_EVERY-th such batch (its slices tell), run the others whole.
        lowered = max(per_row - CAUTION * costs.error, 0.0)
        call = per_call + (per_row - lowered) * rows
        cautious = call + lowered * rows / best.workers + slice_seconds * (best.workers - 1)
        if whole - cautious < floor:
            return CHECK if costs.take_unsure_turn() else None
    if best is None or whole - best_seconds < floor:
        if split and not per_row_calls and costs.take_recheck_turn():
            return CHECK  # two calls, at once: a wall time near the whole batch's
        return None
    if per_row_calls:
        return best
    if not split or (costs.kept and costs.take_reprobe_turn()):
        return best._replace(probe=True)
    return best


class Placement:
    """Where ``backend="auto"`` runs a batch: in the calling DuckDB thread, or on its pool.

    In the calling thread a pure-Python batch holds the main GIL, so DuckDB's
    threads take turns; on the pool a batch costs a round trip more but runs
    beside the others (``parallel`` of them: DuckDB threads calling at once,
    or the slices of a fan-out). The cost here is measured per row from the
    cheaper of the last two batches run here, divided by the threads that
    called at once (turns taken show in that time; a UDF that releases the
    GIL, numpy's or pyarrow's, shows that it did). The cost on the pool is
    the worker-side cost model of the pool's own batches (``CallCosts``,
    which waiting for a worker or starting one does not inflate) plus the
    backend's round trip; before three batches ran there, the cost here
    plus the round trip. The pool is chosen when its cost divided by
    ``parallel`` beats the cost here by MIN_SAVING, and, for a UDF that
    holds the GIL (``holds_gil``: pure Python, not an arrow UDF), also when
    a batch costs HOLDS_GIL_SECONDS or more here and no more than MIN_SAVING
    over that on the pool: here it would keep DuckDB's other threads from
    even starting their batches for that long. Every EXPLORE_EVERY
    batches, the place not chosen runs one batch where it could win (by the
    prediction from here, or its own cost within twice the other's), so both
    stay measured as costs change.
    """

    EXPLORE_EVERY = 32
    HOLDS_GIL_SECONDS = 0.005  # CPython's switch interval: longer, and other threads wait on the GIL

    __slots__ = ("_batches", "_here", "_last_here", "holds_gil", "pool", "round_trip")

    def __init__(self, round_trip: float, pool: CallCosts | None = None, *, holds_gil: bool = False) -> None:
        self.round_trip = round_trip
        self.pool = pool if pool is not None else CallCosts()
        self.holds_gil = holds_gil
        self._here = self._last_here = math.inf  # seconds per row; inf: not measured yet
        self._batches = 0

    def observe_here(self, rows: int, seconds: float, calling: int) -> None:
        """Add a batch that ran here, ``calling`` DuckDB threads calling at once."""
        sample = seconds / max(calling, 1) / rows
        self._here, self._last_here = min(sample, self._last_here), sample

    def _pool_cost(self, rows: int) -> tuple[float, float]:
        """Return the predicted and the measured seconds of a batch on the pool (measured: inf if too few)."""
        predicted = self._here * rows + self.round_trip
        measured = self.pool.predict(rows) + self.round_trip if len(self.pool) >= 3 else math.inf
        return predicted, measured

    def on_pool(self, rows: int, parallel: int) -> bool:
        """Tell whether a batch of ``rows`` rows runs on the pool, where ``parallel`` batches run at once."""
        if self._here == math.inf:
            return False  # where DuckDB's own would run it, until its cost is known
        here = self._here * rows
        predicted, measured = self._pool_cost(rows)
        parallel = max(parallel, 1)
        pool = (measured if measured != math.inf else predicted) / parallel
        chosen = pool < (1 - MIN_SAVING) * here or (
            self.holds_gil and here >= self.HOLDS_GIL_SECONDS and pool <= (1 + MIN_SAVING) * here
        )
        self._batches += 1
        if self._batches % self.EXPLORE_EVERY == 0:
            could_win = predicted / parallel < (1 - MIN_SAVING) * here or 0.5 * here < pool < 2 * here
            if could_win:
                return not chosen  # time the other place again, as costs change
        return chosen

    def settled_here(self, rows: int, parallel: int) -> bool:
        """Tell whether the pool is far off for such a batch (twice the cost here or more): no need to look often."""
        predicted, measured = self._pool_cost(rows)
        return min(predicted, measured) / max(parallel, 1) >= 2 * self._here * rows

    def settled_slow_per_row(self, rows: int, parallel: int) -> float:
        """Return the seconds a row of a settled batch may take before the batch is placed again.

        Twice the cost here, or half the way to the pool's (``parallel`` at
        once), whichever is more: a batch under it stays far from the pool.
        """
        predicted, measured = self._pool_cost(rows)
        return max(2 * self._here, 0.5 * min(predicted, measured) / max(parallel, 1) / max(rows, 1))

    def here_per_row(self) -> float:
        """Return the seconds a row costs here, per calling thread; inf before a batch ran here."""
        return self._here
