"""The last words of a restore: exactly what the on-call engineer does next, and how to undo it."""

from __future__ import annotations

from opsctl.sources import Destination


def next_steps(engine: str, destination: Destination, aside: str | None) -> tuple[str, ...]:
    """Numbered-list steps for the operator; commands are given in full, for copy and paste."""
    name = destination.name
    point = (f"Point the application at the file {name} (or stop it and move the file into place)."
             if engine == "sqlite" else
             f"Point the application at {destination.display}: only its database name changes, to {name}.")
    steps = [point, "Open a few recent records yourself before you let users back in."]
    steps.append(_undo_replace(engine, name, aside) if aside else _undo_new(engine, name))
    steps.append("Once the application runs on the restored data, run: opsctl backup")
    return tuple(steps)


def _undo_replace(engine: str, name: str, aside: str) -> str:
    if engine == "postgresql":
        return (f"To undo, the previous database is kept as {aside}: stop the application, then in psql run "
                f'ALTER DATABASE "{name}" RENAME TO "{name}_undone"; ALTER DATABASE "{aside}" RENAME TO "{name}";')
    if engine == "mysql":
        return (f"To undo, the previous database is kept as {aside}: point the application at it (MySQL cannot "
                f"rename a database; move its tables back one by one with RENAME TABLE `{aside}`.t TO `{name}`.t).")
    return (f"To undo, the previous file is kept as {aside}: stop the application, then run: "
            f"mv '{name}' '{name}.undone' && mv '{aside}' '{name}'")


def _undo_new(engine: str, name: str) -> str:
    if engine == "sqlite":
        return f"Nothing was replaced. If this copy is not needed, delete it: rm '{name}'"
    quote = '"' if engine == "postgresql" else "`"
    return (f"Nothing was replaced. If this copy is not needed, remove it (opsctl never drops databases): "
            f"DROP DATABASE {quote}{name}{quote};")
