"""RunConfig: the one shape of a run's settings, checked the same way from flags and from a file."""
import json
import math

import pytest

import main1
from config import DEFINES_RUN, INVOCATION, MAY_CHANGE, RECIPE_FIELDS, RECORDED, ConfigError, RunConfig, recipe_value


def test_every_flag_sets_a_field_of_one_kind():
    kinds = (DEFINES_RUN, MAY_CHANGE, INVOCATION)
    for names, options in main1.FLAGS + main1.RUN_MODES:
        assert RunConfig.kind(options["dest"]) in kinds, names
    flags = {options["dest"] for _, options in main1.FLAGS + main1.RUN_MODES}
    # ... and every setting that is not found by the run itself can be typed
    assert set(RunConfig.names(*kinds)) == flags
    assert set(RunConfig.names(RECORDED)) == {"image_shape", "num_classes", "data"}


def test_untyped_flags_stay_out_of_what_was_typed():
    config, typed = main1.parse_flags(["--steps", "7", "--recipe", "tuned"])
    assert typed == {"steps": 7, "recipe": "tuned"}
    assert config.batch_size == 32 and config.learning_rate == 4e-4 and config.conditioning == "projection"


def test_a_stored_config_reads_back_equal():
    config = RunConfig(recipe="tuned", without=("ttur", "hinge"), seed=3, data_dir="data",
                       image_shape=(28, 28, 1), data={"reader": "embedded", "images": 5000})
    assert config.without == ("hinge", "ttur") and config.data_dir.startswith("/")
    assert RunConfig.from_json(json.loads(json.dumps(config.to_json())), out_dir=config.out_dir) == config
    assert "out_dir" not in config.to_json() and "resume" not in config.to_json()


@pytest.mark.parametrize("change, field, problem", [
    ({"learning_rate": math.inf}, "learning_rate", "must be a finite number"),
    ({"learning_rate": math.nan}, "learning_rate", "must be a finite number"),
    ({"beta1": 1.0}, "beta1", "must be in [0, 1)"),
    ({"batch_size": "32"}, "batch_size", "must be an integer"),
    ({"steps": True}, "steps", "must be an integer"),
    ({"recipe": "best"}, "recipe", "must be one of original, tuned"),
    ({"out_dir": ""}, "out_dir", "must be a non-empty path"),
    ({"seed": 2**32}, "seed", "must be in [0, 2**32)"),
    ({"z_dim": 2}, "z_dim", "must be at least 3"),
    ({"without": ("dropout",)}, "without", "unknown lever"),
    ({"conditional": True, "dataset": "folder"}, "conditional", "needs a labelled dataset"),
])
def test_bad_values_name_the_setting(change, field, problem):
    with pytest.raises(ConfigError) as error:
        RunConfig(**change)
    assert error.value.field == field and problem in error.value.problem


def test_a_file_missing_a_key_or_with_an_unknown_one_is_refused():
    stored = RunConfig(seed=1, image_shape=(28, 28, 1)).to_json()
    with pytest.raises(ConfigError, match="batch_size is missing"):
        RunConfig.from_json({k: v for k, v in stored.items() if k != "batch_size"})
    with pytest.raises(ConfigError, match="colour is not a setting"):
        RunConfig.from_json({**stored, "colour": "red"})
    with pytest.raises(ConfigError, match="must be a JSON object"):
        RunConfig.from_json([stored])
    # Settings added after the first runs were made read back as those runs had them.
    legacy = {k: v for k, v in stored.items() if k not in ("recipe", "without", "conditional", "eval_every")}
    assert RunConfig.from_json(legacy).recipe == "original"


def test_model_config_is_derived_from_the_run_config():
    model = RunConfig(recipe="tuned", z_dim=16, image_shape=(28, 28, 1), num_classes=10).model_config()
    assert model.z_dim == 16 and model.recipe == "tuned" and model.num_classes == 10
    assert model.learning_rate == 4e-4 and model.conditioning == "projection"


def test_renamed_settings_keep_their_old_spellings():
    # --eval-step is the original exercise's flag; config.json files of older runs say eval_step.
    config, typed = main1.parse_flags(["--eval-step", "7"])
    assert typed == {"snapshot_every": 7} and config.snapshot_every == 7
    stored = RunConfig(seed=1, image_shape=(28, 28, 1), snapshot_every=9).to_json()
    assert "snapshot_every" in stored and "eval_step" not in stored
    older = {("eval_step" if key == "snapshot_every" else key): value for key, value in stored.items()}
    assert RunConfig.from_json(older).snapshot_every == 9


def test_unset_run_settings_are_the_recipes_and_stored_resolved():
    config = RunConfig(recipe="fast", image_shape=(28, 28, 1))
    assert (config.steps, config.batch_size, config.snapshot_every, config.learning_rate, config.lr_decay_steps,
            config.discriminator_width) == (4300, 32, 250, 1.6e-3, 0, 0.5)
    for name in RECIPE_FIELDS:  # every per-recipe setting but bf16 (decided as a run starts) is filled
        assert getattr(config, name) == (None if name == "bf16" else recipe_value("fast", name)), name
    assert config.model_config().lr_decay_steps == recipe_value("fast", "lr_decay_steps")
    assert (config.beta1, config.beta2) == (0.0, 0.9)
    assert (RunConfig().beta1, RunConfig().beta2) == (0.5, 0.999)  # the exercise's
    # A short run gets a snapshot at its end rather than an error about a flag never typed.
    assert RunConfig(recipe="fast", steps=40).snapshot_every == 40
    assert RunConfig(steps=40, snapshot_every=10).snapshot_every == 10
    # What was resolved is what is stored, so a later default does not change a recorded run.
    stored = config.to_json()
    assert stored["steps"] == 4300 and stored["lr_decay_steps"] == 0
    older = RunConfig(image_shape=(28, 28, 1)).to_json()
    del older["lr_decay_steps"]
    assert RunConfig.from_json(older).lr_decay_steps == 0
    with pytest.raises(ConfigError, match="not a lever of --recipe fast; add --recipe tuned"):
        RunConfig(recipe="fast", without=("ttur",))


def test_the_joint_discriminator_call_is_the_recipes_where_d_has_no_batch_norm():
    assert RunConfig(recipe="fast").joint_discriminator_call is True
    assert RunConfig(recipe="fast", without=("spectral_norm",)).joint_discriminator_call is False
    assert RunConfig(recipe="tuned").joint_discriminator_call is False
    tuned = RunConfig(recipe="tuned", joint_discriminator_call=True, image_shape=(28, 28, 1))
    assert tuned.model_config().joint_discriminator_call
    with pytest.raises(ConfigError, match="needs a discriminator without batch norm"):
        RunConfig(recipe="original", joint_discriminator_call=True)
    # A fast run from before the setting existed made two calls, and resumes so.
    older = RunConfig(recipe="fast", image_shape=(28, 28, 1)).to_json()
    del older["joint_discriminator_call"]
    assert RunConfig.from_json(older).model_config().joint_discriminator_call is False
    config, typed = main1.parse_flags(["--recipe", "fast", "--no-joint-discriminator-call"])
    assert typed["joint_discriminator_call"] is False and config.joint_discriminator_call is False
