"""A sweep parent's name in the MLflow runs table: the first sweep of a spec and profile is named by them alone,
a later one by what changed since the previous (the fake runner of test_sweep, a temporary store)."""

from pipeline import tracking
from pipeline.run.spec import load_spec
from pipeline.sweep import run_sweep
from test_sweep import env, fake_execute, write_spec  # noqa: F401 (env is a fixture)
from test_tracking import empty_db  # noqa: F401 (a fixture)


def _parent_names(root, profile="quick"):
    store = tracking.open_store(root)
    spec = load_spec(root / "mini.yaml", profile)
    result = run_sweep(spec, root / "data", root / "results", store, 2, execute=fake_execute)
    c = tracking.client(store)
    parents = [r for r in tracking.find_runs(store, result.experiment_id) if "spec_hash" in r.tags]
    return c.get_run(result.parent_run_id).info.run_name, sorted(r.run_name for r in parents)


def test_the_first_sweep_of_a_spec_is_named_by_the_spec_alone(env):
    assert _parent_names(env) == ("mini (quick)", ["mini (quick)"])
    assert _parent_names(env) == ("mini (quick)", ["mini (quick)"])  # repeated with nothing to do: the same run
    # the other profile's first sweep: its own plain name, not told apart from the quick one's
    assert _parent_names(env, "full") == ("mini (full)", ["mini (full)", "mini (quick)"])
    spec_file = env / "mini.yaml"
    spec_file.write_text(spec_file.read_text().replace("gamma_w: [", "gamma_w: [0.25, "))  # only the grid changed
    name, names = _parent_names(env)
    assert name.startswith("mini (quick) #") and len(name) == len("mini (quick) #") + 6
    assert names == sorted(["mini (full)", "mini (quick)", name])  # the first keeps its plain name


def test_a_validation_set_built_in_memory_is_named_so_in_the_dataset_column(tmp_path):
    from pipeline.sweep import dataset_refs
    from pipeline.sweep.plan import plan_cells

    spec = load_spec(write_spec(tmp_path), "quick")
    cells = plan_cells(spec, tmp_path / "results", tmp_path / "data")  # no data/: built from the seed
    ref = dataset_refs(cells, tmp_path / "data")[cells[0].config_hash][0]
    assert (ref.name, ref.digest) == ("adding_T6_N1000_s0", "in memory")  # was an empty digest, shown as "()"
    assert ref.source.startswith("built in memory from data_seed 0")
