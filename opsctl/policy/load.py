"""Read a policy file and turn every problem into one line that names its field."""

from __future__ import annotations

import difflib
import errno
import os
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from opsctl.errors import BadInput, OpsctlError, PolicyInvalid
from opsctl.policy import trust
from opsctl.policy.fields import NAME_PATTERN, NAME_RULE, READ_ONLY, is_valid_name
from opsctl.policy.model import Policy, default_state_dir, duplicate_names_message


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice (PyYAML would silently keep the last)."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, bool] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if not _hashable(key):  # `? [a]: 1` or `{[1]: x}`: valid YAML, but no Python mapping can hold it
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain word such as name: or targets:, not a list or mapping",
                key_node.start_mark)
        if key in seen:
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None, None, f"the key '{key}' is given twice (again on line {line})", key_node.start_mark
            )
        seen[key] = True
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)

# YAML 1.2 booleans and numbers. PyYAML follows YAML 1.1, where on, off, yes, no, y and n are booleans
# (a key written `on:` arrived as True, `backup: off` as false), 12:00 is the base-60 number 720 and
# 1_000 is 1000.
_YAML_11_ONLY = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _YAML_11_ONLY]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
_UniqueKeyLoader.add_constructor(  # 1.2 integers: 012 is twelve (1.1 read it as octal ten, and 08 as an error)
    "tag:yaml.org,2002:int", lambda loader, node: _yaml12_int(loader.construct_scalar(node)))  # type: ignore[arg-type]
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+.0123456789"))


def _yaml12_int(text: object) -> int:
    digits = str(text)
    if digits.startswith(("0o", "0x")):
        return int(digits[2:], 8 if digits[1] == "o" else 16)
    return int(digits, 10)


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


@dataclass(frozen=True)
class OwnedPolicy:
    """A policy and the user who owns the file it was read from (fstat of the descriptor it was read through)."""

    policy: Policy
    owner: int


def load_policy(path: Path, *, check_state_dir: bool = True, read_only: bool = False) -> Policy:
    """Load and validate a policy file; raise PolicyInvalid listing every problem found (see load_owned_policy)."""
    return load_owned_policy(path, check_state_dir=check_state_dir, read_only=read_only).policy


def load_owned_policy(path: Path, *, check_state_dir: bool = True, read_only: bool = False) -> OwnedPolicy:
    """Load and validate a policy file, with its owner; raise PolicyInvalid listing every problem found.

    A file another user could change is refused before it is read (trust.py): its commands never run.
    With `read_only` (a command that runs nothing the policy names and reads no secret), the file may be
    another user's, and the files it names (secrets, keys, CA files) are not checked: none is opened.
    The owner is the one of the file actually read, never of what the path names a moment later.
    """
    text, owner = _read_trusted(path, read_only)
    data = _parsed(path, text)
    try:
        policy = Policy.model_validate(data, context={"base_dir": path.resolve().parent, READ_ONLY: read_only})
    except ValidationError as exc:
        errors = _without_consequences(exc.errors())
        problems = [describe_error(err) for err in errors] + _duplicate_target_names(data)
        database = data.get("database")
        if isinstance(database, dict) and "name" in database:  # `name: x` is read as `names: [x]`
            problems = [p.replace("'database.names[0]'", "'database.name'") for p in problems]
        raise PolicyInvalid(str(path), list(dict.fromkeys(problems))) from None
    if check_state_dir:
        trust.check_state_dir(policy.state_dir or default_state_dir(policy.name))
    return OwnedPolicy(policy, owner)


def check_target_files(path: Path, policy: Policy, name: str) -> None:
    """For a command that loaded the policy read-only and then logs in to one target (fleet status): the files that
    target names to log in (its keys, known_hosts, CA file; never its prune keys, never a password) are checked now,
    as a command that opens them checks them when it loads the policy. PolicyInvalid (exit 2) names each problem."""
    index, target = next((i, t) for i, t in enumerate(policy.targets) if t.name == name)
    try:
        type(target).model_validate(target.model_dump(exclude={"prune_credentials"}), context={READ_ONLY: False})
    except ValidationError as exc:
        problems = [describe_error({**e, "loc": ("targets", index, target.kind, *e["loc"])}) for e in exc.errors()]
        raise PolicyInvalid(str(path), problems) from None


