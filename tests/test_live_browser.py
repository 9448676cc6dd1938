"""The live feed in a real browser: EventSource in headless Chromium against `spanstream serve`,
fed by the fold worker, surviving a restart of the API without losing or repeating an event."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from schemas.span import Span
from spanstream.producer import make_producer, publish_spans
from tests.conftest import free_port
from tests.live_helpers import viewer_project
from tests.processes import serve_for_tests
from tests.webdriver import headless_chromium

# A dashboard as small as it gets: EventSource cannot send headers, hence ?api_key=.
PAGE = b"""<!doctype html><meta charset="utf-8"><title>live</title><script>
const params = new URLSearchParams(location.search);
window.received = [];
window.opened = 0;
const source = new EventSource(params.get("api") + "/api/live/events?api_key=" + encodeURIComponent(params.get("key")));
source.onopen = () => { window.opened += 1; };
for (const type of ["span:new", "session:updated", "health:tag"]) {
  source.addEventListener(type, (event) => {
    window.received.push({type, id: event.lastEventId, data: JSON.parse(event.data)});
  });
}
</script>"""


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def page_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def _viewer_key(dsn: str) -> tuple[str, str]:
    return viewer_project(dsn, "browser")


def _spans(project_id: str, session_id: str, count: int) -> list[Span]:
    started = datetime.now(UTC) - timedelta(seconds=5)
    return [Span(project_id=project_id, session_id=session_id, span_id=f"{session_id}-{i}", span_type="llm",
                 agent_name="planner", model_id="gpt-4o", input_tokens=10, output_tokens=5,
                 started_at=started + timedelta(milliseconds=i), ended_at=started + timedelta(milliseconds=i + 20))
            for i in range(count)]


RECEIVED_SPANS = "return window.received.filter(e => e.type === 'span:new').map(e => e.data.span_id)"


def test_eventsource_in_chromium_gets_spans_sessions_and_tags_and_resumes_after_an_api_restart(
        settings, tmp_path_factory, page_url, monkeypatch):
    monkeypatch.setenv("SPANSTREAM_LIVE_KEEPALIVE_SECONDS", "1")
    project_id, key = _viewer_key(settings.postgres_dsn)
    data_dir, port = tmp_path_factory.mktemp("browser"), free_port()
    running, topics = serve_for_tests(settings, data_dir, "browser", port)
    producer = make_producer(settings)
    try:
        with headless_chromium() as browser:
            browser.open(f"{page_url}?api={running.base}&key={key}")
            browser.wait_for("return window.opened >= 1")
            first = _spans(project_id, "browser-1", 3)
            publish_spans(producer, topics["spans"], first)
            # The fold worker turns the spans into a session record and the session's first tag.
            browser.wait_for("return window.received.some(e => e.type === 'session:updated' && e.data.spans === 3)"
                             " && window.received.some(e => e.type === 'health:tag')")
            assert sorted(browser.wait_for(RECEIVED_SPANS)) == sorted(s.span_id for s in first)
            events = browser.run("return window.received")
            assert all(event["id"].startswith("1~") for event in events)
            assert {e["data"]["project_id"] for e in events} == {project_id}
            tag = next(e for e in events if e["type"] == "health:tag")["data"]
            assert tag["session_id"] == "browser-1" and tag["health_tag"] == "success"

            # The API stops (the stream ends), spans keep coming, another process starts: the
            # browser reconnects by itself with Last-Event-ID and misses nothing.
            assert running.stop() == 0, running.log.read_text()[-3000:]
            missed = _spans(project_id, "browser-2", 4)
            publish_spans(producer, topics["spans"], missed)
            running, _ = serve_for_tests(settings, data_dir, "browser", port)
            browser.wait_for("return window.opened >= 2", 60)
            browser.wait_for(f"{RECEIVED_SPANS}.length >= 7", 60)
            time.sleep(1.5)  # time for a duplicate to show up, if there were one
            assert Counter(browser.run(RECEIVED_SPANS)) == Counter(s.span_id for s in first + missed)
    finally:
        assert running.stop() == 0, running.log.read_text()[-3000:]
