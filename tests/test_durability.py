"""Durability, against real processes: replays, races, two workers, and ``kill -9``.

What a user would notice if these broke: a customer message shown twice (or lost after
it was acknowledged), two profiles for one customer, a reply that never arrives or
arrives twice. Each test runs ``heliograph`` as a separate process over real HTTP, with a
separate receiver process (``tests/utils/receiver.py``) standing in for the platform
that gets the replies.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import col

from crm_core.models import Customer, Identity
from heliograph.db import Database
from heliograph.models import Job
from inbox.conversations import reply
from inbox.models import Conversation, Message
from tests.utils.db import count, result_rows, scalars
from tests.utils.factories import member_with_token, receive
from tests.utils.processes import Service, free_port, start_heliograph, start_python
from tests.utils.signing import SECRET, inbound_body, signed_headers

pytestmark = pytest.mark.slow


def _env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "HELIOGRAPH_DATABASE_URL": database_url,
        "HELIOGRAPH_API_INBOUND_SECRET": SECRET,
        **extra,
    }


def _fail(what: str, *services: Service) -> str:
    logs = "\n".join(f"--- {s.log_path.name}\n{s.log()[-3000:]}" for s in services)
    return f"{what}\n{logs}"


def _start_receiver(tmp_path: Path, delay_ms: float = 0.0) -> Service:
    port = free_port()
    return start_python(
        "tests.utils.receiver",
        ["--port", str(port), "--delay-ms", str(delay_ms)],
        {"HELIOGRAPH_API_INBOUND_SECRET": SECRET},
        tmp_path / "receiver.log",
        f"http://127.0.0.1:{port}/health",
    )


def _received(receiver: Service) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = httpx.get(f"{receiver.url}/calls", timeout=30).json()
    return calls


async def _wait_until(what: str, check: Any, within: float, *services: Service) -> None:
    """Poll ``await check()`` until it is true; fail with the services' logs after ``within`` s."""
    deadline = time.monotonic() + within
    while not await check():
        for service in services:
            assert service.proc.poll() is None, _fail(f"{service.log_path.name} died", service)
        if time.monotonic() > deadline:
            raise AssertionError(_fail(f"no {what} after {within}s", *services))
        await asyncio.sleep(0.25)


# --- 1. Replays and first-message races, on SQLite and PostgreSQL -------------------------


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Service]:
    service = start_heliograph(["serve"], _env(database_url), tmp_path / "serve.log", free_port())
    try:
        yield service
    finally:
        service.stop()


async def _inbound_all_at_once(server: Service, bodies: list[bytes]) -> list[httpx.Response]:
    """Every body at once, each on its own connection."""
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
        return await asyncio.gather(
            *(client.post("/api/v1/inbound", content=b, headers=signed_headers(b)) for b in bodies)
        )


async def test_replaying_one_message_100_times_at_once_stores_it_once(
    server: Service, database: Database
) -> None:
    body = inbound_body("replayed-1", "cust-replay", "where is my order?", name="Rosa Costa")

    responses = await _inbound_all_at_once(server, [body] * 100)

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 100}, _fail(f"answers: {statuses}", server)
    answers = [r.json() for r in responses]
    assert sum(a["duplicate"] is False for a in answers) == 1, "exactly one stored it"
    assert len({a["conversation_id"] for a in answers}) == 1
    assert len({a["customer_id"] for a in answers}) == 1
    assert {a["message_id"] for a in answers} == {"replayed-1"}
    assert await count(database, Message) == 1
    assert await count(database, Customer) == 1
    assert await count(database, Identity) == 1
    assert await count(database, Conversation) == 1


