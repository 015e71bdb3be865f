"""`rnngrad.results` is `pipeline.results`: a study's runs as a DataFrame (`runs`) and one run folder read back
(`load_run`)."""

from pipeline.results import load_run, runs

__all__ = ["load_run", "runs"]
