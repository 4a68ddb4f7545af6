"""Tests of sdrc.evidence: the rule every verdict follows, on hand-worked cases and on random sets of runs."""
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdrc.evidence import compare, mean_std

runs = st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=6)


def test_hand_worked_cases():
    assert mean_std([0.95, 0.96, 0.97]) == "96.0 ± 1.0"
    assert compare([0.950, 0.955, 0.960], [0.930, 0.935, 0.940]).verdict == "higher"
    assert compare([0.950, 0.920, 0.980], [0.930, 0.900, 0.960]).verdict == "no difference"
    one = compare([0.95], [0.90])
    assert one.verdict == "not decided" and one.p is None and "one run on a side" in str(one)
    with pytest.raises(ValueError, match="at least one run"):
        compare([], [0.9])


@given(runs, runs)
def test_the_verdict_is_symmetric(a, b):
    there, back = compare(a, b), compare(b, a)
    flip = {"higher": "lower", "lower": "higher", "no difference": "no difference"}
    assert back.verdict == flip[there.verdict]
    assert back.diff == pytest.approx(-there.diff, abs=1e-12)


@given(runs, runs)
def test_a_difference_within_the_spread_is_no_difference(a, b):
    result = compare(a, b)
    spread = max(statistics.stdev(a), statistics.stdev(b))
    if abs(statistics.mean(a) - statistics.mean(b)) <= spread:
        assert result.verdict == "no difference"
    if result.verdict in ("higher", "lower"):
        assert result.p <= 0.05 and abs(result.diff) > result.spread


@given(runs, runs, st.floats(-0.5, 0.5))
def test_shifting_both_sets_changes_nothing(a, b, shift):
    assert compare([x + shift for x in a], [x + shift for x in b]).verdict == compare(a, b).verdict