async def test_twenty_first_messages_from_one_new_sender_make_one_customer_and_thread(
    server: Service, database: Database
) -> None:
    bodies = [inbound_body(f"burst-{i}", "cust-burst", f"part {i}") for i in range(20)]

    responses = await _inbound_all_at_once(server, bodies)

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 20}, _fail(f"answers: {statuses}", server)
    answers = [r.json() for r in responses]
    assert all(a["duplicate"] is False for a in answers)
    assert len({a["customer_id"] for a in answers}) == 1, "one sender, one customer"
    assert len({a["conversation_id"] for a in answers}) == 1, "one sender, one thread"
    assert await count(database, Customer) == 1
    assert await count(database, Identity) == 1
    conversations = await scalars(database, select(Conversation))
    assert [c.status for c in conversations] == ["open"]
    stored = await scalars(
        database,
        select(col(Message.provider_message_id)).where(
            Message.conversation_id == conversations[0].id
        ),
    )
    assert sorted(stored) == sorted(f"burst-{i}" for i in range(20))


# --- 2. Two workers drain one outbox on PostgreSQL ------------------------------------------

CONVERSATIONS = 200
REPLIES_EACH = 10


def _wait_for_log(service: Service, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in service.log():
        assert service.proc.poll() is None, _fail("the worker exited", service)
        assert time.monotonic() < deadline, _fail(f"no {text!r} in the log", service)
        time.sleep(0.1)


async def test_two_workers_deliver_2000_replies_each_exactly_once(
    pg_url: str, pg_database: Database, tmp_path: Path
) -> None:
    """``SELECT ... FOR UPDATE SKIP LOCKED`` claims: two ``heliograph worker`` processes share
    one outbox of 2,000 replies over 200 conversations; the receiver counts each once."""
    receiver = _start_receiver(tmp_path)
    env = _env(
        pg_url,
        HELIOGRAPH_API_OUTBOUND_URL=f"{receiver.url}/replies",
        HELIOGRAPH_LOG_LEVEL="INFO",  # to see "worker ... running"
    )
    workers: list[Service] = []
    try:
        for n in range(2):
            workers.append(
                start_heliograph(["worker", "--no-scheduler"], env, tmp_path / f"worker{n}.log")
            )
        for worker in workers:
            _wait_for_log(worker, "running")

        # Both workers are polling; the whole outbox appears in one commit, so they compete
        # for it from the first claim. Replies are written round-robin over conversations.
        conversation_ids = [
            (await receive(pg_database, f"in-{c}", f"cust-{c}")).conversation_id
            for c in range(CONVERSATIONS)
        ]
        async with pg_database.session() as session:
            for _ in range(REPLIES_EACH):
                for conversation_id in conversation_ids:
                    await reply(session, conversation_id, "on it", author_id=None)
            await session.commit()
        replies = await result_rows(
            pg_database,
            select(col(Message.id), col(Message.conversation_id)).where(
                col(Message.direction) == "out"
            ),
        )
        assert len(replies) == CONVERSATIONS * REPLIES_EACH

        async def drained() -> bool:
            return (
                await count(
                    pg_database,
                    Message,
                    Message.direction == "out",
                    Message.delivery_status != "delivered",
                )
                == 0
            )

        await _wait_until("every reply delivered", drained, 120, receiver, *workers)

        calls = _received(receiver)
        times = Counter(call["message_id"] for call in calls)
        assert set(times) == {m_id for m_id, _ in replies}, "every reply arrived"
        assert [m for m, n in times.items() if n > 1] == [], "no reply arrived twice"
        assert all(c["delivery_header"] == str(c["message_id"]) for c in calls)
        # Replies leave a conversation in the order they were written, across workers.
        arrived: dict[int, list[int]] = {}
        for call in calls:
            arrived.setdefault(call["conversation_id"], []).append(call["message_id"])
        assert all(ids == sorted(ids) for ids in arrived.values()), "replies out of order"

        assert await count(pg_database, Job, Job.status == "dead") == 0
        # The worker that completes a job stays in ``locked_by`` (completion only clears
        # the lease): each delivery was finished by one of our two processes, and both
        # carried a real share of the load.
        finished_by = dict(
            await result_rows(
                pg_database,
                select(col(Job.locked_by), func.count())
                .where(col(Job.kind) == "outbox.deliver", col(Job.status) == "done")
                .group_by(Job.locked_by),
            )
        )
        host = socket.gethostname()
        assert set(finished_by) == {f"{host}:{w.proc.pid}" for w in workers}, finished_by
        assert sum(finished_by.values()) == CONVERSATIONS * REPLIES_EACH
        assert min(finished_by.values()) >= 100, f"one worker barely worked: {finished_by}"
    finally:
        for worker in workers:
            worker.stop()
        receiver.stop()


# --- 3. kill -9 of the server under load, SQLite ---------------------------------------------

MESSAGES = 1000
SENDERS = 100
CLIENTS = 12
KILL_AFTER = 400
REPLY_EVERY = 4  # the client answers every 4th acknowledged message
WORKER_CONCURRENCY = 16


class _Client:
    """A platform posting customer messages (retrying until 200) while agents reply."""

    def __init__(self, base_url: str, auth: dict[str, str]) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=30)
        self.auth = auth
        self.acked: dict[str, int] = {}  # message_id -> conversation_id
        self.server_errors: list[str] = []
        self.replies_accepted: list[int] = []  # 202: the reply is ours to deliver
        self.replies_unknown = 0  # the connection died: it may or may not be stored
        self.kill_point = asyncio.Event()  # set once KILL_AFTER messages are acknowledged

    async def post_message(self, n: int) -> None:
        message_id = f"crash-{n}"
        body = inbound_body(message_id, f"cust-{n % SENDERS}", f"message {n}")
        deadline = time.monotonic() + 90
        while True:
            try:
                r = await self.http.post(
                    "/api/v1/inbound", content=body, headers=signed_headers(body)
                )
                if r.status_code == 200:
                    break
                if r.status_code < 500:
                    raise AssertionError(f"{message_id}: {r.status_code} {r.text}")
                self.server_errors.append(f"{message_id}: {r.status_code} {r.text[:200]}")
            except httpx.TransportError:
                pass  # the server is down (or went down mid-request): try again
            assert time.monotonic() < deadline, f"{message_id} never acknowledged"
            await asyncio.sleep(0.05)
        conversation_id = r.json()["conversation_id"]
        self.acked[message_id] = conversation_id
        if len(self.acked) >= KILL_AFTER:
            self.kill_point.set()
        if n % REPLY_EVERY == 0:
            await self.post_reply(conversation_id, f"answer to {n}")

    async def post_reply(self, conversation_id: int, text: str) -> None:
        try:
            r = await self.http.post(
                f"/api/v1/conversations/{conversation_id}/reply",
                json={"text": text},
                headers=self.auth,
            )
        except httpx.ConnectError:
            return  # never reached the server: nothing stored, nothing promised
        except httpx.TransportError:
            self.replies_unknown += 1
            return
        if r.status_code == 202:
            self.replies_accepted.append(r.json()["id"])
        elif r.status_code >= 500:
            self.server_errors.append(f"reply to {conversation_id}: {r.status_code} {r.text[:200]}")
        else:
            raise AssertionError(f"reply to {conversation_id}: {r.status_code} {r.text}")

    async def run(self) -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(MESSAGES):
            queue.put_nowait(n)

        async def one_client() -> None:
            while not queue.empty():
                await self.post_message(queue.get_nowait())

        await asyncio.gather(*(one_client() for _ in range(CLIENTS)))


