"""The opsctl command line: parses options, runs one command through the runner, renders its outcome."""

from __future__ import annotations

import dataclasses
import gc
import io
import logging
import signal
import sys
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from opsctl import __version__
from opsctl import cli_options as option
from opsctl.actions import iam_policy  # its option's choices
from opsctl.actions.checkpoints import Checkpoints
from opsctl.actions.context import App
from opsctl.actions.outcome import Outcome, Problem, Refused, failure_word
from opsctl.actions.runner import INTERRUPTED, Command, run
from opsctl.errors import BadInput, ExitCode, OpsctlError
from opsctl.policy.schedule import JOBS
from opsctl.process import drop_redirecting_environment, no_core_dumps
from opsctl.reports.console import show_json

R = TypeVar("R")
# Click >= 8.2 says "no subcommand given" with this UsageError; it means: show the group's help.
NO_ARGS_IS_HELP: type[Exception] = getattr(click.exceptions, "NoArgsIsHelpError", type("_Never", (Exception,), {}))
pass_app = click.make_pass_decorator(App)


class OpsctlGroup(click.Group):
    """The last line of defence: an error outside a command's run is still calm, never a traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        _tolerant_output()
        return super().main(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        given = _unparsed(ctx)
        try:
            return super().invoke(ctx)
        except NO_ARGS_IS_HELP:
            raise  # `opsctl keys` alone: Click shows that group's help, as before
        except click.UsageError as exc:  # a mistyped option or value: refused, and recorded like any refusal
            _refuse_usage(ctx, exc, json_output="--json" in given, standalone=_standalone(given))
        except OpsctlError as exc:
            _render(_app(ctx), "opsctl", Refused(Problem.of(exc), failure_word(exc)))
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            _render(_app(ctx), "opsctl", Refused(INTERRUPTED, "interrupted"))
            ctx.exit(ExitCode.INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            if _app(ctx).verbose:
                raise
            _render(_app(ctx), "opsctl", Refused(Problem(
                f"unexpected error ({exc.__class__.__name__}); this is a bug in opsctl",
                "run the same command with --verbose to see where it happened, and report it")))
            ctx.exit(ExitCode.FAILURE)


def _tolerant_output() -> None:
    """Echoing a name that came in as bytes that are not UTF-8 (a file, a target) must not crash the output.

    Python hands such bytes over as lone surrogates, which strict UTF-8 output refuses: they are
    written as backslash escapes instead (inside JSON, a valid escape).
    """
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def _unparsed(ctx: click.Context) -> list[str]:
    """The command line after the global options (Click 8 splits it in two; Click 9 will keep it in args)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return [*getattr(ctx, "protected_args", ()), *ctx.args]


def _app(ctx: click.Context) -> App:
    """The global options; built from what the root parsed when its callback has not run yet (a bad command)."""
    found = ctx.find_object(App)
    if found is not None:
        return found
    given = ctx.find_root().params
    return App(given.get("policy_path"), json_output=bool(given.get("json_output")), verbose=bool(given.get("verbose")))


def _refuse_usage(ctx: click.Context, error: click.UsageError, json_output: bool, standalone: bool) -> NoReturn:
    names, current = [], error.ctx
    while current is not None and current.parent is not None:  # the root's name is however opsctl was started
        names.append(current.info_name or "")
        current = current.parent
    where = " ".join(reversed(names))
    hint = f"see: opsctl {where} --help".replace("  ", " ")

    def refuse(_app: App, _request: None) -> None:
        raise BadInput(error.format_message(), hint)

    def refuse_here(_request: None) -> Outcome:
        raise BadInput(error.format_message(), hint)

    # An auditor's command refused is still one that reads no policy and records nothing.
    command = Command(where or "opsctl", _nothing, standalone=refuse_here) if standalone \
        else Command(where or "opsctl", _nothing, precheck=refuse)
    _run(ctx, command, None, json_output)


def _standalone(given: list[str]) -> bool:
    """Whether the command line asked for an auditor's command (it runs without a policy)."""
    words = [word.partition("=")[0] for word in given]
    return (words[:2] == ["report", "verify"] and "--public-key" in words) or \
        (words[:1] == ["audit"] and "--file" in words and "--against" not in words)


def _nothing(_session: object, _request: None) -> Outcome:
    raise AssertionError("refused before it runs")


