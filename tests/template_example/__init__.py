"""A copier's own network, datamodule and configs, as docs/template.md has them added to a
copy of the project (tests/test_template.py performs every step of the guide with them)."""
