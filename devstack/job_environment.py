"""`make check-env`: the Azure ML job environment (`scoring/environment/`) is one a GPU node can build and use.

Checks, each failing with one line:
- CUDA: the image's CUDA (`cudaX.Y` in its name) is the CUDA of the torch and torchvision builds (`+cuXY`) and of
  the PyTorch index they come from;
- imports: every third-party module the job's code imports (`scoring.entry`, `scoring.merge` and the package
  modules they reach) comes from a package the environment names;
- resolution: pip resolves the environment's packages from wheels alone, for the image's Python and glibc
  (a dry run: nothing is installed). Two exceptions, both said in the output: fusepy, the parallel runtime's FUSE
  binding, is published only as source (pure Python over ctypes), so it is checked to exist and the rest resolves
  without the `fuse` extra; and where PyTorch's index is out of reach, PyPI's build of the same torch release stands
  in for resolving the other packages (the builds differ only in their CUDA libraries).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.metadata
import json
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from devstack.airflow_env import PROJECT_ROOT  # also puts plugins/ on sys.path, as Airflow does

from batch_scoring.backends.azure_ml import ENVIRONMENT_FILE  # the file the DAG's jobs are built from
# What Azure ML runs of the job's code: the parallel step's entry script and the merge step's module.
JOB_MODULES = ("scoring.entry", "scoring.merge")
CUDA_BUILT_PACKAGES = ("torch", "torchvision")
# glibc of the Ubuntu releases Azure ML's images are built on: the newest manylinux wheels the image can load.
UBUNTU_GLIBC_MINOR = {"20.04": 31, "22.04": 35, "24.04": 39}
SOURCE_ONLY_EXTRAS = {"azureml-dataset-runtime": "fuse"}
INDEX_PROBE_TIMEOUT_S = 10


@dataclasses.dataclass(frozen=True)
class EnvironmentSpec:
    image: str
    python: str
    pip_options: tuple[str, ...]
    requirements: tuple[Requirement, ...]

    @property
    def image_cuda(self) -> str | None:
        found = re.search(r"cuda(\d+)\.(\d+)", self.image)
        return f"{found[1]}{found[2]}" if found else None

    @property
    def glibc_minor(self) -> int:
        found = re.search(r"ubuntu(\d+\.\d+)", self.image)
        if not found or found[1] not in UBUNTU_GLIBC_MINOR:
            raise ValueError(f"image {self.image}: unknown Ubuntu release, add its glibc to UBUNTU_GLIBC_MINOR")
        return UBUNTU_GLIBC_MINOR[found[1]]

    @property
    def index_urls(self) -> list[str]:
        return [option.split(None, 1)[1] for option in self.pip_options if option.startswith("--extra-index-url")]


def load_spec(path: Path = ENVIRONMENT_FILE) -> EnvironmentSpec:
    declared = yaml.safe_load(path.read_text())
    conda = yaml.safe_load((path.parent / declared["conda_file"]).read_text())
    python = next(dep.split("=", 1)[1] for dep in conda["dependencies"] if isinstance(dep, str)
                  and dep.startswith("python="))
    pip_lines = next(dep["pip"] for dep in conda["dependencies"] if isinstance(dep, dict) and "pip" in dep)
    return EnvironmentSpec(
        image=declared["image"],
        python=python,
        pip_options=tuple(line for line in pip_lines if line.startswith("-")),
        requirements=tuple(Requirement(line) for line in pip_lines if not line.startswith("-")),
    )


def _pinned_local_build(requirement: Requirement) -> str | None:
    pins = [spec.version for spec in requirement.specifier if spec.operator == "=="]
    return Version(pins[0]).local if pins else None


def cuda_mismatches(spec: EnvironmentSpec) -> list[str]:
    """One line per package or index whose CUDA is not the image's."""
    if spec.image_cuda is None:
        return [f"image {spec.image} names no CUDA version: use an Azure ML CUDA image (…-cudaX.Y-…)"]
    wanted = f"cu{spec.image_cuda}"
    problems = []
    for requirement in spec.requirements:
        if canonicalize_name(requirement.name) in CUDA_BUILT_PACKAGES:
            build = _pinned_local_build(requirement)
            if build != wanted:
                problems.append(f"{requirement} is not the {wanted} build the image's CUDA needs "
                                f"(pin {requirement.name}==<version>+{wanted})")
    if not any(url.rstrip("/").endswith(f"/{wanted}") for url in spec.index_urls):
        problems.append(f"no --extra-index-url for PyTorch's {wanted} builds (https://download.pytorch.org/whl/{wanted})")
    return problems


