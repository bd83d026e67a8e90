"""Test setup: CPU only, four simulated devices, and key fixtures.

The environment is set before JAX is imported anywhere, so every test (and
every subprocess a test starts) sees 4 CPU devices.
"""

import os

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402
import pytest  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_TFDS_DIR = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data", "tfds")


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def tfds_dir():
    """The machine's ready TFDS data_dir (../shared/data/tfds), or skip."""
    if not os.path.isdir(SHARED_TFDS_DIR):
        pytest.skip(f"no TFDS data_dir at {SHARED_TFDS_DIR}")
    return SHARED_TFDS_DIR
