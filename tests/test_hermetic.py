"""The suite runs in a session-wide temporary WORKBENCH_HOME (tests/conftest.py) that shares only the
dequantized embedded models with the user's cache."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import HERMETIC


@pytest.mark.skipif(HERMETIC is None, reason="WORKBENCH_TEST_SHARED_HOME=1: the real cache is used on purpose")
def test_cache_writes_land_in_the_temporary_home():
    from workbench.models.loading import EMBEDDED
    from workbench.paths import cache_dir, home
    tmp, real = HERMETIC
    assert home() == tmp != real and os.environ["WORKBENCH_HOME"] == str(tmp)
    written = cache_dir("stats", "hermetic-check")
    assert written.resolve().is_relative_to(tmp.resolve()) and not (real / "stats" / "hermetic-check").exists()
    for name in EMBEDDED:                                   # the one shared thing: dequantized embedded models
        link = tmp / "models" / name
        assert link.is_symlink() and link.resolve() == (real / "models" / name).resolve()
    assert not (tmp / "models" / "synthetic").is_symlink()   # built models stay in the temporary home
    assert Path(tmp).name.startswith("workbench-test-home-")
