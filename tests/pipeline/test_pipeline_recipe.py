"""Recipe validation: every invalid recipe gives one clear error naming file, line and field,
before any work starts; fuzzed recipes never produce anything but a DeepShrinkError."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepshrink.errors import ConfigError, DeepShrinkError
from deepshrink.pipeline import compress, load_recipe, parse_recipe

VALID = """\
name: tiny
model: {name: digits_cnn}
data: digits
steps:
  - train: {epochs: 1}
  - prune: {criterion: fpgm, ratio: 0.5}
  - quantize: {method: ptq, bits: 8}
  - export: {}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_valid_recipe_parses_with_typed_steps(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, VALID))
    assert [s.kind for s in recipe.parsed_steps] == ["train", "prune", "quantize", "export"]
    resolved = recipe.resolved()
    assert resolved["steps"][1]["prune"]["ratio"] == 0.5 and resolved["steps"][0]["train"]["epochs"] == 1


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("  - export: {}", "  - exprot: {}", "recipe.yaml:8: step 4: unknown step 'exprot' (did you mean: export?)"),
        ("{criterion: fpgm, ratio: 0.5}", "{criterion: fpgm, ratoi: 0.5}", "recipe.yaml:6: step 2 'prune': unknown field 'ratoi'"),
        ("train: {epochs: 1}", "train: {epochs: many}", "recipe.yaml:5: step 1 'train': invalid TrainConfig: epochs"),
        ("{method: ptq, bits: 8}", "{method: gptq, bits: 8}", "recipe.yaml:7: step 3 'quantize': invalid QuantizeConfig: method: Input should be 'ptq' or 'qat', got 'gptq'"),
        ("data: digits\n", "data: digits\nseeed: 1\n", "recipe.yaml:4: unknown field 'seeed' (did you mean: seed?)"),
        ("{criterion: fpgm, ratio: 0.5}", "{criterion: fpgm, ratio: 0.5, budget: {keep: 0.5}, sensitivity: {}}",
         "recipe.yaml:6: step 2 'prune': sensitivity sets the per-group ratios itself: leave ratio, ratios and policy out"),
        ("{criterion: fpgm, ratio: 0.5}", "{criterion: fpgm, sensitivity: {}}",
         "sensitivity needs exactly one of budget (allocate within it) and sensitivity.max_drop"),
        ("{criterion: fpgm, ratio: 0.5}", "{criterion: fpgm, ratio: 0.5, depth: {within: layer1}}",
         "recipe.yaml:6: step 2 'prune': field 'depth': depth needs exactly one of count and names"),
        ("{criterion: fpgm, ratio: 0.5}", "{criterion: fpgm, ratio: 0.5, depth: {count: 1}, schedule: {kind: iterative}}",
         "depth drops branches once, after the channels: it needs schedule one_shot"),
        ("  - export: {}", "  - distill: {temperature: 4}", "recipe.yaml:8: step 4 'distill': invalid DistillStepOptions: teachers: Field required"),
    ],
)
def test_invalid_recipe_names_line_step_and_field(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in VALID
    with pytest.raises(ConfigError) as info:
        load_recipe(write(tmp_path, VALID.replace(old, new)))
    assert expected in str(info.value)


def test_unknown_step_lists_allowed_steps(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="allowed steps: .*distill.*export.*prune.*quantize.*train"):
        load_recipe(write(tmp_path, VALID.replace("export: {}", "shrink: {}")))


def test_weights_that_do_not_fit_the_model_fail_before_work(tmp_path: Path) -> None:
    from deepshrink.fileio import save_safetensors
    from deepshrink.models import create_model

    weights = tmp_path / "wrong.safetensors"
    save_safetensors(create_model("digits_cnn", width=8).state_dict(), weights)
    recipe = write(tmp_path, VALID.replace("{name: digits_cnn}", f"{{name: digits_cnn, weights: {weights}}}"))
    with pytest.raises(ConfigError, match="field 'model'.*block1.conv.weight|field 'model'.*shape"):
        compress(recipe, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_missing_data_path_fails_before_work(tmp_path: Path) -> None:
    recipe = write(tmp_path, VALID.replace("data: digits", "data: imagefolder:/no/such/dir"))
    with pytest.raises(ConfigError, match="field 'data'.*/no/such/dir.*not found"):
        compress(recipe, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_distill_teacher_must_name_an_earlier_step(tmp_path: Path) -> None:
    text = VALID.replace("  - export: {}", "  - distill: {teachers: [{name: 'step:7'}]}")
    with pytest.raises(ConfigError, match="teacher 'step:7' must name an earlier step, step:1 to step:3"):
        load_recipe(write(tmp_path, text))


def test_invalid_yaml_reports_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"recipe.yaml: invalid YAML at line \d"):
        load_recipe(write(tmp_path, VALID + "  - export: {formats: [onnx\n"))


def test_yaml_tags_that_run_code_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_recipe(write(tmp_path, VALID.replace("name: tiny", "name: !!python/object/apply:os.system ['true']")))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False, width=16) | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)
step_names = st.sampled_from(["train", "prune", "distill", "quantize", "decompose", "export", "evaluate", "bogus"])
steps = st.lists(st.one_of(step_names, st.dictionaries(step_names, json_values, min_size=1, max_size=2)), max_size=4)
recipes = st.fixed_dictionaries(
    {"model": st.one_of(json_values, st.fixed_dictionaries({"name": st.sampled_from(["digits_cnn", "nope"])})),
     "data": st.one_of(st.just("digits"), json_values), "steps": st.one_of(steps, json_values)},
    optional={"seed": json_values, "name": json_values, "extra": json_values},
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recipes)
def test_fuzzed_recipes_never_raise_anything_but_a_clear_error(data: dict) -> None:
    text = yaml.safe_dump(data)
    try:
        parse_recipe(yaml.safe_load(text), source="fuzz.yaml")
    except DeepShrinkError as exc:
        assert str(exc).startswith("fuzz.yaml") and "\n" not in str(exc)


EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_recipe_validates(path: Path) -> None:
    from deepshrink.pipeline.task import task_for

    recipe = load_recipe(path)
    assert recipe.parsed_steps and recipe.parsed_steps[-1].kind == "export"
    assert task_for(recipe.data).name == ("detection" if path.stem.startswith("detector") else "classification")


def test_model_options_build_the_zoo_model_and_bad_ones_fail_before_work(tmp_path: Path) -> None:
    from deepshrink.fileio import save_safetensors
    from deepshrink.models import create_model
    from deepshrink.pipeline.recipe import check_resources

    weights = tmp_path / "narrow.safetensors"
    save_safetensors(create_model("digits_cnn", width=8).state_dict(), weights)
    fits = write(tmp_path, VALID.replace("{name: digits_cnn}", f"{{name: digits_cnn, weights: {weights}, options: {{width: 8}}}}"))
    check_resources(load_recipe(fits), source=str(fits))  # the narrow weights fit the narrow model
    typo = write(tmp_path, VALID.replace("{name: digits_cnn}", "{name: digits_cnn, options: {widht: 8}}"))
    with pytest.raises(ConfigError, match=r"field 'model': model 'digits_cnn': bad arguments \['widht'\]"):
        compress(typo, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
