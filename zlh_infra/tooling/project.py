"""Where the project's files are: the directory holding ``Pulumi.yaml``."""

from __future__ import annotations

from pathlib import Path

from zlh_infra.tooling.preview.stack_files import find_project_file

#: The checkout this package was imported from.
CHECKOUT = Path(__file__).resolve().parents[2]


def project_root(cwd: Path | None = None) -> Path:
    """The current directory if it holds Pulumi.yaml, else the checkout of this package."""
    here = cwd or Path.cwd()
    if find_project_file(here) is not None:
        return here
    return CHECKOUT
