"""`spanstream dev`: the whole skeleton on the embedded defaults, with a project, a key and demo spans."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import mode

from api.repositories.projects import create_api_key, ensure_project, project_for_key
from spanstream.clickhouse import ClickHouseStore
from spanstream.demo import demo_session
from spanstream.infra import infra
from spanstream.migrate import migrate_all, migrate_postgres
from spanstream.producer import make_producer, publish_spans
from spanstream.serve import run
from spanstream.settings import Settings

log = logging.getLogger(__name__)
DEV_PROJECT = "default"


async def ensure_dev_key(settings: Settings) -> tuple[str, str]:
    """Returns (project id, API key) of the `default` project, reusing the saved key if it still works."""
    key_file = settings.data_dir / "dev-api-key"
    pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=2)
    try:
        project = await ensure_project(pool, DEV_PROJECT, "Default project")
        if key_file.exists():
            saved = key_file.read_text().strip()
            found = await project_for_key(pool, saved)
            if found is not None and found.id == project.id:
                return str(project.id), saved
        key = await create_api_key(pool, project.id, "dev")
    finally:
        await pool.close()
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    return str(project.id), key


class DemoPublisher(mode.Service):
    """Once the worker and API are up, publishes one demo session and says where to look."""

    def __init__(self, settings: Settings, store: ClickHouseStore, project_id: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self._settings, self._store, self._project_id = settings, store, project_id

    async def on_started(self) -> None:
        self.add_future(self._publish())

    async def _publish(self) -> None:
        spans = demo_session(self._project_id)
        producer = make_producer(self._settings)
        await asyncio.to_thread(publish_spans, producer, self._settings.spans_topic, spans)
        session = spans[0].session_id
        visible = False
        for _ in range(600):
            rows = await self._store.query(
                "SELECT count() AS n FROM spans FINAL WHERE project_id = {p:String} AND session_id = {s:String}",
                {"p": self._project_id, "s": session},
            )
            visible = rows[0]["n"] == len(spans)
            if visible:
                break
            await asyncio.sleep(0.1)
        s = self._settings
        base = f"http://{s.api_host}:{s.api_port}"
        print(
            f"\nSpanstream is running. Published {len(spans)} demo spans (session {session})"
            f"{'' if visible else ', not visible yet: the worker is still catching up with the topic'}.\n"
            f"  API        {base}   (OpenAPI docs: {base}/docs)\n"
            f"  API key    saved in {s.data_dir / 'dev-api-key'}\n"
            f"  Spans      curl -H \"X-API-Key: $(cat {s.data_dir / 'dev-api-key'})\" {base}/api/spans\n"
            f"  Sessions   curl -H \"X-API-Key: $(cat {s.data_dir / 'dev-api-key'})\" {base}/api/agents/sessions\n"
            f"  Publish    to Kafka topic '{s.spans_topic}' at {s.kafka_bootstrap} (JSON Span v1, keyed by session_id)\n"
            "  Ctrl-C stops everything.\n",
            flush=True,
        )


def dev(settings: Settings) -> None:
    infra("up", settings)
    migrate_all(settings)
    project_id, key = asyncio.run(ensure_dev_key(settings))
    print(f"project '{DEV_PROJECT}' ({project_id}); API key: {key}", flush=True)
    run(settings, fold_processes=settings.fold_processes,
        extra_services=lambda store: [DemoPublisher(settings, store, project_id)])


async def create_key(settings: Settings, slug: str, role: str = "admin") -> str:
    # The key's table may be older than this build (a new column): bring it up to date first.
    await migrate_postgres(settings.postgres_dsn)
    pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=2)
    try:
        project = await ensure_project(pool, slug)
        return await create_api_key(pool, project.id, "cli", role)
    finally:
        await pool.close()
