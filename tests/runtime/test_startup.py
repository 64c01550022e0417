"""TensorFlow started without its start-up noise: silenced on descriptor 2 and on `sys.stderr`,
wherever `sys.stderr` points (a Jupyter kernel's stream included), and replayed on failure."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tuner.runtime.startup import silenced_stderr


class KernelStream:
    """`sys.stderr` as ipykernel makes it: Python's writes go to the notebook (kept here), and
    `fileno()` answers a copy of the descriptor 2 the kernel started with, not 2 itself."""

    def __init__(self) -> None:
        self.copy = os.dup(2)
        self.written: list[str] = []

    def fileno(self) -> int:
        return self.copy

    def write(self, text: str) -> int:
        self.written.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        os.close(self.copy)


@pytest.fixture
def kernel_stream():
    """Put in place by the test itself: pytest sets `sys.stderr` again once fixtures are set up."""
    stream = KernelStream()
    yield stream
    stream.close()


def test_descriptor_2_is_silenced_whatever_sys_stderr_answers(capfd, monkeypatch, kernel_stream):
    monkeypatch.setattr(sys, "stderr", kernel_stream)
    with silenced_stderr():
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on\n")  # as C++ does
        print("a warning from Python", file=sys.stderr)
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
    assert kernel_stream.written == []


def test_a_failure_replays_both_kinds_of_line_in_order(capfd, monkeypatch, kernel_stream):
    monkeypatch.setattr(sys, "stderr", kernel_stream)
    with pytest.raises(ImportError), silenced_stderr():
        os.write(2, b"first\n")
        print("second", file=sys.stderr)
        os.write(2, b"third\n")
        raise ImportError("no tensorflow")
    assert "".join(kernel_stream.written) == "first\nsecond\nthird\n"
    assert capfd.readouterr().err == ""


def test_tensorflow_starts_without_its_start_up_noise():
    code = "from tuner import runtime; runtime.start(); import tensorflow as tf; print(tf.add(1, 2).numpy())"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3"
    assert done.stderr == ""


def test_a_failed_start_replays_what_was_silenced():
    code = (
        "import os, sys\n"
        "from tuner.runtime import startup\n"
        "with startup.silenced_stderr():\n"
        "    os.write(2, b'the reason\\n')\n"
        "    raise SystemExit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 3
    assert "the reason" in done.stderr
