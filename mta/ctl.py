"""mta-ctl: look at and steer a running mtad. Holds no daemon logic: it only asks."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import signal
import sys
import time
from typing import Any

import click

from common import config, ipc
from mta import dnscheck, dnsrecords
from mta.dkim import keys, rotation
from mta.relay.resolver import make_resolver

EX_UNAVAILABLE = 69
EX_CONFIG = 78


def load(path: str) -> config.Config:
    try:
        return config.load(path)
    except config.ConfigError as e:
        click.echo(f"mta-ctl: {e}", err=True)
        sys.exit(EX_CONFIG)


def ask(cfg: config.Config, op: str, **args: Any) -> dict[str, Any]:
    async def call() -> dict[str, Any]:
        client = ipc.Client(cfg.paths.run / "mta" / "control.sock", timeout=10)
        try:
            return await client.call(op, **args)
        finally:
            await client.close()
    try:
        return asyncio.run(call())
    except ipc.IPCError as e:
        if "failed:" in str(e):  # the queue answered: the request itself was refused
            click.echo(f"mta-ctl: {str(e).split('failed: ', 1)[1]}", err=True)
            sys.exit(1)
        click.echo(f"mta-ctl: mtad's queue does not answer ({e}); is mtad running?", err=True)
        sys.exit(EX_UNAVAILABLE)


def age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


@click.group()
@click.option("-c", "--config", "config_path", envvar="MAILPAIR_CONFIG",
              default=config.DEFAULT_PATH, show_default=True, help="configuration file")
@click.pass_context
def main(ctx: click.Context, config_path: str) -> None:
    """Administer mailpair's MTA (mtad)."""
    ctx.obj = config_path


def daemon_state(cfg: config.Config) -> dict[str, Any]:
    try:
        state = json.loads((cfg.paths.run / "mtad.json").read_text())
        os.kill(state["pid"], 0)
        return state
    except (OSError, ValueError, KeyError):
        click.echo("mtad is not running", err=True)
        sys.exit(EX_UNAVAILABLE)


