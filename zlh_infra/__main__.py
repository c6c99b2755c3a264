"""``python -m zlh_infra``: the project's command line (``zlh_infra.cli``)."""

from zlh_infra.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
