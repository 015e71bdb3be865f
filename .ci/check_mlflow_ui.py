"""Open the quick study's runs in the MLflow UI, as a reader would, in headless Chromium (Debian's).

Usage: check_mlflow_ui.py PROJECT_DIR REPRO_LOG OUT_DIR

Copies the study's store (mlflow.db and mlartifacts/) to another folder, as a user moving or sharing a study would,
and starts `mlflow ui` there with the command rnngrad prints (127.0.0.1, a free port, from outside both folders);
takes the link `dvc repro` printed for the weight_norms experiment (REPRO_LOG holds that output), and checks that:
- the link opens the runs table (not MLflow 3's GenAI overview) with the sweep's parent run;
- expanded, the parent lists every child run under its short name (e.g. "γW=3 s1");
- a child's decay figure (figures/decay.png) loads as an image on its artifacts page;
- the parent's summary table (summary_table.json) is served.
Screenshots of the runs table, the child's figure and the parent's table go to OUT_DIR (CI artifacts).
"""

import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

SPEC = "weight_norms"
UI_ADDRESS = "http://127.0.0.1:5000"  # what the printed links point at (`mlflow ui`'s default)
RUNS_VIEW = "workflowType=machine_learning"  # without it MLflow 3 shows a run in its GenAI layout
WAIT_MS = 120_000
# where the UI fetches an artifact from: /get-artifact (as MLflow 3.17 did) or, for a run whose artifacts live on the
# server's --artifacts-destination, the proxied /ajax-api/2.0/mlflow-artifacts/artifacts/... (3.18)
ARTIFACT_ROUTES = ("get-artifact", "mlflow-artifacts/artifacts/")
SUMMARY_COLUMNS = ("run", "outcome", "verdict", "val_loss", "chance_loss", "val_over_chance", "predicted_regime",
                   "observed_regime_init", "observed_regime_final")  # a busy CI machine renders the UI slowly

project, log, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2]), Path(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
printed = re.findall(rf"rnngrad/{SPEC}: (http://\S+)", log.read_text())
assert printed, f"{log}: no link printed for rnngrad/{SPEC}"
link = printed[-1]  # the report stage's, the last lines of `dvc repro`
assert link.startswith(UI_ADDRESS) and RUNS_VIEW in link, link

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
base = f"http://127.0.0.1:{port}"
# the store copied elsewhere: every artifact must still show (it names them relative to the folder the UI serves)
moved = Path(tempfile.mkdtemp(prefix="rnngrad-moved-study-"))
for name in ("mlflow.db", "mlflow.db-wal", "mlflow.db-shm"):
    if (project / name).exists():
        shutil.copy2(project / name, moved / name)
shutil.copytree(project / "mlartifacts", moved / "mlartifacts")
printed_ui = re.findall(r"open the links after starting the UI: (mlflow ui .*)", log.read_text())
assert printed_ui, f"{log}: no `mlflow ui` command printed"
ui_command = shlex.split(printed_ui[-1].replace(str(project), str(moved)))
assert "--artifacts-destination" in ui_command, ui_command
server = subprocess.Popen([sys.executable, "-m", "mlflow", *ui_command[1:], "--host", "127.0.0.1", "--port", str(port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tempfile.gettempdir())


def api(path: str, body: dict) -> dict:
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/{path}", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        return json.load(r)


def fetches(name: str):
    """Whether a response is the UI fetching the artifact `name` (by either route)."""
    return lambda r: name in r.url and any(route in r.url for route in ARTIFACT_ROUTES)


def browse(page, experiment: str, parent: str, child: str, children: list[str], names: dict) -> None:
    # 1. the printed link: the runs table, the parent expanded to its children
    page.goto(link.replace(UI_ADDRESS, base))
    row = page.locator("[role=row]", has_text=names[parent])
    row.first.wait_for(timeout=WAIT_MS)
    row.first.locator("button[data-component-id*='runnamecellrenderer']").first.click()
    for i in children:
        page.get_by_text(names[i], exact=True).first.wait_for(timeout=WAIT_MS)
    page.screenshot(path=out / "mlflow_runs_table.png")

    # 2. a child's decay figure on its artifacts page
    with page.expect_response(fetches("decay.png"), timeout=WAIT_MS) as response:
        page.goto(f"{base}/#/experiments/{experiment}/runs/{child}/artifacts/figures/decay.png?{RUNS_VIEW}")
    assert response.value.status == 200, response.value.status
    # the viewer shows the PNG from a blob URL: wait for an image of the figure's width, loaded
    page.wait_for_function("() => Array.from(document.images).some(i => i.complete && i.naturalWidth >= 600)",
                           timeout=WAIT_MS)
    page.screenshot(path=out / "mlflow_child_decay.png")

    # 3. the parent's summary table (mlflow.log_table: the UI renders it as a table)
    with page.expect_response(fetches("summary_table.json"), timeout=WAIT_MS) as response:
        page.goto(f"{base}/#/experiments/{experiment}/runs/{parent}/artifacts/summary_table.json?{RUNS_VIEW}")
    assert response.value.status == 200, response.value.status
    with urllib.request.urlopen(f"{base}/get-artifact?path=summary_table.json&run_uuid={parent}", timeout=60) as r:
        table = json.load(r)  # pandas' "split" layout, as mlflow.log_table writes it
    missing = set(SUMMARY_COLUMNS) - set(table["columns"])
    assert not missing, f"summary table lacks {missing}"
    first = table["data"][0][table["columns"].index("run")]
    page.get_by_role("columnheader", name="outcome").first.wait_for(timeout=WAIT_MS)  # rendered as a table
    page.get_by_text(first, exact=True).first.wait_for(timeout=WAIT_MS)
    page.screenshot(path=out / "mlflow_parent_summary.png")


try:
    for _ in range(240):
        try:
            urllib.request.urlopen(f"{base}/health", timeout=2).close()
            break
        except OSError:
            time.sleep(0.5)
    else:
        raise SystemExit("mlflow ui did not start in 2 minutes")
    experiment = re.search(r"#/experiments/(\d+)", link).group(1)
    runs = api("runs/search", {"experiment_ids": [experiment], "max_results": 1000})["runs"]
    tags = {r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs}
    names = {r["info"]["run_id"]: r["info"]["run_name"] for r in runs}
    parents = [i for i, t in tags.items() if "mlflow.parentRunId" not in t and "spec_hash" in t]
    children = [i for i, t in tags.items() if "mlflow.parentRunId" in t]
    assert len(parents) == 1 and children, (len(parents), len(children))
    parent = parents[0]
    child = next(i for i in children if tags[i].get("outcome") == "ok")
    long_names = [names[i] for i in children if "gamma_w=" in names[i] or len(names[i]) > 24]
    assert not long_names, f"child runs without a short name: {long_names}"

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            browse(page, experiment, parent, child, children, names)
        except Exception:
            page.screenshot(path=out / "mlflow_failure.png")  # what the page showed when a check failed
            print(f"page errors: {errors}", file=sys.stderr)
            raise
        browser.close()
    assert not errors, f"page errors: {errors}"
finally:
    server.terminate()
    server.wait(timeout=30)
    shutil.rmtree(moved, ignore_errors=True)
print(f"mlflow ui ok: {link} lists {len(children)} child runs by short name; {names[child]}'s decay figure and "
      f"the parent's summary table load from a copy of the store; screenshots in {out}")
