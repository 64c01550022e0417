"""What the user watches: the live view's text on a fixed-width console, the plain lines a log
gets, the notebook form that updates one output in place, and a TensorFlow start without noise."""

from __future__ import annotations

import io
import re

from rich.console import Console

from tests.helpers import python_env, run_python
from tuner.ui.display import SearchDisplay
from tuner.ui.live import LiveDisplay, NotebookDisplay, RichOutput, make_display

VALUES = {
    "head/units": 256,
    "head/dropout": 0.2,
    "head/learning_rate": 1e-3,
    "finetune/unfreeze_blocks": 2,
    "finetune/learning_rate": 5e-5,
}
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def plain_console(width: int = 100) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=width, color_system=None), out


def run_events(display: SearchDisplay) -> None:
    """A search of 8 trials: the first done, the second mid-way through phase 2."""
    display.search_begin(8, 0)
    display.trial_begin("00", 1, 8, VALUES)
    display.epoch_begin(1, 1, 2, 10)
    display.epoch(1, 1, 2, {"loss": 0.9, "accuracy": 0.5, "val_accuracy": 0.55}, 1.5)
    display.trial_end("00", "done", 0.9125, "val_accuracy")
    display.trial_begin("01", 2, 8, {**VALUES, "head/units": 128})
    display.epoch_begin(2, 6, 8, 50)
    display.batch(12, {"loss": 0.41234, "accuracy": 0.875})


def test_live_view_text_on_a_fixed_width_console():
    console, out = plain_console(100)
    display = LiveDisplay(console=console, verbose=1)
    display._start = lambda: None  # render the view by hand instead of from Live's thread
    run_events(display)
    view, view_out = plain_console(100)
    with display.build_progress("caching train pooled", 400) as update:
        update(120)
        view.print(display.view())
    text = out.getvalue() + view_out.getvalue()

    assert re.search(r"search .* 1/8 trials +elapsed \d+s +eta \S+", text)
    assert "best so far: trial 00  val_accuracy=0.9125  head/units=256" in text
    assert "trial 01 (2/8)" in text and "head/units=128" in text
    assert re.search(
        r"phase 2 \(fine-tune\) epoch 6/8 .* 12/50 loss=0\.4123 +accuracy=0\.8750", text
    )
    assert re.search(r"caching train pooled .* 120/400", text)
    # Finished trials and cache builds leave one line each above the view.
    assert re.search(r"^trial 00 \(1/8\) done in \d+s: val_accuracy=0\.9125", text, re.M)
    assert re.search(r"^caching train pooled: 120/400 images in", text, re.M)
    assert max(len(line) for line in view_out.getvalue().splitlines()) <= 100


def test_eta_comes_from_the_mean_trial_time():
    display = SearchDisplay(console=plain_console()[0], verbose=0)
    display.search_begin(4, 0)
    display.state.trial_seconds = [10.0, 30.0]
    display.state.done = 2
    assert display.state.eta(now=0.0) == 40.0  # two trials left at 20 s each


def test_lines_for_a_log_are_timestamped_one_per_event_and_never_wrapped():
    console, out = plain_console(width=40)  # far narrower than any line
    run_events(SearchDisplay(console=console, verbose=1))
    lines = out.getvalue().splitlines()

    assert all(re.match(STAMP + "  ", line) for line in lines), lines
    assert re.fullmatch(STAMP + r"  search: 8 trials", lines[0])
    assert re.fullmatch(
        STAMP + r"  trial 00 \(1/8\)  phase 1 \(head\) epoch 1/2  loss=0\.9000  "
        r"accuracy=0\.5000  val_accuracy=0\.5500  \[1\.5s\]",
        lines[1],
    )
    assert re.fullmatch(
        STAMP + r"  trial 00 \(1/8\) done in \d+s: val_accuracy=0\.9125  \(best so far\)  "
        r"head/units=256  head/dropout=0\.2  head/learning_rate=1e-03  "
        r"finetune/unfreeze_blocks=2  finetune/learning_rate=5e-05",
        lines[2],
    )
    assert len(lines) == 3  # batches and trial starts print nothing in a log


def test_a_failed_trial_is_one_line_with_its_reason():
    console, out = plain_console()
    display = SearchDisplay(console=console, verbose=1)
    display.trial_begin("02", 3, 8, VALUES)
    display.trial_end("02", "failed", None, "val_accuracy", "diverged: loss became nan")
    assert re.fullmatch(
        STAMP + r"  trial 02 \(1/8\) failed in \d+s: diverged: loss became nan\n",
        out.getvalue(),
    )


def test_quiet_prints_only_warnings():
    console, out = plain_console()
    display = make_display(console, verbose=0)
    run_events(display)
    with display.build_progress("caching", 10) as update:
        update(10)
    display.message("hello")
    display.warning("disk almost full")
    assert out.getvalue() == "warning: disk almost full\n"


def test_the_view_follows_the_output():
    assert type(make_display(plain_console()[0])) is SearchDisplay  # a file or a pipe
    terminal = Console(file=io.StringIO(), force_terminal=True)
    assert type(make_display(terminal)) is LiveDisplay
    notebook = Console(file=io.StringIO(), force_jupyter=True)
    assert type(make_display(notebook)) is NotebookDisplay
    assert type(make_display(terminal, verbose=0)) is SearchDisplay


class FakeHandle:
    def __init__(self, shown: list) -> None:
        self.shown = shown

    def update(self, output) -> None:
        self.shown.append(output)


def test_the_notebook_view_updates_one_output_in_place_and_keeps_it():
    shown: list = []
    calls: list = []

    def show(output, display_id=False):
        calls.append(display_id)
        shown.append(output)
        return FakeHandle(shown)

    console, out = plain_console()
    display = NotebookDisplay(console=console, verbose=1, show=show, min_interval=0.0)
    run_events(display)
    display.search_end()

    assert calls == [True]  # one output, created once, then only updated: never cleared
    assert len(shown) > 5
    final = shown[-1]._repr_mimebundle_()
    assert "1/8 trials" in final["text/plain"] and "<pre" in final["text/html"]
    # The finished trial's line went to the cell as ordinary output, after the view.
    assert "trial 00 (1/8) done" in out.getvalue()


def test_rich_output_renders_text_and_html():
    bundle = RichOutput("[bold]hi[/bold] there", width=40)._repr_mimebundle_()
    assert bundle["text/plain"].strip() == "hi there"
    assert "hi" in bundle["text/html"] and "font-weight: bold" in bundle["text/html"]


def test_tensorflow_starts_without_its_start_up_noise():
    code = "from tuner.runtime import startup; startup.start(); import tensorflow as tf; print(tf.add(1, 2).numpy())"
    # Without the TF_CPP_MIN_LOG_LEVEL that tests/conftest.py sets: startup must silence it alone.
    env = python_env(TF_CPP_MIN_LOG_LEVEL=None)
    done = run_python("-c", code, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3"
    assert done.stderr == ""


def test_a_failed_start_replays_what_was_silenced(tmp_path):
    code = (
        "import os, sys\n"
        "from tuner.runtime import startup as runtime\n"
        "with runtime.silenced_stderr():\n"
        "    os.write(2, b'the reason\\n')\n"
        "    raise SystemExit(3)\n"
    )
    done = run_python("-c", code)
    assert done.returncode == 3
    assert "the reason" in done.stderr
