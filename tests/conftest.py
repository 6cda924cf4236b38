import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def _hermetic_home() -> tuple[Path, Path] | None:
    """A session-wide temporary WORKBENCH_HOME, so the suite writes nothing into the user's cache.

    The one thing shared with the real cache is the dequantized embedded models
    (`models/<embedded name>`, symlinked), so the embedded model is not dequantized again per run;
    everything else (statistics, fit data, SAEs, synthetic models, corpora) is built in the
    temporary home and removed at exit. WORKBENCH_TEST_SHARED_HOME=1 keeps the real home instead
    (faster re-runs while developing). Returns (temporary home, real home), or None when shared.
    """
    real = Path(os.environ.get("WORKBENCH_HOME") or Path.home() / ".cache" / "workbench")
    if os.environ.get("WORKBENCH_TEST_SHARED_HOME") == "1" or os.environ.get("WORKBENCH_REAL_HOME"):
        return None                     # opted out, or already inside a hermetic session (subprocess)
    from workbench.models.loading import EMBEDDED
    tmp = Path(tempfile.mkdtemp(prefix="workbench-test-home-"))
    (tmp / "models").mkdir()
    for name in EMBEDDED:
        shared = real / "models" / name
        shared.mkdir(parents=True, exist_ok=True)
        (tmp / "models" / name).symlink_to(shared, target_is_directory=True)
    os.environ["WORKBENCH_HOME"] = str(tmp)
    os.environ["WORKBENCH_REAL_HOME"] = str(real)
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)      # rmtree does not follow the symlinks
    return tmp, real


HERMETIC = _hermetic_home()


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`): tiny
    matrices gain nothing from threads, and on a loaded 2-core box 2 spinning threads cost 10x; a Ray
    task gets one CPU too (cpus_per_task=1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def smol():
    """The embedded default model, loaded once per test session (never mutated by tests)."""
    from workbench import load_model
    return load_model("smollm2-135m")
