"""bench.py runs on a tiny setting; its speed targets are measured by the script, not here."""
import json
import os
import subprocess
import sys

from conftest import ROOT


def test_bench_runs_and_prints_every_row(tmp_path):
    (tmp_path / "timing.json").write_text(json.dumps({"training": 90.0, "outputs": 4.0, "other": 1.0,
                                                       "total": 95.0}))
    result = subprocess.run([sys.executable, os.path.join(ROOT, "bench.py"), "--quick", "--batches", "4",
                             "--run-dir", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert any(line.startswith("FP32 peak") and "GFLOP/s" in line for line in lines)
    flops = [line for line in lines if line.startswith("FLOPs per image")]
    assert flops and float(flops[0].split(": ")[1].split()[0]) > 100  # MFLOP of the 28x28 model
    rows = [line.split() for line in lines if line.strip().startswith("4 ")]
    assert len(rows) in (3, 4) and all(float(row[-4]) > 0 for row in rows)  # 4 with a bf16 CPU
    assert "overhead (all but training): 5.3%" in result.stdout
