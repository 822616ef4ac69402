"""Config loading, inheritance, overrides and validation (reidkit.config)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reidkit.config import (
    SECTIONS,
    ConfigError,
    available_configs,
    dump_config,
    load_config,
    model_arch_kwargs,
    validate_config,
)
from reidkit.models.reid_model import MODEL_DEFAULTS

SHIPPED = ["synth_quick", "bot_r50", "agw_r50", "sbs_r50", "osnet_x1_0", "lightmbn", "seed_lightmbn_gc_gem",
           "seed_r50_nl_gem_circle"]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_all_recipes_are_shipped():
    assert set(SHIPPED) <= set(available_configs())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_loads_validates_and_round_trips(name, tmp_path):
    cfg = load_config(name)
    assert tuple(cfg) == SECTIONS
    assert isinstance(cfg["loss"]["spec"], str) and cfg["loss"]["spec"].strip()
    # dump → load gives the same tree
    again = load_config(write(tmp_path / "dumped.yaml", dump_config(cfg)))
    assert again == cfg
    # and the file itself is plain safe YAML
    from reidkit.config import CONFIG_DIR
    assert isinstance(yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text()), dict)


def test_recipe_values_follow_components_md():
    a = load_config("seed_lightmbn_gc_gem")
    expected = {"name": "warmup_cosine", "warmup_epochs": 10, "warmup_factor": 0.01, "delay_epochs": 30,
                "max_epochs": 150, "eta_min": 6e-7, "per_iter": False}
    assert {k: a["schedule"][k] for k in expected} == expected
    assert (a["data"]["batch_size"], a["data"]["num_instances"], a["data"]["height"]) == (64, 8, 384)
    assert a["model"]["arch"] == "lightmbn" and a["model"]["variant"] == "seed"
    assert a["optim"]["lr"] == 6e-4 and a["train"]["freeze_epochs"] == 4 and a["train"]["select_on"] == "test"
    b = load_config("seed_r50_nl_gem_circle")
    assert b["schedule"]["eta_min"] == 7e-7 and b["optim"]["lr"] == 3.5e-4
    assert (b["model"]["head"], b["model"]["scale"], b["model"]["margin"]) == ("circle", 64.0, 0.35)
    assert b["data"]["transforms"]["autoaugment_p"] == 0.1 and b["data"]["num_instances"] == 16
    bot = load_config("bot_r50")
    assert bot["schedule"]["milestones"] == [40, 70] and bot["train"]["epochs"] == 120
    agw = load_config("agw_r50")  # BoT's settings, written out
    assert agw["train"]["epochs"] == 160 and agw["model"]["pooling"] == "gem"
    assert {k: v for k, v in agw["optim"].items()} == bot["optim"]
    assert {k: v for k, v in agw["data"].items()} == bot["data"]
    assert agw["optim"]["lr"] == 3.5e-4 and agw["data"]["transforms"]["crop"] == "pad_crop"
    arch, kwargs = model_arch_kwargs(agw)
    assert arch == "reid" and set(kwargs) == set(MODEL_DEFAULTS)


def test_inheritance_merges_deeply(tmp_path):
    write(tmp_path / "base.yaml", """
