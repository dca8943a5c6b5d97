"""bench/peak.py: the FMA peak is measured where a C compiler is, and is 'not measured'
with a reason (never an error) where none is or it fails."""
import math
import shutil

import pytest

from bench.peak import Peak, fma_peak


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler 'cc'")
def test_the_fma_peak_is_a_positive_finite_rate():
    peak = fma_peak(1, seconds=0.01, repeats=3)
    assert peak.gflops is not None, peak.reason
    assert math.isfinite(peak.gflops) and peak.gflops > 0
    assert peak.bits in (128, 256, 512)
    if peak.ghz:
        # 2 flops per lane of an FMA, one or two FMA instructions a cycle (a core shared
        # with another process, or that slows down for wide vectors, still does one every
        # other cycle): a count off by the lanes or the accumulators lands outside
        lanes = peak.bits // 32
        assert lanes <= peak.per_cycle <= 8 * lanes, peak.describe()
    assert peak.describe().startswith(f"FMA peak: {peak.gflops:.0f} GFLOP/s float32 on 1 thread")


@pytest.mark.parametrize("cc, reason", [("no-such-compiler-xyz", "no C compiler"),
                                        ("false", "failed")])
def test_without_a_working_compiler_the_peak_is_none_with_a_reason(cc, reason):
    if shutil.which(cc) is None and cc == "false":
        pytest.skip("no 'false' command")
    peak = fma_peak(2, cc=cc)
    assert peak.gflops is None and peak.per_cycle is None
    assert reason in peak.reason and cc in peak.reason
    assert peak.describe() == f"FMA peak: not measured ({peak.reason})"


def test_flops_per_cycle_per_core():
    peak = Peak(2, 128.0, bits=512, ghz=2.0)
    assert peak.per_cycle == 32
    assert peak.describe() == ("FMA peak: 128 GFLOP/s float32 on 2 threads "
                               "(512-bit vectors, 2.00 GHz: 32.0 flops/cycle/core)")
    assert Peak(1, 50.0, bits=256).describe().endswith("(256-bit vectors, clock unknown)")
    # by the wall clock, less where other processes took turns on the cores
    shared = Peak(2, 128.0, wall_gflops=64.0, bits=512, ghz=2.0).describe()
    assert shared.endswith("32.0 flops/cycle/core; 64 by the wall clock, the cores being shared)")
    assert "wall clock" not in Peak(2, 128.0, wall_gflops=120.0, bits=512).describe()
