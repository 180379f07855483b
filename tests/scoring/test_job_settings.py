"""One definition of the job settings: the form, the CLI, the entry script and both job builders derive from it."""

import argparse
import dataclasses
import os

import pytest

from scoring.cli import build_parser
from scoring.entry import parse_arguments
from scoring.job_settings import (
    LOCAL,
    LOGGING_LEVELS,
    OUTPUTS,
    PARALLEL,
    PROFILE,
    JobSettings,
    JobSettingsError,
    add_cli_options,
    from_namespace,
    param_schemas,
    settings_fields,
)

ALL = [field.name for field in dataclasses.fields(JobSettings)]


def _score_parser() -> argparse.ArgumentParser:
    return build_parser()._subparsers._group_actions[0].choices["score"]


def test_the_cli_has_one_option_per_setting_with_the_same_default():
    defaults = JobSettings().to_dict()
    cli = {action.dest: action.default for action in _score_parser()._actions if action.dest in defaults}
    assert cli == defaults


def test_the_trigger_form_has_one_param_per_setting_with_the_same_default_and_bounds():
    schemas = param_schemas()
    assert list(schemas) == ALL
    assert {name: default for name, (default, _schema) in schemas.items()} == JobSettings().to_dict()
    assert schemas["logging_level"][1]["enum"] == list(LOGGING_LEVELS)
    assert schemas["error_threshold"][1]["minimum"] == -1
    assert schemas["compile"][1]["type"] == "boolean"
    assert {schema["section"] for _default, schema in schemas.values()} == {PARALLEL, PROFILE, OUTPUTS, LOCAL}


def test_the_entry_script_reads_back_every_profile_setting_the_job_passes():
    settings = JobSettings(device="cpu", precision="bf16", channels_last="off", batch_size=8, decode_threads=3,
                           compile=True, max_pixels=1000, max_concurrency_per_instance=5)
    _args, parsed = parse_arguments(["--model_dir", "m", "--month", "202610", *settings.program_arguments()])
    assert parsed == settings


def test_program_arguments_carry_exactly_the_profile_the_outputs_and_the_workers_per_node():
    names = {arg[2:].removeprefix("no-") for arg in JobSettings().program_arguments() if arg.startswith("--")}
    assert names == ({field.name for field in settings_fields(PROFILE)} | {field.name for field in
                     settings_fields(OUTPUTS)} | {"max_concurrency_per_instance"})


def test_every_field_of_the_form_has_a_title_in_words_and_its_name_in_the_description():
    for name, (_default, schema) in param_schemas().items():
        assert schema["title"] != name and "_" not in schema["title"], name
        assert schema["description"].endswith(f"({name})"), name


def test_a_new_field_reaches_every_consumer(monkeypatch):
    """What 'one place' buys: a setting added to the dataclass shows in the form, the CLI and the job's arguments."""
    extended = dataclasses.make_dataclass(
        "Extended", [("labels_per_image", int, dataclasses.field(default=1, metadata={
            "title": "Labels per image", "help": "labels per image", "group": PROFILE, "minimum": 1,
            "choices": None}))], bases=(JobSettings,),
        frozen=True)
    for field in dataclasses.fields(extended):
        if field.name == "labels_per_image":
            field.type = "int"  # as `from __future__ import annotations` spells it in the real module
    monkeypatch.setattr("scoring.job_settings.JobSettings", extended)
    assert param_schemas()["labels_per_image"] == (1, {
        "title": "Labels per image", "description": "labels per image (labels_per_image)", "section": PROFILE,
        "type": "integer", "minimum": 1})
    parser = argparse.ArgumentParser()
    add_cli_options(parser)
    assert parser.parse_args(["--labels_per_image", "3"]).labels_per_image == 3
    assert "--labels_per_image" in extended().program_arguments()
    with pytest.raises(JobSettingsError, match="labels_per_image=0 must be an integer >= 1"):
        extended(labels_per_image=0)


@pytest.mark.parametrize("values, message", [
    ({"logging_level": "ERROR"}, "logging_level='ERROR' must be one of DEBUG, INFO, WARNING"),
    ({"logging_level": "CRITICAL"}, "must be one of DEBUG, INFO, WARNING"),
    ({"mini_batch_size": 0}, "mini_batch_size=0 must be an integer >= 1"),
    ({"error_threshold": -2}, "error_threshold=-2 must be an integer >= -1 (-1: no limit)"),
    ({"precision": "int8"}, "precision='int8' must be one of auto, fp32, bf16, fp16"),
    ({"compile": "yes"}, "compile='yes' must be true or false"),
    ({"batch_size": True}, "batch_size=True must be an integer >= 0"),
    ({"mnth": 3}, "unknown job setting(s): mnth; known: "),
])
def test_a_bad_value_is_one_line_naming_the_setting(values, message):
    with pytest.raises(JobSettingsError) as raised:
        JobSettings.from_dict(values)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_the_cli_refuses_what_the_form_refuses():
    with pytest.raises(SystemExit):
        _score_parser().parse_args(["--input", "i", "--model", "m", "--out", "o", "--logging_level", "ERROR"])
    args = _score_parser().parse_args(["--input", "i", "--model", "m", "--out", "o", "--mini_batch_size", "0"])
    with pytest.raises(JobSettingsError, match="mini_batch_size=0"):
        from_namespace(args)


@pytest.mark.parametrize("cores, memory_gb, workers", [(16, 128, 16), (4, 28, 4), (8, 6, 3), (2, 1, 1), (2, None, 2)])
def test_auto_workers_are_one_per_core_and_at_most_one_per_2_gb(cores, memory_gb, workers):
    assert JobSettings().for_node(cores, memory_gb).max_concurrency_per_instance == workers
    assert JobSettings(max_concurrency_per_instance=5).for_node(cores, memory_gb).max_concurrency_per_instance == 5


@pytest.mark.parametrize("max_pixels, workers", [(64_000_000, 8), (200_000_000, 4), (16_000_000, 12)])
def test_auto_workers_leave_each_worker_room_to_decode_an_image_at_the_pixel_limit(max_pixels, workers):
    settings = JobSettings(max_pixels=max_pixels)
    assert settings.for_node(16, 16).max_concurrency_per_instance == workers
    # the count times what each may hold fits the node
    assert workers * settings.worker_memory_gb() <= 16


def test_the_local_runner_gives_every_core_of_this_machine_a_worker():
    from scoring.parallel_runner import local_settings

    assert local_settings(JobSettings()).max_concurrency_per_instance == min(os.cpu_count(), max(1, int(
        __import__("psutil").virtual_memory().total / 2**30 // JobSettings().worker_memory_gb())))
    assert local_settings(JobSettings(instance_count=2)).max_concurrency_per_instance >= 1
