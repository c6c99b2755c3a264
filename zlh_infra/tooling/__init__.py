"""Tooling around the program: the offline preview, delivery (plan diff, diagram, routers),
the live audit, the lab and the reference docs. It may import the program and the rules;
neither imports it (the import contracts in ``pyproject.toml``)."""
