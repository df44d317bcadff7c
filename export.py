"""A trained generator taken out of the project: `--export` writes a SavedModel whose
`serving_default` signature maps noise (and, for a conditional run, a class) to images, and a
TFLite file of the same function. Both are checked against the session's images before they
replace an earlier export, and neither needs this project's code to load.

The generator's graph is frozen (its variables, batch-norm statistics included, become constants)
and wrapped in a tf.function, so the SavedModel runs exactly the ops the session ran.
"""
import json
import os
import shutil
import warnings

import numpy as np

import latent
import runs
import sampling
from config import CLASS_NAMES
from outputs import error_summary
from runs import UsageError

EXPORT_DIR = "export"
SAVED_MODEL = "saved_model"
TFLITE_FILE = "generator.tflite"
METADATA_FILE = "metadata.json"
STAGING_DIR, RETIRED_DIR = ".export.tmp", ".export.old"   # beside export/, on the same disk
EXPORTABLE = ("averaged", "raw")   # raw-batch-stats normalises each batch by itself: no fixed function
CHECK_COUNT = 64
SAVED_MODEL_TOLERANCE, TFLITE_TOLERANCE = 1e-6, 1e-4
MAX_SIGNATURE_COUNT = 4096          # the `sample` signature's largest count
# What tf.saved_model.save writes for this module (checked after writing; anything else is claimed too).
SAVED_MODEL_FILES = ("saved_model.pb", "fingerprint.pb", os.path.join("variables", "variables.index"),
                     os.path.join("variables", "variables.data-00000-of-00001"),
                     os.path.join("assets", METADATA_FILE))
SAVED_MODEL_FOLDERS = ("", "variables", "assets")


class ExportError(Exception):
    """The export disagrees with the session, or could not be written; an earlier export stays."""


def metadata(config, step, generator):
    """What the exported generator is, for metadata.json and the `metadata` signature."""
    names = CLASS_NAMES.get(config.dataset) if config.num_classes else None
    return {"dataset": config.dataset, "image_shape": list(config.image_shape), "z_dim": config.z_dim,
            "z_distribution": "uniform in [-1, 1], float32", "pixel_range": [0.0, 1.0],
            "recipe": config.recipe, "without": list(config.without), "conditional": bool(config.num_classes),
            "conditioning": config.conditioning if config.num_classes else None,
            "num_classes": config.num_classes, "class_names": list(names) if names else None,
            "iteration": step, "generator": generator, "seed": config.seed,
            "signatures": {"serving_default": "z [batch, z_dim] float32" + (
                ", label [batch] int64" if config.num_classes else "") + " -> images [batch, H, W, C] in [0, 1]",
                "sample": "seed int64, count int32 -> images, z" + (", label" if config.num_classes else "")}}


