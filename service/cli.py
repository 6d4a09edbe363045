"""The ``heliograph`` command: serve, worker, migrate, seed-demo, import-team, tokens, access."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from heliograph.settings import get_settings

MALLOC_ARENAS = 2


def _few_malloc_arenas() -> None:
    """Ask glibc for at most ``MALLOC_ARENAS`` malloc arenas (unless ``MALLOC_ARENA_MAX`` is
    set): by default each thread that allocates (the database's connection threads, the
    translation pool) may get an arena of its own, up to eight per core, each keeping the
    memory it freed. Measured with bench/pipeline.py (SQLite, 50 msg/s, 200 members, 20,000
    conversations): the serve process peaked at 267 MiB against 303 MiB. Elsewhere (musl,
    macOS) nothing is done."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-8, MALLOC_ARENAS)  # M_ARENA_MAX (malloc.h)
    except (OSError, AttributeError):
        pass  # not glibc


def _setup_logging() -> None:
    # JSON lines by default, text for `heliograph demo` (heliograph/logs.py).
    from heliograph.logs import setup_logging

    setup_logging()


def cmd_migrate(_: argparse.Namespace) -> int:
    from heliograph.migrate import upgrade

    upgrade()
    print(f"database at head: {get_settings().database_url}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    if args.no_workers:
        os.environ["HELIOGRAPH_RUN_WORKERS"] = "false"
    if args.no_scheduler:
        os.environ["HELIOGRAPH_RUN_SCHEDULER"] = "false"
    if getattr(args, "telegram_polling", False):  # `demo` calls this with fewer arguments
        os.environ["HELIOGRAPH_TELEGRAM_POLLING"] = "true"
    from heliograph.settings import reset_settings

    reset_settings()
    settings = get_settings()
    _setup_logging()  # again: the settings may have changed above
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's loggers go through ours (JSON or text)
        access_log=args.access_log or settings.log_library_requests,
    )
    return 0


async def _worker_main() -> None:
    from channels import base as channels_base
    from heliograph.db import close_db, get_db
    from heliograph.migrate import check_schema
    from heliograph.runtime import Background, settle_collector
    from service.components import load_components

    load_components()
    settings = get_settings()
    await check_schema(get_db().engine)
    background = Background(get_db(), settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, background.stop_event.set)
    background.start(workers=True, scheduler=settings.run_scheduler)
    settle_collector()
    logging.getLogger("heliograph").info("worker %s running", os.getpid())
    await background.stop_event.wait()
    await background.stop()
    for hook in channels_base.shutdown_hooks:  # the HTTP sessions the jobs opened
        await hook()
    await close_db()


def cmd_worker(args: argparse.Namespace) -> int:
    if args.no_scheduler:
        os.environ["HELIOGRAPH_RUN_SCHEDULER"] = "false"
        from heliograph.settings import reset_settings

        reset_settings()
    asyncio.run(_worker_main())
    return 0


def _run_in_session(fn, tables_only: bool = True):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        from heliograph.db import close_db, get_db

        if tables_only:  # the tables alone: no provider SDK to load for a quick command
            import service.tables
        else:
            import service.components  # noqa: F401
        try:
            async with get_db().session() as session:
                result = await fn(session)
                await session.commit()
            return result
        finally:
            await close_db()

    return asyncio.run(main())


def cmd_import_team(args: argparse.Namespace) -> int:
    from routing.team import TeamFileError, import_team

    try:
        text = Path(args.file).read_text(encoding="utf-8")
        done = _run_in_session(lambda s: import_team(s, text, keep_missing=args.keep_missing))
    except (TeamFileError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"team imported: {done.created} created, {done.updated} updated, "
        f"{done.deactivated} deactivated (not in the file)"
    )
    if done.inactive:
        print(f"still deactivated (`heliograph activate EMAIL`): {', '.join(done.inactive)}")
    return 0


