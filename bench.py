"""Training speed of this project's graph against a Keras reference and the CPU's FP32 peak.

    python bench.py                 # the README's table (a few minutes on 2 cores)
    python bench.py --quick         # a tiny setting, to check the script runs
    python bench.py --batches 32 --rows-only --record records/bench/NAME.json   # a record of the rows
    python bench.py --table records/bench/*.json                                # the docs' table of records

Everything is measured in this one process, side by side, on synthetic data:

- FLOPs per image of one training iteration, counted from the graph by tf.compat.v1.profiler;
- images/s of DeepConvolutionalGAN's one train op (D step then G step), median of repeats,
  as main1.py trains it and with one lever changed per row (PROJECT_VARIANTS);
- the same architecture, losses and optimizers written the way the TensorFlow DCGAN tutorial
  writes them: Keras 3 models, GradientTape, tf.function;
- the FP32 peak: a large matrix product through TensorFlow on the same cores;
- where a traced iteration's op time goes, by kind of op, and the convolutions' GFLOP/s;
- the largest convolution's three kernels in NHWC and in NCHW layout;
- the image-side layers in the library's form and in model.py's sub-pixel form.
"""
import argparse
import collections
import json
import os
import platform
import re
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Let a session that asks for XLA clustering get it on the CPU too (the others are unaffected).
os.environ.setdefault("TF_XLA_FLAGS", "--tf_xla_cpu_global_jit")

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import rewriter_config_pb2

import model
import outputs
import reference
import runs
from config import ModelConfig
from model import DeepConvolutionalGAN

v1 = tf.compat.v1
Z_DIM = 64


def noise(rng, batch):
    """A batch of training noise, as main1.py draws it: uniform in [-1, 1]."""
    return rng.uniform(-1, 1, (batch, Z_DIM)).astype(np.float32)


