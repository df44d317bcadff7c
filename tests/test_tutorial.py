"""tutorial.ipynb runs from top to bottom (at a few dozen iterations here), and a failing cell fails."""
import os

import nbformat
from conftest import script

run_tutorial = script("run_tutorial")


def outputs_of(cell):
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    kinds = {kind for o in cell.outputs for kind in o.get("data", {})}
    return text, kinds


def test_the_notebook_runs_top_to_bottom_and_shows_what_it_says(tmp_path):
    executed = tmp_path / "tutorial.ipynb"
    assert run_tutorial.main(["--steps", "30", "--output", str(executed), "--out-dir", str(tmp_path / "out")]) == 0
    cells = [cell for cell in nbformat.read(executed, as_version=4).cells if cell.cell_type == "code"]
    assert all(cell.outputs for cell in cells)  # every cell ran and showed something
    assert not [o for cell in cells for o in cell.outputs if o.output_type == "error"]
    text = "\n".join(outputs_of(cell)[0] for cell in cells)
    kinds = set().union(*(outputs_of(cell)[1] for cell in cells))
    assert "30 iterations" in text and "generator/deconv1/weights" in text and "discriminator/" in text
    assert "instrument: digits sha256:" in text and "real (floor)" in text
    assert "largest difference from the session's images: 0.0" in text
    assert {"image/png", "image/gif"} <= kinds
    assert (tmp_path / "out" / "morph.gif").stat().st_size > 1000
    assert (tmp_path / "out" / "saved_model" / "saved_model.pb").is_file()


def test_a_failing_cell_fails_the_run_in_one_line(tmp_path, monkeypatch, capsys):
    notebook = nbformat.read(run_tutorial.NOTEBOOK, as_version=4)
    notebook.cells.insert(2, nbformat.v4.new_code_cell("raise ValueError('a broken cell')"))
    broken = tmp_path / "broken.ipynb"
    nbformat.write(notebook, broken)
    monkeypatch.setattr(run_tutorial, "NOTEBOOK", str(broken))
    assert run_tutorial.main(["--steps", "2", "--output", str(tmp_path / "out.ipynb")]) == 1
    assert "a cell failed: ValueError: a broken cell" in capsys.readouterr().err
    assert not (tmp_path / "out.ipynb").exists()


def test_the_committed_notebook_holds_the_outputs_of_a_real_run():
    cells = [cell for cell in nbformat.read(run_tutorial.NOTEBOOK, as_version=4).cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    assert all(cell.outputs for cell in cells)
    assert "iterations; files in results/tutorial" in outputs_of(cells[0])[0]  # its default size and folder
    assert os.path.getsize(run_tutorial.NOTEBOOK) < 1_500_000
