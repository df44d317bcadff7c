"""Writing run outputs: image grids, GIFs, the loss plot, CSV and JSON.

Every file is written to a temporary name in the same folder and then renamed over the target,
so an interrupted write never leaves a half-written file in place of a good one.
"""
import csv
import io
import json
import os
import tempfile

import imageio.v3 as iio
import matplotlib

matplotlib.use("Agg")  # no display needed, and no window ever opens
import matplotlib.pyplot as plt
import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path, data):
    """Write bytes (or str) to `path` via a temporary file and a rename."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path), suffix=".tmp")
    try:
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes it private; give it normal rights
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def to_uint8(images):
    """Floats in [0, 1] -> uint8 0..255 (values outside are clipped)."""
    return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


def tile_grid(images, rows, cols, pad=2, pad_value=1.0):
    """images [rows*cols, H, W, C] -> one picture [rows*(H+pad)+pad, cols*(W+pad)+pad, C].

    Tile i goes to row i // cols, column i % cols; missing tiles stay background.
    """
    images = np.asarray(images)
    n, height, width, channels = images.shape
    if n > rows * cols:
        raise ValueError(f"{n} images do not fit a {rows}x{cols} grid")
    grid = np.full((rows * (height + pad) + pad, cols * (width + pad) + pad, channels),
                   pad_value, dtype=images.dtype)
    for i, image in enumerate(images):
        top = pad + (i // cols) * (height + pad)
        left = pad + (i % cols) * (width + pad)
        grid[top:top + height, left:left + width] = image
    return grid


def _image_for_file(picture):
    """[H, W, 1] grayscale or [H, W, 3] colour floats -> uint8 array imageio can encode."""
    picture = to_uint8(picture)
    return picture[..., 0] if picture.shape[-1] == 1 else picture


def encode_png(picture):
    return iio.imwrite("<bytes>", _image_for_file(picture), extension=".png")


def write_png(path, picture):
    write_atomic(path, encode_png(picture))


def write_gif(path, frames, frame_seconds=0.1):
    """frames [n, H, W, C] in [0, 1] -> a looping GIF."""
    pictures = np.stack([_image_for_file(frame) for frame in frames])
    data = iio.imwrite("<bytes>", pictures, extension=".gif", duration=int(frame_seconds * 1000), loop=0)
    write_atomic(path, data)


def evenly_chosen(count, at_most):
    """Indices of at most `at_most` items spread evenly over `count`, first and last included."""
    if count <= at_most:
        return list(range(count))
    return sorted(set(np.round(np.linspace(0, count - 1, at_most)).astype(int).tolist()))


def progress_picture(snapshots, columns, max_rows=20):
    """snapshots [k, n, H, W, C] -> a picture: rows are (evenly chosen) snapshots, columns the
    first `columns` fixed-noise images. Returns (picture, chosen snapshot indices)."""
    rows = evenly_chosen(len(snapshots), max_rows)
    tiles = np.concatenate([snapshots[r][:columns] for r in rows])
    return tile_grid(tiles, len(rows), columns), rows


def upscale(picture, factor):
    """Nearest-neighbour enlargement [H, W, C] -> [H*factor, W*factor, C]."""
    return np.repeat(np.repeat(picture, factor, axis=0), factor, axis=1)


def _write_figure(path, figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    write_atomic(path, buffer.getvalue())


def write_labelled_rows(path, picture, row_labels, axis_label, margin=0.9):
    """A grid picture (from tile_grid) with each row named on the left; `margin` inches for the
    names."""
    height, width = picture.shape[:2]
    figure = plt.figure(figsize=(width / 50 + margin + 0.1, height / 50 + 0.4), dpi=100)
    axes = figure.add_axes([margin / (width / 50 + margin + 0.1), 0.2 / (height / 50 + 0.4),
                            (width / 50) / (width / 50 + margin + 0.1), (height / 50) / (height / 50 + 0.4)])
    shown = picture[..., 0] if picture.shape[-1] == 1 else picture
    axes.imshow(shown, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    row_height = (height - 2) / len(row_labels)
    axes.set_yticks([2 + row_height * (i + 0.5) for i in range(len(row_labels))])
    axes.set_yticklabels(row_labels, fontsize=7)
    axes.set_xticks([])
    axes.set_ylabel(axis_label, fontsize=8)
    _write_figure(path, figure)


def write_progress_plot(path, picture, row_steps):
    """The progress picture with each row labelled by its iteration."""
    write_labelled_rows(path, picture, [f"{s:,}" for s in row_steps], "iteration")


def write_class_grid(path, picture, class_names):
    """A grid whose rows are classes, each row named."""
    write_labelled_rows(path, picture, list(class_names), "class",
                        margin=0.45 + 0.055 * max(len(name) for name in class_names))


def write_loss_plot(path, steps, d_losses, g_losses):
    """Generator loss red, discriminator loss blue, their sum black."""
    steps, d_losses, g_losses = (np.asarray(a, dtype=float) for a in (steps, d_losses, g_losses))
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=100)
    axes.plot(steps, g_losses, color="red", linewidth=1, label="generator")
    axes.plot(steps, d_losses, color="blue", linewidth=1, label="discriminator")
    axes.plot(steps, g_losses + d_losses, color="black", linewidth=1, label="sum")
    axes.set_xlabel("iteration")
    axes.set_ylabel("loss (mean over each logging interval)")
    axes.set_title("DCGAN losses")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    _write_figure(path, figure)


def write_metric_plot(path, curves, floor, best=None):
    """Frechet distance over training, one curve per generator ({name: (steps, distances)}),
    with the real-vs-real floor as a dashed line and the best evaluation ({step,
    frechet_distance, generator}: the one kept as checkpoints/best.ckpt-N) as a star."""
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=100)
    for name, (steps, distances) in curves.items():
        axes.plot(steps, distances, marker="o", markersize=3, label=f"{name} generator")
    axes.axhline(floor, color="gray", linestyle="--", label="real images (floor)")
    if best is not None:
        axes.plot([best["step"]], [best["frechet_distance"]], marker="*", markersize=14, color="black",
                  linestyle="none", label=f"best, kept: best.ckpt-{best['step']} ({best['generator']})")
    axes.set_xlabel("iteration")
    axes.set_ylabel("Frechet distance (classifier features)")
    axes.set_yscale("log")
    axes.grid(alpha=0.3, which="both")
    axes.legend()
    figure.tight_layout()
    _write_figure(path, figure)


def write_csv(path, header, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_atomic(path, buffer.getvalue())


def npy_bytes(array):
    """An array as the bytes of a .npy file (no pickles)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_json(path, value):
    write_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


