"""Test-wide settings: hypothesis profiles and a fresh workspace per test."""
import os

import pytest
from hypothesis import settings

# "ci" is derandomized so a CI failure reproduces; "dev" explores new examples each run.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(autouse=True)
def _fresh_workspace(tmp_path):
    """Each test starts in an empty default workspace rooted in its own temp folder."""
    from c2compile import workspace
    workspace.SwitchWorkspace("default")
    workspace.ResetWorkspace(str(tmp_path))
    yield
    workspace.SwitchWorkspace("default")
