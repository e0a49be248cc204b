"""Each test carries the marker of its tier folder (tests/conftest.py), which `-m` selects on."""

import pytest


def test_a_unit_test_is_marked_unit_and_no_other_tier(request):
    from tests.conftest import TIERS

    marks = {m.name for m in request.node.iter_markers()}
    assert "unit" in marks
    assert marks.isdisjoint(set(TIERS) - {"unit"}), marks


def test_every_tier_is_registered(pytestconfig):
    from tests.conftest import TIERS

    registered = {line.split(":")[0].strip() for line in pytestconfig.getini("markers")}
    assert set(TIERS) | {"slow"} <= registered, registered
