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
                             "--run-dir", str(tmp_path), "--record", str(tmp_path / "bench" / "quick.json")],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert any(line.startswith("FP32 peak") and "GFLOP/s" in line for line in lines)
    flops = [line for line in lines if line.startswith("FLOPs per image")]
    # Counted by hand: 11 runs of a 64 <-> 128 channel 5x5 conv at 7x7 (3 D forward passes, the D
    # step's filter and input gradients for real and fake, the G step's input gradient through
    # D, G's forward and both its gradients), 9 of the image-side 1 <-> 64 conv at 14x14.
    big, small = 2 * 7 * 7 * 128 * 64 * 25, 2 * 14 * 14 * 64 * 25
    counted = float(flops[0].split(": ")[1].split()[0]) * 1e6
    assert 11 * big + 9 * small <= counted <= 1.03 * (11 * big + 9 * small)
    rows = [line.split() for line in lines if line.strip().startswith(("4 ", "8 ")) and "trains it here" not in line]
    assert len(rows) in (11, 22) and all(float(row[-4]) > 0 for row in rows)  # 22 with a bf16 CPU
    doubled = [row for row in rows if "twice the batch" in " ".join(row)]
    assert len(rows) == 11 or (len(doubled) == 1 and doubled[0][0] == "8")  # its images/s counts 8 a step
    names = " ".join(" ".join(row) for row in rows)
    assert "--recipe tuned" in names and "--recipe fast" in names and "Keras quality reference" in names
    assert any(line.startswith("    4 each recipe as main1.py trains it here") and line.endswith("x the images/s")
               and "fast" in line for line in lines)
    breakdown = lines[lines.index(next(line for line in lines if line.startswith("op time of one batch-4"))) + 1:]
    kinds = {line.split("  ")[1].strip(): line for line in breakdown if line.startswith("  ")}
    assert {"convolutions", "batch norm", "Adam updates"} <= set(kinds)
    assert "GFLOP/s" in kinds["convolutions"] and "GFLOP/s" not in kinds["Adam updates"]
    image_side = [line.split() for line in lines if line.startswith(("  28x28x1", "  32x32x3", "  64x64x3"))]
    assert len(image_side) == 3 and all(float(row[2]) > 0 and float(row[4]) > 0 for row in image_side)
    assert "overhead (all but training): 5.3%" in result.stdout
    # The record: every row, each recipe's ratio to the reference's network, the machine; its table.
    record = json.loads((tmp_path / "bench" / "quick.json").read_text())
    assert len(record["rows"]) == len(rows) and set(record["ratios"]) == {"original", "tuned", "fast"}
    assert all(ratio > 0 for ratio in record["ratios"].values()) and record["machine"]["cores"] >= 1
    table = subprocess.run([sys.executable, os.path.join(ROOT, "bench.py"), "--table",
                            str(tmp_path / "bench" / "quick.json")],
                           capture_output=True, text=True, timeout=600, check=True).stdout
    assert table.count("\n| 4 |") + table.count("\n| 8 |") == len(rows)
    assert f"`fast` {record['ratios']['fast']:.2f}x" in table
