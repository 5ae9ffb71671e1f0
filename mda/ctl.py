"""mda-ctl: edit the virtual users and aliases files, check a set-up, look into mailboxes.

An admin tool, no daemon logic: it changes the files through common/ (lock,
then atomic rename) and both daemons notice the change on their own. `check`
(mda/ctl_check.py) and `mailbox` (mda/ctl_mailbox.py) only read.

Exit codes: 0 done, 1 refused or failed (such as "no such user", or an ERROR
found by `check`), 2 bad usage or a bad address, 78 a configuration problem
(as the daemons).
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import click

from common import config, users
from common.passwords import hash_password
from common.users import line_address
from mda import ctl_check, ctl_mailbox, ctl_reindex
from mda.store.maildir import maildir_path


class Failed(click.ClickException):
    exit_code = 1


class ConfigProblem(click.ClickException):
    exit_code = 78


def _cfg(ctx: click.Context) -> config.Config:
    if "cfg" not in ctx.obj:
        try:
            ctx.obj["cfg"] = config.load(ctx.obj["path"])
        except config.ConfigError as e:
            raise ConfigProblem(str(e)) from None
    return ctx.obj["cfg"]


def _address(value: str, param: str = "ADDRESS", catch_all: bool = False) -> str:
    address = users.normalize(value)
    catch_all_ok = catch_all and address.startswith("@") and users.valid_address("x" + address)
    if users.valid_address(address) or catch_all_ok:
        return address
    raise click.BadParameter(f"{value!r} is not an address such as user@example.org",
                             param_hint=param)


def _check_domain(cfg: config.Config, address: str) -> None:
    _, domain = users.split(address)
    if not cfg.is_local_domain(domain):
        click.echo(f"warning: {domain} is not in the domains of {cfg.source}: "
                   "mail for it is not delivered here", err=True)


def _read(path: Path) -> str:
    try:
        return users.read_text(path)
    except FileNotFoundError:
        return ""
    except OSError as e:
        raise Failed(f"cannot read {path}: {e.strerror}") from None


def _edit(path: Path, change) -> None:
    try:
        users.edit_lines(path, change)
    except OSError as e:
        raise Failed(f"cannot change {path}: {e.strerror}") from None


def _new_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        raise Failed("the password is empty")
    return password


def _problems(problems: list[str]) -> None:
    for p in problems:
        click.echo(f"warning: {p}", err=True)


password_stdin = click.option("--password-stdin", is_flag=True,
                              help="Read the password from the first line of standard input.")
as_json = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", "path", default=config.DEFAULT_PATH, envvar="MAILPAIR_CONFIG",
              show_default=True, help="The configuration file (or env MAILPAIR_CONFIG).")
@click.pass_context
def cli(ctx: click.Context, path: str) -> None:
    """Manage mailpair's virtual users and aliases, check the set-up, look into mailboxes."""
    ctx.obj = {"path": path}


@cli.group()
def user() -> None:
    """Add, change, remove and list users."""


@user.command("add")
@click.argument("address")
@password_stdin
@click.pass_context
def user_add(ctx: click.Context, address: str, password_stdin: bool) -> None:
    """Add a user with a password."""
    address = _address(address)
    cfg = _cfg(ctx)
    _check_domain(cfg, address)
    password_hash = hash_password(_new_password(password_stdin))

    def change(lines: list[str]) -> list[str]:
        if any(line_address(line) == address for line in lines):
            raise Failed(f"{address} already exists (use `mda-ctl user passwd`)")
        return [*lines, f"{address}:{password_hash}"]

    _edit(cfg.paths.users, change)
    click.echo(f"added {address}")


@user.command("passwd")
@click.argument("address")
@password_stdin
@click.pass_context
def user_passwd(ctx: click.Context, address: str, password_stdin: bool) -> None:
    """Set a user's password."""
    address = _address(address)
    cfg = _cfg(ctx)
    if not any(line_address(line) == address for line in _read(cfg.paths.users).splitlines()):
        raise Failed(f"no such user: {address}")  # before asking for a password
    password_hash = hash_password(_new_password(password_stdin))

    def change(lines: list[str]) -> list[str]:
        out, found = [], False
        for line in lines:
            if not found and line_address(line) == address:
                fields = line.strip().split(":")[2:]  # quota and such stay as they were
                line = ":".join([address, password_hash, *fields])
                found = True
            out.append(line)
        if not found:
            raise Failed(f"no such user: {address}")
        return out

    _edit(cfg.paths.users, change)
    click.echo(f"changed the password of {address}")


