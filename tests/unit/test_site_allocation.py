"""The site allocator (gateway/sites/allocation.py): pure, exhaustive over its edge cases.

Every allocation is also checked against the invariants that make it safe and fair, whatever the inputs
(:func:`check_invariants`, and a hypothesis property over random sites): no phase and no power budget exceeded,
every transaction at 0 or between its minimum and its cap, nothing left unused while an admitted transaction is
below its cap and the constraints it is under have room.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sites.allocation import (
    EPS,
    Allocation,
    Capacity,
    Demand,
    Fixed,
    Load,
    Reading,
    SiteLimit,
    Standby,
    allocate,
    headroom,
)

THREE = (0, 1, 2)
V = 230.0


def amps(per_phase: float) -> Capacity:
    return Capacity((per_phase, per_phase, per_phase), None, V)


def ev(key: str, *, phases: tuple[int, ...] = THREE, min_a: float = 6.0, max_a: float = 32.0, priority: int = 0,
       since: float = 0.0, draw: float | None = None, offered: float | None = None,
       charger: str | None = None) -> Demand:  # fmt: skip
    return Demand(key, charger or key.split("/")[0], phases, min_a, max_a, priority, since, draw, offered)


def check_invariants(demands: list[Demand], cap: Capacity, out: Allocation, fixed: tuple[Fixed, ...] = ()) -> None:
    # every current is 0 or within [min, max]
    for d in demands:
        c = out.currents[d.key]
        assert c == 0 or d.min_a - 0.1 - EPS <= c <= d.max_a + EPS, (d.key, c)
        assert (c == 0) == (d.key in out.paused) or d.min_a == 0
    # no budget exceeded, counting each charger's limit on every phase it uses (the charger enforces one figure)
    used = [0.0, 0.0, 0.0]
    watts = 0.0
    for cl in out.chargers.values():
        for p in cl.phases:
            used[p] += cl.current_a
        watts += cl.current_a * len(cl.phases) * cap.voltage_v
    for f in fixed:
        for p in f.phases:
            used[p] += f.current_a
        watts += f.current_a * len(f.phases) * cap.voltage_v
    if cap.phase_a is not None:
        for p in range(3):
            assert used[p] <= max(cap.phase_a[p], sum(f.current_a for f in fixed if p in f.phases)) + 1e-6, (p, used)
    if cap.power_w is not None:
        assert watts <= max(cap.power_w, sum(f.current_a * len(f.phases) * V for f in fixed)) + 1e-3


# ----------------------------------------------------------------------------------------------- equal share


def test_one_ev_gets_its_maximum_when_the_site_has_room() -> None:
    out = allocate([ev("A/1")], amps(100))
    assert out.currents == {"A/1": 32.0}
    assert out.chargers["A"].current_a == 32.0 and out.chargers["A"].phases == THREE
    assert out.paused == ()


def test_equal_share_splits_a_short_site_evenly() -> None:
    demands = [ev(f"C{i}/1") for i in range(4)]
    out = allocate(demands, amps(100))
    assert set(out.currents.values()) == {25.0}
    check_invariants(demands, amps(100), out)


def test_shares_are_rounded_down_to_a_tenth_of_an_ampere() -> None:
    demands = [ev(f"C{i}/1") for i in range(3)]
    out = allocate(demands, amps(100))
    assert set(out.currents.values()) == {32.0}  # each capped at 32 before its share (33.33) is reached
    out = allocate(demands, amps(80))
    assert set(out.currents.values()) == {26.6}
    assert sum(out.currents.values()) <= 80


def test_what_a_capped_ev_cannot_take_goes_to_the_others() -> None:
    demands = [ev("small/1", max_a=10), ev("big1/1"), ev("big2/1")]
    out = allocate(demands, amps(70))
    assert out.currents == {"small/1": 10.0, "big1/1": 30.0, "big2/1": 30.0}
    check_invariants(demands, amps(70), out)


def test_different_minimums_start_from_their_own_minimum_and_meet() -> None:
    demands = [ev("a/1", min_a=6), ev("b/1", min_a=16)]
    out = allocate(demands, amps(30))
    assert out.currents == {"a/1": 14.0, "b/1": 16.0}  # a rises toward b's minimum until the site is used
    out = allocate(demands, amps(40))
    assert out.currents == {"a/1": 20.0, "b/1": 20.0}


# ----------------------------------------------------------------------------------------------- minimums


def test_more_evs_than_the_minimums_allow_pauses_the_latest_arrivals() -> None:
    demands = [ev(f"C{i}/1", since=float(i)) for i in range(6)]  # 6 x 6 A = 36 A needed, 20 A there
    out = allocate(demands, amps(20))
    assert out.paused == ("C3/1", "C4/1", "C5/1")
    assert [out.currents[f"C{i}/1"] for i in range(6)] == [6.6, 6.6, 6.6, 0.0, 0.0, 0.0]
    assert out.chargers["C5"].current_a == 0.0 and out.chargers["C5"].paused == 1
    check_invariants(demands, amps(20), out)


def test_a_site_below_one_minimum_pauses_everyone() -> None:
    demands = [ev("a/1"), ev("b/1")]
    out = allocate(demands, amps(5))
    assert out.currents == {"a/1": 0.0, "b/1": 0.0} and set(out.paused) == {"a/1", "b/1"}


def test_zero_capacity_pauses_everyone_and_uses_nothing() -> None:
    out = allocate([ev("a/1")], amps(0))
    assert out.currents == {"a/1": 0.0} and out.used_phase_a == (0.0, 0.0, 0.0)


def test_exactly_the_minimums_fit() -> None:
    demands = [ev(f"C{i}/1") for i in range(5)]
    out = allocate(demands, amps(30))
    assert set(out.currents.values()) == {6.0} and out.paused == ()


def test_a_later_arrival_with_a_smaller_minimum_still_fits_in_what_is_left() -> None:
    demands = [ev("a/1", since=0, min_a=10), ev("b/1", since=1, min_a=16), ev("c/1", since=2, min_a=6)]
    out = allocate(demands, amps(20))
    assert out.paused == ("b/1",)
    assert out.currents == {"a/1": 10.0, "b/1": 0.0, "c/1": 10.0}
    check_invariants(demands, amps(20), out)


def test_ties_on_arrival_are_broken_by_key_so_the_result_is_stable() -> None:
    demands = [ev("b/1"), ev("a/1"), ev("c/1")]
    first = allocate(demands, amps(13))
    assert first.paused == ("c/1",)
    assert allocate(list(reversed(demands)), amps(13)) == first


# ----------------------------------------------------------------------------------------------- priority


def test_priority_fills_the_higher_priority_first() -> None:
    demands = [ev("vip/1", priority=2), ev("a/1"), ev("b/1")]
    out = allocate(demands, amps(50), fairness="priority")
    assert out.currents == {"vip/1": 32.0, "a/1": 9.0, "b/1": 9.0}
    check_invariants(demands, amps(50), out)


def test_priority_keeps_the_higher_priority_minimum_when_short() -> None:
    demands = [ev("late-vip/1", priority=1, since=9), ev("early/1", since=0)]
    out = allocate(demands, amps(8), fairness="priority")
    assert out.currents == {"late-vip/1": 8.0, "early/1": 0.0}
    # equal share ignores priority: the earliest keeps its minimum
    out = allocate(demands, amps(8), fairness="equal")
    assert out.currents == {"late-vip/1": 0.0, "early/1": 8.0}


def test_equal_fairness_ignores_priority_above_the_minimums() -> None:
    demands = [ev("vip/1", priority=5), ev("a/1")]
    out = allocate(demands, amps(40), fairness="equal")
    assert out.currents == {"vip/1": 20.0, "a/1": 20.0}


# ----------------------------------------------------------------------------------------------- phases


def test_one_phase_evs_on_different_phases_do_not_compete() -> None:
    demands = [ev("l1/1", phases=(0,)), ev("l2/1", phases=(1,)), ev("l3/1", phases=(2,))]
    out = allocate(demands, amps(20))
    assert set(out.currents.values()) == {20.0}
    assert out.used_phase_a == (20.0, 20.0, 20.0)


def test_one_phase_evs_on_the_same_phase_share_it() -> None:
    demands = [ev("a/1", phases=(0,)), ev("b/1", phases=(0,))]
    out = allocate(demands, amps(20))
    assert out.currents == {"a/1": 10.0, "b/1": 10.0}
    assert out.used_phase_a == (20.0, 0.0, 0.0)


def test_three_phase_vs_one_phase_the_loaded_phase_limits_the_three_phase_ev() -> None:
    # L1 carries a one-phase EV and a three-phase EV; L2, L3 only the three-phase one
    demands = [ev("one/1", phases=(0,)), ev("three/1")]
    out = allocate(demands, amps(30))
    assert out.currents == {"one/1": 15.0, "three/1": 15.0}
    assert out.used_phase_a == (30.0, 15.0, 15.0)
    check_invariants(demands, amps(30), out)


def test_a_one_phase_ev_on_a_free_phase_grows_past_the_three_phase_share() -> None:
    demands = [ev("one/1", phases=(1,), max_a=32), ev("three-a/1"), ev("three-b/1")]
    # L2 carries all three; L1, L3 only the two three-phase EVs
    out = allocate(demands, Capacity((60.0, 40.0, 60.0), None, V))
    assert out.currents["one/1"] == pytest.approx(13.3, abs=0.1)
    assert out.currents["three-a/1"] == out.currents["three-b/1"] == pytest.approx(13.3, abs=0.1)
    check_invariants(demands, Capacity((60.0, 40.0, 60.0), None, V), out)


def test_unbalanced_phase_capacity_after_other_load() -> None:
    demands = [ev("a/1"), ev("b/1", phases=(2,))]
    cap = Capacity((50.0, 50.0, 12.0), None, V)
    out = allocate(demands, cap)
    assert out.currents == {"a/1": 6.0, "b/1": 6.0}
    check_invariants(demands, cap, out)


def test_a_charger_mixing_one_and_three_phase_evs_is_counted_on_every_phase_it_uses() -> None:
    demands = [ev("dual/1", phases=(0,), charger="dual"), ev("dual/2", charger="dual")]
    out = allocate(demands, amps(40))
    assert out.chargers["dual"].phases == THREE
    assert out.chargers["dual"].current_a == 40.0
    check_invariants(demands, amps(40), out)


def test_two_evses_of_one_charger_get_one_station_wide_limit() -> None:
    demands = [ev("twin/1", charger="twin"), ev("twin/2", charger="twin"), ev("solo/1")]
    out = allocate(demands, amps(60))
    assert out.currents == {"twin/1": 20.0, "twin/2": 20.0, "solo/1": 20.0}
    assert out.chargers["twin"].current_a == 40.0 and out.chargers["solo"].current_a == 20.0


# ----------------------------------------------------------------------------------------------- power (kW sites)


def test_a_kw_site_counts_three_phase_evs_three_times_a_one_phase_one() -> None:
    cap = Capacity(None, 22_080.0, V)  # 32 A x 3 phases x 230 V
    demands = [ev("three/1"), ev("one/1", phases=(0,))]
    out = allocate(demands, cap)
    # equal current: 4 phase-amps per ampere of level, 22080 W / (4 x 230) = 24 A each
    assert out.currents == {"three/1": 24.0, "one/1": 24.0}
    assert out.used_w == pytest.approx(22_080.0)
    check_invariants(demands, cap, out)


def test_both_a_phase_limit_and_a_power_limit_hold() -> None:
    cap = Capacity((32.0, 32.0, 32.0), 11_040.0, V)
    out = allocate([ev("a/1"), ev("b/1", phases=(1,))], cap)
    assert out.used_w <= 11_040.0 + EPS
    check_invariants([ev("a/1"), ev("b/1", phases=(1,))], cap, out)


# ----------------------------------------------------------------------------------------------- measured draw


def test_an_ev_drawing_well_below_its_offer_is_capped_at_its_draw_plus_spare() -> None:
    demands = [ev("full/1", draw=4.0, offered=25.0), ev("hungry/1", draw=24.9, offered=25.0)]
    out = allocate(demands, amps(50))
    assert out.currents["full/1"] == 6.0  # its minimum (4 + 2 is below 6)
    assert out.currents["hungry/1"] == 32.0
    check_invariants(demands, amps(50), out)


def test_an_ev_drawing_what_it_was_offered_keeps_its_full_cap() -> None:
    out = allocate([ev("a/1", draw=15.5, offered=16.0)], amps(40))
    assert out.currents == {"a/1": 32.0}


def test_an_ev_that_rises_again_gets_spare_more_each_round() -> None:
    d = ev("a/1", draw=10.0, offered=20.0)
    assert allocate([d], amps(40), spare_a=2.0).currents == {"a/1": 12.0}
    d2 = ev("a/1", draw=12.0, offered=12.0)
    assert allocate([d2], amps(40)).currents == {"a/1": 32.0}


def test_an_unmeasured_ev_gets_its_full_share() -> None:
    out = allocate([ev("a/1", offered=20.0)], amps(40))
    assert out.currents == {"a/1": 32.0}


# ----------------------------------------------------------------------------------------------- fixed, standby


def test_a_fixed_load_comes_off_first() -> None:
    fixed = (Fixed("offline", THREE, 32.0),)
    out = allocate([ev("a/1"), ev("b/1")], amps(60), fixed=fixed)
    assert out.currents == {"a/1": 14.0, "b/1": 14.0}
    assert out.used_phase_a == (60.0, 60.0, 60.0)


def test_a_fixed_load_above_the_capacity_pauses_everyone() -> None:
    fixed = (Fixed("offline", THREE, 80.0),)
    out = allocate([ev("a/1")], amps(60), fixed=fixed)
    assert out.currents == {"a/1": 0.0}


def test_idle_chargers_get_their_minimum_from_what_is_left() -> None:
    standby = [Standby("idle1", THREE, 6.0), Standby("idle2", THREE, 6.0)]
    out = allocate([ev("busy/1", max_a=16)], amps(30), standby=standby)
    assert out.chargers["busy"].current_a == 16.0
    assert out.chargers["idle1"].current_a == 6.0 and out.chargers["idle1"].standby
    assert out.chargers["idle2"].current_a == 6.0


def test_idle_chargers_get_nothing_when_the_transactions_take_the_site() -> None:
    out = allocate([ev("busy/1")], amps(32), standby=[Standby("idle", THREE, 6.0)])
    assert out.chargers["idle"].current_a == 0.0 and not out.chargers["idle"].standby


def test_a_charger_with_a_transaction_is_not_also_on_standby() -> None:
    out = allocate([ev("c/1", max_a=10)], amps(100), standby=[Standby("c", THREE, 6.0)])
    assert out.chargers["c"].current_a == 10.0 and not out.chargers["c"].standby


def test_no_demand_no_standby_is_an_empty_allocation() -> None:
    out = allocate([], amps(100))
    assert out.currents == {} and out.chargers == {} and out.used_phase_a == (0.0, 0.0, 0.0)


# ----------------------------------------------------------------------------------------------- headroom


SITE = SiteLimit(limit=100.0, unit="A", margin=5.0, phases=3, voltage_v=V)


def test_without_a_meter_the_evs_may_use_the_limit_less_the_margin() -> None:
    cap, other = headroom(SITE, Load(), None)
    assert cap.phase_a == (95.0, 95.0, 95.0) and other == Load()


def test_the_meter_minus_the_evs_is_the_other_load() -> None:
    ev_load = Load((30.0, 30.0, 10.0), 16_100.0)
    cap, other = headroom(SITE, ev_load, Reading(phase_a=(50.0, 40.0, 10.0)))
    assert other.phase_a == (20.0, 10.0, 0.0)
    assert cap.phase_a == (75.0, 85.0, 95.0)


def test_a_meter_that_reads_less_than_the_evs_sum_is_not_believed_below_zero() -> None:
    ev_load = Load((40.0, 40.0, 40.0), 27_600.0)
    cap, other = headroom(SITE, ev_load, Reading(phase_a=(25.0, 41.0, 40.0)))
    assert other.phase_a == (0.0, 1.0, 0.0)
    assert cap.phase_a == (95.0, 94.0, 95.0)


def test_a_power_only_meter_spreads_the_other_load_over_the_phases() -> None:
    cap, other = headroom(SITE, Load((10.0, 10.0, 10.0), 6_900.0), Reading(power_w=6_900.0 + 3 * V * 20))
    assert other.power_w == pytest.approx(13_800.0)
    assert cap.phase_a == pytest.approx((75.0, 75.0, 75.0))


def test_a_stale_meter_holds_the_last_other_load() -> None:
    held = Load((20.0, 20.0, 20.0), 13_800.0)
    cap, other = headroom(SITE, Load(), None, held)
    assert other is held and cap.phase_a == (75.0, 75.0, 75.0)


def test_other_load_above_the_limit_leaves_no_room() -> None:
    cap, _ = headroom(SITE, Load(), Reading(phase_a=(120.0, 0.0, 0.0)))
    assert cap.phase_a == (0.0, 95.0, 95.0)


def test_a_kw_site_has_one_power_budget() -> None:
    site = SiteLimit(limit=50.0, unit="kW", margin=2.0, phases=3, voltage_v=V)
    cap, other = headroom(site, Load(power_w=10_000.0), Reading(power_w=25_000.0))
    assert cap.phase_a is None and cap.power_w == pytest.approx(48_000 - 15_000)
    assert other.power_w == 15_000.0


def test_a_one_phase_site_has_no_l2_or_l3() -> None:
    site = SiteLimit(limit=40.0, unit="A", phases=1)
    cap, _ = headroom(site, Load(), Reading(power_w=0.0))
    assert cap.phase_a == (40.0, 0.0, 0.0)
    out = allocate([ev("a/1", phases=(0,)), ev("b/1", phases=(0,))], cap)
    assert out.currents == {"a/1": 20.0, "b/1": 20.0}


def test_the_whole_chain_keeps_a_100_a_site_under_its_limit_with_a_base_load() -> None:
    demands = [ev(f"C{i}/1", since=i) for i in range(5)]
    cap, _ = headroom(SITE, Load(), Reading(phase_a=(35.0, 20.0, 20.0)))
    out = allocate(demands, cap)
    assert max(out.used_phase_a[p] + (35.0, 20.0, 20.0)[p] for p in range(3)) <= 95.0 + EPS


# ----------------------------------------------------------------------------------------------- properties

demand_st = st.builds(
    lambda i, ph, mn, mx, pr, since, draw, offered: Demand(
        f"C{i // 2}/{i % 2 + 1}", f"C{i // 2}", ph, mn, max(mn, mx), pr, since, draw, offered
    ),
    st.integers(0, 11),
    st.sampled_from([(0,), (1,), (2,), THREE]),
    st.sampled_from([0.0, 6.0, 8.0, 10.0]),
    st.floats(1.0, 63.0),
    st.integers(0, 2),
    st.floats(0, 100),
    st.one_of(st.none(), st.floats(0, 63)),
    st.one_of(st.none(), st.floats(0, 63)),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(demand_st, max_size=12, unique_by=lambda d: d.key),
    st.one_of(
        st.tuples(st.floats(0, 200), st.floats(0, 200), st.floats(0, 200)).map(lambda t: Capacity(t, None, V)),
        st.floats(0, 150_000).map(lambda w: Capacity(None, w, V)),
    ),
    st.sampled_from(["equal", "priority"]),
    st.lists(
        st.builds(Fixed, st.sampled_from(["X", "Y"]), st.sampled_from([(0,), THREE]), st.floats(0, 40)), max_size=2
    ),
)
def test_no_input_makes_an_allocation_exceed_a_budget_or_break_a_minimum(
    demands: list[Demand], cap: Capacity, fairness: str, fixed: list[Fixed]
) -> None:
    out = allocate(demands, cap, fairness=fairness, fixed=tuple(fixed))  # type: ignore[arg-type]
    check_invariants(demands, cap, out, tuple(fixed))
    # work-conserving: an admitted transaction below its cap means a constraint it is under is (nearly) used up
    if cap.phase_a is not None and not fixed:
        used = [0.0, 0.0, 0.0]
        for cl in out.chargers.values():
            for p in cl.phases:
                used[p] += cl.current_a
        for d in demands:
            c = out.currents[d.key]
            if c and c < min(d.max_a, d.max_a) - 0.2 and not (d.draw_a is not None and d.offered_a is not None):
                phases = out.chargers[d.charger].phases
                slack = min(cap.phase_a[p] - used[p] for p in phases)
                n = max(1, len(demands))
                assert slack <= 0.1 * n + 1e-6, (d.key, c, slack)
