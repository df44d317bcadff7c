import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

import outputs


def test_tile_grid_places_tiles_row_major():
    tiles = np.stack([np.full((2, 3, 1), i / 10.0) for i in range(6)])
    grid = outputs.tile_grid(tiles, rows=2, cols=3, pad=1, pad_value=1.0)
    assert grid.shape == (2 * 3 + 1, 3 * 4 + 1, 1)
    # Tile 4 is row 1, column 1: top = 1 + 3, left = 1 + 4.
    assert np.all(grid[4:6, 5:8] == 0.4)
    assert np.all(grid[0] == 1.0)
    with pytest.raises(ValueError, match="do not fit"):
        outputs.tile_grid(tiles, 1, 5)


def test_evenly_chosen_keeps_first_and_last():
    assert outputs.evenly_chosen(5, 20) == [0, 1, 2, 3, 4]
    chosen = outputs.evenly_chosen(200, 20)
    assert len(chosen) == 20 and chosen[0] == 0 and chosen[-1] == 199


def test_progress_picture_rows_are_snapshots_columns_fixed_noise():
    snapshots = np.zeros((50, 32, 4, 4, 1))
    for k in range(50):
        snapshots[k, :, :, :, 0] = np.linspace(0, 1, 32)[:, None, None] * (k / 49)
    picture, rows = outputs.progress_picture(snapshots, columns=10, max_rows=20)
    assert len(rows) == 20 and picture.shape == (20 * 6 + 2, 10 * 6 + 2, 1)
    last_row_tile_9 = picture[2 + 19 * 6:2 + 19 * 6 + 4, 2 + 9 * 6:2 + 9 * 6 + 4]
    np.testing.assert_allclose(last_row_tile_9, snapshots[49, 9])


def test_gif_has_one_frame_per_input_and_keeps_tiles_in_place(tmp_path):
    frames = np.zeros((7, 10, 12, 1))
    for i in range(7):
        frames[i, 2:5, 3:6] = 1.0  # the same tile position in every frame
        frames[i, 9, i] = 0.5      # and a marker that moves, so no two frames are equal
    path = str(tmp_path / "a.gif")
    outputs.write_gif(path, frames)
    decoded = iio.imread(path, index=None)
    assert decoded.shape[0] == 7
    assert decoded[3, 3, 4].max() == 255 and decoded[3, 0, 0].max() == 0


def test_png_round_trip_colour_and_grey(tmp_path):
    grey, colour = np.random.default_rng(0).uniform(0, 1, (2, 5, 6, 3))
    outputs.write_png(str(tmp_path / "g.png"), grey[..., :1])
    outputs.write_png(str(tmp_path / "c.png"), colour)
    assert iio.imread(str(tmp_path / "g.png")).shape == (5, 6)
    np.testing.assert_array_equal(iio.imread(str(tmp_path / "c.png")), outputs.to_uint8(colour))


def test_write_atomic_leaves_no_temporary_file_and_keeps_the_old_file_on_failure(tmp_path):
    path = str(tmp_path / "x.txt")
    outputs.write_atomic(path, "good")
    assert os.listdir(tmp_path) == ["x.txt"]
    with pytest.raises(TypeError):
        outputs.write_atomic(path, 12345)  # not bytes: the write fails half-way
    assert Path(path).read_text() == "good" and os.listdir(tmp_path) == ["x.txt"]


def test_loss_plot_is_a_png(tmp_path):
    path = str(tmp_path / "loss.png")
    outputs.write_loss_plot(path, [1, 2, 3], [0.5, 0.4, 0.3], [2.0, 1.5, 1.0])
    assert iio.imread(path).ndim == 3


def test_metric_plot_marks_the_kept_best_evaluation(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(outputs, "_write_figure", lambda path, figure: drawn.append(figure))
    curves = {"averaged": ([10, 20, 30], [300.0, 200.0, 260.0]), "raw": ([10, 20, 30], [400.0, 350.0, 330.0])}
    outputs.write_metric_plot(str(tmp_path / "m.png"), curves, 30.0,
                              {"step": 20, "frechet_distance": 200.0, "generator": "averaged"})
    outputs.write_metric_plot(str(tmp_path / "m.png"), curves, 30.0)
    with_best, without = ([text.get_text() for text in figure.axes[0].get_legend().get_texts()] for figure in drawn)
    assert with_best == without + ["best, kept: best.ckpt-20 (averaged)"]
    star = next(line for line in drawn[0].axes[0].get_lines() if line.get_marker() == "*")
    assert list(star.get_xdata()) == [20] and list(star.get_ydata()) == [200.0]