def cmd_create_token(args: argparse.Namespace) -> int:
    from routing.team import MemberNotFound, create_token
    from routing.tokens import AccessError

    try:
        token = _run_in_session(
            lambda s: create_token(s, args.email, args.label, expires_in_days=args.expires_in_days)
        )
    except (MemberNotFound, AccessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def cmd_revoke_token(args: argparse.Namespace) -> int:
    from routing.tokens import TokenNotFound, revoke_token

    try:
        revoked = _run_in_session(lambda s: revoke_token(s, args.token))
    except TokenNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("revoked: it is refused from its next request on" if revoked else "revoked already")
    return 0


def cmd_tokens(_: argparse.Namespace) -> int:
    from routing.tokens import list_tokens

    for token, member in _run_in_session(list_tokens):
        when = {
            "made": token.created_at,
            "used": token.last_used_at,
            "expires": token.expires_at,
            "revoked": token.revoked_at,
        }
        dates = "\t".join(f"{k} {v:%Y-%m-%d %H:%M}" if v else f"{k} -" for k, v in when.items())
        print(f"{token.id}\t{member.email}\t{token.label or '-'}\t{dates}")
    return 0


def cmd_set_active(args: argparse.Namespace) -> int:
    """``deactivate`` / ``activate`` a member by email (the workers move the conversations)."""
    from routing.team import MemberNotFound, member_by_email, set_active

    active = args.command == "activate"

    async def change(session):  # type: ignore[no-untyped-def]
        member = await member_by_email(session, args.email)
        return await set_active(session, member, active, "cli")

    try:
        changed = _run_in_session(change)
    except MemberNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not changed:
        print(f"{args.email} is {args.command}d already")
    elif active:
        print(f"{args.email} is active again: their tokens and linked chats work")
    else:
        print(
            f"{args.email} is deactivated: tokens, Slack and Telegram refused; "
            "their open conversations go back to the queue when the workers run"
        )
    return 0


def _read_password(args: argparse.Namespace) -> str | None:
    import getpass

    if args.stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("New password: ")
    if first != getpass.getpass("Again: "):
        print("error: the two passwords differ", file=sys.stderr)
        return None
    return first


def cmd_set_password(args: argparse.Namespace) -> int:
    """Set a member's web-app password (every web session of theirs ends)."""
    from routing.credentials import PasswordRefused, member_by_email, set_password

    password = _read_password(args)
    if password is None:
        return 2

    async def change(session):  # type: ignore[no-untyped-def]
        member = await member_by_email(session, args.email)
        if member is None:
            return False
        await set_password(session, member, password)
        return True

    try:
        found = _run_in_session(change)
    except PasswordRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not found:
        print(f"error: no team member has the email {args.email}", file=sys.stderr)
        return 2
    print(f"password set for {args.email}: they can sign in to the web app")
    return 0


def cmd_invite(args: argparse.Namespace) -> int:
    """Print a single-use sign-up link (7 days) for a member of the team."""
    from heliograph.settings import get_settings
    from routing.credentials import create_invite, member_by_email
    from web.ui.auth import invite_url

    async def make(session):  # type: ignore[no-untyped-def]
        member = await member_by_email(session, args.email)
        if member is None or not member.active:
            return None
        return await create_invite(session, member)

    token = _run_in_session(make)
    if token is None:
        print(f"error: no active team member has the email {args.email}", file=sys.stderr)
        return 2
    base = args.base_url or get_settings().public_url or "http://localhost:8000"
    print(invite_url(base, token))
    return 0


def cmd_seed_demo(args: argparse.Namespace) -> int:
    import importlib

    # The demo spans every package, so it lives in the composition root (web), reached by
    # name like uvicorn reaches the app: the kernel still imports nothing above it.
    demo = importlib.import_module("service.demo")
    # Seeding publishes events (routing, ...): every subscriber must be loaded.
    summary = _run_in_session(
        lambda s: demo.seed_demo(s, customers=args.customers), tables_only=False
    )
    print(summary)
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from heliograph import jobs

    if args.action == "dead":
        for job in _run_in_session(lambda s: jobs.dead_jobs(s)):
            print(f"{job.id}\t{job.kind}\t{job.attempts} tries\t{job.payload}\t{job.last_error}")
        return 0
    ok = _run_in_session(lambda s: jobs.retry_dead(s, args.job_id))
    print("queued again" if ok else f"job {args.job_id} is not dead")
    return 0 if ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    """The service with every provider pointed at the local sandbox (what `make run` runs)."""
    import importlib
    import subprocess

    from channels import registry
    from heliograph.settings import reset_settings
    from web.ui import settings as web_settings

    host, port, sandbox_port = args.host, args.port, args.sandbox_port
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    defaults = {
        "HELIOGRAPH_DEMO_MODE": "1",  # the channels' demo secrets are placeholders
        "HELIOGRAPH_PUBLIC_URL": f"http://{host}:{port}",
        "HELIOGRAPH_SANDBOX_URL": sandbox,
        "HELIOGRAPH_LOG_FORMAT": "text",  # a person reads this terminal
        "HELIOGRAPH_TRANSLATION_PROVIDER": "libre",
        "HELIOGRAPH_TRANSLATION_URL": f"{sandbox}/libretranslate",
        # Every channel package's demo values, its provider pointed at its sandbox fake.
        **registry.demo_env(sandbox),
        **web_settings.demo_env(),  # the web app's session key
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    reset_settings()
    demo = importlib.import_module("service.demo")  # by name, as cmd_seed_demo does
    # The demo team's accounts whose documented demo password works: none on a database
    # without the demo data, or where the members chose their own passwords.
    table = demo.sign_in_table(f"http://{host}:{port}", _run_in_session(demo.demo_accounts))
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", str(sandbox_port)], env=dict(os.environ)
    )
    print(f"sandbox providers on {sandbox} (page: {sandbox}/)")
    print(f"Heliograph on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    if table:
        print(table, flush=True)
    try:
        return cmd_serve(
            argparse.Namespace(
                host=host, port=port, no_workers=False, no_scheduler=False, access_log=False
            )
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def cmd_sandbox_say(args: argparse.Namespace) -> int:
    """Write to Heliograph as a customer would, through the sandbox's fake provider."""
    import httpx

    url = f"{get_settings().sandbox_url}/_sandbox/say/{args.channel}"
    try:
        response = httpx.post(url, json={"text": args.text, "from": args.sender}, timeout=30)
    except httpx.HTTPError as exc:
        print(f"error: the sandbox at {url} is not reachable ({exc}); is `make run` up?")
        return 2
    if response.status_code == 404:
        print(f"error: the sandbox has no channel {args.channel!r}", file=sys.stderr)
        return 2
    print(response.text)
    return 0 if response.is_success else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heliograph", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="web + workers + scheduler")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--no-workers", action="store_true")
    serve.add_argument("--no-scheduler", action="store_true")
    serve.add_argument("--access-log", action="store_true")
    serve.add_argument(
        "--telegram-polling",
        action="store_true",
        help="fetch Telegram updates with getUpdates (no public URL needed) instead of a webhook",
    )
    serve.set_defaults(fn=cmd_serve)
    worker = sub.add_parser("worker", help="job workers only (and the scheduler if leader)")
    worker.add_argument("--no-scheduler", action="store_true")
    worker.set_defaults(fn=cmd_worker)
    demo = sub.add_parser("demo", help="serve with the provider sandbox (make run)")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--sandbox-port", type=int, default=8900)
    demo.set_defaults(fn=cmd_demo)
    sandbox = sub.add_parser("sandbox", help="act as a customer through the sandbox")
    sandbox_sub = sandbox.add_subparsers(dest="action", required=True)
    say = sandbox_sub.add_parser("say", help='e.g. sandbox say telegram "hi" --from 1234')
    say.add_argument("channel")
    say.add_argument("text")
    say.add_argument("--from", dest="sender", default="1001")
    say.set_defaults(fn=cmd_sandbox_say)
    sub.add_parser("migrate", help="upgrade the database to the latest schema").set_defaults(
        fn=cmd_migrate
    )
    seed = sub.add_parser("seed-demo", help="load the demo team, customers and conversations")
    seed.add_argument("--customers", type=int, default=300)
    seed.set_defaults(fn=cmd_seed_demo)
    team = sub.add_parser("import-team", help="create/update team members from a YAML file")
    team.add_argument("file")
    team.add_argument(
        "--keep-missing",
        action="store_true",
        help="leave members the file does not list as they are (default: deactivate them)",
    )
    team.set_defaults(fn=cmd_import_team)
    token = sub.add_parser("create-token", help="print a new API token for a team member")
    token.add_argument("email")
    token.add_argument("--label", default="cli")
    token.add_argument("--expires-in-days", type=int, help="default: until revoked")
    token.set_defaults(fn=cmd_create_token)
    revoke = sub.add_parser("revoke-token", help="revoke an API token at once")
    revoke.add_argument("token", help="the token's id (see `heliograph tokens`) or the token")
    revoke.set_defaults(fn=cmd_revoke_token)
    sub.add_parser("tokens", help="list API tokens (never the secret)").set_defaults(fn=cmd_tokens)
    for verb, what in (
        ("deactivate", "take a member's access away (tokens, Slack, Telegram, routing)"),
        ("activate", "give a deactivated member their access back"),
    ):
        access = sub.add_parser(verb, help=what)
        access.add_argument("email")
        access.set_defaults(fn=cmd_set_active)
    setpw = sub.add_parser("set-password", help="set a member's web-app password")
    setpw.add_argument("email")
    setpw.add_argument("--stdin", action="store_true", help="read the password from stdin")
    setpw.set_defaults(fn=cmd_set_password)
    invite = sub.add_parser("invite", help="print a single-use sign-up link (7 days)")
    invite.add_argument("email")
    invite.add_argument("--base-url", help="default: HELIOGRAPH_PUBLIC_URL")
    invite.set_defaults(fn=cmd_invite)
    jobs_cmd = sub.add_parser("jobs", help="list dead jobs or retry one")
    jobs_sub = jobs_cmd.add_subparsers(dest="action", required=True)
    jobs_sub.add_parser("dead")
    retry = jobs_sub.add_parser("retry")
    retry.add_argument("job_id", type=int)
    jobs_cmd.set_defaults(fn=cmd_jobs)
    return parser


def main(argv: list[str] | None = None) -> int:
    _few_malloc_arenas()
    _setup_logging()
    args = build_parser().parse_args(argv)
    from sqlalchemy.exc import DBAPIError

    from heliograph.migrate import SchemaOutOfDate
    from heliograph.settings import InsecureSettingsError

    try:
        return int(args.fn(args) or 0)
    except (SchemaOutOfDate, InsecureSettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DBAPIError as exc:
        print(
            f"error: the database refused: {exc.orig}\n"
            "(is HELIOGRAPH_DATABASE_URL right, and the schema current? `heliograph migrate`)",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