def _run(ctx: click.Context, command: Command[R], request: R, json_output: bool = False) -> NoReturn:
    """Run the command, show its outcome (text, or one JSON document), exit with its code."""
    app = _app(ctx)
    if json_output:
        app = dataclasses.replace(app, json_output=True)
        ctx.find_root().obj = app  # so the last line of defence answers in JSON too
    outcome = run(app, command, request)
    _render(app, command.name, outcome)
    ctx.exit(int(outcome.exit_code))


def _render(app: App, name: str, outcome: Outcome) -> None:
    if isinstance(outcome, Refused) or not app.json_output:
        outcome.show(app)  # a refusal is always told on stderr too
    if app.json_output:
        show_json(app, {"command": name, "outcome": outcome.word, "exit_code": int(outcome.exit_code),
                        **outcome.to_json()})


@click.group(cls=OpsctlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--policy", "policy_path", type=click.Path(path_type=Path, dir_okay=False, readable=False),
              envvar="OPSCTL_POLICY",
              help="The policy file (default: $OPSCTL_POLICY, ./opsctl.yaml, /etc/opsctl/policy.yaml).")
@click.option("--json", "json_output", is_flag=True, help=option.JSON_HELP)
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
    no_core_dumps()
    drop_redirecting_environment()
    # Only a test harness calling main(obj=...) passes its own checkpoints; the installed command never does.
    checkpoints = ctx.obj if isinstance(ctx.obj, Checkpoints) else Checkpoints()
    ctx.obj = App(policy_path=policy_path, json_output=json_output, verbose=verbose, checkpoints=checkpoints)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


@main.group()
def policy() -> None:
    """Check the policy file."""


@policy.command("validate")
@option.json_output()
@click.pass_context
def policy_validate(ctx: click.Context, json_output: bool) -> None:
    """Check the policy; list every problem with the field it is in."""
    from opsctl.actions import validate
    _run(ctx, validate.VALIDATE, None, json_output)


@main.command("init")
@option.target()
@option.json_output()
@click.pass_context
def init_command(ctx: click.Context, target_name: str | None, json_output: bool) -> None:
    """Create each target's repository if it does not exist yet (existing ones are left unchanged)."""
    from opsctl.actions import init
    _run(ctx, init.INIT, target_name, json_output)


@main.command("backup")
@option.target()
@option.json_output()
@click.pass_context
def backup_command(ctx: click.Context, target_name: str | None, json_output: bool) -> None:
    """Back up the policy's database(s). Exit 0: all targets, 1: none, 3: some."""
    from opsctl.actions import backup
    _run(ctx, backup.BACKUP, target_name, json_output)


@main.command("snapshots")
@option.target()
@option.json_output()
@click.pass_context
def snapshots_command(ctx: click.Context, target_name: str | None, json_output: bool) -> None:
    """List this policy's snapshots on each target. Exit 0: all listed, 1: none, 3: some."""
    from opsctl.actions import snapshots
    _run(ctx, snapshots.SNAPSHOTS, target_name, json_output)


@main.command("restore")
@option.snapshot("Snapshot to restore.")
@click.option("--at", "at", type=option.Moment(),
              help='The newest snapshot taken at or before this time, e.g. "2026-11-20 03:00".')
@click.option("--to", "to", metavar="NAME",
              help="Database name (file path for SQLite) to restore into; default: a new <name>_restored_<time>.")
@option.target("Restore from this target; default: the nearest healthy one.")
@option.database()
@click.option("--replace", is_flag=True, help="Restore over an existing database; the old one is kept, renamed aside.")
@click.option("--confirm-source", metavar="NAME",
              help="With --replace: type the source database's name to restore over the live database.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (for scripts); the plan is still printed.")
@click.option("--no-verify", is_flag=True,
              help="Skip verifying the restored tables (the dump's SHA-256 is still checked): back in service sooner.")