def _read_trusted(path: Path, read_only: bool) -> tuple[str, int]:
    """The policy's text and its owner, both from the one descriptor it is read through; refused before it is read
    when another user could change it (or, for a command that writes, when it is another user's)."""
    if trust.is_callers_own(path):  # standard input or the caller's pipe: theirs, and a pipe by design
        return _decoded(path, _read_callers_own(path)), os.geteuid()
    try:
        with trust.opened_regular(_through_link(path)) as (fd, info):
            also = info.st_uid if read_only else None
            trust.check_trusted(path, "the policy file", also=also)  # the link and every folder on the way
            trust.check_opened(path, info, "the policy file", also=also)  # the file itself, as it was opened
            raw = trust.read_to_limit(fd)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise _unreadable(path, exc) from None
    return _decoded(path, raw), info.st_uid


def _read_callers_own(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            raw = handle.read(trust.READ_LIMIT + 1)
    except (OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    if len(raw) > trust.READ_LIMIT:
        raise _unreadable(path, OSError(errno.EFBIG, f"larger than {trust.READ_LIMIT >> 20} MiB"))
    return raw


def _through_link(path: Path) -> Path:
    """Where a policy path that is a link leads (its maker is checked with the folders): the file there is opened
    without following any further link, so what is read is what is checked."""
    return Path(os.path.realpath(path)) if os.path.islink(path) else path


def _unreadable(path: Path, exc: OSError | ValueError) -> BadInput:
    """What is wrong with the file itself, in the operator's words."""
    if isinstance(exc, FileNotFoundError):
        return BadInput(f"policy file {path} not found", "pass --policy FILE or set OPSCTL_POLICY")
    if isinstance(exc, PermissionError):
        return BadInput(f"policy file {path} cannot be read by this user",
                        "ask its owner to let you read it (for the policy's report_group: "
                        f"chgrp GROUP {path} && chmod 640 {path})")
    return BadInput(f"policy file {path} cannot be read: {_reason(exc)}",
                    "pass --policy with the path of a YAML policy file")


def _decoded(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _unreadable(path, exc) from None


def _without_consequences(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """Drop "too few items" on a list whose items failed: it only repeats their errors."""
    def inner_failed(loc: tuple[int | str, ...]) -> bool:
        return any(len(e["loc"]) > len(loc) and e["loc"][:len(loc)] == loc for e in errors)
    return [e for e in errors if not (e["type"] == "too_short" and inner_failed(e["loc"]))]


def _duplicate_target_names(data: dict[Any, Any]) -> list[str]:
    """Checked on the raw file too, so a clash is reported even while other target fields fail."""
    targets = data.get("targets")
    names = [t.get("name") for t in targets if isinstance(t, dict)] if isinstance(targets, list) else []
    texts = [n for n in names if isinstance(n, str)]  # a name that is a list or number is reported on its own
    duplicates = sorted({n for n in texts if texts.count(n) > 1})
    return [f"At 'targets': {duplicate_names_message(n)}" for n in duplicates]


def _parsed(path: Path, text: str) -> dict[Any, Any]:
    """The policy's text as a mapping, or PolicyInvalid saying where the YAML is wrong."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - _UniqueKeyLoader is a yaml.SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PolicyInvalid(str(path), [_yaml_problem(exc)]) from None
    except ValueError as exc:  # PyYAML's own constructors: `!!int 0xZZ`, `2026-13-45` read as a date
        problem = f"a value cannot be read as the type it looks like ({exc}); quote it if it is meant as text"
        raise PolicyInvalid(str(path), [problem]) from None
    except RecursionError:
        raise PolicyInvalid(str(path), ["the file is nested too deeply to be a policy"]) from None
    if not isinstance(data, dict):
        raise PolicyInvalid(str(path), ["the file must be a YAML mapping (name:, database:, targets: ...)"])
    return data


def _reason(exc: Exception) -> str:
    """An OSError in the system's words; otherwise the class (a decoding error's text quotes the file)."""
    if isinstance(exc, UnicodeDecodeError):
        return "it is not UTF-8 text"
    return (exc.strerror if isinstance(exc, OSError) else None) or exc.__class__.__name__


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{where}{problem} (YAML syntax)"


def describe_error(err: ErrorDetails) -> str:
    """One pydantic error as "At 'targets[1].path': what is wrong — what to do"."""
    field_path, model, field = _walk(err["loc"])
    kind = err["type"]
    below = err.get("ctx", {}).get("at")  # an error found while checking a section, at one of its fields
    if kind == "cross_reference" and isinstance(below, str):
        return f"At '{field_path}.{below}': {err['msg']}"
    if kind == "extra_forbidden":
        return f"At '{field_path}': unknown key{_suggestion(err['loc'][-1], model)}"
    if kind == "missing":
        info = model.model_fields.get(field) if model and field else None
        what = f" — {info.description}" if info is not None and info.description else ""
        return f"At '{field_path}': required field is missing{what}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return f"At '{field_path}': {_tag_message(err)}"
    if kind == "string_pattern_mismatch":
        return f"At '{field_path}': {_pattern_message(err, model, field)}"
    message = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return f"At '{field_path}': {message}"


def _pattern_message(err: ErrorDetails, model: type[BaseModel] | None, field: str | None) -> str:
    if err.get("ctx", {}).get("pattern") == NAME_PATTERN:
        return f"not a valid name: use {NAME_RULE}"
    info = model.model_fields.get(field) if model and field else None
    expected = info.description if info is not None and info.description else f"text matching {err['ctx']['pattern']}"
    return f"not valid here; expected {expected}"


def _suggestion(key: Any, model: type[BaseModel] | None) -> str:
    if model is None:
        return f" '{key}'"
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    if close:
        return f" '{key}'; did you mean '{close[0]}'?"
    return f" '{key}'; allowed keys here: {', '.join(allowed)}"


def _tag_message(err: ErrorDetails) -> str:
    ctx = err.get("ctx", {})
    expected = ctx.get("expected_tags", "")
    name = ctx.get("discriminator", "").strip("'")
    tag = ctx.get("tag")
    if tag is None:
        return f"'{name}' is missing; set it to one of {expected}"
    options = [t.strip().strip("'") for t in expected.split(",")]
    close = difflib.get_close_matches(str(tag), options, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"{name} '{tag}' is not one of {expected}{hint}"


def _walk(loc: tuple[int | str, ...]) -> tuple[str, type[BaseModel] | None, str | None]:
    """Follow an error location through the schema: a printable path, the model and field it ends in.

    Pydantic puts a discriminated union's tag (e.g. 'postgresql') into the location; it is not a
    key the operator wrote, so it is dropped from the printed path.
    """
    annotation: Any = Policy
    model: type[BaseModel] | None = None
    field: str | None = None
    printed = ""
    for part in loc:
        annotation = _unwrap(annotation)
        if _is_union(annotation) and isinstance(part, str) and _tag_of(annotation, part):
            annotation = _tag_of(annotation, part)
            continue
        if isinstance(part, int):
            printed += f"[{part}]"
            args = get_args(annotation)
            annotation = args[0] if args else Any
            continue
        printed += f".{part}" if printed else str(part)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model, field = annotation, part
            info = annotation.model_fields.get(part)
            annotation = info.annotation if info else Any
        else:
            model, field, annotation = None, part, Any
    return printed or "(top level)", model, field


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if _is_union(annotation):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _tag_of(union: Any, tag: str) -> type[BaseModel] | None:
    for candidate in get_args(union):
        member = _unwrap(candidate)
        if isinstance(member, type) and issubclass(member, BaseModel):
            for info in member.model_fields.values():
                if get_origin(info.annotation) is Literal and tag in get_args(info.annotation):
                    return member
    return None


def state_dir_despite_errors(path: Path | None) -> Path:
    """Where a policy that cannot be loaded keeps its state, so even that refusal reaches its audit trail.

    From the file's own `state_dir` or `name` when those can be read; otherwise the folder that
    holds every policy's state (for a missing or unreadable file).
    """
    try:
        # A file another user could change must not choose where root writes, even the refusal's audit line.
        text = _read_trusted(path, read_only=False)[0] if path is not None else None
        data = yaml.load(text, _UniqueKeyLoader) if text is not None else None  # noqa: S506 - a SafeLoader
    except (OpsctlError, ValueError, RecursionError, yaml.YAMLError):
        data = None
    if isinstance(data, dict):
        folder, name = data.get("state_dir"), data.get("name")
        if isinstance(folder, str) and folder.strip() and "\0" not in folder and path is not None:
            # Resolved as a valid policy's is: against the real folder of the file, through any symlink.
            return Path(os.path.normpath(path.resolve().parent / Path(folder).expanduser()))
        if isinstance(name, str) and is_valid_name(name):
            return default_state_dir(name)
    return default_state_dir("")
