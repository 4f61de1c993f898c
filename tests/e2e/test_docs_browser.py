"""Swagger UI at /docs in headless Chromium with the network cut off: it renders every operation
from the app's own assets, and a request made from the page reaches the model."""

from __future__ import annotations

import json

import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tests.e2e.browser import offline_chromium


def _requested_urls(driver, origin: str) -> list[str]:
    """Every URL a document served from `origin` asked for (the browser's own pages aside)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message["params"]
        if message["method"] == "Network.requestWillBeSent":
            if params.get("documentURL", "").startswith(origin):
                urls.append(params["request"]["url"])
    return urls


def _listed_operations(driver) -> set[str]:
    listed = set()
    for block in driver.find_elements(By.CSS_SELECTOR, ".opblock"):
        method = block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text
        path = block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute(
            "data-path"
        )
        listed.add(f"{method} {path}")
    return listed


def test_docs_render_every_operation_offline(demo_server, tmp_path):
    document = requests.get(demo_server.url + "/openapi.json", timeout=10).json()
    expected = {f"{m.upper()} {p}" for p, ops in document["paths"].items() for m in ops}
    with offline_chromium(tmp_path / "profile") as driver:
        driver.get(demo_server.url + "/docs")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= len(expected))
        assert _listed_operations(driver) == expected
        assert "ml_app" in driver.find_element(By.CSS_SELECTOR, ".info .title").text
        rendered = tmp_path / "docs.png"
        assert driver.save_screenshot(str(rendered))

        # Try POST /predict from the page, with the example body the document provides.
        block = driver.find_element(By.ID, "operations-predict-post_predict")
        block.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
        wait.until(expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, ".try-out__btn")))
        block.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
        block.find_element(By.CSS_SELECTOR, ".execute").click()
        status = ".live-responses-table .response-col_status"
        wait.until(
            lambda d: "200" in [e.text for e in block.find_elements(By.CSS_SELECTOR, status)]
        )
        body = block.find_element(By.CSS_SELECTOR, ".live-responses-table .microlight").text
        assert json.loads(body)["prediction"] == "setosa"

        driver.execute_script(
            "arguments[0].scrollIntoView()", block.find_element(By.CSS_SELECTOR, ".execute")
        )
        tried = tmp_path / "docs-try-out.png"
        assert driver.save_screenshot(str(tried))
        print(f"screenshots: {rendered} {tried}")
        urls = _requested_urls(driver, demo_server.url)
    assert rendered.stat().st_size > 10_000 and tried.stat().st_size > 10_000
    assert demo_server.url + "/docs/swagger-ui-bundle.js" in urls
    assert demo_server.url + "/openapi.json" in urls
    outside = [u for u in urls if not u.startswith((demo_server.url, "data:"))]
    assert outside == [], f"the page asked for resources outside the app: {outside}"
