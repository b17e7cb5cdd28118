"""The web console in a real browser (Debian's headless Chromium driven by Playwright): log in
with an API key, see a deployment, run an online test and get a prediction, watch the charts
update, and be refused another project's pages. The deployment page's screenshot is kept in
`test-artifacts/`."""

from __future__ import annotations

import importlib.util
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelfleet.examples.digits import build_example, sample_row
from modelfleet.sdk import Client
from tests.e2e.platform import ADMIN_KEY, PLATFORM_KEY, RunningPlatform, wait_for

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="browser tests need Debian's chromium at /usr/bin/chromium "
        "(apt-get install chromium chromium-driver)",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None,
        reason="browser tests need the playwright package (the dev extra)",
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def deployed(platform: RunningPlatform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    name = f"console-{uuid.uuid4().hex[:6]}"
    path = build_example(tmp_path_factory.mktemp("console"))
    with Client(platform.url, ADMIN_KEY, ca_file=platform.ca_file) as c:
        model = c.push_model(path, name="digits", format="onnx")
        c.create_deployment(deployment_id=name, model_id=model.model_id)
        c.wait_until_started(name, timeout=90)
        yield name
        c.delete_deployment(name, force=True)


def new_page(browser: Any, platform: RunningPlatform) -> Any:
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, ignore_https_errors=bool(platform.ca_file)
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    return page


def log_in(page: Any, platform: RunningPlatform, key: str) -> None:
    page.goto(f"{platform.url}/console")
    page.fill("#login-key", key)
    page.click("#login-submit")


def test_log_in_see_a_deployment_test_it_and_watch_the_charts(
    browser: Any, platform: RunningPlatform, deployed: str
) -> None:
    page = new_page(browser, platform)
    log_in(page, platform, "mfk_nobody:wrong-secret")
    page.wait_for_selector(".error-message")
    assert page.locator("#login-form").is_visible()

    log_in(page, platform, ADMIN_KEY)
    page.wait_for_selector(f"a:text-is('{deployed}')")
    assert page.inner_text("#project") == "project default"
    page.click(f"a:text-is('{deployed}')")
    page.wait_for_selector("#deployment-state[data-state='started']")
    assert "node-" in page.inner_text("#routing-table")
    assert "100%" in page.inner_text("#versions")
    page.wait_for_selector("#events >> text=starting → started")

    # the online test: the form is built from the signature (input, FP32, [-1, 64])
    row = sample_row()
    page.fill("#test-input-input", json.dumps([row]))
    page.click("#test-run")
    page.wait_for_selector("#test-prediction [data-output='logits']")
    with Client(platform.url, ADMIN_KEY, ca_file=platform.ca_file) as c:
        expected = int(c.infer(deployed, {"input": np.asarray([row], dtype=np.float32)})["logits"].argmax())
    assert page.get_attribute("#test-prediction [data-output='logits']", "data-argmax") == str(expected)
    assert float(page.get_attribute("#test-latency", "data-ms") or "0") > 0
    outputs = json.loads(page.inner_text("#test-result"))
    assert {o["name"] for o in outputs} == {"logits", "probabilities"}

    # live charts: traffic sent now shows up in the next polls
    page.wait_for_selector("#chart-summary[data-requests]")
    before = int(page.get_attribute("#chart-summary", "data-requests") or "0")
    with Client(platform.url, ADMIN_KEY, ca_file=platform.ca_file) as c:
        for _ in range(8):
            c.infer(deployed, {"input": np.asarray([row], dtype=np.float32)})
    # (polled from here: the console's CSP forbids the string evaluation wait_for_function uses)
    wait_for(
        "the charts to count the new requests",
        lambda: int(page.get_attribute("#chart-summary", "data-requests") or "0") >= before + 8,
        timeout=15,
        interval=0.25,
    )
    assert page.locator(".chart canvas").count() == 3
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-deployment.png"), full_page=True)
    assert (ARTIFACTS / "console-deployment.png").stat().st_size > 10_000

    page.click("a:text-is('Nodes')")
    page.wait_for_selector("table >> text=node-1")
    page.click("a:text-is('Pipelines')")
    page.wait_for_selector("h1:text-is('Pipeline deployments')")
    assert page.errors == []


def test_another_projects_pages_are_refused(browser: Any, platform: RunningPlatform, deployed: str) -> None:
    project = f"console-other-{uuid.uuid4().hex[:6]}"
    with Client(platform.url, PLATFORM_KEY, ca_file=platform.ca_file) as admin:
        other_key = admin.request("POST", "/api/v1/projects", json={"project_id": project})["admin_key"][
            "api_key"
        ]
    page = new_page(browser, platform)
    log_in(page, platform, other_key)
    page.wait_for_selector("#empty")  # its own project has no deployments
    assert page.inner_text("#project") == f"project {project}"
    page.goto(f"{platform.url}/console/deployments/{deployed}")
    page.wait_for_selector("#refused")
    assert page.locator("#deployment-state").count() == 0
    assert page.locator("#online-test").count() == 0
    answer = page.evaluate(
        """async (name) => {
            const r = await fetch(`/console/api/deployments/${name}/chart`,
              {headers: {authorization: `Bearer ${sessionStorage.getItem("modelfleet.apiKey")}`}});
            return r.status;
        }""",
        deployed,
    )
    assert answer == 404
    # the key lives in this tab's sessionStorage only: no cookie carries it
    assert page.context.cookies() == []
