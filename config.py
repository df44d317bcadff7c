"""What a model is: one frozen config, stored inside every checkpoint and rebuilt from it.

Plain Python (no TensorFlow), so that command-line checks stay fast.
"""
import dataclasses

GENERATORS = ("averaged", "raw", "raw-batch-stats")  # which generator makes images (see model.py)
RECIPES = ("original", "tuned")
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
# The generator's Adam rate of each recipe unless one is given (the discriminator's too, but for TTUR).
RECIPE_LEARNING_RATES = {"original": 1e-4, "tuned": 4e-4}
RECIPE_CONDITIONINGS = {"original": "concat", "tuned": "projection"}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A DCGAN and how it trains. Everything but the implementation choices defines the model
    that a checkpoint holds; the implementation choices compute the same maths another way.

    recipe "original": the exercise (batch norm on every discriminator conv, cross-entropy,
    one learning rate). "tuned": the same generator, a discriminator and training measured to
    give better samples; `without` names tuned levers to leave out.
    """
    image_shape: tuple = (28, 28, 1)
    z_dim: int = 64
    dataset: str = "mnist"
    recipe: str = "original"
    without: tuple = ()
    learning_rate: float = None   # the generator's Adam rate (and D's, but for TTUR); None: the recipe's
    beta1: float = 0.5
    beta2: float = 0.999
    ema_decay: float = 0.999
    num_classes: int = 0          # 0: unconditional; else the generator and discriminator take a class
    conditioning: str = None      # None: the recipe's (RECIPE_CONDITIONINGS)
    # Implementation choices: same maths, other kernels (bench.py measures them).
    fused_batch_norm: bool = True
    subpixel_image_convs: bool = True

    def __post_init__(self):
        object.__setattr__(self, "image_shape", tuple(int(d) for d in self.image_shape))
        object.__setattr__(self, "without", tuple(sorted(set(self.without))))
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {RECIPES}, got {self.recipe!r}")
        unknown = [lever for lever in self.without if lever not in TUNED_LEVERS]
        if unknown:
            raise ValueError(f"unknown tuned lever(s) {unknown}; levers: {', '.join(TUNED_LEVERS)}")
        if self.without and self.recipe != "tuned":
            raise ValueError("levers can only be left out of the tuned recipe")
        if self.learning_rate is None:
            object.__setattr__(self, "learning_rate", RECIPE_LEARNING_RATES[self.recipe])
        if self.conditioning is None:
            object.__setattr__(self, "conditioning", RECIPE_CONDITIONINGS[self.recipe])
        if self.num_classes < 0 or self.num_classes == 1:
            raise ValueError(f"num_classes must be 0 (unconditional) or at least 2, got {self.num_classes}")
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {tuple(CONDITIONINGS)}, got {self.conditioning!r}")
        if self.z_dim < 1:
            raise ValueError(f"z_dim must be at least 1, got {self.z_dim}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        for name in ("beta1", "beta2", "ema_decay"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    def uses(self, lever):
        """Whether a tuned lever is on."""
        return self.recipe == "tuned" and lever not in self.without

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
                "recipe": self.recipe, "without": list(self.without), "num_classes": self.num_classes}
        if self.conditional:
            info["conditioning"] = self.conditioning
        return info

    def to_dict(self):
        return {**dataclasses.asdict(self), "image_shape": list(self.image_shape),
                "without": list(self.without)}

    @classmethod
    def from_dict(cls, values):
        """A config from to_dict()'s output, or from an older checkpoint's shorter model info."""
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{name: (tuple(value) if isinstance(value, list) else value)
                      for name, value in values.items() if name in known})


def describe(info):
    """'mnist 28x28x1, z_dim 64, recipe original' for a model-info dict."""
    height, width, channels = info["image_shape"]
    recipe = info.get("recipe", "original")
    if info.get("without"):
        recipe += " without " + ", ".join(info["without"])
    kind = (f"conditional ({info['num_classes']} classes, {info.get('conditioning', 'projection')}) "
            if info.get("num_classes") else "")
    return f"{kind}{info['dataset']} {height}x{width}x{channels}, z_dim {info['z_dim']}, recipe {recipe}"
