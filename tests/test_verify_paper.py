"""verify at the paper's size: alexnet at 227x227, batch 2, all 16 gradients, float64.

Slow (about 20 s on 2 cores: 61M parameters forward and backward, twice per mode, on
both sides), so marked ``slow``; it still runs in CI.
"""

import pytest

from refnet.verify import compare, network


@pytest.mark.slow
def test_paper_size_network_matches_pytorch():
    rows = network.run("float64", seed=0, sizes=("paper",))
    bad = [r for r in rows if r.status != "PASS"]
    assert not bad, compare.format_table(bad)
    assert len(rows) == 2 * (2 + 16)
    assert max(r.max_rel for r in rows) <= compare.tolerance("float64", "network")
