"""refnet.cpu: the malloc settings the command-line programs apply (in a fresh process, so
the test run's own allocator is left alone)."""

import json
import subprocess
import sys

import pytest


def test_tune_malloc_is_accepted_by_glibc():
    code = "import json; from refnet.cpu import tune_malloc; print(json.dumps(tune_malloc()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    accepted = json.loads(out.stdout)
    if not accepted:
        pytest.skip("no glibc mallopt here")
    assert accepted == {"mmap_threshold": True, "trim_threshold": True, "arena_max": True}