@user.command("del")
@click.argument("address")
@click.pass_context
def user_del(ctx: click.Context, address: str) -> None:
    """Remove a user (their mail stays on disk)."""
    address = _address(address)
    cfg = _cfg(ctx)

    def change(lines: list[str]) -> list[str]:
        kept = [line for line in lines if line_address(line) != address]
        if len(kept) == len(lines):
            raise Failed(f"no such user: {address}")
        return kept

    _edit(cfg.paths.users, change)
    click.echo(f"removed {address}")
    aliases, _ = users.parse_aliases(_read(cfg.paths.aliases))
    pointing = sorted(a for a, targets in aliases.items() if address in targets)
    if pointing:
        click.echo(f"warning: still an alias target of {', '.join(pointing)}", err=True)


@user.command("list")
@as_json
@click.pass_context
def user_list(ctx: click.Context, as_json: bool) -> None:
    """List the users (never their hashes)."""
    cfg = _cfg(ctx)
    found, problems = users.parse_users(_read(cfg.paths.users), str(cfg.paths.users))
    _problems(problems)
    if as_json:
        click.echo(json.dumps([{"address": u.address, "fields": u.fields}
                               for u in found.values()], indent=2))
        return
    for u in found.values():
        extra = " ".join(f"{k}={v}" for k, v in u.fields.items())
        click.echo(f"{u.address} {extra}".rstrip())


@cli.group()
def alias() -> None:
    """Add, remove and list aliases (@domain is the domain's catch-all)."""


@alias.command("add")
@click.argument("address")
@click.argument("targets", nargs=-1, required=True)
@click.pass_context
def alias_add(ctx: click.Context, address: str, targets: tuple[str, ...]) -> None:
    """Send mail for ADDRESS to TARGETS (added to the ones it already has)."""
    address = _address(address, catch_all=True)
    new = list(dict.fromkeys(_address(t, "TARGET") for t in targets))
    cfg = _cfg(ctx)
    _check_domain(cfg, address)
    merged: list[str] = []

    def change(lines: list[str]) -> list[str]:
        old = users.parse_aliases("\n".join(lines))[0].get(address, [])
        merged[:] = old + [t for t in new if t not in old]
        line = f"{address}: {', '.join(merged)}"
        at = next((i for i, x in enumerate(lines) if line_address(x) == address), len(lines))
        out = [x for x in lines if line_address(x) != address]
        return [*out[:at], line, *out[at:]]

    _edit(cfg.paths.aliases, change)
    click.echo(f"{address}: {', '.join(merged)}")


@alias.command("del")
@click.argument("address")
@click.pass_context
def alias_del(ctx: click.Context, address: str) -> None:
    """Remove an alias with all its targets."""
    address = _address(address, catch_all=True)
    cfg = _cfg(ctx)

    def change(lines: list[str]) -> list[str]:
        kept = [line for line in lines if line_address(line) != address]
        if len(kept) == len(lines):
            raise Failed(f"no such alias: {address}")
        return kept

    _edit(cfg.paths.aliases, change)
    click.echo(f"removed the alias {address}")


@alias.command("list")
@as_json
@click.pass_context
def alias_list(ctx: click.Context, as_json: bool) -> None:
    """List the aliases."""
    cfg = _cfg(ctx)
    aliases, problems = users.parse_aliases(_read(cfg.paths.aliases), str(cfg.paths.aliases))
    _problems(problems)
    if as_json:
        click.echo(json.dumps([{"address": a, "targets": t} for a, t in aliases.items()],
                              indent=2))
        return
    for a, t in aliases.items():
        click.echo(f"{a}: {', '.join(t)}")


