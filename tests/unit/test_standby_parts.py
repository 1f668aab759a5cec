"""Standby and recovery-server pieces that need no server: version parsing and checks, account names, locality."""

from __future__ import annotations

import pytest

from opsctl.sources.base import SERVER_VERSION
from opsctl.sources.compat import (
    check_mysql,
    check_pg,
    free_bytes_of_server,
    is_local,
    mysql_release,
    pg_major,
    pg_version_text,
)
from opsctl.sources.errors import DestinationRefused
from opsctl.sources.mysql_standby import account, grant_name


@pytest.mark.parametrize(("number", "text", "major"), [(150018, "15.18", (15,)), (180001, "18.1", (18,)),
                                                       (90624, "9.6.24", (9, 6)), (100000, "10.0", (10,))])
def test_postgres_versions_are_written_and_read_as_people_do(number, text, major):
    assert pg_version_text(number) == text
    assert pg_major(text) == major


def test_postgres_version_check_refuses_only_an_older_major():
    check_pg({SERVER_VERSION: "15.2"}, 150018, "here")
    check_pg({SERVER_VERSION: "9.6.24"}, 150018, "here")
    check_pg({}, 150018, "here")
    check_pg({SERVER_VERSION: "15.18 (Debian 15.18-1)"}, 150001, "here")
    check_pg({SERVER_VERSION: "not a version"}, 150018, "here")
    with pytest.raises(DestinationRefused, match=r"PostgreSQL 16\.1 and here runs PostgreSQL 15\.18"):
        check_pg({SERVER_VERSION: "16.1"}, 150018, "here")


@pytest.mark.parametrize(("text", "release"), [
    ("10.11.6-MariaDB-0+deb12u1", ("MariaDB", (10, 11))), ("8.0.36", ("MySQL", (8, 0))),
    ("11.4.2-MariaDB-log", ("MariaDB", (11, 4))), ("nonsense", None)])
def test_mysql_releases_are_read_with_their_flavour(text, release):
    assert mysql_release(text) == release


def test_mysql_version_check_refuses_an_older_release_and_another_flavour():
    here = "10.11.6-MariaDB-0+deb12u1"
    check_mysql({SERVER_VERSION: "10.6.1-MariaDB"}, here, "there")
    check_mysql({SERVER_VERSION: "10.11.19-MariaDB"}, here, "there")  # a newer patch release: same 10.11
    check_mysql({}, here, "there")
    with pytest.raises(DestinationRefused, match="older"):
        check_mysql({SERVER_VERSION: "11.4.2-MariaDB"}, here, "there")
    with pytest.raises(DestinationRefused, match=r"MySQL 8\.0\.36 and there runs MariaDB"):
        check_mysql({SERVER_VERSION: "8.0.36"}, here, "there")
    with pytest.raises(DestinationRefused, match=r"MariaDB .* runs MySQL"):
        check_mysql({SERVER_VERSION: "10.5.1-MariaDB"}, "8.4.0", "there")


def test_reader_accounts_and_grant_names():
    assert account("support") == ("support", "%")
    assert account("support@10.0.0.%") == ("support", "10.0.0.%")
    assert account("odd@name@host") == ("odd@name", "host")
    assert grant_name("crm_standby") == "crm\\_standby"
    assert grant_name("50%_off\\") == "50\\%\\_off\\\\"


@pytest.mark.parametrize(("host", "local"), [("localhost", True), ("127.0.0.1", True), ("::1", True),
                                             ("[::1]", True), ("/var/run/postgresql", True), ("db.internal", False),
                                             ("10.0.0.5", False), ("127.0.0.1,db.internal", False)])
def test_only_a_server_on_this_machine_is_local(host, local):
    assert is_local(host) is local


def test_free_space_of_a_server_elsewhere_or_of_a_path_not_here_is_unknown(tmp_path):
    assert free_bytes_of_server("db.internal", str(tmp_path)) is None
    assert free_bytes_of_server("localhost", str(tmp_path / "not-here")) is None
    assert free_bytes_of_server("localhost", "relative/data") is None
    assert free_bytes_of_server("localhost", None) is None
    free = free_bytes_of_server("localhost", str(tmp_path))
    assert free is not None and free > 0
