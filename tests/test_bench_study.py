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
    for _, stage, _ in study._stages({name: SPECS[name]}):  # a learning-rate selection's cells too
        for grid in stage.grid:
            assert sum(r.stands_for(grid) for r in reps) == 1, grid


def test_a_cells_cost_is_extrapolated_from_two_reduced_runs():
    assert study._full_cost({100: 12.0, 300: 16.0}, 5000) == pytest.approx(10.0 + 0.02 * 5000)
    assert study._full_cost({0: 7.5}, 0) == 7.5  # an untrained cell runs once, at its own count
    assert study._full_cost({100: 12.0, 300: 11.0}, 5000) == pytest.approx(12.0)  # noise: no negative slope


def test_an_arm_the_baseline_cannot_run_is_priced_apart_and_left_out_of_the_ratio(tmp_path):
    from pipeline.run.calibrate import UnitCosts

    class Flat:  # every cell costs 10 core-seconds
        def units(self, cfg, sizes):
            return UnitCosts(train_step=0.0, validation_pass=0.0, probe=0.0, across_probe=0.0, fixed=10.0)

    remedies = {"remedies": SPECS["remedies"]}
    reps = tuple(r for r in study.REPRESENTATIVES if r.spec == "remedies")
    measured = {r.name: {"before": 30.0 if r.in_baseline else None, "after": 10.0} for r in reps}
    totals = study._study_totals(remedies, reps, measured, Flat(), tmp_path)
    grids = [g for _, stage, _ in study._stages(remedies) for g in stage.grid]  # its rate selection's cells too
    assert len(grids) > len(SPECS["remedies"].grid)
    new = sum(1 for g in grids if g.get("cell_type") in ("gru", "exprnn"))
    assert 0 < new < len(grids)
    assert totals["study_core_hours_new_arms"] == pytest.approx(new * 10 / 3600)
    assert totals["study_core_hours_after"] == pytest.approx((len(grids) - new) * 10 / 3600)
    assert totals["study_ratio"] == pytest.approx(3.0)  # the new arms' cells are in neither side of it


def test_only_the_arms_the_baseline_has_are_timed_before():
    # the baseline (5e825f7) knew the vanilla RNN and the LSTM; the GRU and the expRNN came after it
    for rep in study.REPRESENTATIVES:
        assert rep.in_baseline == (rep.cell.get("cell_type", "rnn") in ("rnn", "lstm")), rep.name


def test_the_baseline_study_is_priced_from_its_own_specs(tmp_path):
    from pipeline.run.calibrate import UnitCosts

    class Flat:
        def units(self, cfg, sizes):
            return UnitCosts(train_step=0.0, validation_pass=0.0, probe=0.0, across_probe=0.0, fixed=10.0)

    specs = tmp_path / "experiments"
    specs.mkdir()
    for name in ("weight_norms", "clipping"):
        (specs / f"{name}.yaml").write_text(Path(f"experiments/{name}.yaml").read_text())
    measured = {r.name: {"before": 20.0 if r.in_baseline else None, "after": 10.0} for r in study.REPRESENTATIVES}
    cells = len(SPECS["weight_norms"].grid) + len(SPECS["clipping"].grid)
    out = study._baseline_study(specs, study.REPRESENTATIVES, measured, Flat(), tmp_path, 1.5)
    assert out["study_core_hours_baseline_study"] == pytest.approx(cells * 20 / 3600)
    assert out["study_core_hours_this_study"] == 1.5
    assert out["study_ratio_whole"] == pytest.approx(cells * 20 / 3600 / 1.5)
    (specs / "clipping.yaml").write_text("name: [not a spec\n")
    assert study._baseline_study(specs, study.REPRESENTATIVES, measured, Flat(), tmp_path, 1.5) == {}