def job_imports(modules: tuple[str, ...] = JOB_MODULES, package_root: Path = PROJECT_ROOT) -> set[str]:
    """Top-level third-party modules the job's modules import, following imports within `scoring`."""
    package = modules[0].split(".")[0]
    pending, seen, third_party = list(modules), set(), set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        source = package_root.joinpath(*module.split(".")).with_suffix(".py")
        for node in ast.walk(ast.parse(source.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for name in names:
                top = name.split(".")[0]
                if top == package:
                    pending.append(name)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    third_party.add(top)
    return third_party


def missing_packages(spec: EnvironmentSpec, modules: set[str]) -> list[str]:
    """One line per imported module that no package the environment names provides."""
    named = {canonicalize_name(requirement.name) for requirement in spec.requirements}
    providers = importlib.metadata.packages_distributions()
    problems = []
    for module in sorted(modules):
        candidates = {canonicalize_name(dist) for dist in providers.get(module, [module])}
        if not candidates & named:
            problems.append(f"the job imports {module} but the environment names none of "
                            f"{', '.join(sorted(candidates))}: add it to scoring/environment/conda.yaml")
    return problems


def index_reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=INDEX_PROBE_TIMEOUT_S):
            return True
    except (urllib.error.URLError, OSError):
        return False


def resolution_requirements(spec: EnvironmentSpec, *, pytorch_index: bool) -> tuple[list[str], list[str]]:
    """The lines pip resolves from wheels, and what was substituted to get there (said in the output)."""
    lines = list(spec.pip_options) if pytorch_index else []
    substituted = []
    for requirement in spec.requirements:
        name = canonicalize_name(requirement.name)
        line = str(requirement)
        if name in SOURCE_ONLY_EXTRAS and SOURCE_ONLY_EXTRAS[name] in requirement.extras:
            extras = sorted(requirement.extras - {SOURCE_ONLY_EXTRAS[name]})
            line = requirement.name + (f"[{','.join(extras)}]" if extras else "") + str(requirement.specifier)
            substituted.append(f"{requirement.name}: [{SOURCE_ONLY_EXTRAS[name]}] checked as a source package")
        elif name in CUDA_BUILT_PACKAGES and not pytorch_index and _pinned_local_build(requirement):
            release = Version(next(iter(requirement.specifier)).version).public
            line = f"{requirement.name}=={release}"
            substituted.append(f"{requirement} resolved as PyPI's {line} (PyTorch's index is out of reach here)")
        lines.append(line)
    return lines, substituted


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True)


def resolve(spec: EnvironmentSpec, lines: list[str], workdir: Path) -> dict:
    """pip's dry-run report for `lines` on the image's Python and glibc, from wheels only; raises with pip's reason."""
    platforms = [f"manylinux_2_{minor}_x86_64" for minor in range(spec.glibc_minor, 4, -1)]
    platforms += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    requirements_file = workdir / "requirements.txt"
    requirements_file.write_text("\n".join(lines) + "\n")
    report = workdir / "report.json"
    result = _pip("install", "--dry-run", "--quiet", "--report", str(report), "--only-binary=:all:",
                  "--implementation", "cp", "--python-version", spec.python,
                  *[arg for platform in platforms for arg in ("--platform", platform)],
                  "--target", str(workdir / "target"), "-r", str(requirements_file))
    if result.returncode != 0:
        reasons = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")
                   and "require a different python version" not in line and "for help visit" not in line]
        raise RuntimeError("; ".join(reasons[-2:]) or result.stderr.strip()[-300:])
    return json.loads(report.read_text())


def source_only_packages(report: dict, workdir: Path) -> list[str]:
    """The requirements behind the source-only extras (from the resolved metadata), each fetched as source."""
    checked = []
    for item in report["install"]:
        name = canonicalize_name(item["metadata"]["name"])
        if name not in SOURCE_ONLY_EXTRAS:
            continue
        extra = SOURCE_ONLY_EXTRAS[name]
        for line in item["metadata"].get("requires_dist", []):
            requirement = Requirement(line)
            if requirement.marker and requirement.marker.evaluate({"extra": extra}) \
                    and not requirement.marker.evaluate({"extra": ""}):
                result = _pip("download", "--quiet", "--no-deps", "--no-binary=:all:", "--dest",
                              str(workdir / "sources"), f"{requirement.name}{requirement.specifier}")
                if result.returncode != 0:
                    raise RuntimeError(f"{requirement.name}{requirement.specifier} (the [{extra}] extra of {name}) "
                                       f"cannot be fetched: {result.stderr.strip()[-200:]}")
                checked.append(f"{requirement.name}{requirement.specifier}")
    return checked


def check(spec: EnvironmentSpec, *, pytorch_index: bool | None = None, say=print) -> list[str]:
    """Every check; returns the problems (empty when the environment is fine) and says what it did."""
    problems = cuda_mismatches(spec) + missing_packages(spec, job_imports())
    if pytorch_index is None:
        pytorch_index = any(index_reachable(url) for url in spec.index_urls)
    lines, substituted = resolution_requirements(spec, pytorch_index=pytorch_index)
    for note in substituted:
        say(f"note: {note}")
    with tempfile.TemporaryDirectory() as workdir:
        try:
            report = resolve(spec, lines, Path(workdir))
            sources = source_only_packages(report, Path(workdir))
        except RuntimeError as error:
            problems.append(f"the environment does not resolve from wheels for Python {spec.python}: {error}")
        else:
            pinned = {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
                      for item in report["install"]}
            say(f"resolved from wheels for Python {spec.python}, glibc 2.{spec.glibc_minor}: {len(pinned)} packages "
                f"(" + ", ".join(f"{name} {pinned[name]}" for name in ("torch", "numpy", "pandas", "pyarrow",
                                                                        "azureml-core") if name in pinned) + ")")
            for source in sources:
                say(f"source package found: {source}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--environment", type=Path, default=ENVIRONMENT_FILE)
    args = parser.parse_args(argv)
    spec = load_spec(args.environment)
    print(f"image {spec.image}, Python {spec.python}")
    problems = check(spec)
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    if not problems:
        print("job environment OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