def timed_blocks(steps, iterations, repeats, warmup):
    """{name: [seconds per iteration in each block]} of each `steps[name]()`.

    The implementations take turns block by block, so that a noisy moment of the machine
    hits all of them alike instead of one.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    seconds = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(iterations):
                step()
            seconds[name].append((time.perf_counter() - start) / iterations)
    return seconds


def timed_repeats(steps, iterations, repeats, warmup):
    """{name: median seconds per iteration} of each `steps[name]()` (see timed_blocks)."""
    blocks = timed_blocks(steps, iterations, repeats, warmup)
    return {name: statistics.median(values) for name, values in blocks.items()}


def speed_ratio(blocks, name, reference, images=None):
    """Median over blocks of how many times `reference`'s images/s `name` trained in the same
    block: the machine's slow drifts cancel within a block. images: {name: images per iteration},
    where they differ (by default the same for both)."""
    scale = images[name] / images[reference] if images else 1.0
    return statistics.median(scale * r / s for s, r in zip(blocks[name], blocks[reference], strict=True))


# ----------------------------------------------------------------------------- this project
def project_step(batch, fused=True, subpixel=True, bf16=False, inter_op_threads=1, xla=False,
                 fixed_feed=False, recipe="original", joint=None, d_width=None, **settings):
    """One training iteration of the project's graph, fed like main1.py feeds it.

    The defaults are what main1.py trains with; each other value is one lever, measured:
    fused, subpixel: ModelConfig's fused_batch_norm and subpixel_image_convs; bf16: main1.py's --bf16;
    inter_op_threads: ops that may run at once; xla:
    TensorFlow's automatic XLA clustering; fixed_feed: feed one prepared batch every time,
    which shows what sampling and copying a batch in Python costs (the most that holding the
    dataset in graph memory could save); recipe: main1.py's --recipe; joint: --joint-discriminator-call
    (None: the recipe's); d_width: --discriminator-width (None: the recipe's); settings: other
    ModelConfig settings (augment, relativistic, gradient_penalty, penalty_every).
    """
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        gan = DeepConvolutionalGAN(ModelConfig(z_dim=Z_DIM, recipe=recipe, fused_batch_norm=fused,
                                               subpixel_image_convs=subpixel, joint_discriminator_call=joint,
                                               discriminator_width=d_width, **settings))
        init = v1.global_variables_initializer()
    graph.finalize()
    config = runs.session_config(bf16, gan.config)  # as main1.py's
    config.inter_op_parallelism_threads = inter_op_threads
    if xla:
        config.graph_options.optimizer_options.global_jit_level = v1.OptimizerOptions.ON_1
    session = v1.Session(graph=graph, config=config)
    session.run(init)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (4096, 28, 28, 1)).astype(np.float32)
    fetches = [gan.train_op, gan.d_loss, gan.g_step_loss]
    prepared = {gan.real_images: images[:batch], gan.z: noise(rng, batch)}

    def step(**run_options):  # run_options: e.g. options= and run_metadata= for a trace
        if fixed_feed:
            feed = prepared
        else:
            index = rng.integers(0, len(images), batch)
            feed = {gan.real_images: images[index], gan.z: noise(rng, batch)}
        session.run(fetches, feed, **run_options)
    return step


PROJECT_VARIANTS = {"this project (graph)": {},
                    "  same, unfused batch norm": {"fused": False},
                    "  same, plain image convs": {"subpixel": False},
                    "  same, 2 inter-op threads": {"inter_op_threads": 2},
                    "  same, XLA JIT": {"xla": True},
                    "  same, one batch fed always": {"fixed_feed": True},
                    "  same, --bf16": {"bf16": True},
                    "  same, --recipe tuned": {"recipe": "tuned"},
                    "  same, --recipe fast": {"recipe": "fast"},
                    "  fast, two D calls": {"recipe": "fast", "joint": False},
                    "  fast, --bf16": {"recipe": "fast", "bf16": True},
                    "  fast, --bf16, two D calls": {"recipe": "fast", "bf16": True, "joint": False},
                    "  fast, --bf16, D width 1": {"recipe": "fast", "bf16": True, "d_width": 1.0},
                    "  fast, --bf16, D width 0.25": {"recipe": "fast", "bf16": True, "d_width": 0.25},
                    "  fast, --bf16, --augment translation+cutout": {"recipe": "fast", "bf16": True,
                                                                     "augment": "translation+cutout"},
                    "  fast, --bf16, no R1+R2": {"recipe": "fast", "bf16": True, "gradient_penalty": 0.0},
                    "  fast, --bf16, hinge loss, no R1+R2": {"recipe": "fast", "bf16": True, "relativistic": False,
                                                             "gradient_penalty": 0.0},
                    "  fast, --bf16, R1+R2 every step": {"recipe": "fast", "bf16": True, "penalty_every": 1},
                    "  fast, --bf16, R1+R2 every 32": {"recipe": "fast", "bf16": True, "penalty_every": 32},
                    "  fast, --bf16, twice the batch": {"recipe": "fast", "bf16": True, "batch_factor": 2}}


def flops_per_image(batch):
    """Float operations of one training iteration, from the profiler, divided by the batch.

    Counted on the plain graph (unfused batch norm, library transposed convs) built for a
    fixed batch, so that every shape is static, and with grappler's op fusion off, so that
    every op keeps its name and FLOP count. Only ops that ran count: the gradient code also
    builds gradients no step uses (the discriminator's filter gradients in the generator
    step), which are pruned before running. The model's work is the same in every variant.
    """
    graph = tf.Graph()
    with graph.as_default():
        plain = ModelConfig(z_dim=Z_DIM, fused_batch_norm=False, subpixel_image_convs=False)
        gan = DeepConvolutionalGAN(plain, batch_size=batch)
        init = v1.global_variables_initializer()
    config = runs.session_config(bf16=False)
    config.graph_options.rewrite_options.remapping = rewriter_config_pb2.RewriterConfig.OFF
    session = v1.Session(graph=graph, config=config)
    session.run(init)
    rng = np.random.default_rng(0)
    feed = {gan.real_images: rng.uniform(0, 1, (batch, 28, 28, 1)).astype(np.float32),
            gan.z: noise(rng, batch)}
    run_metadata = v1.RunMetadata()
    session.run(gan.train_op, feed, options=v1.RunOptions(trace_level=v1.RunOptions.FULL_TRACE),
                run_metadata=run_metadata)
    ran = sorted({node.node_name for device in run_metadata.step_stats.dev_stats
                  for node in device.node_stats})
    only_ran = "^(" + "|".join(re.escape(name) for name in ran) + ")$"
    options = (v1.profiler.ProfileOptionBuilder(v1.profiler.ProfileOptionBuilder.float_operation())
               .with_node_names(show_name_regexes=[only_ran]).with_empty_output().build())
    profile = v1.profiler.profile(graph, run_meta=run_metadata, cmd="scope", options=options)
    by_kind = collections.Counter()
    nodes = list(profile.children)
    while nodes:
        node = nodes.pop()
        nodes.extend(node.children)
        by_kind[op_kind(graph.get_operation_by_name(node.name).type)] += node.float_ops / batch
    return profile.total_float_ops / batch, by_kind


OP_KINDS = (("Conv2D", "convolutions"), ("BatchNorm", "batch norm"), ("MatMul", "dense layers"),
            ("ApplyAdam", "Adam updates"))


def op_kind(op_type):
    """A coarse class of a TensorFlow op type (fused and oneDNN variants included)."""
    return next((kind for key, kind in OP_KINDS if key in op_type), "everything else")


def op_time_breakdown(step, iterations):
    """{kind: microseconds per iteration} of the ops `step` runs, from traced iterations."""
    micros = collections.Counter()
    for _ in range(iterations):
        run_metadata = v1.RunMetadata()
        step(options=v1.RunOptions(trace_level=v1.RunOptions.FULL_TRACE), run_metadata=run_metadata)
        for device in run_metadata.step_stats.dev_stats:
            for node in device.node_stats:
                # timeline_label: "name = OpType(inputs)"
                op_type = node.timeline_label.split(" = ")[-1].split("(")[0] if node.timeline_label else ""
                micros[op_kind(op_type)] += node.all_end_rel_micros / iterations
    return micros


# ----------------------------------------------------------------------------- Keras reference
def keras_step(batch, d_input_batch_norm=True):
    """reference.py's Keras networks and train step. d_input_batch_norm=True: the original
    exercise's discriminator, for a like-for-like speed comparison; False: the quality reference."""
    generator, discriminator = reference.keras_networks(Z_DIM, d_input_batch_norm=d_input_batch_norm)
    train_step = reference.keras_train_step(generator, discriminator)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (4096, 28, 28, 1)).astype(np.float32)

    def step():
        index = rng.integers(0, len(images), batch)
        d_loss, _ = train_step(images[index], noise(rng, batch))
        d_loss.numpy()  # wait for the step to finish
    return step


