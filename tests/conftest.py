"""Shared fixtures: tiny, learnable image folders made on the fly, a fast search config, one-point
search spaces, and tiny searches run once per session for the tests that only read their results.

Every test runs the production path with the registry's own `tiny` backbone at small sizes and
`weights=None`-style random init, so the whole suite stays within minutes on 2 CPU cores. Helpers
that are not fixtures (child processes, search flags, space files) are in tests/helpers.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers share the two cores (pyproject.toml's addopts): one intra-op thread each, read
    # by TensorFlow when it starts (and inherited by the processes a test starts), keeps their
    # thread pools from competing for the cores.
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import pytest

from tests.helpers import REPO, fixed, tiny_config, write_space
from tests.images import make_folder


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "images")


@pytest.fixture
def search_config(tmp_path: Path, image_folder: Path):
    """Makes the tiny search's `SearchConfig` (tests/helpers.py `TINY_CONFIG`, with changes) on
    this test's image folder, in tmp_path/project."""

    def make(**changes):
        settings = {"data": image_folder, "project_dir": tmp_path / "project", **changes}
        return tiny_config(**settings)

    return make


@pytest.fixture
def fixed_space(tmp_path: Path):
    """Writes the one-point space (tests/fixtures/spaces/fixed.toml: a 16-unit head, unfreezing
    `k` blocks), with `entries` laid over it; returns its path."""

    def make(k: int = 1, entries=None) -> Path:
        chosen = {"finetune.unfreeze_blocks": fixed(k), **(entries or {})}
        return write_space(tmp_path / f"fixed{k}.toml", "fixed", chosen)

    return make


@pytest.fixture
def prepared():
    """`tuner.engine.transfer.prepare` for a config: the `Workbench` every trial shares. The space is the
    tiny family's, with the config's --space file laid over it, unless one is given."""
    from tuner.engine.spaces import load_space
    from tuner.engine.transfer import prepare

    def make(config, space=None, display=None):
        space = space or load_space(family="tiny", path=config.space)
        return prepare(config, space, display)

    return make


@pytest.fixture
def searched(prepared):
    """Prepares and runs a search for a config; returns (workbench, tuner). On a finished project
    it runs no trial and returns the tuner over the finished ones."""
    from tuner.engine.runner import _search as run_search

    def make(config, space=None):
        bench = prepared(config, space)
        return bench, run_search(bench)

    return make


# --------------------------------------------------------------------------------------------
# Searches run once for the session


@pytest.fixture(scope="session")
def session_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default image folder (`make_folder`), made once for the session and never changed: a
    test that touches image files uses its own `image_folder`."""
    return make_folder(tmp_path_factory.mktemp("session-images") / "images")


@pytest.fixture(scope="session")
def _finished_projects(tmp_path_factory: pytest.TempPathFactory, session_images: Path):
    """The tiny searches run so far this session, by their settings: each ran once, in-process,
    on `session_images`, in a project folder no test writes to."""
    from tuner.engine.runner import _search as run_search
    from tuner.engine.spaces import load_space
    from tuner.engine.transfer import prepare

    done: dict[tuple, object] = {}

    def get(changes: dict):
        key = repr(tiny_config(session_images, Path("project"), **changes))  # all the settings
        if key not in done:
            folder = tmp_path_factory.mktemp("finished")
            config = tiny_config(session_images, folder / "project", **changes)
            run_search(prepare(config, load_space(family="tiny", path=config.space), None))
            done[key] = config
        return done[key]

    return get


@pytest.fixture
def finished(_finished_projects, tmp_path: Path):
    """A copy, in this test's folder, of a finished tiny search (`TINY_CONFIG` with `changes`, on
    `session_images`) that ran once for the whole session; returns its config. A test that only
    reads a finished search, or continues one, starts from this instead of searching again; pass
    the config to `searched` for the workbench and the tuner over its trials."""

    def make(**changes):
        source = _finished_projects(changes)
        target = tmp_path / f"finished-{len(list(tmp_path.glob('finished-*')))}"
        shutil.copytree(source.project_dir, target)
        return source.replace(project_dir=target)

    return make


# --------------------------------------------------------------------------------------------
# Order

# The modules that take longest, longest first. pyproject.toml runs the suite on two workers
# (`-n 2 --dist loadscope`): each module runs whole on one worker, in the order collected, so the
# long ones start first and the short ones fill in around them, and both workers end together.
LONGEST_FIRST = (
    "tests/models/test_cuts.py",  # builds every registered backbone
    "tests/cluster/test_chief.py",  # whole clusters of processes
    "tests/serve/test_formats.py",  # every export format and its real consumer
    "tests/engine/test_transfer.py",
    "tests/engine/test_faults.py",  # killed and rerun searches
    "tests/test_notebook.py",  # a 6-trial search in a real Jupyter kernel
    "tests/test_api.py",  # a search in-process, then the commands as processes
    "tests/train/test_trial.py",  # both paths, weighted and not, three ranked searches
    "tests/train/test_reuse.py",
    "tests/train/test_refit.py",  # real refits after a shared search
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Moves the `LONGEST_FIRST` modules to the front; every other test keeps its place."""
    gone = [path for path in LONGEST_FIRST if not (REPO / path).is_file()]
    if gone:
        raise pytest.UsageError(f"tests/conftest.py: LONGEST_FIRST names no test module {gone}")
    rank = {path: index for index, path in enumerate(LONGEST_FIRST)}

    def key(item: pytest.Item) -> int:
        path = Path(str(item.path)).resolve().relative_to(REPO).as_posix()
        return rank.get(path, len(rank))

    items.sort(key=key)
