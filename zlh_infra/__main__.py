"""``python -m zlh_infra``: the project's command line (see ``zlh_infra.preview.cli``)."""

from zlh_infra.preview.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