METRIC_COLUMNS = ("step", "generator", "train_seconds", "frechet_distance", "classifier_score", "class_kl_from_uniform",
                  "share_", "precision", "recall", "density", "coverage", "label_agreement",
                  "worst_class_label_agreement", "instrument", "best_step")  # metrics.csv's order; share_0, ...


def _column_order(name):
    """A metrics.csv column's place: METRIC_COLUMNS's (share_K by K), others after them."""
    stem, _, number = name.rpartition("_")
    if number.isdigit() and f"{stem}_" in METRIC_COLUMNS:
        return METRIC_COLUMNS.index(f"{stem}_"), int(number)
    return (METRIC_COLUMNS.index(name) if name in METRIC_COLUMNS else len(METRIC_COLUMNS)), 0


def metric_row(step, generator, train_seconds, metrics):
    """One metrics.csv row: an evaluation of one generator, with the training time before it."""
    row = {"step": step, "generator": generator, "train_seconds": round(train_seconds, 2)}
    for name in ("frechet_distance", "classifier_score", "class_kl_from_uniform"):
        row[name] = round(metrics[name], 5)
    row.update({f"share_{c}": share for c, share in enumerate(metrics["class_shares"])})
    for name in ("precision", "recall", "density", "coverage"):
        if name in metrics:
            row[name] = round(metrics[name], 5)
    if "label_agreement" in metrics:  # a conditional model
        row["label_agreement"] = round(metrics["label_agreement"], 5)
        row["worst_class_label_agreement"] = min(metrics["class_label_agreement"])
    if "instrument" in metrics:  # the scale of the figures: a committed instrument, or this machine's
        row["instrument"] = metrics["instrument"]
    return row


def write_metrics(csv_path, plot_path, rows, floor, best=None):
    """metrics.csv (one row per evaluation and generator) and metrics.png (best: as for
    write_metric_plot)."""
    buffer = io.StringIO()
    # Every column any row has, in a fresh run's order (metric_row's; rows a resumed run read back
    # from its history may come in another order), then any others; a run resumed from before a
    # metric existed has rows without it (left blank).
    names = list(dict.fromkeys(name for row in rows for name in row))
    columns = sorted(names, key=_column_order)
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(csv_path, buffer.getvalue())
    curves = {}
    for row in rows:
        steps, distances = curves.setdefault(row["generator"], ([], []))
        steps.append(row["step"])
        distances.append(row["frechet_distance"])
    write_metric_plot(plot_path, curves, floor["frechet_distance"], best)


def error_summary(error):
    """One line saying what went wrong, from an OSError or a TensorFlow error's long report."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    lines = [line.strip() for line in str(getattr(error, "message", error)).splitlines() if line.strip()]
    noise = ("[[", "Hint:", "Detected at", "File ", "Node:", "Graph execution error")
    useful = [line for line in lines if not line.startswith(noise)]
    if not useful:
        return type(error).__name__
    return useful[-1].rsplit("; ", 1)[-1]  # TF puts the file before "; " and the reason after
