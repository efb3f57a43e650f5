"""The cost model of a UDF's calls, and the fan-out and placement decisions it makes (no timing: fed figures)."""

from __future__ import annotations

import math

import pytest

from duckdb_subinterp._engine.costs import (
    RECHECK_EVERY,
    REPROBE_EVERY,
    UNSURE_EVERY,
    WINDOW,
    CallCosts,
    FanOut,
    Placement,
    plan_fan_out,
)

SLICE = 100e-6  # what one more slice costs on interpreters


def costs_of(*samples: tuple[int, float]) -> CallCosts:
    costs = CallCosts()
    for rows, seconds in samples:
        costs.observe(rows, seconds)
    return costs


def test_per_call_and_per_row_parts_are_told_apart():
    per_call, per_row, split = costs_of((2048, 0.2), (1024, 0.2), (2048, 0.2), (683, 0.2)).fit()
    assert split
    assert per_call == pytest.approx(0.2)
    assert per_row == pytest.approx(0.0, abs=1e-9)
    per_call, per_row, _ = costs_of((2048, 0.4196), (1024, 0.2148), (512, 0.1124)).fit()
    assert per_call == pytest.approx(0.01, abs=1e-3)
    assert per_row == pytest.approx(0.2e-3, rel=0.01)


def test_one_size_alone_cannot_be_split():
    assert costs_of((2048, 1.0), (2048, 1.1)).fit()[2] is False


def test_a_batch_slowed_by_something_else_does_not_move_the_fit():
    samples = [(2048, 2.048e-3), (1024, 1.024e-3), (512, 0.512e-3), (2048, 2.048e-3), (256, 0.256e-3)]
    per_call, per_row, _ = costs_of(*samples, (2048, 40e-3)).fit()
    assert per_row == pytest.approx(1e-6, rel=0.05)
    assert per_call < 0.1e-3


def test_the_fit_follows_a_udf_whose_cost_changes():
    costs = costs_of(*[(rows, rows * 1e-6) for rows in (2048, 1024) * 8])
    assert costs.predict(2048) == pytest.approx(2.048e-3)
    for rows in (2048, 1024) * 8:
        costs.observe(rows, rows * 10e-6)
    assert costs.predict(2048) == pytest.approx(20.48e-3)


def test_a_native_udfs_first_batch_is_cut_once_per_worker_the_last_slice_half_the_others():
    assert plan_fan_out(CallCosts(), 2048, 4, SLICE, 3, unseen=True) == FanOut(4, 4, probe=True)
    assert plan_fan_out(CallCosts(), 3, 4, SLICE, 3, unseen=True) == FanOut(3, 3, probe=True)
    assert plan_fan_out(CallCosts(), 1, 4, SLICE, 3, unseen=True) is None
    assert plan_fan_out(CallCosts(), 2048, 1, SLICE, 3, unseen=True) is None
    assert plan_fan_out(CallCosts(), 2048, 4, SLICE, 3) is None  # a vectorized UDF's runs whole


def test_a_native_udfs_batches_are_cut_evenly_from_the_first():
    # Its function runs once a row: a slice adds no call of it, so nothing needs telling apart.
    assert plan_fan_out(CallCosts(), 50, 2, SLICE, 3, unseen=True, per_row_calls=True) == FanOut(2, 2)
    # A fit that reads noise as a cost per call (47 ms here) does not make its slices fewer or uneven.
    costs = costs_of((50, 0.46), (50, 0.57), (17, 0.197), (33, 0.38))
    assert costs.fit()[0] > 0.01
    assert plan_fan_out(costs, 50, 2, SLICE, 3, per_row_calls=True) == FanOut(2, 6)


def test_parts_told_apart_stay_so_while_only_full_batches_follow():
    costs = costs_of((2048, 0.2), (1365, 0.2), (683, 0.2))
    assert costs.fit()[2]  # as the planner fits before each batch
    for _ in range(20):  # the window holds full batches only now, a little costlier
        costs.observe(2048, 0.3)
    per_call, per_row, split = costs.fit()
    assert split
    assert per_call == pytest.approx(0.3)
    assert per_row == pytest.approx(0.0, abs=1e-9)
    assert plan_fan_out(costs, 2048, 2, SLICE, 3) is None  # no probe again: it is known to be all per call


