"""`stackprobe`: run the exporter, or check a config file without running it."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

import stackprobe
from stackprobe.configsource import ConfigError

from . import config as config_mod
from . import logs
from .probers import PROBERS
from .probers.base import secrets_not_required
from .shard import Shard

DEFAULT_LISTEN_ADDRESS = ":18947"
EXIT_CONFIG_ERROR = 2

_config_option = click.option(
    "--config.file", "config_file", type=click.Path(dir_okay=False, path_type=Path), envvar="STACKPROBE_CONFIG",
    help="Targets to probe (YAML). Default: the embedded example config, which probes this machine's "
         "MariaDB, Redis and health endpoints. Env: STACKPROBE_CONFIG.")


def _parse_shard(ctx: click.Context, param: click.Parameter, value: str | None) -> Shard:
    try:
        return Shard.parse(value) if value else Shard()
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


_shard_option = click.option(
    "--shard", "shard", metavar="INDEX/COUNT", callback=_parse_shard, envvar="STACKPROBE_SHARD",
    help="Probe only the targets of this replica: N replicas given 0/N .. N-1/N share one config file, "
         "each target owned by exactly one (by the MD5 of its name, as Prometheus' hashmod relabelling "
         "computes it). Default: every target. Env: STACKPROBE_SHARD.")


def _check_listen_address(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from .server import parse_listen_address

    try:
        parse_listen_address(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return value


def _fail_config(error: ConfigError) -> None:
    for line in error.format_lines():
        click.echo(f"error: {line}", err=True)
    sys.exit(EXIT_CONFIG_ERROR)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(stackprobe.__version__, prog_name="stackprobe")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Prometheus exporter for the checks the operations playbooks do by hand.

    Probes MySQL/MariaDB table statistics, Redis, HTTP endpoints, backup freshness and TLS
    certificates in the background, each target on its own interval, and serves the latest
    results on /metrics. Without a subcommand, `stackprobe` is `stackprobe run`.

    \b
    Endpoints: /metrics  /probe?target=NAME[&debug=true]  /-/healthy  /-/ready  / (status page)
    Exit codes: 0 clean stop, 2 invalid config or arguments.
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(run)


@main.command()
@_config_option
@click.option("--web.listen-address", "listen_address", default=DEFAULT_LISTEN_ADDRESS, show_default=True,
              envvar="STACKPROBE_LISTEN_ADDRESS", callback=_check_listen_address,
              help="HOST:PORT to serve on; ':PORT' listens on all interfaces. 18947 is outside the "
                   "9100-9999 range of Prometheus' exporter port allocations.")
@click.option("--web.config.file", "web_config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="exporter-toolkit web config (TLS, basic auth), as used by Go exporters. Re-read when it or "
                   "its TLS files change, so rotated certificates and removed users take effect without a restart.")
@click.option("--log.level", "log_level", type=click.Choice(list(logs.LEVELS)), default="info",
              show_default=True, help="Least severe log level to print.")
@click.option("--log.format", "log_format", type=click.Choice(logs.FORMATS), default="logfmt",
              show_default=True, help="logfmt (key=value, quoted where needed) or json (one object per line).")
@_shard_option
def run(config_file: Path | None = None, listen_address: str = DEFAULT_LISTEN_ADDRESS,
        web_config_file: Path | None = None, log_level: str = "info", log_format: str = "logfmt",
        shard: Shard = Shard()) -> None:
    """Run the exporter until SIGTERM; SIGHUP reloads the config file."""
    from .runtime import Exporter
    from .webconfig import WebConfigSource

    logs.setup(log_level, log_format)
    try:
        web_config = WebConfigSource(web_config_file) if web_config_file else None
        exporter = Exporter(config_file, listen_address, web_config, shard)
        asyncio.run(exporter.run())
    except ConfigError as e:
        _fail_config(e)
    except OSError as e:
        click.echo(f"error: cannot listen on {listen_address}: {e.strerror or e}", err=True)
        sys.exit(EXIT_CONFIG_ERROR)


@main.command("check-config")
@click.argument("config_file", type=click.Path(dir_okay=False, path_type=Path))
@_shard_option
@click.option("--secrets", type=click.Choice(["warn", "require"]), default="warn", show_default=True,
              help="A secret that is not there (an unset password_env or headers_from env, an unreadable "
                   "password_file or headers_from file): a warning (checking a file on a machine without its "
                   "secrets, such as CI) or an error, exit 2, as `run` always treats it.")
def check_config(config_file: Path, shard: Shard = Shard(), secrets: str = "warn") -> None:
    """Validate CONFIG_FILE and list its targets (with --shard: those that shard owns); exit 2 with
    file:line: field errors if invalid."""
    try:
        config = shard.select(config_mod.parse(config_file))
    except ConfigError as e:
        if secrets == "require":
            _fail_config(e)
        try:  # every problem that goes away when secrets are not checked was a missing secret
            with secrets_not_required():
                config = shard.select(config_mod.parse(config_file))
        except ConfigError as mistakes:
            _fail_config(mistakes)
        for line in e.format_lines():
            click.echo(f"warning: {line} (`run` refuses to start without it)", err=True)
    for target in config.targets:
        click.echo(f"{config.prober_of(target):7} {target.name:30} service={target.service} "
                   f"interval={target.interval:g}s timeout={target.timeout:g}s")
    owned = f" owned by shard {shard} ({len(config.elsewhere)} by the others)" if shard.count > 1 else ""
    click.echo(f"{config_file}: OK, {len(config.targets)} targets{owned} ({', '.join(PROBERS)} probers available)")