# ----------------------------------------------------------------------------- memory layout
def layout_timings(batch, iterations, repeats, warmup):
    """{(kernel, layout): median seconds} of the model's largest conv (14x14x64 -> 7x7x128,
    5x5, stride 2) forward, input gradient and filter gradient, in NHWC and in NCHW."""
    rng = np.random.default_rng(0)
    x, dy = rng.normal(size=(batch, 14, 14, 64)), rng.normal(size=(batch, 7, 7, 128))
    graph = tf.Graph()
    with graph.as_default():
        w = tf.Variable(rng.normal(size=(5, 5, 64, 128)).astype(np.float32))
        kernels = {}
        for layout, order, strides in (("NHWC", [0, 1, 2, 3], [1, 2, 2, 1]), ("NCHW", [0, 3, 1, 2], [1, 1, 2, 2])):
            # Inputs already in the layout, held in variables: only the kernels are timed.
            x_in = tf.Variable(x.transpose(order).astype(np.float32))
            dy_in = tf.Variable(dy.transpose(order).astype(np.float32))
            kernels[("forward", layout)] = tf.nn.conv2d(x_in, w, strides, "SAME", data_format=layout)
            kernels[("input gradient", layout)] = v1.nn.conv2d_backprop_input(
                x_in.shape, w, dy_in, strides, "SAME", data_format=layout)
            kernels[("filter gradient", layout)] = v1.nn.conv2d_backprop_filter(
                x_in, w.shape, dy_in, strides, "SAME", data_format=layout)
        init = v1.global_variables_initializer()
    session = v1.Session(graph=graph, config=runs.session_config(bf16=False))
    session.run(init)
    return timed_repeats({key: lambda op=op.op: session.run(op) for key, op in kernels.items()},
                         iterations, repeats, warmup)