def test_a_ratio_kept_while_slices_of_one_size_follow_is_probed_again_now_and_then():
    # A call costs 70 ms, whatever its rows; noise on the first probe reads it as 10 ms + 59 us a row.
    costs = costs_of((1365, 0.0906), (683, 0.0503))
    assert costs.fit()[1] == pytest.approx(59e-6, rel=0.01)
    plans = []
    while not any(plans) and len(plans) < WINDOW + REPROBE_EVERY:
        plan = plan_fan_out(costs, 2048, 2, SLICE, 3)
        assert plan is not None  # 131 ms whole, as read; cut in two
        plans.append(plan.probe)
        for _ in range(plan.slices):
            costs.observe(2048 // plan.slices, 0.07)  # two even slices: one size, which cannot refute it
    # Once the window holds that one size, one plan in REPROBE_EVERY: not every batch, as an even
    # cut of a UDF whose rows cost is faster than a probe's.
    assert plans == [False] * (WINDOW // 2 + REPROBE_EVERY - 1) + [True]
    costs.observe(1365, 0.07)  # that probe's slices
    costs.observe(683, 0.07)
    assert plan_fan_out(costs, 2048, 2, SLICE, 3) is None  # all per call: run whole


# A window of a UDF that costs ~70 ms a call, whatever its rows, as timed on the 2-core development
# VM (bench/dispatch_udfs.per_call, pool of 2, threads=1): a probe, then whole batches and two-slice
# cuts, some calls slowed to 115 ms by a busy core. Fitted as is: 87 ms + 12.9 us a row, cut in two.
NOISY_PER_CALL_MS = [(1365, 68), (683, 69), (2048, 69), (2048, 80), (2048, 115), (2048, 114), (1024, 114),
                     (1024, 118), (2048, 118), (2048, 117), (2048, 118), (2048, 118), (2048, 117), (2048, 116),
                     (1024, 94), (1024, 111)]  # fmt: skip


def test_a_per_row_slope_within_the_noise_does_not_cut_a_batch():
    costs = costs_of(*[(rows, ms / 1e3) for rows, ms in NOISY_PER_CALL_MS])
    per_call, per_row, split = costs.fit()
    assert split  # the fit as is, what udf_stats reports: 87 ms a call, 12.9 us a row
    assert per_call == pytest.approx(0.087, rel=0.05)
    assert per_row == pytest.approx(12.9e-6, rel=0.05)
    assert costs.error > per_row / 2  # within two standard errors of none
    # Unsure: never cut as the fit says; every UNSURE_EVERY-th batch cut in two as a probe.
    plans = [plan_fan_out(costs, 2048, 2, SLICE, 4) for _ in range(2 * UNSURE_EVERY)]
    assert plans == ([None] * (UNSURE_EVERY - 1) + [FanOut(2, 2, probe=True, idle_only=True)]) * 2
    # Three samples, one off the line: a first probe timed on a busy core.
    assert plan_fan_out(costs_of((2048, 0.07), (1365, 0.0906), (683, 0.0503)), 2048, 2, SLICE, 4) is None


def test_the_slope_error_is_the_textbook_one():
    # Rows 1, 2, 3 (scaled), seconds off the line 1 + 1 x by -e, +2e, -e: residuals 6e^2 over one
    # degree of freedom, the rows' spread 2: error sqrt(6e^2 / 1 / 2) = sqrt(3) e.
    e = 1e-3
    costs = costs_of((1000, 1 + 1 - e), (2000, 1 + 2 + 2 * e), (3000, 1 + 3 - e))
    per_call, per_row, _ = costs.fit()
    assert per_row == pytest.approx(1e-3)
    assert costs.error == pytest.approx(math.sqrt(3) * e / 1000)
    # Through the origin (no per-call part): one freedom used, the rows' squares as the spread.
    samples = ((1000, 1.0), (2000, 2.0), (3000, 3.0 + 3 * e))  # a line through them crosses below 0
    costs = costs_of(*samples)
    per_call, per_row, _ = costs.fit()
    assert per_call == 0.0
    residuals = sum((seconds - per_row * rows) ** 2 for rows, seconds in samples)
    assert costs.error == pytest.approx(math.sqrt(residuals / 2 / (1000**2 + 2000**2 + 3000**2)))


def line_with_slope_error(per_call: float, per_row: float, error: float) -> CallCosts:
    """Return costs fitted to exactly ``per_call`` and ``per_row``, the slope's standard error ``error``."""
    # Off the line by -e, +2e, -e at rows 1000, 2000, 3000: the fit stays on it, its slope's error
    # sqrt(3) e / 1000 (see test_the_slope_error_is_the_textbook_one).
    e = error * 1000 / math.sqrt(3)
    deviations = (-e, 2 * e, -e)
    return costs_of(
        *[(rows, per_call + per_row * rows + d) for rows, d in zip((1000, 2000, 3000), deviations, strict=True)]
    )


def test_a_cut_must_pay_with_the_per_row_part_two_standard_errors_lower():
    # 50 ms a call and 20 us a row: one slice per worker saves 20.4 ms of a 91 ms batch of 2048
    # rows, more than the tenth it must (9.1 ms). Sure only if it still saves that tenth with the
    # per-row part CAUTION (2) standard errors lower: with an error of 5 us (10 us a row left,
    # 10.1 ms saved) it does; with 6 us (8 us left, 8.1 ms saved) it does not: checked in turn.
    sure = line_with_slope_error(0.05, 20e-6, 5e-6)
    assert sure.fit() == pytest.approx((0.05, 20e-6, True))
    assert sure.error == pytest.approx(5e-6)
    assert [plan_fan_out(sure, 2048, 2, SLICE, 4) for _ in range(UNSURE_EVERY)] == [FanOut(2, 2)] * UNSURE_EVERY
    unsure = line_with_slope_error(0.05, 20e-6, 6e-6)
    assert unsure.fit() == pytest.approx((0.05, 20e-6, True))
    plans = [plan_fan_out(unsure, 2048, 2, SLICE, 4) for _ in range(UNSURE_EVERY)]
    assert plans == [None] * (UNSURE_EVERY - 1) + [FanOut(2, 2, probe=True, idle_only=True)]


def test_an_unsure_per_row_cost_is_cut_once_its_probes_tell():
    # A 34 us-a-row cost whose window is too noisy to be sure of: its first probe's slices and
    # two whole batches in three slowed by a busy core (x1.6).
    costs = costs_of((1365, 0.0742), (683, 0.0464), *[(2048, 0.0696 * (1.6 if i % 3 else 1.0)) for i in range(8)])
    assert plan_fan_out(costs, 2048, 2, SLICE, 4) is None  # unsure, and not its turn to probe
    cut = None
    for _ in range(4 * UNSURE_EVERY):
        plan = plan_fan_out(costs, 2048, 2, SLICE, 4)
        if plan is not None and not plan.probe:
            cut = plan
            break
        if plan is None:
            costs.observe(2048, 0.0696)
        else:  # the probe's slices, timed at once, as the rows cost
            costs.observe(1365, 0.0464)
            costs.observe(683, 0.0232)
    assert cut is not None
    assert cut.slices > cut.workers  # cut as finely as the fit says


def test_a_native_udfs_batches_are_never_probed_again():
    # Its cost is all per row by construction: nothing to recheck, nothing to be unsure of.
    costs = costs_of((2048, 0.07), (1365, 0.07), (683, 0.07))
    plans = {plan_fan_out(costs, 2048, 2, SLICE, 4, per_row_calls=True) for _ in range(2 * RECHECK_EVERY)}
    assert plans == {FanOut(2, 8)}


def test_a_per_row_cost_as_noisy_is_still_cut():
    # The same sizes, a cost all per row (34 us) slowed as often and as much.
    slowed = [ms > 90 for _, ms in NOISY_PER_CALL_MS]
    costs = costs_of(
        *[
            (rows, rows * 34e-6 * (1.6 if slow else 1.0))
            for (rows, _), slow in zip(NOISY_PER_CALL_MS, slowed, strict=True)
        ]
    )
    per_row = costs.fit()[1]
    assert per_row > 20e-6
    # Cut as finely as the fit says: the noise weighs on whether to cut, not on how finely.
    assert plan_fan_out(costs, 2048, 2, SLICE, 4) == FanOut(2, 8)


def test_a_costly_batch_run_whole_is_probed_again_now_and_then():
    # Read as all per call: a first probe's slices as slow as the whole batch (a busy core, or a
    # UDF whose rows came to cost later). Whole batches alone can never tell otherwise.
    costs = costs_of((2048, 0.07), (1365, 0.07), (683, 0.07))
    for probe in range(2):  # once, and again RECHECK_EVERY later
        plans = []
        for _ in range(RECHECK_EVERY):
            plan = plan_fan_out(costs, 2048, 2, SLICE, 4)
            plans.append(plan)
            if plan is None:
                costs.observe(2048, 0.07)
        assert plans == [None] * (RECHECK_EVERY - 1) + [FanOut(2, 2, probe=True, idle_only=True)], probe
        if not probe:
            costs.observe(1365, 0.07)  # the first probe: all per call still
            costs.observe(683, 0.07)
    costs.observe(1365, 0.0467)  # the second probe's slices: the rows cost
    costs.observe(683, 0.0233)
    plan = plan_fan_out(costs, 2048, 2, SLICE, 4)
    assert plan is not None
    assert not plan.probe


def test_a_cheap_batch_never_counts_toward_a_recheck():
    # Below the quick look's floor no plan is made: cheap batches of a cost all per call (1 ms)
    # do not bring the recheck of the costly ones that follow closer.
    costs = costs_of((2048, 1e-3), (1365, 1e-3), (683, 1e-3))
    assert {plan_fan_out(costs, 2048, 2, SLICE, 4) for _ in range(RECHECK_EVERY)} == {None}
    for rows in [2048] * (WINDOW - 2) + [1365, 683]:
        costs.observe(rows, 0.07)
    plans = [plan_fan_out(costs, 2048, 2, SLICE, 4) for _ in range(RECHECK_EVERY)]
    assert plans == [None] * (RECHECK_EVERY - 1) + [FanOut(2, 2, probe=True, idle_only=True)]


def test_cheap_batches_run_whole():
    assert plan_fan_out(costs_of((2048, 80e-6), (1024, 45e-6)), 2048, 4, SLICE, 3) is None


def test_a_cost_paid_per_call_is_not_cut():
    costs = costs_of((2048, 0.2), (1024, 0.2))
    assert plan_fan_out(costs, 2048, 4, SLICE, 3) is None


def test_an_unsplit_cost_is_cut_once_per_worker_in_sizes_that_split_it():
    plan = plan_fan_out(costs_of((2048, 0.2), (2048, 0.2)), 2048, 4, SLICE, 3)
    assert plan is not None
    assert plan.slices == plan.workers
    assert plan.probe
    assert not plan.idle_only  # a probe, not a check: a worker a lazy pool starts for it may join


def test_few_costly_rows_are_cut_down_to_one_row():
    costs = costs_of((50, 1.0), (25, 0.5), (17, 0.34))  # 20 ms a row
    plan = plan_fan_out(costs, 50, 2, SLICE, 3)
    assert plan == FanOut(2, 6)
    plan = plan_fan_out(costs, 2, 2, SLICE, 3)
    assert plan == FanOut(2, 2)


def test_slices_per_worker_stay_few_where_each_call_costs():
    costs = costs_of((2048, 0.05 + 2048 * 1e-4), (1024, 0.05 + 1024 * 1e-4))  # 50 ms a call, 0.1 ms a row
    plan = plan_fan_out(costs, 2048, 2, SLICE, 3)
    assert plan == FanOut(2, 2)


def test_placement_stays_in_the_calling_thread_for_cheap_batches():
    placement = Placement(round_trip=350e-6)
    assert not placement.on_pool(2048, parallel=2)  # nothing known: where DuckDB's own runs it
    placement.observe_here(2048, 130e-6, calling=1)
    assert not placement.on_pool(2048, parallel=1)
    assert not placement.on_pool(2048, parallel=2)


def test_placement_moves_costly_batches_to_the_pool_where_they_run_at_once():
    placement = Placement(round_trip=350e-6)
    placement.observe_here(2048, 5e-3, calling=1)
    assert not placement.on_pool(2048, parallel=1)  # one at a time: the round trip is all it adds
    assert placement.on_pool(2048, parallel=2)
    for rows in (2048, 1024, 2048):  # measured there: much slower than thought
        placement.pool.observe(rows, rows * 10e-6)
    assert not placement.on_pool(2048, parallel=2)


def test_a_costly_batch_that_holds_the_gil_goes_to_a_pool_as_cheap():
    # 74 ms here, 74.5 ms on the pool: one DuckDB thread calling would wait for no other, but the others
    # could not start their batches for 74 ms (they need the GIL to call); on the pool they can.
    holding = Placement(round_trip=500e-6, holds_gil=True)
    holding.observe_here(2048, 74e-3, calling=1)
    assert holding.on_pool(2048, parallel=1)
    releasing = Placement(round_trip=500e-6)  # an arrow UDF: pyarrow's kernels release the GIL
    releasing.observe_here(2048, 74e-3, calling=1)
    assert not releasing.on_pool(2048, parallel=1)
    cheap = Placement(round_trip=30e-6, holds_gil=True)  # under a switch interval: DuckDB's own holds it as long
    cheap.observe_here(2048, 1e-3, calling=1)
    assert not cheap.on_pool(2048, parallel=1)
    for rows in (2048, 1024, 2048):  # the pool measured far slower than here
        holding.pool.observe(rows, rows * 60e-6)
    assert not holding.on_pool(2048, parallel=1)


def test_placement_sees_a_udf_that_releases_the_gil():
    placement = Placement(round_trip=350e-6)
    # Two threads at once, each batch as fast as alone: no turns taken, nothing to gain on the pool.
    placement.observe_here(2048, 1e-3, calling=2)
    for rows in (2048, 1024, 2048):
        placement.pool.observe(rows, rows * 1e-3 / 2048)
    assert not placement.on_pool(2048, parallel=2)


def test_placement_times_a_close_other_place_again_now_and_then():
    placement = Placement(round_trip=30e-6)
    placement.observe_here(2048, 100e-6, calling=1)
    choices = [placement.on_pool(2048, parallel=1) for _ in range(Placement.EXPLORE_EVERY * 2)]
    assert choices.count(True) == 2  # here, but the pool (predicted 130 us) is timed once every 32 batches
    placement = Placement(round_trip=350e-6)
    placement.observe_here(2048, 100e-6, calling=1)
    assert not any(placement.on_pool(2048, parallel=1) for _ in range(Placement.EXPLORE_EVERY * 2))
