"""Every config composes and builds; registry names equal config file names; the Hydra internals we call exist."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.utils import _run_hydra, get_args_parser

from attrobust.attacks import ATTRIBUTION_ATTACKS, PREDICTION_ATTACKS
from attrobust.config import GROUPS, config_dir, group_options, register_resolvers, to_plain
from attrobust.data import DATASETS
from attrobust.errors import AttrobustError
from attrobust.explainers import EXPLAINERS
from attrobust.models import MODELS, build_model
from attrobust.optim import OPTIMIZERS
from attrobust.regularizers import REGULARIZERS
from attrobust.tracking import LOGGERS
from conftest import DATASET_FIELDS



class AnyAttack:
    """Both attack registries, which share the config group `attack`."""

    @staticmethod
    def names() -> list[str]:
        return sorted(PREDICTION_ATTACKS.names() + ATTRIBUTION_ATTACKS.names())

    @staticmethod
    def build(cfg):
        if cfg["name"] in PREDICTION_ATTACKS.names():
            return PREDICTION_ATTACKS.build(cfg)
        return ATTRIBUTION_ATTACKS.build(cfg, explainer=EXPLAINERS.build({"name": "gradient"}))


REGISTRIES = {"dataset": DATASETS, "model": MODELS, "reg": REGULARIZERS, "attack": AnyAttack, "optim": OPTIMIZERS,
              "explainer": EXPLAINERS, "logger": LOGGERS}
PRIMARIES = ("train", "evaluate")


def compose_config(name: str, overrides: list[str]):
    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


# configs that are no registered component: a model you bring (models/external.py), evaluated, never built or trained
UNREGISTERED = {"model": ["external"], "logger": ["none"]}  # logger=none: no tracker


@pytest.mark.parametrize("group", GROUPS)
def test_registry_names_equal_config_file_names(group):
    unregistered = UNREGISTERED.get(group, [])
    assert REGISTRIES[group].names() == [name for name in group_options(group) if name not in unregistered]


@pytest.mark.parametrize("group", GROUPS)
def test_each_yaml_names_itself_and_starts_with_a_description(group):
    for path in (config_dir() / group).glob("*.yaml"):
        assert path.read_text().startswith("# "), f"{path} needs a one-line description comment"
        if not path.stem.startswith("_"):
            assert yaml.safe_load(path.read_text())["name"] == path.stem


EVALUATE_GROUPS = ("dataset", "attack", "explainer")  # evaluate takes the model, reg and optim from the checkpoint
TRAIN_GROUPS = ("dataset", "model", "reg", "attack", "optim")


@pytest.mark.parametrize("primary,group,option", [
    (p, g, o) for p in PRIMARIES for g in GROUPS for o in group_options(g)
    if g in (TRAIN_GROUPS if p == "train" else EVALUATE_GROUPS) and o not in UNREGISTERED.get(g, [])])
def test_every_option_composes_resolves_and_builds(primary, group, option):
    overrides = [f"{group}={option}"] + (["dataset.path=x"] if option in ("folder", "npz") else [])
    if primary == "evaluate":
        overrides += ["checkpoint=outputs/x"] + (["dataset=mnist_mini"] if group != "dataset" else [])
    cfg = compose_config(primary, overrides)
    plain = to_plain(cfg)
    spec = DATASETS.build(plain["dataset"])
    AnyAttack.build(plain["attack"])
    if primary == "evaluate":
        EXPLAINERS.build(plain["explainer"])
    if primary == "train":
        REGULARIZERS.build(plain["reg"])
        OPTIMIZERS.build(plain["optim"])
        build_model(plain["model"], spec, (len(spec.mean), 28, 28), 10)


def test_per_dataset_threat_model_reaches_reg_and_attack():
    plain = to_plain(compose_config("train", ["dataset=fashion_mnist", "reg=pgd"]))
    assert plain["reg"]["eps"] == plain["attack"]["eps"] == 0.1
    assert plain["reg"]["steps"] == plain["attack"]["steps"] == 20


def test_hydra_private_api_signatures():
    """The CLI relies on these private functions; hydra-core is pinned to <1.5 and this test guards the pin."""
    assert list(inspect.signature(_run_hydra).parameters) == [
        "args", "args_parser", "task_function", "config_path", "config_name", "caller_stack_depth"]
    parsed = get_args_parser().parse_args(["--multirun", "--cfg", "job", "-cd", "x", "a=1"])
    assert parsed.multirun and parsed.cfg == "job" and parsed.config_dir == "x" and parsed.overrides == ["a=1"]


def test_unknown_names_and_keys_are_clear_errors():
    with pytest.raises(AttrobustError, match="unknown reg .ig_nrom.; choose one of: art, attribution_distance, "
                                             "erar, hkr, ig_norm, ig_sum_norm"):
        REGULARIZERS.build({"name": "ig_nrom"})
    with pytest.raises(AttrobustError, match="unknown key\\(s\\) wieght for reg 'natural'; valid keys: reduction"):
        REGULARIZERS.build({"name": "natural", "wieght": 1.0})
    # the threat model has its own group
    with pytest.raises(AttrobustError, match="unknown key\\(s\\) eps for dataset 'mnist_mini'"):
        DATASETS.build({"name": "mnist_mini", **DATASET_FIELDS, "eps": 0.3})


def test_conf_dir_is_the_checkout_conf():
    assert config_dir() == Path(__file__).resolve().parents[1] / "conf"


EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml") if not p.stem.startswith("_"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_preset_composes_and_builds(experiment):
    path = config_dir() / "experiment" / f"{experiment}.yaml"
    header = path.read_text().splitlines()
    assert header[0] == "# @package _global_" and header[1].startswith("# ")
    plain = to_plain(compose_config("train", [f"+experiment={experiment}"]))
    # named by its objective, or by the method it sets the attribution-distance template up as (mnist_mini_advaat)
    assert experiment.endswith("_" + plain["reg"]["name"]) or plain["reg"]["name"] == "attribution_distance"
    spec = DATASETS.build(plain["dataset"])
    REGULARIZERS.build(plain["reg"])
    OPTIMIZERS.build(plain["optim"])
    build_model(plain["model"], spec, (len(spec.mean), 28, 28), 10)


def test_reference_presets_use_the_reference_settings():
    plain = to_plain(compose_config("train", ["+experiment=rar_fashion_mnist_ig_sum_norm"]))
    assert plain["dataset"]["name"] == "fashion_mnist" and plain["model"]["name"] == "madry_cnn"
    assert plain["reg"]["weight"] == 0.1 and plain["reg"]["eps"] == 0.1 and plain["reg"]["steps"] == 20
    assert plain["reg"]["ig_steps"] == 50 and plain["reg"]["approx_factor"] == 5
    assert plain["reg"]["eps_warmup_epochs"] == 0 and plain["reg"]["reduction"] == "sum"
    assert plain["optim"]["lr"] == 1e-4 and plain["optim"]["schedule"] == "constant"
    assert plain["train"]["batch_size"] == 50
    assert plain["train"]["steps"] == 99_900 and plain["train"]["epochs"] is None  # the reference's last checkpoint
    assert plain["model"]["init"] == "reference"
    for method, steps in (("natural", 24_900), ("pgd", 99_900), ("ig_norm", 99_900)):
        for dataset in ("mnist", "fashion_mnist"):
            preset = to_plain(compose_config("train", [f"+experiment=rar_{dataset}_{method}"]))
            assert preset["train"]["steps"] == steps and preset["model"]["init"] == "reference"
    assert to_plain(compose_config("train", ["+experiment=mnist_mini_natural"]))["model"]["init"] == "pytorch"


def test_gtsrb_and_flower_presets_use_the_reference_settings():
    gtsrb = to_plain(compose_config("train", ["+experiment=rar_gtsrb_ig_sum_norm"]))
    assert gtsrb["model"] == {"name": "rar_resnet", "units_per_stage": 2, "pixel_scale": 255.0}
    assert gtsrb["dataset"]["equalize"] and gtsrb["dataset"]["balance_per_class"] == 10000
    assert gtsrb["reg"]["weight"] == 1.0 and gtsrb["reg"]["eps"] == 8 / 255 and gtsrb["reg"]["steps"] == 7
    assert gtsrb["reg"]["step_size"] == 2 / 255 and gtsrb["reg"]["approx_factor"] == 10
    assert gtsrb["optim"]["name"] == "sgd" and gtsrb["train"]["batch_size"] == 64
    flower = to_plain(compose_config("train", ["+experiment=rar_flower17_ig_norm"]))
    assert flower["model"]["name"] == "rar_resnet_flower" and flower["model"]["units_per_stage"] == 1
    assert gtsrb["optim"]["milestones"] == [[0, 1e-3], [500, 1e-2], [60000, 1e-3]]
    assert flower["optim"]["milestones"] == [[0, 1e-4], [500, 1e-3], [60000, 1e-4]]
    assert flower["reg"]["weight"] == 0.1 and flower["train"]["batch_size"] == 16
    assert flower["dataset"]["balance_per_class"] == 1000
    assert gtsrb["dataset"]["layout"] == "pickle"
    assert gtsrb["train"]["steps"] == flower["train"]["steps"] == 70_000
    assert gtsrb["train"]["epochs"] is None and flower["train"]["epochs"] is None
    assert to_plain(compose_config("train", ["+experiment=rar_flower17_natural"]))["reg"]["reduction"] == "mean"


def test_only_the_logger_group_takes_several_options():
    from attrobust.overrides import check_group_choices

    check_group_choices(["logger=[csv,mlflow]"], None)
    with pytest.raises(AttrobustError, match=r"explainer=\[gradient,ig\] chooses several explainers; explainer takes "
                                             r"one of: "):
        check_group_choices(["explainer=[gradient,ig]"], None)
    with pytest.raises(AttrobustError, match=r"logger=none,csv sweeps the loggers: .* report would count each twice; "
                                             r"log each run to several at once with logger=\[none,csv\]"):
        check_group_choices(["logger=none,csv"], None)  # a sweep of trackers repeats every run
    check_group_choices(["explainer=gradient,ig"], None)  # other groups are swept