def frozen_generator(sampler, generator):
    """The generator's sampling graph with every variable it reads turned into a constant ->
    (GraphDef, input tensor names, output tensor name). The averaged generator's batch-norm
    statistics are re-estimated first (the sampler does it on its first call)."""
    import tensorflow as tf

    gan = sampler.gan
    sampler(np.zeros((1, gan.z_dim), np.float32), generator=generator)
    output = gan.samples[generator]
    with gan.graph.as_default(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convert_variables_to_constants is a TF1 API, and says so
        graph_def = tf.compat.v1.graph_util.convert_variables_to_constants(
            sampler.session, gan.graph.as_graph_def(), [output.op.name])
    for node in graph_def.node:
        # The image-side layers' custom gradients belong to training; a loader needs none.
        if "_gradient_op_type" in node.attr:
            del node.attr["_gradient_op_type"]
    # Nor the training graph's functions (a gradient penalty's branch and its gradients), which the
    # library keeps whole though no generator node calls them, and which a SavedModel cannot hold.
    called = {node.op for node in graph_def.node}
    kept = [function for function in graph_def.library.function if function.signature.name in called]
    del graph_def.library.function[:], graph_def.library.gradient[:]
    graph_def.library.function.extend(kept)
    inputs = [gan.sample_z.name] + ([gan.sample_labels.name] if gan.num_classes else [])
    return graph_def, inputs, output.name


def generator_module(graph_def, inputs, output, info):
    """A tf.Module with the `serving_default`, `sample` and `metadata` functions of the frozen
    generator; `info` is its metadata (also written as an asset by save_generator)."""
    import tensorflow as tf

    def imported():
        tf.compat.v1.import_graph_def(graph_def, name="")

    wrapped = tf.compat.v1.wrap_function(imported, [])
    frozen = wrapped.prune([wrapped.graph.get_tensor_by_name(name) for name in inputs],
                           wrapped.graph.get_tensor_by_name(output))
    z_dim, classes = info["z_dim"], info["num_classes"]
    module = tf.Module()
    module.frozen = frozen
    module.metadata_json = tf.Variable(json.dumps(info, sort_keys=True), trainable=False, name="metadata_json")

    def images(z, label=None):
        return frozen(z) if label is None else frozen(z, tf.cast(label, tf.int32))

    z_spec = tf.TensorSpec([None, z_dim], tf.float32, name="z")
    if classes:
        def serve(z, label):
            checked = tf.debugging.assert_less(label, tf.constant(classes, tf.int64),
                                               message=f"label must be in 0..{classes - 1}")
            with tf.control_dependencies([checked, tf.debugging.assert_non_negative(label)]):
                return {"images": images(z, label)}
        module.serve = tf.function(serve, input_signature=[z_spec, tf.TensorSpec([None], tf.int64, name="label")])
    else:
        module.serve = tf.function(lambda z: {"images": images(z)}, input_signature=[z_spec])

    def sample(seed, count):
        """`count` images from noise drawn from `seed` (classes 0, 1, ... in turn)."""
        count = tf.clip_by_value(count, 1, MAX_SIGNATURE_COUNT)
        z = tf.random.stateless_uniform([count, z_dim], seed=tf.stack([seed, tf.constant(0, tf.int64)]),
                                        minval=-1.0, maxval=1.0)
        if not classes:
            return {"images": images(z), "z": z}
        label = tf.range(tf.cast(count, tf.int64)) % classes
        return {"images": images(z, label), "z": z, "label": label}
    module.sample = tf.function(sample, input_signature=[tf.TensorSpec([], tf.int64, name="seed"),
                                                         tf.TensorSpec([], tf.int32, name="count")])
    module.metadata = tf.function(lambda: {"metadata_json": module.metadata_json.read_value()},
                                  input_signature=[])
    return module


def save_generator(module, info, path):
    """Write the SavedModel of `module` to `path` (a new folder), metadata.json among its assets."""
    import tensorflow as tf

    staging = path + ".metadata"
    os.makedirs(staging, exist_ok=True)
    try:
        with open(os.path.join(staging, METADATA_FILE), "w") as stream:
            json.dump(info, stream, indent=2, sort_keys=True)
        module.metadata_file = tf.saved_model.Asset(os.path.join(staging, METADATA_FILE))
        tf.saved_model.save(module, path, signatures={"serving_default": module.serve, "sample": module.sample,
                                                      "metadata": module.metadata})
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def tflite_model(saved_model_path):
    """The SavedModel's serving_default as a TFLite flatbuffer (bytes)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_path, signature_keys=["serving_default"])
    return converter.convert()


def tflite_images(model_bytes, z, labels=None):
    """Images of the TFLite model's serving_default for z (and labels)."""
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter points to LiteRT, which reads the same file
        interpreter = tf.lite.Interpreter(model_content=model_bytes)
    runner = interpreter.get_signature_runner("serving_default")
    inputs = {"z": np.asarray(z, np.float32)}
    if labels is not None:
        inputs["label"] = np.asarray(labels, np.int64)
    return runner(**inputs)["images"]


def load_saved_model(path):
    """The serving_default of the SavedModel at `path`, loaded afresh, as a function
    (z, labels=None) -> images."""
    import tensorflow as tf

    serve = tf.saved_model.load(path).signatures["serving_default"]

    def images(z, labels=None):
        inputs = {"z": tf.constant(z, tf.float32)}
        if labels is not None:
            inputs["label"] = tf.constant(labels, tf.int64)
        return serve(**inputs)["images"].numpy()
    return images


def check_export(sampler, generator, saved_model_path, tflite_bytes, seed):
    """The export's images against the session's for CHECK_COUNT fixed noise vectors (and
    classes) -> the largest differences {"saved_model": .., "saved_model_one_by_one": ..,
    "tflite": ..}; ExportError past the tolerances."""
    gan = sampler.gan
    z = latent.uniform_noise(np.random.default_rng([seed, latent.EXPORT_STREAM]), CHECK_COUNT, gan.z_dim)
    labels = latent.balanced_labels(CHECK_COUNT, gan.num_classes) if gan.num_classes else None
    expected = sampler(z, generator=generator, labels=labels)
    loaded = load_saved_model(saved_model_path)
    together = loaded(z, labels)
    every_16th = range(0, CHECK_COUNT, 16)  # one image at a time: batch norm must not see the batch
    alone = np.concatenate([loaded(z[i:i + 1], None if labels is None else labels[i:i + 1]) for i in every_16th])
    lite = tflite_images(tflite_bytes, z, labels)
    differences = {"saved_model": float(np.abs(together - expected).max()),
                   "saved_model_one_by_one": float(np.abs(alone - expected[::16]).max()),
                   "tflite": float(np.abs(lite - expected).max())}
    limits = {"saved_model": SAVED_MODEL_TOLERANCE, "saved_model_one_by_one": SAVED_MODEL_TOLERANCE,
              "tflite": TFLITE_TOLERANCE}
    for name, difference in differences.items():
        if not difference <= limits[name]:  # NaN fails too
            raise ExportError(f"the {name.replace('_', ' ')} images differ from the session's by {difference:.3g} "
                              f"(at most {limits[name]:g} allowed) on {CHECK_COUNT} fixed noise vectors")
    return differences


# ----------------------------------------------------------------------------- the run folder
def _tree(folder, root):
    """Files (relative to the run folder) under `root`, and folders, deepest last."""
    files, folders = [], []
    for directory, subfolders, names in os.walk(folder.join(root)):
        relative = os.path.relpath(directory, folder.path)
        folders.append(relative)
        files += [os.path.join(relative, name) for name in names]
        subfolders.sort()
    return sorted(files), folders


def _expected(root):
    """What an export writes under `root` (relative paths), before it is written."""
    saved = os.path.join(root, SAVED_MODEL)
    return ([os.path.join(saved, name) for name in SAVED_MODEL_FILES] + [os.path.join(root, TFLITE_FILE)],
            [root] + [os.path.join(saved, name) if name else saved for name in SAVED_MODEL_FOLDERS])


def _claim_under(folder, root):
    """Record every file an export has (or will have) under `root`, for --overwrite."""
    files, folders = _expected(root)
    if os.path.isdir(folder.join(root)):
        found_files, found_folders = _tree(folder, root)
        files, folders = sorted(set(files) | set(found_files)), sorted(set(folders) | set(found_folders))
    folder.claim(*files, folders=folders, create=False)


def _refuse_foreign(folder, root, advice):
    """UsageError if `root` holds a file this program did not write."""
    own = set(folder.manifest()["files"])
    foreign = [name for name in _tree(folder, root)[0] if name not in own]
    if foreign:
        raise UsageError(f"{folder.join(root)} holds files this program did not write "
                         f"({', '.join(foreign[:3])}); {advice}")


def _remove_own_tree(folder, root):
    """Delete what this program wrote under `root`; UsageError (nothing deleted) if anything
    there is not its own."""
    if not os.path.lexists(folder.join(root)):
        return
    _refuse_foreign(folder, root, "move them away and export again")
    files, folders = _tree(folder, root)
    for name in files:
        os.remove(folder.join(name))
    for name in sorted(folders, key=len, reverse=True):
        os.rmdir(folder.join(name))


def export_run(folder, config, generator, seed, checkpoint="latest", log=print):
    """--export: the latest checkpoint's generator to export/saved_model and export/generator.tflite
    in `folder`, checked against the session first -> (iteration, differences)."""
    if generator not in EXPORTABLE:
        raise UsageError(f"--export --generator {generator}: that generator normalises each batch by its own "
                         f"statistics, so an image would depend on its batch; export {' or '.join(EXPORTABLE)}")
    for name in (EXPORT_DIR, STAGING_DIR, RETIRED_DIR):  # renamed below: each must be this run's own folder
        path = folder.join(name)
        if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
            what = f"a symbolic link to {os.readlink(path)}" if os.path.islink(path) else "not a folder"
            raise UsageError(f"--export: {path} is {what}; the export is written as a folder of its own there: "
                             f"move it away and export again")
    # A killed export may have left its staging folder, or the previous export retired mid-swap.
    if not os.path.exists(folder.join(EXPORT_DIR)) and os.path.isdir(folder.join(RETIRED_DIR)):
        _refuse_foreign(folder, RETIRED_DIR, "move them away and export again")
        _claim_renamed(folder, RETIRED_DIR, EXPORT_DIR)
        os.rename(folder.join(RETIRED_DIR), folder.join(EXPORT_DIR))
    for leftover in (STAGING_DIR, RETIRED_DIR):
        _remove_own_tree(folder, leftover)
    final = folder.join(EXPORT_DIR)
    if os.path.isdir(final):
        _refuse_foreign(folder, EXPORT_DIR, "move them away or choose another --out-dir")
    # What a stop leaves, said in its line: the old export (or none) until the swap, the new one after.
    before = f"the previous export in {final} is unchanged" if os.path.isdir(final) else "no export was written"
    done = []
    try:
        step, differences = _export_into_place(folder, config, generator, seed, checkpoint, done)
    except runs.Interrupted as stop:
        stop.outcome = f"the new export of iteration {done[0]} is in place in {final}" if done else before
        raise
    log(f"exported iteration {step} ({generator} generator) to {folder.join(EXPORT_DIR, SAVED_MODEL)} and "
        f"{folder.join(EXPORT_DIR, TFLITE_FILE)}; on {CHECK_COUNT} fixed noise vectors they differ from the "
        f"session by {differences['saved_model']:.2g} (SavedModel) and {differences['tflite']:.2g} (TFLite)")
    if runs.signal_received() is not None:  # a signal whose exception a finalizer swallowed on the way
        raise runs.Interrupted(runs.signal_received(), f"the new export of iteration {step} is in place in {final}")
    return step, differences


def _export_into_place(folder, config, generator, seed, checkpoint, done):
    """Restore, freeze, write and check the export in the staging folder, then swap it into
    place; `done` gets the iteration once the new export is in place -> (iteration, differences)."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # the TF1 freezing API's deprecation notices are not the user's concern
    sampler, step = sampling.restore_run(config, seed, generator, checkpoint)
    info = metadata(config, step, generator)
    _claim_under(folder, STAGING_DIR)
    staging = folder.join(STAGING_DIR)
    os.makedirs(staging)
    try:
        saved_model_path = os.path.join(staging, SAVED_MODEL)
        try:
            save_generator(generator_module(*frozen_generator(sampler, generator), info), info, saved_model_path)
            tflite_bytes = tflite_model(saved_model_path)
            with open(os.path.join(staging, TFLITE_FILE), "wb") as stream:
                stream.write(tflite_bytes)
                stream.flush()
                os.fsync(stream.fileno())
        except (OSError, tf.errors.OpError) as error:  # a full disk, most likely
            raise ExportError(f"cannot write the export in {staging}: {error_summary(error)}") from None
        _claim_under(folder, STAGING_DIR)  # anything the writers added beyond the expected files
        differences = check_export(sampler, generator, saved_model_path, tflite_bytes, config.seed or 0)
        with runs.signals_deferred():  # both renames or neither: a signal waits for them
            _swap_into_place(folder)
            done.append(step)
    finally:
        # This process made the staging folder a moment ago: everything in it is its own,
        # including a writer's temporary file left by a failure.
        shutil.rmtree(staging, ignore_errors=True)
    return step, differences


def _swap_into_place(folder):
    """export/ replaced by the staged export in two renames; the old one is deleted last."""
    final, staging, retired = (folder.join(name) for name in (EXPORT_DIR, STAGING_DIR, RETIRED_DIR))
    _claim_under(folder, EXPORT_DIR)
    _claim_renamed(folder, STAGING_DIR, EXPORT_DIR)
    if os.path.isdir(final):
        _claim_renamed(folder, EXPORT_DIR, RETIRED_DIR)
        os.rename(final, retired)
    os.rename(staging, final)
    _remove_own_tree(folder, RETIRED_DIR)


def _claim_renamed(folder, source, target):
    """Record, before a rename of `source` to `target`, the names its files will have."""
    files, folders = _tree(folder, source)
    def moved(name):
        return target + name[len(source):]
    folder.claim(*map(moved, files), folders=[moved(name) for name in folders], create=False)