def report_layouts(batch, iterations, repeats, warmup):
    timings = layout_timings(batch, iterations, repeats, warmup)
    print(f"largest conv (14x14x64 -> 7x7x128) at batch {batch}, microseconds:")
    for kernel in ("forward", "input gradient", "filter gradient"):
        nhwc, nchw = timings[(kernel, "NHWC")] * 1e6, timings[(kernel, "NCHW")] * 1e6
        print(f"  {kernel:<16} NHWC {nhwc:7.0f}  NCHW {nchw:7.0f}  ({nchw / nhwc:.2f}x the time)")


# ----------------------------------------------------------------------------- image-side layers
IMAGE_SIDE_SHAPES = ((28, 1), (32, 3), (64, 3))  # (image side, image channels); 64 feature channels


def image_side_timings(batch, iterations, repeats, warmup):
    """{(side, channels, form): median seconds} of G's output layer and D's input layer, each
    forward and both gradients, in the library form and in model.py's sub-pixel form."""
    rng = np.random.default_rng(0)
    graph = tf.Graph()
    fetches = {}
    with graph.as_default():
        for side, channels in IMAGE_SIDE_SHAPES:
            def variable(*shape):
                return tf.Variable(rng.normal(size=shape).astype(np.float32))
            features, images = variable(batch, side // 2, side // 2, 64), variable(batch, side, side, channels)
            filters = variable(5, 5, channels, 64)
            forms = {"library": (lambda x, w, side=side, channels=channels:
                                 tf.nn.conv2d_transpose(x, w, [batch, side, side, channels], 2, "SAME"),
                                 lambda x, w: tf.nn.conv2d(x, w, 2, "SAME")),
                     "sub-pixel": (model.image_conv_transpose, model.image_conv)}
            for form, (to_image, from_image) in forms.items():
                outputs = []
                for layer, x in ((to_image, features), (from_image, images)):
                    y = layer(x, filters)
                    outputs += [y, *tf.gradients(y, [x, filters], tf.ones_like(y))]
                # Summed to one number each, so that every output is computed and none copied out.
                fetches[(side, channels, form)] = tf.add_n([tf.reduce_sum(t) for t in outputs])
        init = v1.global_variables_initializer()
    session = v1.Session(graph=graph, config=runs.session_config(bf16=False))
    session.run(init)
    return timed_repeats({key: lambda fetch=fetch: session.run(fetch) for key, fetch in fetches.items()},
                         iterations, repeats, warmup)


def report_image_side(batch, iterations, repeats, warmup):
    timings = image_side_timings(batch, iterations, repeats, warmup)
    print(f"image-side layers (G's output, D's input; forward and gradients) at batch {batch}, microseconds:")
    for side, channels in IMAGE_SIDE_SHAPES:
        library, subpixel = (timings[(side, channels, form)] * 1e6 for form in ("library", "sub-pixel"))
        print(f"  {side}x{side}x{channels:<3} library {library:7.0f}  sub-pixel {subpixel:7.0f}  "
              f"({subpixel / library:.2f}x the time)")


# ----------------------------------------------------------------------------- the peak
def matmul_peak_gflops(size, repeats):
    """FP32 GFLOP/s of a size x size matrix product through TensorFlow (median of repeats)."""
    graph = tf.Graph()
    with graph.as_default():
        a = tf.Variable(tf.random.uniform([size, size]))
        b = tf.Variable(tf.random.uniform([size, size]))
        product = tf.reduce_sum(tf.matmul(a, b))  # reduce: no large copy back to Python
        init = v1.global_variables_initializer()
    session = v1.Session(graph=graph, config=runs.session_config(bf16=False))
    session.run(init)
    seconds = timed_repeats({"matmul": lambda: session.run(product)}, 1, repeats, warmup=2)["matmul"]
    return 2.0 * size ** 3 / seconds / 1e9


def describe_machine():
    model = "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as stream:
            names = [line.split(":", 1)[1].strip() for line in stream if line.startswith("model name")]
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} cores, TensorFlow {tf.__version__}, Python {platform.python_version()}"