@option.server("default: the policy's own (source).")
@option.server_overrides()
@option.json_output()
@click.pass_context
def restore_command(  # noqa: PLR0913 - one parameter per Click option
        ctx: click.Context, *, snapshot: str, at: datetime | None, to: str | None, target_name: str | None,
        database: str | None, replace: bool, confirm_source: str | None, yes: bool, no_verify: bool,
        server: str | None, server_host: str | None, server_port: int | None, server_user: str | None,
        json_output: bool) -> None:
    """Restore a snapshot into a new database, verify it, and print the next steps. Asks first on a terminal."""
    from opsctl.actions import restore
    from opsctl.actions.servers import ServerChoice
    choice = ServerChoice.of(server, server_host, server_port, server_user)
    request = restore.RestoreRequest(snapshot=snapshot, at=at, to=to, target=target_name, database=database,
                                     replace=replace, confirm_source=confirm_source, yes=yes, verify=not no_verify,
                                     server=choice)
    _run(ctx, restore.RESTORE, request, json_output)


@main.command("prune")
@option.dry_run("Only show which snapshots the keep-rules would remove.")
@option.target()
@option.json_output()
@click.pass_context
def prune_command(ctx: click.Context, dry_run: bool, target_name: str | None, json_output: bool) -> None:
    """Apply each target's retention to this policy's snapshots (never others'), then free the space."""
    from opsctl.actions import prune
    _run(ctx, prune.PRUNE, prune.PruneRequest(dry_run, target_name), json_output)


@main.command("check")
@click.option("--read-data-subset", metavar="N%|n/t|SIZE", help="Also read back this much pack data, e.g. 10%.")
@option.target()
@option.json_output()
@click.pass_context
def check_command(ctx: click.Context, read_data_subset: str | None, target_name: str | None, json_output: bool) -> None:
    """Check every target's repository for damage. Exit 0: all sound, 1: none, 3: some."""
    from opsctl.actions import check
    _run(ctx, check.CHECK, check.CheckRequest(read_data_subset, target_name), json_output)


@main.command("doctor")
@option.json_output()
@click.pass_context
def doctor_command(ctx: click.Context, json_output: bool) -> None:
    """Preflight: restic, secrets, database, each target and its repository. Exit 1 on any problem."""
    from opsctl.actions import doctor
    _run(ctx, doctor.DOCTOR, None, json_output)


@main.command("status")
@click.option("--offline", is_flag=True, help="Answer from the run record alone; ask no target, read no password. "
                                              "An auditor in the policy's report_group may run it.")