data: {height: 128, width: 64, batch_size: 32, transforms: {erasing_p: 0.2, cutout_p: 0.0}}
loss: {spec: "1.0*ce", params: {ce: {epsilon: 0.1}}}
optim: {lr: 0.01, weight_decay: 0.001}
""")
    write(tmp_path / "mid.yaml",
          "base: base.yaml\ndata: {transforms: {hflip_p: 0.3}}\nloss: {params: {ce: {smoothing_style: fastreid}}}\n")
    child = write(tmp_path / "child.yaml", "base: mid.yaml\noptim: {lr: 0.02}\n")
    cfg = load_config(child)
    assert cfg["optim"]["lr"] == 0.02 and cfg["optim"]["weight_decay"] == 0.001   # sibling key kept
    assert cfg["data"]["height"] == 128 and cfg["data"]["transforms"]["height"] == 128
    t = cfg["data"]["transforms"]
    assert (t["erasing_p"], t["cutout_p"], t["hflip_p"]) == (0.2, 0.0, 0.3)         # two levels merged
    assert cfg["loss"]["params"]["ce"] == {"epsilon": 0.1, "smoothing_style": "fastreid"}


def test_base_by_shipped_name(tmp_path):
    cfg = load_config(write(tmp_path / "mine.yaml", "base: bot_r50\ntrain: {epochs: 3}\n"))
    assert cfg["train"]["epochs"] == 3 and cfg["model"]["backbone"] == "resnet50"


def test_overrides_nested_numbers_lists_booleans():
    cfg = load_config("synth_quick", [
        "optim.lr=2e-3", "train.epochs=3", "train.amp=true", "schedule.milestones=[2, 3]",
        "data.transforms.erasing_scale=[0.1, 0.3]", "loss.params.triplet.margin=0.0", "model.backbone=osnet_x0_25",
        "train.clip=null", "log.wandb_mode=offline",
    ])
    assert cfg["optim"]["lr"] == 2e-3 and isinstance(cfg["optim"]["lr"], float)
    assert cfg["train"]["epochs"] == 3 and cfg["train"]["amp"] is True
    assert cfg["schedule"]["milestones"] == [2, 3]
    assert cfg["data"]["transforms"]["erasing_scale"] == [0.1, 0.3]
    assert cfg["loss"]["params"]["triplet"] == {"margin": 0.0}
    assert cfg["model"]["backbone"] == "osnet_x0_25" and cfg["train"]["clip"] is None
    assert cfg["log"]["wandb_mode"] == "offline"
    # an override may create a whole new mapping
    cfg = load_config("synth_quick", ["loss.params.center={squared: false}"])
    assert cfg["loss"]["params"]["center"] == {"squared": False}


def test_unknown_key_lists_valid_keys_and_names_file(tmp_path):
    path = write(tmp_path / "typo.yaml", "base: synth_quick\noptim: {lrr: 0.1}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "optim.lrr" in msg and "valid keys" in msg and "weight_decay" in msg and str(path) in msg


def test_unknown_key_from_override_names_the_override():
    with pytest.raises(ConfigError, match=r"train\.epoch.*valid keys: epochs.*override 'train\.epoch=3'"):
        load_config("synth_quick", ["train.epoch=3"])


def test_unknown_model_key_uses_model_defaults(tmp_path):
    path = write(tmp_path / "m.yaml", "model: {backbone: resnet18, poolling: gem}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert "poolling" in msg and "pooling" in msg and "last_stride" in msg and str(path) in msg


def test_unknown_transform_key_and_section(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.transforms\.flip_p.*valid keys:.*hflip_p.*override"):
        load_config("synth_quick", ["data.transforms.flip_p=0.5"])
    path = write(tmp_path / "s.yaml", "trainer: {epochs: 1}\n")
    with pytest.raises(ConfigError, match=r"unknown section.*valid sections: data, model, loss"):
        load_config(path)


@pytest.mark.parametrize("override,choices", [
    ("optim.name=rmsprop", "adam, adamw, sgd"),
    ("schedule.name=step", "warmup_multistep, warmup_cosine, lightmbn_cosine"),
    ("schedule.warmup=exp", "linear, constant"),
    ("eval.metric=manhattan", "euclidean, cosine"),
    ("log.wandb_mode=on", "disabled, offline, online"),
    ("data.name=market", "market1501"),
    ("model.pooling=median", "avg, gem, max"),
    ("data.transforms.crop=random", "translate"),
    ("model.arch=vit", "reid, lightmbn"),
])
def test_bad_enum_value_lists_choices(override, choices):
    with pytest.raises(ConfigError) as info:
        load_config("synth_quick", [override])
    msg = str(info.value)
    assert choices in msg and f"override {override!r}" in msg


def test_bad_values(tmp_path):
    assert load_config("synth_quick", ["optim.lr=1e-3"])["optim"]["lr"] == 1e-3  # YAML 1.1 string "1e-3"
    with pytest.raises(ConfigError, match="must be a number"):
        load_config("synth_quick", ["optim.lr=fast"])
    with pytest.raises(ConfigError, match="quote the value"):
        load_config("synth_quick", ["log.wandb_mode=off"])
    with pytest.raises(ConfigError, match="must be an int"):
        load_config("synth_quick", ["train.epochs=2.5"])
    with pytest.raises(ConfigError, match="true or false"):
        load_config("synth_quick", ["train.amp=maybe"])
    with pytest.raises(ConfigError, match="multiple of data.num_instances"):
        load_config("synth_quick", ["data.batch_size=30"])
    with pytest.raises(ConfigError, match="non-empty loss spec"):
        load_config("synth_quick", ["loss.spec=' '"])
    with pytest.raises(ConfigError, match="delay_epochs.*warmup_epochs"):
        load_config("seed_lightmbn_gc_gem", ["schedule.delay_epochs=5"])
    with pytest.raises(ConfigError, match="strictly increasing"):
        load_config("bot_r50", ["schedule.milestones=[70, 40]"])
    with pytest.raises(ConfigError, match=r"differs from data\.height"):
        load_config("synth_quick", ["data.transforms.height=256"])
    with pytest.raises(ConfigError, match=r"variant.*lmbn, seed"):
        load_config("lightmbn", ["model.variant=fast"])
    with pytest.raises(ConfigError, match=r"valid keys:.*drop_pool"):
        load_config("lightmbn", ["model.backbone=resnet50"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config("synth_quick", ["train.epochs"])


def test_model_value_error_names_source(tmp_path):
    path = write(tmp_path / "ls.yaml", "base: synth_quick\nmodel: {last_stride: 3}\n")
    with pytest.raises(ConfigError, match=rf"last_stride.*{path.name}"):
        load_config(path)


def test_cycle_detection(tmp_path):
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: c.yaml\n")
    write(tmp_path / "c.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*c\.yaml -> .*a\.yaml"):
        load_config(tmp_path / "a.yaml")
    write(tmp_path / "self.yaml", "base: self.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "self.yaml")


def test_missing_files_and_names(tmp_path):
    with pytest.raises(ConfigError, match="available: .*bot_r50"):
        load_config("no_such_recipe")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="base 'nope'"):
        load_config(write(tmp_path / "x.yaml", "base: nope\n"))


def test_only_safe_load(tmp_path):
    path = write(tmp_path / "evil.yaml", "data: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="safe_load"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config("synth_quick", ["train.epochs=!!python/object/apply:os.getcwd []"])


def test_schedule_errors_name_the_config_keys_and_blame_the_overrides():
    from reidkit.config import CONFIG_DIR

    with pytest.raises(ConfigError) as info:
        load_config("synth_quick", ["schedule.name=warmup_cosine", "schedule.warmup_epochs=5",
                                    "schedule.delay_epochs=2"])
    assert str(info.value) == ("schedule: delay_epochs (D = 2) must be >= warmup_epochs (W = 5) "
                               "(delay_epochs from override 'schedule.delay_epochs=2'; "
                               "warmup_epochs from override 'schedule.warmup_epochs=5')")
    # one key from an override, the other from the recipe: each named with its own source
    with pytest.raises(ConfigError) as info:
        load_config("seed_lightmbn_gc_gem", ["schedule.max_epochs=20"])
    recipe = CONFIG_DIR / "seed_lightmbn_gc_gem.yaml"
    assert str(info.value) == ("schedule: max_epochs (M = 20) must be > delay_epochs (D = 30) "
                               f"(max_epochs from override 'schedule.max_epochs=20'; delay_epochs from {recipe})")
    # schedule.max_epochs null: the scheduler's max_steps is train.epochs
    with pytest.raises(ConfigError) as info:
        load_config("synth_quick", ["schedule.name=lightmbn_cosine", "train.epochs=2"])
    assert str(info.value) == ("schedule: train.epochs (E = 2) must be >= warmup_epochs + 2 (W = 1) "
                               f"(train.epochs from override 'train.epochs=2'; warmup_epochs from "
                               f"{CONFIG_DIR / 'synth_quick.yaml'})")


def test_schedule_error_from_one_file_names_that_file(tmp_path):
    path = write(tmp_path / "sched.yaml", "schedule: {name: warmup_cosine, warmup_epochs: 5, delay_epochs: 2, "
                                           "max_epochs: 10}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"schedule: delay_epochs (D = 2) must be >= warmup_epochs (W = 5) (from {path})"


def test_validate_config_fills_defaults():
    cfg = validate_config({})
    assert cfg["model"]["arch"] == "reid" and cfg["schedule"]["name"] == "warmup_multistep"
    assert cfg["data"]["transforms"]["height"] == cfg["data"]["height"]
    assert "(from the given mapping)" in str(pytest.raises(ConfigError, validate_config, {"eval": {"k": 1}}).value)


def test_training_engine_and_logging_keys():
    cfg = load_config("synth_quick")
    assert cfg["train"]["compile"] is False and cfg["train"]["compile_backend"] == "inductor"
    assert cfg["train"]["freeze_iters"] == 0 and cfg["train"]["sync_bn"] is False
    assert cfg["log"]["table"] is True and cfg["log"]["wandb_name"] is None
    assert load_config("sbs_r50")["train"]["freeze_iters"] == 1000
    cfg = load_config("synth_quick", ["train.compile_backend=aot_eager", "log.table=false", "log.wandb_name=try1"])
    assert (cfg["train"]["compile_backend"], cfg["log"]["table"], cfg["log"]["wandb_name"]) == (
        "aot_eager", False, "try1")
    with pytest.raises(ConfigError, match="optim.center_lr: must be > 0"):
        load_config("bot_r50", ["optim.center_lr=0"])
    with pytest.raises(ConfigError, match="train.compile_backend: must name"):
        load_config("synth_quick", ["train.compile_backend=' '"])
    with pytest.raises(ConfigError, match="train.freeze_iters"):
        load_config("synth_quick", ["train.freeze_iters=-1"])


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_loss_params_name_terms_of_the_spec(name):
    from reidkit.engine.run import _loss_spec

    terms = _loss_spec(load_config(name)["loss"])  # raises when loss.params names a term the spec lacks
    assert terms and all(t["weight"] >= 0 for t in terms)
