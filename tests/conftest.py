import os

import pytest
import torch

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def smol():
    """The embedded default model, loaded once per test session (never mutated by tests)."""
    from workbench import load_model
    return load_model("smollm2-135m")
