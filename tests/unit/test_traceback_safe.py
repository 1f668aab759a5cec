"""--verbose shows tracebacks, never a database driver's text (it quotes rows, DETAIL lines and all)."""

from __future__ import annotations

import traceback

import psycopg
import pytest

from opsctl.sources.errors import traceback_safe

ROW = "alice@example.org"


def _raise(exc: BaseException) -> None:
    raise exc


def _raised(exc: BaseException) -> BaseException:
    """The exception with a traceback, as a failing command has it."""
    try:
        _raise(exc)
    except BaseException as caught:  # noqa: BLE001 - the test needs the exception with its traceback
        return caught
    raise AssertionError("not raised")


def _shown(exc: BaseException) -> str:
    return "".join(traceback.format_exception(traceback_safe(exc)))


def test_a_driver_error_keeps_its_frames_and_loses_its_values():
    error = _raised(psycopg.errors.UniqueViolation(f'duplicate key value violates unique constraint "email_key"\n'
                                                  f"DETAIL:  Key (email)=({ROW}) already exists."))
    shown = _shown(error)
    assert ROW not in shown and "UniqueViolation" in shown and "_raised" in shown, shown


def test_an_error_raised_while_handling_a_driver_error_does_not_show_it():
    try:
        try:
            raise psycopg.errors.InvalidTextRepresentation(f'invalid input syntax for type integer: "{ROW}"')
        except psycopg.Error:
            raise RuntimeError("census failed")  # noqa: B904 - an implicit chain is exactly what is tested
    except RuntimeError as outer:
        shown = _shown(outer)
    assert ROW not in shown and "RuntimeError" in shown, shown


@pytest.mark.parametrize("error", [TypeError("unsupported operand"), AttributeError("'X' has no attribute 'y'")])
def test_errors_about_code_are_shown_as_they_are(error):
    assert traceback_safe(error) is error
