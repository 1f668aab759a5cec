"""Pure functions that build restic argument lists; nothing here starts a process."""

from __future__ import annotations

from collections.abc import Iterable

MINIMUM_VERSION = (0, 14, 0)


def global_args(location: str, password_fd: int, options: Iterable[str], cache_dir: str | None = None) -> list[str]:
    args = ["--repo", location, "--password-file", f"/dev/fd/{password_fd}"]
    if cache_dir is not None:
        args += ["--cache-dir", cache_dir]
    for option in options:
        args += ["--option", option]
    return args


def init_args() -> list[str]:
    # Version 2 repositories store compressed data; 0.14 uses it by default, we make it explicit.
    return ["init", "--repository-version", "2"]


def backup_stdin_args(filename: str, tags: Iterable[str], compression: str, host: str | None = None) -> list[str]:
    args = ["backup", "--stdin", "--stdin-filename", filename, "--json", "--compression", compression]
    for tag in tags:
        args += ["--tag", tag]
    if host:
        args += ["--host", host]
    return args


def snapshots_args(tags: Iterable[str]) -> list[str]:
    # A listing needs no lock, and taking one costs a write to the target (0.2 s on S3).
    return ["--no-lock", "snapshots", "--json", *_tag_filter(tags)]


def _tag_filter(tags: Iterable[str]) -> list[str]:
    # restic ANDs the comma-separated tags of one --tag option.
    tag_list = ",".join(tags)
    return ["--tag", tag_list] if tag_list else []


def dump_args(snapshot_id: str, path: str) -> list[str]:
    return ["dump", snapshot_id, path]


def ls_args(snapshot_id: str, tags: Iterable[str] = ()) -> list[str]:
    """With tags and "latest": the newest snapshot carrying all of them, and its files, in one call."""
    return ["--no-lock", "ls", "--json", *_tag_filter(tags), snapshot_id]


def forget_args(snapshot_ids: Iterable[str]) -> list[str]:
    return ["forget", *snapshot_ids]


def cat_config_args() -> list[str]:
    return ["cat", "config"]


def parse_version(text: str) -> tuple[int, int, int] | None:
    """(0, 14, 0) from "restic 0.14.0 compiled with go1.19.8 on linux/amd64"."""
    match text.split():
        case ["restic", version, *_]:
            parts = version.split(".")
        case _:
            return None
    try:
        major, minor, patch = (int(p) for p in ([*parts, "0", "0"])[:3])
    except ValueError:
        return None
    return major, minor, patch


def unlock_args() -> list[str]:
    # Without --remove-all restic removes only stale locks: older than 30 minutes, or left by a
    # process of this host that is gone. A live run's lock is never touched.
    return ["unlock"]


def forget_policy_args(tags: Iterable[str], keep: dict[str, int], dry_run: bool) -> list[str]:
    """forget by keep-rules, limited to snapshots carrying all the tags, one group per backed-up file."""
    args = ["forget", "--json", "--tag", ",".join(tags), "--group-by", "paths"]
    for rule, count in sorted(keep.items()):
        args += [f"--{rule.replace('_', '-')}", str(count)]
    return args + (["--dry-run"] if dry_run else [])


def prune_args() -> list[str]:
    return ["prune"]


def check_args(read_data_subset: str | None) -> list[str]:
    return ["check"] + ([f"--read-data-subset={read_data_subset}"] if read_data_subset else [])


def key_list_args() -> list[str]:
    return ["key", "list", "--json"]


def key_add_args(new_password_fd: int) -> list[str]:
    # The new password comes by descriptor like the current one: never argv, never a lasting file.
    return ["key", "add", "--new-password-file", f"/dev/fd/{new_password_fd}"]


def key_remove_args(key_id: str) -> list[str]:
    """Remove exactly one key by its ID; restic itself refuses the key that opened the repository."""
    if not key_id or not all(ch in "0123456789abcdef" for ch in key_id):
        raise ValueError(f"not a restic key ID: {key_id!r}")
    return ["key", "remove", key_id]
