"""Shared fixtures: a fixed seed for every test, and hypothesis settings that suit a 2-core CI machine."""
import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def seed():
    "Every test starts from the same random state."
    torch.manual_seed(0)
    return 0
