"""The Azure ML job environment: its torch build matches its image, it provides the job's imports, it resolves."""

from __future__ import annotations

import dataclasses

import pytest
from packaging.requirements import Requirement

from devstack.job_environment import (
    check,
    cuda_mismatches,
    job_imports,
    load_spec,
    missing_packages,
    resolution_requirements,
)


@pytest.fixture(scope="module")
def spec():
    return load_spec()


def test_the_torch_build_is_the_images_cuda(spec):
    assert spec.image_cuda == "126"
    assert cuda_mismatches(spec) == []


def test_another_cuda_on_the_image_is_one_line_per_package_and_index(spec):
    older_image = dataclasses.replace(spec, image=spec.image.replace("cuda12.6", "cuda12.4"))
    problems = cuda_mismatches(older_image)
    assert len(problems) == 3
    assert all("cu124" in problem for problem in problems)
    assert any("--extra-index-url" in problem for problem in problems)


def test_pypi_default_torch_on_a_cuda_image_is_refused(spec):
    pypi_torch = dataclasses.replace(spec, requirements=tuple(
        Requirement("torch==2.14.1") if r.name == "torch" else r for r in spec.requirements))
    assert cuda_mismatches(pypi_torch) == [
        "torch==2.14.1 is not the cu126 build the image's CUDA needs (pin torch==<version>+cu126)"]


def test_the_environment_provides_every_module_the_job_imports(spec):
    imported = job_imports()
    assert {"torch", "torchvision", "numpy", "PIL"} <= imported
    assert missing_packages(spec, imported) == []


def test_a_module_the_environment_lacks_is_named_with_the_fix(spec):
    assert missing_packages(spec, {"tenacity"}) == [
        "the job imports tenacity but the environment names none of tenacity: add it to scoring/environment/conda.yaml"]


def test_source_only_extra_and_unreachable_index_are_substituted_and_said(spec):
    lines, notes = resolution_requirements(spec, pytorch_index=False)
    assert "torch==2.14.1" in lines and "azureml-dataset-runtime[pandas]" in lines
    assert not any(line.startswith("--") for line in lines)
    assert len(notes) == 3
    lines, notes = resolution_requirements(spec, pytorch_index=True)
    assert "torch==2.14.1+cu126" in lines and "--extra-index-url https://download.pytorch.org/whl/cu126" in lines


def test_the_environment_resolves_from_wheels_for_the_images_python(spec):
    """A real pip dry run against the package index (PyPI): what `make check-env` runs."""
    said = []
    assert check(spec, pytorch_index=False, say=said.append) == []
    resolved = next(line for line in said if line.startswith("resolved from wheels"))
    assert "Python 3.11" in resolved and "numpy 1." in resolved and "pandas 1." in resolved
    assert any(line.startswith("source package found: fusepy") for line in said)


def test_a_pin_that_cannot_resolve_fails_in_one_line(spec):
    impossible = dataclasses.replace(spec, requirements=spec.requirements + (Requirement("numpy>=2"),))
    problems = check(impossible, pytorch_index=False, say=lambda _: None)
    assert len(problems) == 1
    assert problems[0].startswith("the environment does not resolve from wheels for Python 3.11: ")
    assert "\n" not in problems[0]