@cli.command()
@as_json
@click.pass_context
def check(ctx: click.Context, as_json: bool) -> None:
    """Check the configuration, users, aliases, certificate, directories and system users.

    One finding per line, OK, WARN or ERROR; exits 1 if there is an ERROR.
    """
    findings = ctl_check.run(ctx.obj["path"])
    if as_json:
        click.echo(json.dumps([f.as_dict() for f in findings], indent=2))
    else:
        for f in findings:
            click.echo(f.line())
    if any(f.level == ctl_check.ERROR for f in findings):
        ctx.exit(1)


@cli.group()
def mailbox() -> None:
    """Look into a user's Maildir (read-only)."""


def _maildir(ctx: click.Context, value: str) -> Path:
    address = _address(value)
    cfg = _cfg(ctx)
    known, _ = users.parse_users(_read(cfg.paths.users), str(cfg.paths.users))
    if address not in known:
        raise Failed(f"no such user: {address}")
    try:
        path = maildir_path(cfg.paths.mail, address)
    except ValueError as e:
        raise Failed(f"{address} cannot have a Maildir: {e}") from None
    try:
        is_dir = stat.S_ISDIR(path.stat().st_mode)
    except FileNotFoundError:
        is_dir = False
    except OSError as e:  # such as /var/vmail (vmail, 0700) for another user
        raise Failed(f"cannot read {path}: {e.strerror}") from None
    if not is_dir:
        raise Failed(f"{address} has no mailbox yet: {path} is made by the first delivery")
    # A symlink may not lead the tool out of the mail root.
    if not path.resolve().is_relative_to(cfg.paths.mail.resolve()):
        raise Failed(f"{path} leads outside paths.mail ({cfg.paths.mail}): not read")
    return path


def _folders(ctx: click.Context, address: str) -> list[ctl_mailbox.Folder]:
    path = _maildir(ctx, address)
    try:
        return ctl_mailbox.folders(path)
    except OSError as e:
        raise Failed(f"cannot read {e.filename or path}: {e.strerror}") from None


@mailbox.command("list")
@click.argument("address")
@as_json
@click.pass_context
def mailbox_list(ctx: click.Context, address: str, as_json: bool) -> None:
    """A user's folders: messages in new/ and cur/, unseen, bytes."""
    found = _folders(ctx, address)
    if as_json:
        click.echo(json.dumps([f.as_dict() for f in found], indent=2))
        return
    width = max(len("FOLDER"), *(len(f.name) for f in found))
    click.echo(f"{'FOLDER':<{width}}  {'NEW':>6}  {'CUR':>6}  {'UNSEEN':>6}  {'BYTES':>12}")
    for f in found:
        click.echo(f"{f.name:<{width}}  {f.new:>6}  {f.cur:>6}  {f.unseen:>6}  {f.bytes:>12}")


@mailbox.command("stats")
@click.argument("address")
@as_json
@click.pass_context
def mailbox_stats(ctx: click.Context, address: str, as_json: bool) -> None:
    """A user's totals: messages, unseen, bytes, folders (INBOX counts as one)."""
    address = _address(address)
    stats = ctl_mailbox.totals(_folders(ctx, address))
    if as_json:
        click.echo(json.dumps({"address": address, **stats}, indent=2))
        return
    for key, value in stats.items():
        click.echo(f"{key:<9} {value}")


@cli.command()
@click.argument("address")
@as_json
@click.pass_context
def reindex(ctx: click.Context, address: str, as_json: bool) -> None:
    """Rebuild a user's index from the Maildir (UIDs and flags do not change)."""
    path = _maildir(ctx, address)
    try:
        counts = ctl_reindex.reindex(path, list(_cfg(ctx).mda.folders))
    except (OSError, RuntimeError) as e:
        raise Failed(str(e)) from None
    if as_json:
        click.echo(json.dumps({"address": _address(address), "folders": counts}, indent=2))
        return
    for name, n in counts.items():
        click.echo(f"{name:<20} {n:>8} messages")


def main() -> None:
    cli(prog_name="mda-ctl")


if __name__ == "__main__":
    main()
