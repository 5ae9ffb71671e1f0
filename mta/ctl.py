"""mta-ctl: look at and steer a running mtad. Holds no daemon logic: it only asks."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

import click

from common import config, ipc

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
        client = ipc.Client(cfg.paths.run / "mta" / "queue.sock", timeout=10)
        try:
            return await client.call(op, **args)
        finally:
            await client.close()
    try:
        return asyncio.run(call())
    except ipc.IPCError as e:
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


@main.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_obj
def status(config_path: str, as_json: bool) -> None:
    """Whether mtad runs, its listeners and the size of its queue."""
    cfg = load(config_path)
    try:
        state = json.loads((cfg.paths.run / "mtad.json").read_text())
        os.kill(state["pid"], 0)
    except (OSError, ValueError, KeyError):
        click.echo("mtad is not running", err=True)
        sys.exit(EX_UNAVAILABLE)
    queued = len(ask(cfg, "list")["messages"])
    if as_json:
        click.echo(json.dumps({"pid": state["pid"], "listeners": state["listeners"],
                               "queued": queued}))
        return
    click.echo(f"mtad running, pid {state['pid']}, {queued} message(s) in the queue")
    for name, addrs in state["listeners"].items():
        for host, port in addrs:
            click.echo(f"  {name:12} {host}:{port}")


@main.group()
def queue() -> None:
    """The mail queue."""


@queue.command("list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_obj
def queue_list(config_path: str, as_json: bool) -> None:
    """Queued messages: id, size, age, sender, recipients, last error, next try."""
    messages = ask(load(config_path), "list")["messages"]
    if as_json:
        click.echo(json.dumps(messages, indent=1))
        return
    if not messages:
        click.echo("Mail queue is empty")
        return
    now = time.time()
    for m in messages:
        nxt = max(0.0, m["next_try"] - now)
        click.echo(f"{m['id']}  {m['size']:>8}  {age(now - m['created']):>4} old  "
                   f"<{m['sender']}>  next try in {age(nxt)}")
        for r in m["recipients"]:
            reply = f"  ({r['last_reply']})" if r["last_reply"] else ""
            click.echo(f"    {r['state']:9} <{r['address']}>{reply}")
    click.echo(f"-- {len(messages)} message(s)")


@queue.command("flush")
@click.pass_obj
def queue_flush(config_path: str) -> None:
    """Try every queued message now."""
    n = ask(load(config_path), "flush")["flushed"]
    click.echo(f"{n} message(s) scheduled for delivery now")


if __name__ == "__main__":
    main()
