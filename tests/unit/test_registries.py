"""The kind -> target and engine -> source registries: every policy kind has a loader, an unknown one raises."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import get_args

import pytest

from opsctl import sources, targets
from opsctl.errors import NotSupportedYet
from opsctl.policy import model


def test_unknown_target_kind_raises_naming_it_and_the_known_kinds():
    with pytest.raises(NotSupportedYet) as caught:
        targets.target_for(SimpleNamespace(kind="ftp", name="old-nas"))
    assert "'ftp'" in caught.value.message
    assert "local, mount, s3, sftp" in caught.value.message


def test_unknown_database_engine_raises_naming_it_and_the_known_engines(tmp_path: Path):
    with pytest.raises(NotSupportedYet) as caught:
        sources.sources_for(SimpleNamespace(engine="oracle", names=("crm",)), None, tmp_path)
    assert "'oracle'" in caught.value.message
    assert "mysql, postgresql, sqlite" in caught.value.message


def _literal_tags(union: object, field: str) -> set[str]:
    members = get_args(get_args(union)[0])  # Annotated[Union[...], Field] -> the Union's members
    return {get_args(member.model_fields[field].annotation)[0] for member in members}


def test_every_kind_and_engine_the_policy_accepts_has_a_loader():
    assert _literal_tags(model.Target, "kind") == set(targets.LOADERS)
    assert _literal_tags(model.Database, "engine") == set(sources.LOADERS)
