"""Starting TensorFlow without its start-up noise.

On a machine without a GPU, importing TensorFlow 2.21 and touching its first device writes lines
like these to the process's standard error, from C++, before any flag of ours can act:

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    I0000 ... port.cc:153] oneDNN custom operations are on. ...
    E0000 ... cuda_platform.cc:52] failed call to cuInit: ...
    ... cpu_feature_guard.cc ... rebuild TensorFlow with the appropriate compiler flags.

`TF_CPP_MIN_LOG_LEVEL=2` does not stop them (docs/design.md §6). `start` therefore points
file descriptor 2 at a temporary file while TensorFlow is imported and its devices are listed, and
`sys.stderr` at the same file, then puts both back; when that fails, what was written is replayed,
so a broken install still says why. `--debug` skips all of it.

Descriptor 2 itself, never `sys.stderr.fileno()`: C++ writes to 2 whatever Python's `sys.stderr`
is. In a Jupyter kernel `sys.stderr` is ipykernel's stream, which sends Python's writes to the
notebook and has pointed descriptor 2 at a pipe it forwards there too; its `fileno()` answers a
copy of the kernel's original descriptor 2 (the terminal that started it), so silencing that copy
let every line through to the notebook. Python's own writes during the import (a warning, say)
go to the same file through the replaced `sys.stderr`.

Standard library only: the commands call this before anything imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


def start(*, debug: bool = False) -> None:
    """Imports TensorFlow and Keras and lists the devices, with the C++ start-up lines silenced.

    Does nothing when TensorFlow is already imported (its lines are out by then). With `debug`,
    TensorFlow starts as it would on its own, every line shown.
    """
    if "tensorflow" in sys.modules:
        return
    if debug:
        import tensorflow as tf

        tf.config.list_physical_devices()
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with silenced_stderr():
        import keras  # noqa: F401  (Keras picks its backend here, quietly too)
        import tensorflow as tf

        tf.config.list_physical_devices()  # CUDA's probe ("failed call to cuInit") runs here
    # TensorFlow's Python logger repeats C++ notices (tf.lite's deprecation, for one) at WARNING.
    tf.get_logger().setLevel("ERROR")


@contextlib.contextmanager
def silenced_stderr() -> Iterator[None]:
    """Sends what anything in the process writes to standard error - to file descriptor 2, or
    through `sys.stderr` - into a temporary file; replays it on standard error when the block
    raises."""
    for stream in (sys.stderr, sys.__stderr__):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()  # what was written before the block keeps its place
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 at all (a daemon): nothing to silence
        yield
        return
    with tempfile.TemporaryFile() as sink:
        # Line-buffered on the sink's own descriptor, so Python's lines and C++'s interleave.
        text = open(
            sink.fileno(), "w", buffering=1, encoding="utf-8", errors="replace", closefd=False
        )
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stderr(text):
                yield
        except BaseException:
            text.flush()
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode("utf-8", "replace"))
            sys.stderr.flush()
            raise
        finally:
            text.close()
            os.dup2(saved, 2)
            os.close(saved)