def proc_user(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return pwd.getpwuid(int(line.split()[1])).pw_name
    except (OSError, KeyError):
        pass
    return "?"


@main.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_obj
def status(config_path: str, as_json: bool) -> None:
    """Whether mtad runs: its processes, listeners and the size of its queue."""
    cfg = load(config_path)
    state = daemon_state(cfg)
    queued = len(ask(cfg, "list")["messages"])
    children = {name: {"pid": pid, "user": proc_user(pid)}
                for name, pid in state.get("children", {}).items()}
    if as_json:
        click.echo(json.dumps({"pid": state["pid"], "children": children,
                               "listeners": state["listeners"], "queued": queued}))
        return
    click.echo(f"mtad running, pid {state['pid']}, {queued} message(s) in the queue")
    for name, c in children.items():
        click.echo(f"  {name:12} pid {c['pid']:<8} user {c['user']}")
    for name, addrs in state["listeners"].items():
        for host, port in addrs:
            click.echo(f"  {name:12} listening on {host}:{port}")


def signal_daemon(config_path: str, sig: signal.Signals, what: str) -> None:
    state = daemon_state(load(config_path))
    os.kill(state["pid"], sig)
    click.echo(f"mtad (pid {state['pid']}): {what}")


@main.command()
@click.pass_obj
def reload(config_path: str) -> None:
    """Re-read configuration and certificate; replace processes without cutting sessions."""
    signal_daemon(config_path, signal.SIGHUP, "reloading")


@main.command()
@click.pass_obj
def stop(config_path: str) -> None:
    """Stop accepting, let sessions finish, then exit."""
    signal_daemon(config_path, signal.SIGTERM, "stopping")


@main.group()
def queue() -> None:
    """The mail queue."""


@queue.command("list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_obj
def queue_list(config_path: str, as_json: bool) -> None:
    """Queued messages, as postqueue -p shows them: id (* being delivered, ! held),
    size, age, next try, sender, then the last error and each recipient."""
    messages = ask(load(config_path), "list")["messages"]
    if as_json:
        click.echo(json.dumps(messages, indent=1))
        return
    if not messages:
        click.echo("Mail queue is empty")
        return
    now = time.time()
    indent = " " * 47
    click.echo("-Queue ID-------- --Size-- --Age-- -Next try- -Sender/Recipient-------")
    for m in messages:
        mark = "!" if m["held"] else "*" if m.get("active") else " "
        nxt = "held" if m["held"] else "now" if m["next_try"] <= now else (
            f"in {age(m['next_try'] - now)}")
        click.echo(f"{m['id']}{mark}{m['size']:>9} {age(now - m['created']):>7} {nxt:>10} "
                   f"<{m['sender']}>")
        if m.get("last_error"):
            click.echo(f"{indent}({m['last_error']})")
        for r in m["recipients"]:
            state = "" if r["state"] == "pending" else f"  {r['state']}"
            click.echo(f"{indent}<{r['address']}>{state}")
        click.echo("")
    kbytes = (sum(m["size"] for m in messages) + 1023) // 1024
    click.echo(f"-- {kbytes} Kbytes in {len(messages)} "
               f"Request{'s' if len(messages) != 1 else ''}.")


@queue.command("show")
@click.argument("queue_id")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_obj
def queue_show(config_path: str, queue_id: str, as_json: bool) -> None:
    """One message: its envelope, each recipient's state, and its header."""
    m = ask(load(config_path), "show", id=queue_id)
    if as_json:
        click.echo(json.dumps(m, indent=1))
        return
    click.echo(f"id:        {m['id']}\nsender:    <{m['sender']}>\nsize:      {m['size']}\n"
               f"attempts:  {m['attempts']}\nheld:      {'yes' if m['held'] else 'no'}")
    for r in m["recipients"]:
        click.echo(f"recipient: {r['state']:9} <{r['address']}> {r['last_reply']}")
    click.echo("")
    click.echo(m["message"].split("\r\n\r\n", 1)[0].replace("\r\n", "\n"))


@queue.command("flush")
@click.argument("queue_id", required=False)
@click.pass_obj
def queue_flush(config_path: str, queue_id: str | None) -> None:
    """Try every queued message now (or just QUEUE_ID)."""
    n = ask(load(config_path), "flush", **({"id": queue_id} if queue_id else {}))["flushed"]
    click.echo(f"{n} message(s) scheduled for delivery now")


def simple(op: str, done: str, doc: str) -> None:
    @queue.command(op, help=doc)
    @click.argument("queue_id")
    @click.pass_obj
    def command(config_path: str, queue_id: str) -> None:
        qid = ask(load(config_path), op, id=queue_id)["id"]
        click.echo(f"{qid}: {done}")


simple("hold", "held", "Keep a message in the queue without trying it.")
simple("release", "released", "Try a held message again.")
simple("delete", "deleted", "Remove a message from the queue without delivering it.")
simple("bounce", "bounced to its sender",
       "Fail every pending recipient now (5.0.0) and send the sender a DSN.")


@main.group()
def dkim() -> None:
    """DKIM signing keys."""


@dkim.command("keygen")
@click.argument("domain")
@click.option("--selector", help="the key's name in DNS (default: mta.dkim_selector, "
              "or mp<year><month>)")
@click.option("--force", is_flag=True, help="replace the selector's existing keys")
@click.pass_obj
def dkim_keygen(config_path: str, domain: str, selector: str | None, force: bool) -> None:
    """Make Ed25519 and RSA-2048 keys for DOMAIN and print the TXT records to publish."""
    cfg = load(config_path)
    selector = selector or dnsrecords.default_selector(cfg)
    keydir = cfg.mta.dkim_keys
    try:
        made = keys.generate(keydir, domain, selector, force=force)
    except FileExistsError as e:
        click.echo(f"mta-ctl: {e}; choose another --selector, or --force to replace them "
                   f"(mail signed with the old key then fails verification)", err=True)
        sys.exit(1)
    except (ValueError, OSError) as e:
        click.echo(f"mta-ctl: {e}", err=True)
        sys.exit(1)
    group = cfg.mta.relay_group
    if not keys.share_with_group(keydir, domain, group):
        click.echo(f"note: the key files are not root:{group} (not run as root, or no such "
                   f"group); the relay must be able to read them", err=True)
    for k in made:
        click.echo(f"; {k.algorithm} key: "
                   f"{keys.key_path(keydir, domain, selector, k.algorithm)}")
    click.echo("; publish in DNS, then run `mta-ctl dns check " + domain.lower() + "`:")
    for k in made:
        click.echo(dnsrecords.Record(k.txt_name(), "TXT", k.txt_record()).line())


def selector_records(keydir, domain: str, selector: str | None) -> list[dnsrecords.Record]:
    if selector is None or selector not in keys.selectors(keydir, domain):
        return []
    return [dnsrecords.Record(k.txt_name(), "TXT", k.txt_record())
            for k in keys.load(keydir, domain, selector)]


@dkim.command("rotate")
@click.argument("domain")
@click.option("--selector", help="the new key's selector (default: as for keygen)")
@click.option("--keep-days", type=click.IntRange(0), default=rotation.DEFAULT_KEEP_DAYS,
              show_default=True, help="how long the old record stays published after the switch")
@click.pass_obj
def dkim_rotate(config_path: str, domain: str, selector: str | None, keep_days: int) -> None:
    """Replace DOMAIN's key in steps: new key published, seen in DNS, signing switched,
    old record removed after --keep-days. Run it again after each step."""
    cfg = load(config_path)
    keydir, domain = cfg.mta.dkim_keys, domain.lower()
    try:
        rot = rotation.load(keydir, domain)
        if rot is not None and selector and selector != rot.new:
            raise rotation.RotationError(f"the rotation to selector {rot.new} is under way; "
                                         f"run this without --selector until it is done")
        if rot is None:
            rot = rotation.start(keydir, domain, selector or dnsrecords.default_selector(cfg),
                                 keep_days)
            click.echo(f"started: new keys under selector {rot.new} (old: {rot.old or 'none'})")
        new = selector_records(keydir, domain, rot.new)
        old = selector_records(keydir, domain, rot.old)
        resolver = make_resolver(cfg.relay.nameservers, cfg.relay.dns_timeout)
        seen = asyncio.run(dnscheck.check(resolver, new + old, cfg.hostname, []))
        new_seen = all(r.status == "ok" for r in seen[:len(new)])
        old_gone = all(r.status == "missing" for r in seen[len(new):])
        after, says = rotation.advance(keydir, rot, time.time(), new_seen, old_gone)
        rotation.save(keydir, after, domain)
    except (rotation.RotationError, keys.DKIMKeyError, ValueError, OSError) as e:
        click.echo(f"mta-ctl: {e}", err=True)
        sys.exit(1)
    keys.share_with_group(keydir, domain, cfg.mta.relay_group)
    for line in says:
        click.echo(line)
    if after is not None and after.step == "publish":
        for r in new:
            click.echo(r.line())
    if after is not None and after.step == "retire":
        for r in old:
            click.echo("; remove: " + r.line())


@main.group()
def dns() -> None:
    """The DNS records the local domains need."""


def domain_list(cfg: config.Config, domain: str | None) -> list[str]:
    if domain is None:
        if not cfg.domains:
            click.echo("mta-ctl: no local domains configured (domains = [...])", err=True)
            sys.exit(EX_CONFIG)
        return cfg.domains
    if not cfg.is_local_domain(domain):
        click.echo(f"note: {domain} is not one of the local domains", err=True)
    return [domain.lower()]


def expected(cfg: config.Config, domain: str, addresses: list[str],
             with_host: bool) -> list[dnsrecords.Record]:
    try:
        return dnsrecords.domain_records(cfg, domain, addresses, with_host)
    except keys.DKIMKeyError as e:
        click.echo(f"mta-ctl: {e}", err=True)
        sys.exit(1)


address_option = click.option(
    "--address", "addresses", multiple=True,
    help="the server's public address (repeatable; default: mta.public_addresses)")


@dns.command("records")
@click.argument("domain", required=False)
@address_option
@click.pass_obj
def dns_records(config_path: str, domain: str | None, addresses: tuple[str, ...]) -> None:
    """Print the zone-file lines to publish for DOMAIN (default: every local domain)."""
    cfg = load(config_path)
    addrs = list(addresses) or cfg.mta.public_addresses
    domains = domain_list(cfg, domain)
    home = dnsrecords.host_domain(cfg, domains)
    for d in domains:
        click.echo(dnsrecords.zone(cfg, d, expected(cfg, d, addrs, d == home), addrs, d == home))


@dns.command("check")
@click.argument("domain", required=False)
@address_option
@click.pass_obj
def dns_check(config_path: str, domain: str | None, addresses: tuple[str, ...]) -> None:
    """Look each record up (relay.nameservers) and say present, missing or different;
    the exit status is 0 only when every required record is right."""
    cfg = load(config_path)
    addrs = list(addresses) or cfg.mta.public_addresses
    resolver = make_resolver(cfg.relay.nameservers, cfg.relay.dns_timeout)
    bad = False
    domains = domain_list(cfg, domain)
    home = dnsrecords.host_domain(cfg, domains)
    for d in domains:
        want = expected(cfg, d, addrs, d == home)
        if d == home:
            want += dnsrecords.ptr_records(cfg, addrs)
        results = asyncio.run(dnscheck.check(resolver, want, cfg.hostname, addrs))
        click.echo(f"{d}:")
        for r in results:
            click.echo("  " + dnscheck.describe(r))
        bad |= dnscheck.failed(results)
    click.echo("all required records are right" if not bad
               else "some required records are missing or wrong")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
