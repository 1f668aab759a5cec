"""The opsctl command line: parses options and calls one action. Nothing else lives here."""

from __future__ import annotations

import logging
import dataclasses
import signal
import sys
from datetime import datetime
from pathlib import Path

import click

from opsctl import __version__
from opsctl.actions.backup import backup as backup_action
from opsctl.actions.check import check as check_action
from opsctl.actions.doctor import doctor as doctor_action
from opsctl.actions import drill as drill_actions
from opsctl.actions.prune import prune as prune_action
from opsctl.actions.context import App
from opsctl.actions.init import init as init_action
from opsctl.actions import keys as keys_actions
from opsctl.actions.restore import RestoreRequest, restore as restore_action
from opsctl.actions.snapshots import snapshots as snapshots_action
from opsctl.actions.validate import validate as validate_action
from opsctl.actions.verify import VerifyRequest, verify as verify_action
from opsctl.actions import reports as reports_action
from opsctl.errors import ExitCode, OpsctlError, PolicyInvalid
from opsctl.reports.console import show_error

pass_app = click.make_pass_decorator(App)
target_option = click.option("--target", "target_name", metavar="NAME", help="Only this target (by its name in the policy).")


class OpsctlGroup(click.Group):
    """Turns every OpsctlError into a calm message and its exit code; never a traceback for bad input."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except OpsctlError as exc:
            app = ctx.find_object(App) or App(None)
            problems = exc.problems if isinstance(exc, PolicyInvalid) else ()
            show_error(app, exc.message, exc.hint, problems)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted: nothing half-done was kept; run the command again when ready", err=True)
            ctx.exit(ExitCode.INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            app = ctx.find_object(App) or App(None)
            if app.verbose:
                raise
            show_error(app, f"unexpected error ({exc.__class__.__name__}); this is a bug in opsctl",
                       "run the same command with --verbose to see where it happened, and report it")
            ctx.exit(ExitCode.FAILURE)


def _finish(ctx: click.Context, code: ExitCode) -> None:
    ctx.exit(int(code))


@click.group(cls=OpsctlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--policy", "policy_path", type=click.Path(path_type=Path, dir_okay=False), envvar="OPSCTL_POLICY",
              help="The policy file (default: $OPSCTL_POLICY, ./opsctl.yaml, /etc/opsctl/policy.yaml).")
@click.option("--json", "json_output", is_flag=True, help="Machine-readable output on stdout.")
@click.option("--verbose", "-v", is_flag=True, help="Log each command opsctl runs (never secrets).")
@click.version_option(__version__, prog_name="opsctl")
@click.pass_context
def main(ctx: click.Context, policy_path: Path | None, json_output: bool, verbose: bool) -> None:
    """Backups of your CRM database that you can prove restore."""
    logging.basicConfig(level=logging.WARNING, format="%(relativeCreated)6dms %(levelname)s %(message)s",
                        stream=sys.stderr)
    # Only opsctl's own debug lines: boto3 and paramiko log request headers (access key IDs) at debug.
    logging.getLogger("opsctl").setLevel(logging.DEBUG if verbose else logging.WARNING)
    # systemd stops a unit with SIGTERM: unwind like Ctrl-C so staging copies are cleaned up.
    signal.signal(signal.SIGTERM, _interrupt)
    ctx.obj = App(policy_path=policy_path, json_output=json_output, verbose=verbose)


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


@main.group()
def policy() -> None:
    """Check the policy file."""


@policy.command("validate")
@pass_app
@click.pass_context
def policy_validate(ctx: click.Context, app: App) -> None:
    """Check the policy; list every problem with the field it is in."""
    _finish(ctx, validate_action(app))


@main.command()
@target_option
@pass_app
@click.pass_context
def init(ctx: click.Context, app: App, target_name: str | None) -> None:
    """Create each target's repository if it does not exist yet (existing ones are left unchanged)."""
    _finish(ctx, init_action(app, target_name))


@main.command()
@target_option
@pass_app
@click.pass_context
def backup(ctx: click.Context, app: App, target_name: str | None) -> None:
    """Back up the policy's database(s). Exit 0: all targets, 1: none, 3: some."""
    _finish(ctx, backup_action(app, target_name))


@main.command()
@target_option
@pass_app
@click.pass_context
def snapshots(ctx: click.Context, app: App, target_name: str | None) -> None:
    """List this policy's snapshots on each target."""
    _finish(ctx, snapshots_action(app, target_name))


class Moment(click.ParamType):
    """A point in time: '2026-11-20 03:00' (this machine's time zone) or ISO 8601 with a zone."""

    name = "TIME"

    def convert(self, value, param, ctx) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"'{value}' is not a time; write it like \"2026-11-20 03:00\" (local time) "
                      "or 2026-11-20T03:00:00+00:00", param, ctx)
        return moment if moment.tzinfo else moment.astimezone()


@main.command()
@click.option("--snapshot", default="latest", show_default=True, metavar="ID|latest", help="Snapshot to restore.")
@click.option("--at", "at", type=Moment(), help='The newest snapshot taken at or before this time, e.g. "2026-11-20 03:00".')
@click.option("--to", "to", metavar="NAME",
              help="Database name (file path for SQLite) to restore into; default: a new <name>_restored_<time>.")
@click.option("--target", "target_name", metavar="NAME", help="Restore from this target; default: the nearest healthy one.")
@click.option("--database", metavar="NAME", help="Which database of the policy (when it has several).")
@click.option("--replace", is_flag=True, help="Restore over an existing database; the old one is kept, renamed aside.")
@click.option("--confirm-source", metavar="NAME",
              help="With --replace: type the source database's name to restore over the live database.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (for scripts); the plan is still printed.")
