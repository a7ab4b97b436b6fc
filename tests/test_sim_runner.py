"""The cocotb runner wrapper: real simulators, build products outside the source tree, failures raise."""

from __future__ import annotations

from pathlib import Path

import pytest

from blockforge_sim import runner

MODULES = Path(__file__).parent / "cocotb_modules"
COUNTER = """
module counter(input clk, input rst, output reg [15:0] count);
  always @(posedge clk) if (rst) count <= 0; else count <= count + 1;
endmodule
"""


def _counter(tmp_path: Path, width_bug: bool = False) -> Path:
    src = tmp_path / "counter.v"
    src.write_text(COUNTER.replace("count + 1", "count + 2") if width_bug else COUNTER)
    return src


@pytest.mark.cosim
def test_icarus_runs_a_cocotb_test(tmp_path):
    built = runner.build([_counter(tmp_path)], "counter", tmp_path / "build", "icarus")
    results = runner.run(built, "tb_counter", "counter", tmp_path / "build", python_path=[MODULES])
    assert results.is_file() and results.parent == tmp_path / "build"


@pytest.mark.cosim
def test_a_failing_cocotb_test_raises(tmp_path):
    built = runner.build([_counter(tmp_path, width_bug=True)], "counter", tmp_path / "build", "icarus")
    with pytest.raises(runner.SimError, match=r"icarus: 1 of 1 cocotb tests failed for counter; see "):
        runner.run(built, "tb_counter", "counter", tmp_path / "build", python_path=[MODULES])


def test_unknown_simulator_is_a_clear_error():
    with pytest.raises(runner.SimError, match=r"^unknown simulator 'questa' \(choose from icarus, verilator\)$"):
        runner.find_simulator("questa")


def test_threaded_map_keeps_order_and_stops_at_the_first_error():
    """The pool's map: results in item order; an error surfaces without running the items not started."""
    import threading
    import time

    from blockforge_sim.simulator import threaded_map

    names = set()

    def square(i):
        names.add(threading.current_thread().name)
        time.sleep(0.01 * (5 - i % 5))               # later items finish first
        return i * i

    assert list(threaded_map(square, range(10), 3)) == [i * i for i in range(10)]
    assert 1 < len(names) <= 3
    started = []

    def fail_at_two(i):
        started.append(i)
        time.sleep(0.05)
        if i == 2:
            raise ValueError("job 2")
        return i

    with pytest.raises(ValueError, match="job 2"):
        list(threaded_map(fail_at_two, range(50), 2))
    assert len(started) < 10