@option.timeout("How long each target may take to answer.")
@click.option("--prometheus", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Also write Prometheus textfile metrics to FILE (atomically).")
@option.html_page("Also write the sealed compliance page for auditors to FILE.")
@option.json_output()
@click.pass_context
def status_command(ctx: click.Context, *, offline: bool, timeout_s: float | None, prometheus: Path | None,
                   html: Path | None, json_output: bool) -> None:
    """Is the database protected as the policy requires? Exit 0: every required rule passes, 1: one fails,
    3: one is unknown (a target did not answer)."""
    from opsctl.actions import status
    command = status.STATUS_OFFLINE if offline else status.STATUS
    _run(ctx, command, status.StatusRequest(offline, timeout_s, prometheus, html), json_output)


@main.command("iam-policy")
@option.target("The S3 target (its name in the policy).", required=True)
@click.option("--role", type=click.Choice([r.value for r in iam_policy.S3Role]), default="backup", show_default=True,
              help="backup: cannot delete; prune: may delete (prune_credentials); audit: read only; "
                   "fleet: read the fleet folder only (opsctl fleet status).")
@option.json_output()
@click.pass_context
def iam_policy_command(ctx: click.Context, target_name: str, role: str, json_output: bool) -> None:
    """Print the least-privilege AWS IAM policy for an S3 target's keys in one role."""
    _run(ctx, iam_policy.IAM_POLICY, iam_policy.IamPolicyRequest(target_name, iam_policy.S3Role(role)), json_output)


@main.group("fleet")
def fleet_group() -> None:
    """Many hosts at once: the status each publishes beside its repository after every job (fleet.publish_to)."""


@fleet_group.command("status")
@option.target("The target whose fleet folder to read (its name in the policy); read-only keys are enough.",
               required=True)
@option.html_page("Also write the fleet page for auditors to FILE.")
@option.timeout("How long the whole read may take; hosts not read by then are listed as such.")
@option.json_output()
@click.pass_context
def fleet_status_command(ctx: click.Context, *, target_name: str, html: Path | None, timeout_s: float | None,
                         json_output: bool) -> None:
    """One row per host: its rules, newest verified backup, last drill, when it published. Exit 0: every host
    passes and is fresh, 1: one fails, is stale or its verified backup is older than its RPO, 3: one is unknown or
    its document does not count, or the folder held more than opsctl lists."""
    from opsctl.actions import fleet_status
    _run(ctx, fleet_status.FLEET_STATUS, fleet_status.FleetRequest(target_name, timeout_s, html), json_output)


@main.group("standby")
def standby_group() -> None:
    """A read-only copy of the newest backup on the recovery server, for customer service while production is
    rebuilt."""


@standby_group.command("refresh")
@option.database("Only this database of the policy (default: all of them).")
@option.target("Restore from this target; default: the nearest healthy one.")
@option.json_output()
@click.pass_context
def standby_refresh_command(ctx: click.Context, *, database: str | None, target_name: str | None,
                            json_output: bool) -> None:
    """Restore the newest snapshot onto the recovery server, prove it, then swap it in as the read-only standby
    (crm_standby). Readers never see a half-restored copy."""
    from opsctl.actions import standby
    _run(ctx, standby.STANDBY_REFRESH, standby.StandbyRequest(database, target_name), json_output)


@standby_group.command("status")
@option.database("Only this database of the policy (default: all of them).")
@option.json_output()
@click.pass_context
def standby_status_command(ctx: click.Context, *, database: str | None, json_output: bool) -> None:
    """Which snapshot the standby holds, how old its data is, and who can read it. Exit 1: missing or writable."""
    from opsctl.actions import standby
    _run(ctx, standby.STANDBY_STATUS, standby.StandbyRequest(database), json_output)


@main.group("keys")
def keys_group() -> None:
    """Rotate and inspect the repository keys of every target."""


@keys_group.command("rotate")
@option.dry_run("Only check every target and show what would change.")
@click.option("--new-password-file", type=click.Path(path_type=Path, dir_okay=False, exists=True), metavar="FILE",
              help="Take the new password from this private file instead of generating one.")
@click.option("--resume", is_flag=True, help="Finish (or roll back) an interrupted rotation; plain rotate does too.")
@option.json_output()
@click.pass_context
def keys_rotate(ctx: click.Context, dry_run: bool, new_password_file: Path | None, resume: bool,
                json_output: bool) -> None:
    """Give every target a new repository password, journaled so no interruption locks anyone out."""
    from opsctl.actions import keys
    _run(ctx, keys.KEYS_ROTATE, keys.RotateRequest(dry_run, new_password_file, resume), json_output)


@keys_group.command("status")
@option.json_output()
@click.pass_context
def keys_status(ctx: click.Context, json_output: bool) -> None:
    """Each target's keys, opsctl's current one and its age; warns about old or unexpected keys."""
    from opsctl.actions import keys
    _run(ctx, keys.KEYS_STATUS, None, json_output)


@keys_group.group("signing")
def signing_group() -> None:
    """The Ed25519 key that signs reports, so an auditor can check them with its public key alone."""


@signing_group.command("init")
@click.option("--key-file", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Where to keep the private key (default: the policy's signing_key, else /etc/opsctl/signing/ "
                   "for root or ~/.config/opsctl/signing/).")
@option.json_output()
@click.pass_context
def signing_init(ctx: click.Context, key_file: Path | None, json_output: bool) -> None:
    """Make the key pair that signs reports; prints the public key to give to auditors. Never replaces a key."""
    from opsctl.actions.keys import signing
    _run(ctx, signing.SIGNING_INIT, signing.SigningInitRequest(key_file), json_output)


@main.command("verify")
@option.snapshot("Snapshot to verify.")
@option.target()
@click.option("--all-targets", is_flag=True, help="Verify on every target and prove they hold the same backup.")
@option.database()
@option.server("default: the recovery server when the policy has one.")
@option.json_output()
@click.pass_context
def verify_command(ctx: click.Context, *, snapshot: str, target_name: str | None, all_targets: bool,
                   database: str | None, server: str | None, json_output: bool) -> None:
    """Restore into a scratch database, prove it equals the backup table by table, write a report.
    Exit 1: not proven."""
    from opsctl.actions import verify
    from opsctl.actions.servers import ServerChoice
    request = verify.VerifyRequest(snapshot=snapshot, target=target_name, all_targets=all_targets, database=database,
                                   server=ServerChoice.of(server))
    _run(ctx, verify.VERIFY, request, json_output)


@main.command("drill")
@option.target("Drill from this target; default: the off-site one.")
@option.snapshot("Snapshot to drill with.")
@option.database("Only this database of the policy (default: all of them).")
@click.option("--history", is_flag=True, help="List past drills instead of running one.")
@option.server("default: the recovery server when the policy has one.")
@option.json_output()
@click.pass_context
def drill_command(ctx: click.Context, *, target_name: str | None, snapshot: str, database: str | None, history: bool,
                  server: str | None, json_output: bool) -> None:
    """Rehearse losing the site: restore from off-site, verify, measure RTO/RPO. Exit 1: objectives missed."""
    from opsctl.actions import drill
    from opsctl.actions.servers import ServerChoice
    if history:
        _run(ctx, drill.DRILL_HISTORY, None, json_output)
    request = drill.DrillRequest(target=target_name, snapshot=snapshot, database=database,
                                 server=ServerChoice.of(server))
    _run(ctx, drill.DRILL, request, json_output)


@main.group("report")
def report_group() -> None:
    """Verification and drill reports: list them, check one was not altered."""


@report_group.command("verify")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--public-key", type=click.Path(path_type=Path, dir_okay=False), metavar="KEY",
              help="Check the report's signature with this public key alone: no policy, no secret, no network.")
@click.option("--audit-trail", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="With --public-key: also check the trail's chain and that it recorded this report.")
@option.json_output()
@click.pass_context
def report_verify(ctx: click.Context, file: Path, public_key: Path | None, audit_trail: Path | None,
                  json_output: bool) -> None:
    """Say whether a report (JSON or HTML) is as opsctl wrote it. With --public-key (an auditor's check, needs no
    secret): VALID, ALTERED, UNSIGNED or WRONG KEY. Without: against the policy's audit trail. Exit 1: not valid."""
    from opsctl.actions import reports
    request = reports.ReportVerifyRequest(file, public_key, audit_trail)
    _run(ctx, reports.REPORT_VERIFY_SIGNED if public_key is not None else reports.REPORT_VERIFY, request, json_output)


@report_group.command("list")
@option.json_output()
@click.pass_context
def report_list(ctx: click.Context, json_output: bool) -> None:
    """Past verifications of this policy: date, target, snapshot, verdict."""
    from opsctl.actions import reports
    _run(ctx, reports.REPORT_LIST, None, json_output)


@main.group("audit")
def audit_group() -> None:
    """The audit trail: every command run, hash-chained, with a copy kept on every target."""


@audit_group.command("verify")
@click.option("--file", "trail_file", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Check this copy of a trail instead of the policy's (needs no policy and no secret).")
@click.option("--against", "target_name", metavar="TARGET",
              help="Also compare the trail with the copy kept on this target (by its name in the policy).")
@option.json_output()
@click.pass_context
def audit_verify(ctx: click.Context, trail_file: Path | None, target_name: str | None, json_output: bool) -> None:
    """Check the trail's hash chain and name the first entry edited, deleted, inserted, reordered or cut off.
    With --against, say where it and the target's copy diverge. Exit 1: not intact."""
    from opsctl.actions import audit_trail
    request = audit_trail.AuditVerifyRequest(trail_file, target_name)
    command = audit_trail.AUDIT_VERIFY_FILE if trail_file is not None and target_name is None \
        else audit_trail.AUDIT_VERIFY
    _run(ctx, command, request, json_output)


@audit_group.command("show")
@click.option("--since", metavar="WHEN", help="Only entries from this date or time on (2026-11-30, "
                                              "2026-11-30T06:00) or this long ago (7d, 12h).")
@click.option("--command", "command_name", metavar="NAME", help="Only this command's entries (e.g. backup).")
@click.option("--file", "trail_file", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Read this copy of a trail instead of the policy's (needs no policy and no secret).")
@option.json_output()
@click.pass_context
def audit_show(ctx: click.Context, since: str | None, command_name: str | None, trail_file: Path | None,
               json_output: bool) -> None:
    """The trail's entries, oldest first: when, who, what, on which targets, how it ended."""
    from opsctl.actions import audit_trail
    request = audit_trail.AuditShowRequest(since, command_name, trail_file)
    _run(ctx, audit_trail.AUDIT_SHOW_FILE if trail_file is not None else audit_trail.AUDIT_SHOW, request,
         json_output)


@main.group("schedule")
def schedule_group() -> None:
    """Run the policy's jobs on their own: systemd timers, or `schedule run` where systemd is not."""


def _unit_options(command: Any) -> Any:
    command = click.option("--user", is_flag=True,
                           help="Your own user's systemd (~/.config/systemd/user), not root's.")(command)
    return click.option("--output", type=click.Path(path_type=Path, file_okay=False), metavar="DIR",
                        help="Use this folder instead (for review or Ansible); systemd is not asked to do anything.")(
        command)


@schedule_group.command("install")
@_unit_options
@option.dry_run("Only show what would change (with diffs); write nothing, start nothing.")
@option.json_output()
@click.pass_context
def schedule_install_command(ctx: click.Context, user: bool, output: Path | None, dry_run: bool,
                             json_output: bool) -> None:
    """Write a systemd .service and .timer per job, show what changed, and start the timers."""
    from opsctl.actions import schedule_install
    request = schedule_install.InstallRequest(user, output, dry_run=dry_run)
    _run(ctx, schedule_install.install_command(_app(ctx), dry_run=dry_run), request, json_output)


@schedule_group.command("remove")
@_unit_options
@option.json_output()
@click.pass_context
def schedule_remove_command(ctx: click.Context, user: bool, output: Path | None, json_output: bool) -> None:
    """Stop the policy's timers and delete the units opsctl wrote for it (never any other file)."""
    from opsctl.actions import schedule_install
    request = schedule_install.InstallRequest(user, output, remove=True)
    _run(ctx, schedule_install.install_command(_app(ctx), remove=True), request, json_output)


@schedule_group.command("status")
@option.json_output()
@click.pass_context
def schedule_status_command(ctx: click.Context, json_output: bool) -> None:
    """Each job: when it runs, its next and last run, how that run really ended. Exit 1: a failed or missed run."""
    from opsctl.actions import schedule_status
    _run(ctx, schedule_status.SCHEDULE_STATUS, None, json_output)


@schedule_group.command("run")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="One line per job run on stdout: plain text (journald) or JSON.")
@click.pass_context
def schedule_run_command(ctx: click.Context, log_format: str) -> None:
    """Run the jobs in the foreground at their scheduled times (for hosts and containers without systemd)."""
    from opsctl.actions import schedule_daemon
    request = schedule_daemon.DaemonRequest("json" if log_format == "json" else "text")
    _run(ctx, schedule_daemon.SCHEDULE_RUN, request)


@schedule_group.command("job")
@click.argument("name", type=click.Choice(JOBS))
@option.json_output()
@click.pass_context
def schedule_job_command(ctx: click.Context, name: str, json_output: bool) -> None:
    """Run one job as its timer does (waits for a running job only until its own next run is due; exit 75: skipped)."""
    from opsctl.actions import schedule_job
    _run(ctx, schedule_job.job_command(name), None, json_output)


@schedule_group.command("failed")
@click.argument("name", type=click.Choice(JOBS))
@click.pass_context
def schedule_failed_command(ctx: click.Context, name: str) -> None:
    """Run by systemd when a job's process ended badly: reports a run that was killed before it could."""
    from opsctl.actions import schedule_failed
    _run(ctx, schedule_failed.SCHEDULE_FAILED, name)


@main.group("notify")
def notify_group() -> None:
    """Notifications: healthchecks pings, webhooks and commands named in the policy."""


@notify_group.command("test")
@option.json_output()
@click.pass_context
def notify_test_command(ctx: click.Context, json_output: bool) -> None:
    """Send a test event to every channel and say which ones answered. Exit 1: none did, 3: some did not."""
    from opsctl.actions import notify_test
    _run(ctx, notify_test.NOTIFY_TEST, None, json_output)


def entry() -> None:
    """The installed `opsctl` command: main(), then an exit that skips the interpreter's last sweep."""
    try:
        main()
    finally:
        # Everything ran: freezing the heap spares Python's final garbage collection over every object the
        # libraries left, about a third of a second at each exit. Atexit handlers and stream flushes still run.
        gc.freeze()