@click.option("--no-verify", is_flag=True, help="Skip verifying the restored tables (the dump's SHA-256 is still checked): back in service sooner.")
@pass_app
@click.pass_context
def restore(ctx: click.Context, app: App, snapshot: str, at: datetime | None, to: str | None, target_name: str | None,
            database: str | None, replace: bool, confirm_source: str | None, yes: bool, no_verify: bool) -> None:
    """Restore a snapshot into a new database, verify it, and print the next steps. Asks first on a terminal."""
    if at is not None and snapshot != "latest":
        raise click.UsageError("give either --snapshot or --at, not both")
    request = RestoreRequest(snapshot=snapshot, at=at, to=to, target=target_name, database=database, replace=replace,
                             confirm_source=confirm_source, yes=yes, verify=not no_verify)
    _finish(ctx, restore_action(app, request))


@main.command()
@click.option("--dry-run", is_flag=True, help="Only show which snapshots the keep-rules would remove.")
@target_option
@pass_app
@click.pass_context
def prune(ctx: click.Context, app: App, dry_run: bool, target_name: str | None) -> None:
    """Apply each target's retention to this policy's snapshots (never others'), then free the space."""
    _finish(ctx, prune_action(app, dry_run, target_name))


@main.command()
@click.option("--read-data-subset", metavar="N%|n/t|SIZE", help="Also read back this much pack data, e.g. 10%.")
@target_option
@pass_app
@click.pass_context
def check(ctx: click.Context, app: App, read_data_subset: str | None, target_name: str | None) -> None:
    """Check every target's repository for damage. Exit 0: all sound, 1: none, 3: some."""
    _finish(ctx, check_action(app, read_data_subset, target_name))


@main.command()
@pass_app
@click.pass_context
def doctor(ctx: click.Context, app: App) -> None:
    """Preflight: restic, secrets, database, each target and its repository. Exit 1 on any problem."""
    _finish(ctx, doctor_action(app))


@main.group()
def keys() -> None:
    """Rotate and inspect the repository keys of every target."""


@keys.command("rotate")
@click.option("--dry-run", is_flag=True, help="Only check every target and show what would change.")
@click.option("--new-password-file", type=click.Path(path_type=Path, dir_okay=False, exists=True), metavar="FILE",
              help="Take the new password from this private file instead of generating one.")
@click.option("--resume", is_flag=True, help="Finish (or roll back) an interrupted rotation; plain rotate does too.")
@pass_app
@click.pass_context
def keys_rotate(ctx: click.Context, app: App, dry_run: bool, new_password_file: Path | None, resume: bool) -> None:
    """Give every target a new repository password, journaled so no interruption locks anyone out."""
    _finish(ctx, keys_actions.rotate(app, dry_run, new_password_file, resume))


@keys.command("status")
@click.option("--json", "json_output", is_flag=True, help="Machine-readable output on stdout.")
@pass_app
@click.pass_context
def keys_status(ctx: click.Context, app: App, json_output: bool) -> None:
    """Each target's keys, opsctl's current one and its age; warns about old or unexpected keys."""
    _finish(ctx, keys_actions.status(dataclasses.replace(app, json_output=app.json_output or json_output)))


@main.command()
@click.option("--snapshot", default="latest", show_default=True, metavar="ID|latest", help="Snapshot to verify.")
@target_option
@click.option("--all-targets", is_flag=True, help="Verify on every target and prove they hold the same backup.")
@click.option("--database", metavar="NAME", help="Which database of the policy (when it has several).")
@pass_app
@click.pass_context
def verify(ctx: click.Context, app: App, snapshot: str, target_name: str | None, all_targets: bool,
           database: str | None) -> None:
    """Restore into a scratch database, prove it equals the backup table by table, write a report. Exit 1: not proven."""
    if all_targets and target_name:
        raise click.UsageError("--target and --all-targets cannot be used together")
    request = VerifyRequest(snapshot=snapshot, target=target_name, all_targets=all_targets, database=database)
    _finish(ctx, verify_action(app, request))


@main.command()
@click.option("--target", "target_name", metavar="NAME", help="Drill from this target; default: the off-site one.")
@click.option("--snapshot", default="latest", show_default=True, metavar="ID|latest", help="Snapshot to drill with.")
@click.option("--database", metavar="NAME", help="Only this database of the policy (default: all of them).")
@click.option("--history", is_flag=True, help="List past drills instead of running one.")
@pass_app
@click.pass_context
def drill(ctx: click.Context, app: App, target_name: str | None, snapshot: str, database: str | None,
          history: bool) -> None:
    """Rehearse losing the site: restore from off-site, verify, measure RTO/RPO. Exit 1: objectives missed."""
    if history:
        _finish(ctx, drill_actions.drill_history(app))
    request = drill_actions.DrillRequest(target=target_name, snapshot=snapshot, database=database)
    _finish(ctx, drill_actions.drill(app, request))


@main.group()
def report() -> None:
    """Verification reports: list them, check one was not altered."""


@report.command("verify")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@pass_app
@click.pass_context
def report_verify(ctx: click.Context, app: App, file: Path) -> None:
    """Say whether a report (JSON or HTML) is as opsctl wrote it and its audit trail recorded it. Exit 1: altered."""
    _finish(ctx, reports_action.check_report(app, file))


@report.command("list")
@pass_app
@click.pass_context
def report_list(ctx: click.Context, app: App) -> None:
    """Past verifications of this policy: date, target, snapshot, verdict."""
    _finish(ctx, reports_action.list_reports(app))
