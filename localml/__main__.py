"""`python -m localml register-model`: put a model into the embedded default's registry.

    python -m localml register-model --path <model file or folder> --name <name> --version <version>

The DAG's `model_name` and `model_version` then name it. The workspace is `.state/localml` in the clone
unless --workspace says otherwise (the `workspace_dir` of the azure_ml_default connection).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from localml.workspace import LocalWorkspace, WorkspaceError
from scoring.model_metadata import ModelFolderError

DEFAULT_WORKSPACE = Path(__file__).resolve().parent.parent / ".state" / "localml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localml", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    register = commands.add_parser("register-model", help="register a model version in the local registry",
                                   description="Load a model as the job would, then copy it into the local "
                                               "registry as <name>:<version> (versions are immutable).")
    register.add_argument("--path", type=Path, required=True, help="a .pt2 or TorchScript file, or a model folder")
    register.add_argument("--name", required=True, help="model name (the DAG's model_name)")
    register.add_argument("--version", required=True, help="model version (the DAG's model_version)")
    register.add_argument("--workspace", type=Path, default=DEFAULT_WORKSPACE,
                          help="the local workspace folder (default: .state/localml in this clone)")
    args = parser.parse_args(argv)
    from localml.models import register_model

    try:
        folder = register_model(LocalWorkspace(args.workspace), args.path, args.name, args.version)
    except (WorkspaceError, ModelFolderError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"registered {args.name}:{args.version} at {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
