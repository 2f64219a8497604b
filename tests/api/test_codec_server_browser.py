"""In a real browser, the Temporal Web UI shows a lead decoded through the codec server.

Debian's headless ``chromium`` loads the lead's history page from a dev server started with
``--ui-codec-endpoint``; the page's scripts send the encrypted payloads to the codec server from the
UI's origin (CORS) and render what comes back.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from api.codec_server import create_codec_app
from core.constants import SEARCH_ATTRIBUTES
from core.settings import Settings
from tests.conftest import TEST_CONVERTER, binary
from tests.hub import running_hub
from tests.support import free_port, serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary (Debian: apt-get install chromium; .ci/run installs it)"
)
FIRST_NAME = "Zuleica"


class DecodeCalls:
    """Records the Origin of every ``POST /decode`` reaching the wrapped app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.origins: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and (scope["method"], scope["path"]) == ("POST", "/decode"):
            self.origins.append(dict(scope["headers"]).get(b"origin", b"").decode())
        await self.app(scope, receive, send)


@pytest.fixture
async def ui_with_codec() -> AsyncIterator[tuple[WorkflowEnvironment, str, DecodeCalls]]:
    """A dev server whose Web UI decodes through a codec server; yields it, the UI's URL and the calls."""
    ui_port = free_port()
    ui = f"http://127.0.0.1:{ui_port}"
    codec = DecodeCalls(create_codec_app(Settings(environment="test", codec_server_cors_origins=[ui])))
    async with serve(codec) as codec_url:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=binary("temporal"),
            search_attributes=SEARCH_ATTRIBUTES,
            dev_server_log_level="error",
            data_converter=TEST_CONVERTER,
            ui=True,
            ui_port=ui_port,
            dev_server_extra_args=["--ui-codec-endpoint", codec_url],
        )
        try:
            yield env, ui, codec
        finally:
            await env.shutdown()


async def test_web_ui_shows_the_leads_run_decoded(
    ui_with_codec: tuple[WorkflowEnvironment, str, DecodeCalls],
    sqlite_url: str,
    task_queue: str,
    tmp_path: Path,
) -> None:
    env, ui, codec = ui_with_codec
    async with running_hub(env.client, sqlite_url, task_queue) as hub:
        lead_id = await hub.create_lead(
            First_Name=FIRST_NAME, Last_Name="Quaresma", Email="zuleica.quaresma@example.com.br", State="SP"
        )
        assert (await hub.post_webhook(lead_id)).status_code == 202
        delivered = (await hub.handle(lead_id).result()).dealer_lead_id
        run_id = (await hub.handle(lead_id).describe()).run_id

    page = await rendered(f"{ui}/namespaces/default/workflows/lead-{lead_id}/{run_id}/history", tmp_path)
    # The delivery's result, as the history page previews it: decoded, so the dealer's id of the lead
    # reads as its CRM answered it (encrypted, the preview would show the codec's encoding).
    assert delivered and f'{{"dealer_lead_id":"{delivered}"' in page, "the delivery is not shown decoded"
    assert codec.origins and set(codec.origins) == {ui}  # asked by the browser, from the UI's page


async def rendered(url: str, profile: Path) -> str:
    """The page's DOM once its scripts have run (and fetched), from headless Chromium."""
    assert CHROMIUM is not None
    command = [
        CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={profile}",
        # Scripts and their fetches run until the page is idle or this much page time passed.
        "--virtual-time-budget=20000", "--dump-dom", url,
    ]  # fmt: skip
    result = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout
