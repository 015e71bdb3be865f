"""The study benchmark's bookkeeping (nothing timed): every full-profile cell has one representative, each
representative is a cell of its spec, and a cell's full cost is extrapolated from two reduced runs."""

from pathlib import Path

import pytest

from pipeline.benchmarks import study
from pipeline.run.spec import load_spec

SPECS = {path.stem: load_spec(path, "full") for path in sorted(Path("experiments").glob("*.yaml"))}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_full_profile_cell_has_exactly_one_representative(name):
    reps = [r for r in study.REPRESENTATIVES if r.spec == name]
    assert reps, f"{name} has no representative"
    for rep in reps:
        study._cell(SPECS[name], rep.cell)  # a cell of the spec: LookupError otherwise
        assert rep.stands_for(study._grid_of(SPECS[name], rep.cell)), rep.name  # it stands for itself
    for grid in SPECS[name].grid:
        assert sum(r.stands_for(grid) for r in reps) == 1, grid


def test_a_cells_cost_is_extrapolated_from_two_reduced_runs():
    assert study._full_cost({100: 12.0, 300: 16.0}, 5000) == pytest.approx(10.0 + 0.02 * 5000)
    assert study._full_cost({0: 7.5}, 0) == 7.5  # an untrained cell runs once, at its own count
    assert study._full_cost({100: 12.0, 300: 11.0}, 5000) == pytest.approx(12.0)  # noise: no negative slope