# Which row trains each recipe as main1.py does on a CPU with / without bfloat16, and the reference.
RECIPE_ROWS = {"original": ("this project (graph)", "this project (graph)"),
               "tuned": ("  same, --recipe tuned", "  same, --recipe tuned"),
               "fast": ("  fast, --bf16", "  same, --recipe fast")}
QUALITY_REFERENCE = "  Keras quality reference"


def recipe_ratios(blocks):
    """{recipe: its images/s over reference.py's network's}, each the median of per-block ratios."""
    column = 0 if runs.cpu_has_bf16() else 1
    return {recipe: round(speed_ratio(blocks, rows[column], QUALITY_REFERENCE), 4)
            for recipe, rows in RECIPE_ROWS.items() if rows[column] in blocks}


def write_record(path, argv, rows, ratios):
    """A bench record: the command, the machine, every row's images/s, and each recipe's speed
    over the reference's network (what compare.py turns iterations into time with)."""
    record = {"command": "python bench.py " + " ".join(argv), "date": time.strftime("%Y-%m-%d"),
              "machine": runs.machine(), "load_average": round(os.getloadavg()[0], 1), "ratios": ratios,
              "rows": [{"batch": batch, "implementation": name.strip(), "images_per_second": round(rate, 1),
                        "vs_keras": round(ratio, 4)} for batch, name, rate, _, _, ratio in rows]}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    outputs.write_json(path, record)
    print(f"record written to {path}")