async def test_kill_9_under_load_loses_no_acknowledged_message_and_no_queued_reply(
    sqlite_url: str, sqlite_database: Database, tmp_path: Path
) -> None:
    """SIGKILL of ``heliograph serve`` (SQLite, web + workers in one process) mid-stream.

    Inbound: the client retries each message until it gets 200, so every one of the 1,000
    must be stored, and none twice (a retry of a message whose 200 the kill cut off is a
    replay). Outbound: delivery is at-least-once with the message id as the receiver's
    idempotency key (``X-Heliograph-Delivery``). A reply can reach the receiver twice only
    if the dead process had sent it but not yet recorded it as delivered, i.e. its job was
    ``running`` at the kill; so repeats <= deliveries running at the kill (claimed in
    batches of up to 100, of which at most ``DELIVER_AT_ONCE`` per channel are in the
    provider's hands at once; a reply recorded as delivered is not sent again when its job
    runs again after the lease).
    """
    database = sqlite_database
    _, auth = await member_with_token(database)
    receiver = _start_receiver(tmp_path, delay_ms=20)
    port = free_port()
    env = _env(
        sqlite_url,
        HELIOGRAPH_API_OUTBOUND_URL=f"{receiver.url}/replies",
        # A short lease, so the restarted server takes over the dead one's deliveries soon.
        HELIOGRAPH_JOB_LEASE_S="5",
        HELIOGRAPH_JOB_BACKOFF_BASE_S="0.1",
        HELIOGRAPH_JOB_BACKOFF_MAX_S="1",
        HELIOGRAPH_WORKER_CONCURRENCY=str(WORKER_CONCURRENCY),
    )
    log = tmp_path / "serve.log"
    servers = [start_heliograph(["serve"], env, log, port)]
    client = _Client(servers[0].url, auth)
    in_flight_at_kill: list[int] = []
    acked_at_kill: list[int] = []

    async def crash_and_restart() -> None:
        await client.kill_point.wait()
        servers[0].kill9()
        acked_at_kill.append(len(client.acked))
        # Deliveries claimed by the dead process and not finished: the only ones that may
        # have reached the receiver without being recorded as delivered, so the only ones
        # that may be sent again (delivery is at-least-once, keyed by the message id).
        in_flight_at_kill.append(
            await count(database, Job, Job.kind == "outbox.deliver", Job.status == "running")
        )
        servers.append(await asyncio.to_thread(start_heliograph, ["serve"], env, log, port))

    try:
        await asyncio.wait_for(asyncio.gather(client.run(), crash_and_restart()), timeout=120)
        await client.http.aclose()

        async def drained() -> bool:
            undelivered = Message.delivery_status.not_in(("delivered", "failed"))  # type: ignore[attr-defined]
            return await count(database, Message, Message.direction == "out", undelivered) == 0

        await _wait_until("every reply delivered", drained, 60, servers[-1], receiver)

        assert KILL_AFTER <= acked_at_kill[0] < MESSAGES - 100, "the kill came mid-stream"
        # Every acknowledged message is on disk exactly once (the client retried to 200).
        assert len(client.acked) == MESSAGES
        stored = Counter(
            await scalars(
                database,
                select(col(Message.provider_message_id)).where(col(Message.direction) == "in"),
            )
        )
        assert set(stored) == set(client.acked)
        assert [m for m, n in stored.items() if n > 1] == []
        assert await count(database, Customer) == SENDERS
        assert await count(database, Conversation) == SENDERS
        assert client.server_errors == [], _fail(str(client.server_errors[:5]), servers[-1])

        # Every reply that got 202 reached the receiver; repeats only from the kill.
        assert len(client.replies_accepted) >= MESSAGES // REPLY_EVERY - 2 * CLIENTS
        calls = _received(receiver)
        times = Counter(call["message_id"] for call in calls)
        assert [m for m in client.replies_accepted if times[m] == 0] == [], "replies lost"
        repeats = sum(n - 1 for n in times.values())
        assert repeats <= in_flight_at_kill[0], (repeats, in_flight_at_kill)
        # Every reply stored (those with a 202, and any whose answer the kill cut off) went out.
        out = dict(
            await result_rows(
                database,
                select(col(Message.id), col(Message.delivery_status)).where(
                    col(Message.direction) == "out"
                ),
            )
        )
        assert set(client.replies_accepted) <= set(out)
        assert Counter(out.values()) == {"delivered": len(out)}
        assert set(out) == set(times), "the receiver got exactly the stored replies"
        assert await count(database, Job, Job.status == "dead") == 0
    finally:
        await client.http.aclose()
        for server in servers:
            server.stop()
        receiver.stop()
