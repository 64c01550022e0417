"""examples/quickstart.ipynb, executed in a real Jupyter kernel (nbclient, ipykernel).

One kernel runs the notebook once, with its parameter cell rewritten to a 6-trial search of the
tiny backbone on a tiny generated folder; the tests assert on what came back: the leaderboard, the
live view updated in place, the size of the outputs, and no TensorFlow start-up noise or colour
codes anywhere.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from tests.images import make_folder

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"
TRIALS = 6
# The cheapest search that still runs both phases of every trial it can.
SEARCH = dict(
    backbone="tiny",
    weights="none",
    image_size=32,
    max_trials=TRIALS,
    epochs_head=1,
    epochs_finetune=1,
    batch_size=8,
    patience=0,
)
# What TensorFlow's C++ start-up writes (absl's log prefix "I0000 00:00:...", oneDNN's notice,
# CUDA's probes, the CPU-feature advice) and what its Python side logs.
NOISE = re.compile(
    r"absl|oneDNN|TF_ENABLE|cuInit|cuda|cudart|cpu_feature_guard|tensorflow|"
    r"^[IWEF]\d{4} \d\d:\d\d:\d\d",
    re.IGNORECASE | re.MULTILINE,
)
OUTPUT_MESSAGES = {"stream", "display_data", "update_display_data", "execute_result"}

pytestmark = pytest.mark.slow


class RecordingClient(NotebookClient):
    """An nbclient that also keeps every output message the kernel sent: the notebook keeps only
    the result of `update_display_data`, not that it happened."""

    def __init__(self, nb: Any, **kwargs: Any) -> None:
        super().__init__(nb, **kwargs)
        self.messages: list[dict[str, Any]] = []

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        if msg["msg_type"] in OUTPUT_MESSAGES | {"clear_output"}:
            self.messages.append({"cell": cell_index, "type": msg["msg_type"], **msg["content"]})
        return super().process_message(msg, cell, cell_index)


def kernel_environment() -> dict[str, str]:
    """The kernel's environment: a user's, with this checkout importable."""
    env = dict(os.environ)
    # ipykernel forwards descriptor 2 to the notebook only outside pytest (it checks this
    # variable); without the forwarding, TensorFlow's C++ lines could never reach the notebook
    # and the noise test would pass whatever tuner.runtime.startup does.
    env.pop("PYTEST_CURRENT_TEST", None)
    # tests/conftest.py sets it for the suite; a user's kernel starts without it.
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list[dict[str, Any]]]:
    """The notebook after one run in a fresh kernel, and every output message of that run."""
    folder = tmp_path_factory.mktemp("notebook")
    options = dict(
        data=str(make_folder(folder / "images")), project_dir=str(folder / "project"), **SEARCH
    )
    nb = nbformat.read(NOTEBOOK, as_version=4)
    (parameters,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    parameters.source = f"options = {options!r}"
    client = RecordingClient(
        nb,
        kernel_name="python3",
        timeout=600,
        startup_timeout=120,
        resources={"metadata": {"path": str(folder)}},
    )
    client.execute(env=kernel_environment())
    return nb, client.messages


def outputs(nb: Any) -> list[Any]:
    return [output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs]


def plain_text(message: dict[str, Any]) -> str:
    """The text a front end without HTML shows for an output message (a cell that raised stops
    the fixture: nbclient raises)."""
    if message["type"] == "stream":
        return message["text"]
    return message.get("data", {}).get("text/plain", "")


def test_the_committed_notebook_runs_the_demo_through_the_public_api_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "import tuner" in code and "tuner.run(" in code and "demo=True" in code
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source


def test_the_leaderboard_is_displayed(executed):
    nb, _ = executed
    boards = [
        output
        for output in outputs(nb)
        if output.output_type == "execute_result"
        and "Trials by val_accuracy" in output.data.get("text/plain", "")
    ]
    assert len(boards) == 1, [o.output_type for o in outputs(nb)]
    text, html = boards[0].data["text/plain"], boards[0].data["text/html"]
    assert f"{TRIALS} completed, 0 failed" in text
    assert "<pre" in html and "Trials by val_accuracy" in html
    # ... and a record or two.
    assert any("'trial_id':" in o.data.get("text/plain", "") for o in outputs(nb) if "data" in o)


def test_the_live_view_updates_one_output_in_place_without_clearing_the_cell(executed):
    nb, messages = executed
    assert not [m for m in messages if m["type"] == "clear_output"]
    created = {
        m["transient"]["display_id"]
        for m in messages
        if m["type"] == "display_data" and (m.get("transient") or {}).get("display_id")
    }
    assert len(created) == 1, created  # one output for the view, made once
    updates = [m for m in messages if m["type"] == "update_display_data"]
    assert {m["transient"]["display_id"] for m in updates} == created
    assert len(updates) >= TRIALS  # every trial redraws it, at least once
    # The notebook keeps the last drawing, once, and one line per finished trial beside it.
    shown = [o.data.get("text/plain", "") for o in outputs(nb) if "data" in o]
    views = [text for text in shown if f"{TRIALS}/{TRIALS} trials" in text]
    assert len(views) == 1 and "best so far" in views[0], views
    assert sum(f"({TRIALS}/{TRIALS}) done" in text for text in shown) == 1


def test_a_twenty_trial_search_stays_under_100_kb(executed):
    nb, _ = executed
    size = len(json.dumps([cell.get("outputs", []) for cell in nb.cells]).encode())
    assert size < 100_000, size


def test_no_tensorflow_start_up_noise_reaches_the_notebook(executed):
    _, messages = executed
    streams = [m for m in messages if m["type"] == "stream"]
    assert not [m["text"] for m in streams if NOISE.search(m["text"])]
    assert not [m["text"] for m in streams if m["name"] == "stderr"]


def test_plain_text_outputs_carry_no_colour_codes(executed):
    _, messages = executed
    coloured = [plain_text(m) for m in messages if "\x1b[" in plain_text(m)]
    assert not coloured, coloured[:3]