def format_records(paths):
    """Markdown: one row per implementation, one column per record (its machine), images/s and
    the ratio to reference.py's network; then each recipe's ratio."""
    records = {path: json.load(open(path)) for path in paths}  # noqa: SIM115 (small files, read whole)
    columns = [f"{os.path.splitext(os.path.basename(path))[0]} ({record['machine']['cpu']}, "
               f"{record['machine']['intra_op_threads']} thread(s)"
               + (f", load {record['load_average']}" if "load_average" in record else "") + ")"
               for path, record in records.items()]
    names = list(dict.fromkeys((row["batch"], row["implementation"]) for record in records.values()
                               for row in record["rows"]))
    lines = ["| batch | implementation | " + " | ".join(f"images/s, {c}" for c in columns) + " |",
             "|---:|---|" + "---:|" * len(columns)]
    for batch, name in names:
        cells = []
        for record in records.values():
            row = next((r for r in record["rows"] if (r["batch"], r["implementation"]) == (batch, name)), None)
            cells.append(f"{row['images_per_second']:.0f}" if row else "")
        lines.append(f"| {batch} | {name} | " + " | ".join(cells) + " |")
    lines += ["", "Each recipe as `main1.py` trains it on that machine, in images/s over `reference.py`'s network "
                  "(the median of per-block ratios):", ""]
    for path, record in records.items():
        ratios = ", ".join(f"`{recipe}` {ratio:.2f}x" for recipe, ratio in record["ratios"].items())
        lines.append(f"- {os.path.relpath(path)}: {ratios} (`{record['command']}`, {record['date']})")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny setting: checks the script, not speed")
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128], help="batch sizes to time")
    parser.add_argument("--run-dir", default=None,
                        help="also report where the wall time of the main1.py run in this folder "
                             "went (its timing.json)")
    parser.add_argument("--rows-only", action="store_true",
                        help="only the images/s rows: no traced op times, layouts or image-side layers")
    parser.add_argument("--record", metavar="FILE", help="also write the rows to this JSON record")
    parser.add_argument("--table", nargs="+", metavar="RECORD",
                        help="measure nothing: print the Markdown table of these bench records")
    args = parser.parse_args(argv)
    if args.table:
        print(format_records(args.table))
        return 0
    iterations, repeats, warmup, size = (3, 2, 1, 256) if args.quick else (30, 11, 20, 4096)

    print(describe_machine())
    peak = matmul_peak_gflops(size, repeats)
    print(f"FP32 peak ({size}x{size} matmul through TensorFlow): {peak:.1f} GFLOP/s")
    flops, flops_by_kind = flops_per_image(args.batches[0])
    print(f"FLOPs per image per training iteration (profiler): {flops / 1e6:.1f} MFLOP, "
          f"{flops_by_kind['convolutions'] / 1e6:.1f} of them in convolutions")
    header = f"{'batch':>5} {'implementation':<30} {'images/s':>9} {'GFLOP/s':>8} {'% peak':>7} {'vs Keras':>8}"
    print(header)
    rows = []
    for batch in args.batches:
        variants = {name: variant for name, variant in PROJECT_VARIANTS.items()
                    if runs.cpu_has_bf16() or not variant.get("bf16")}
        images = {name: batch * variant.get("batch_factor", 1) for name, variant in variants.items()}
        steps = {name: project_step(images[name], **{k: v for k, v in variant.items() if k != "batch_factor"})
                 for name, variant in variants.items()}
        steps["Keras 3 + tf.function"] = keras_step(batch)
        steps["  Keras quality reference"] = keras_step(batch, d_input_batch_norm=False)
        images.update({"Keras 3 + tf.function": batch, "  Keras quality reference": batch})
        blocks = timed_blocks(steps, iterations, repeats, warmup)
        for name, seconds in blocks.items():
            rate = images[name] / statistics.median(seconds)
            gflops = rate * flops / 1e9
            ratio = speed_ratio(blocks, name, "Keras 3 + tf.function", images)
            rows.append((images[name], name, rate, gflops, 100 * gflops / peak, ratio))
            print(f"{images[name]:>5} {name:<30} {rate:>9.0f} {gflops:>8.1f} {100 * gflops / peak:>6.1f}% "
                  f"{ratio:>7.2f}x")
        ratios = recipe_ratios(blocks)
        print(f"{batch:>5} each recipe as main1.py trains it here, vs reference.py's network: "
              + ", ".join(f"{recipe} {ratio:.2f}x" for recipe, ratio in ratios.items()) + " the images/s")
    if args.record:
        write_record(args.record, argv if argv is not None else sys.argv[1:], rows, recipe_ratios(blocks))
    if not args.rows_only:
        report_op_time(args.batches[0], flops_by_kind, peak, iterations)
        report_layouts(args.batches[0], iterations, repeats, warmup)
        report_image_side(args.batches[0], iterations, repeats, warmup)
    if args.run_dir:
        report_run_overhead(args.run_dir)
    return 0


def report_op_time(batch, flops_by_kind, peak, iterations):
    """Where the op time of this project's training iteration goes, by kind of op."""
    step = project_step(batch)
    for _ in range(iterations):  # warm up
        step()
    micros = op_time_breakdown(step, iterations)
    total = sum(micros.values())
    print(f"op time of one batch-{batch} iteration of this project's graph (traced): {total / 1e3:.1f} ms")
    for kind, value in micros.most_common():
        line = f"  {kind:<16} {value / 1e3:6.2f} ms {100 * value / total:5.1f}%"
        if flops_by_kind.get(kind, 0) > 0.01 * sum(flops_by_kind.values()):  # the FLOP-heavy kinds
            gflops = flops_by_kind[kind] * batch / value / 1e3
            line += f"  {gflops:6.1f} GFLOP/s, {100 * gflops / peak:5.1f}% of peak"
        print(line)


def report_run_overhead(run_dir):
    """Share of a run's wall time spent on anything but training iterations."""
    with open(os.path.join(run_dir, "timing.json")) as stream:
        seconds = {name: value for name, value in json.load(stream).items()
                   if name != "processes" and isinstance(value, (int, float))}
    total = seconds.pop("total")
    print(f"run in {run_dir}: {total:.0f} s wall time")
    for name, value in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"  {name:<12} {value:8.1f} s {100 * value / total:6.1f}%")
    print(f"  overhead (all but training): {100 * (total - seconds['training']) / total:.1f}%")


if __name__ == "__main__":
    main()
