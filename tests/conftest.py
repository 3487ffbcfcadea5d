"""Shared test fixtures: the backend matrix and the Hypothesis profiles.

``xp`` parametrises a test over the available array modules (NumPy always; CuPy cases
carry the ``gpu`` marker and skip without a GPU). ``dtype`` parametrises over float32
and float64. Tolerances per dtype live in ``tests/tolerance.py``.

Under ``CI=true`` the Hypothesis profile ``ci`` is loaded: derandomized, no example
database, no deadline, so CI runs are repeatable and never flaky on a slow machine.

Ctrl-C as a terminal gives it: a shell's background job starts with SIGINT ignored, and so
would every command the tests start (an ignored signal stays ignored across exec, and
``data.cli.run_command`` then leaves Ctrl-C alone), so the tests of interrupts take back
Python's own handler first.
"""

import os
import signal

import numpy
import pytest
from hypothesis import HealthCheck, settings

from refnet.layers import backend

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") == "true" else "dev")
)


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Every test, and every process it starts, uses a cache of its own: the suite never
    reads or writes the user's ``$REFNET_CACHE`` or ``~/.cache/refnet``."""
    previous = os.environ.get("REFNET_CACHE")
    os.environ["REFNET_CACHE"] = str(tmp_path_factory.mktemp("refnet-cache"))
    yield os.environ["REFNET_CACHE"]
    if previous is None:
        del os.environ["REFNET_CACHE"]
    else:
        os.environ["REFNET_CACHE"] = previous


def _gpu_params():
    skip = pytest.mark.skipif(backend.gpu_count() == 0, reason="needs CuPy and a CUDA device")
    return pytest.param("cupy", marks=[pytest.mark.gpu, skip], id="cupy")


@pytest.fixture(params=["numpy", _gpu_params()])
def xp(request):
    """The array module under test: numpy, or cupy when a GPU is present."""
    return backend.backend_module(request.param)


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return numpy.dtype(request.param)
