from opsctl.cli import entry

entry()
