"""Shared fixtures: a fixed seed for every test, and hypothesis settings that suit a 2-core CI machine. The tests never
download: SDRC_OFFLINE is set for the whole session (the downloader's tests serve their files from this machine)."""
import os

os.environ["SDRC_OFFLINE"] = "1"

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


THREADS = torch.get_num_threads()  # what the session started with; runs that set their own are undone after each test


@pytest.fixture(autouse=True)
def seed():
    "Every test starts from the same random state and torch's initial thread count."
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    yield 0
    torch.set_num_threads(THREADS)


def _shared_data_dir():
    "Where the digit bundle is: $SDRC_DATA, else the shared data folder beside the repository, else None."
    from pathlib import Path
    env = os.environ.get("SDRC_DATA")
    if env:
        return Path(env)
    beside = Path(__file__).resolve().parents[2] / "shared" / "data"
    return beside if (beside / "digits_real.npz").is_file() else None


@pytest.fixture(scope="session")
def digits_root():
    """The folder of the real digit bundle. Tests that need it skip without it, unless SDRC_REQUIRE_DATA=1
    (as in CI), where its absence is a failure."""
    root = _shared_data_dir()
    if root is None or not (root / "digits_real.npz").is_file() and not root.is_file():
        if os.environ.get("SDRC_REQUIRE_DATA") == "1":
            pytest.fail("SDRC_REQUIRE_DATA=1 but the digit bundle was not found (set SDRC_DATA)")
        pytest.skip("the digit bundle is not available (set SDRC_DATA)")
    return root


def train_toy_run(folder, n_per_class: int = 40, epochs: int = 3, record_samples: int = 100):
    "Train SRDC (official preset) on small toy domains, recording every epoch in `folder`; returns the folder."
    from sdrc.data import make_domain_pair
    from sdrc.recipe import Recipe, Runtime
    from sdrc.train import train
    toy = make_domain_pair(n_per_class=n_per_class, num_classes=3, dim=4, shift="translate", amount=1.5, seed=0)
    train(toy, Recipe(preset="official", epochs=epochs, batch_size=32, record_samples=record_samples),
          Runtime(progress=False, log=None), out=folder)
    return folder


# Operations after which the host must wait for the device: a value read back, or an output sized by the data.
WAITING_OPS = {"aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::_unique2", "aten::unique_dim",
               "aten::unique_consecutive", "aten::repeat_interleave", "aten::equal"}


@pytest.fixture
def host_waits():
    """`host_waits(fn)`: how many times running `fn()` would make the host wait for a GPU, counted on the CPU with
    torch.profiler (each `.item()`, `bool(tensor)`, `float(tensor)`, boolean-mask index, `nonzero` ...)."""
    from torch.profiler import ProfilerActivity, profile

    def count(fn) -> int:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        return sum(e.count for e in prof.key_averages() if e.key in WAITING_OPS)
    return count


def pytest_terminal_summary(terminalreporter):
    "The fault-injection tally: how many faults were tried, and how each ended."
    import sys
    faults = sys.modules.get("test_faults")
    if faults is not None and faults.TALLY["tried"]:
        t = faults.TALLY
        terminalreporter.write_line(f"fault injection: {t['tried']} tried, {t['clear error']} clear error, "
                                    f"{t['traceback']} traceback, {t['silent']} silent")
