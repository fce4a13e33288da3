"""The course desk in a real browser: headless Chromium (Debian's package, driven by
Playwright) signs in from a chat link, reviews the assignment with a swap and a publish,
grades critiques in bulk with a PDF opened, is refused a staff page as a student, and
every page passes axe-core with no serious or critical violation. On SQLite only (the
HTTP tests run every page on both backends); skipped where Chromium is missing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.app import App
from bot.web.demo import DEMO_NOW, populate
from bot.web.server import WebServer
from bot.web.shots import (
    STAFF_PAGES,
    STUDENT_PAGES,
    browser,
    missing_browser,
    sign_in_link,
    signed_in_page,
)
from commands.clock import FixedClock
from db.models import Assignment, AuditEntry, Critique, Paper

pytestmark = pytest.mark.skipif(missing_browser() is not None, reason=str(missing_browser()))

AXE = Path(__file__).resolve().parent.parent / "bot" / "web" / "vendor" / "axe.min.js"


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
async def served(app: App, clock: FixedClock) -> AsyncIterator[WebServer]:
    clock.at = DEMO_NOW
    await populate(app)
    server = WebServer(app, "127.0.0.1:0")
    await server.start()
    yield server
    await server.stop()


async def audit_count(app: App, kind: str) -> int:
    async with app.db.session() as s:
        return int(
            await s.scalar(
                select(func.count()).select_from(AuditEntry).where(AuditEntry.kind == kind)
            )
            or 0
        )


async def test_review_the_assignment_swap_and_publish(served: WebServer, app: App) -> None:
    async with browser() as b:
        page = await signed_in_page(b, app, "gedas")
        await page.get_by_role("link", name="Assignment").click()
        await page.wait_for_url("**/assignment")
        assert await page.get_by_role(
            "heading", name="Changes from the published assignment"
        ).count()
        swap = page.get_by_role("group", name="Swap two students' papers")
        await swap.get_by_label("First student").select_option("carol.martinez@unc.edu")
        await swap.get_by_label("Second student").select_option("deepak.raman@unc.edu")
        await swap.get_by_label("Reason").fill("Carol is away that week")
        await swap.get_by_role("button", name="Swap").click()
        status = page.get_by_role("status")
        await status.wait_for()
        assert "Swapped: Carol Martinez now has" in await status.inner_text()
        publish = page.get_by_role("group", name="Publish the proposal")
        await publish.get_by_role("button", name="Publish").click()
        await page.get_by_text("Published the new assignment").wait_for()
        assert await audit_count(app, "assign.swap") == 2
        assert await audit_count(app, "assign.publish") == 1
        async with app.db.session() as s:
            left = await s.scalar(
                select(func.count()).select_from(Assignment).where(Assignment.published.is_(False))
            )
        assert left == 0
        # Publishing again: nothing to publish, in chat's words.
        await publish.get_by_role("button", name="Publish").click()
        await page.get_by_text("There is no unpublished proposal to publish").wait_for()


async def test_bulk_grading_with_a_pdf_opened(served: WebServer, app: App) -> None:
    async with browser() as b:
        page = await signed_in_page(b, app, "maya")
        await page.goto(served.url + "/critiques")
        await page.get_by_role("link", name="#13").click()
        await page.wait_for_url("**/critiques/13")
        async with page.expect_popup() as opened:
            await page.get_by_role("link", name="PDF of Alice Chen").click()
        pdf = await opened.value
        response = await pdf.request.get(pdf.url)
        assert response.headers["content-type"] == "application/pdf"
        assert (await response.body()).startswith(b"%PDF")
        await pdf.close()
        for name in ("Alice Chen", "Bob Okafor", "Carol Martinez"):
            await page.get_by_role("checkbox", name=f"Select {name}").check()
        await page.get_by_role("button", name="Pass selected").click()
        status = page.get_by_role("status")
        await status.wait_for()
        text = await status.inner_text()
        assert "Graded Pass for #13" in text and "Carol Martinez" in text
        async with app.db.session() as s:
            passed = await s.scalar(
                select(func.count())
                .select_from(Critique)
                .join(Paper, Paper.id == Critique.paper_id)
                .where(Paper.number == 13, Critique.grade == "pass")
            )
        assert passed == 3
        # The table sorts and filters in place.
        await page.get_by_label("Filter rows").first.fill("Bob")
        assert "1 of" in await page.locator("[data-count=t0]").inner_text()
        await page.locator("#t0").get_by_role("button", name="Student").click()
        assert await page.locator("#t0 th").nth(1).get_attribute("aria-sort") == "ascending"
        # A session that ended meanwhile: the refusal replaces the page (htmx swaps it).
        clock = app.clock
        assert isinstance(clock, FixedClock)
        clock.advance(timedelta(hours=9))
        await page.get_by_role("button", name="Fail selected").click()
        await page.get_by_text("You are not signed in").wait_for()


async def test_a_student_sees_only_their_own(served: WebServer, app: App) -> None:
    async with browser() as b:
        page = await signed_in_page(b, app, "alice")
        assert await page.get_by_role("link", name="Assignment").count() == 0
        response = await page.goto(served.url + "/week")
        assert response is not None and response.status == 403
        assert "only for TAs and instructors" in await page.inner_text("main")
        used = await sign_in_link(app, "alice")
        await page.goto(used)
        await page.get_by_role("button", name="Sign in").click()
        await page.goto(used)  # the same link again
        assert "already used" in await page.inner_text("main")


async def test_no_serious_accessibility_violation_on_any_page(served: WebServer, app: App) -> None:
    script = AXE.read_text(encoding="utf-8")
    found: dict[str, list[str]] = {}
    async with browser() as b:
        for handle, pages in (("gedas", STAFF_PAGES), ("alice", STUDENT_PAGES)):
            # axe is injected as a script: the desk's CSP (script-src 'self') is bypassed
            # for the test only.
            page = await signed_in_page(b, app, handle, bypass_csp=True)
            await page.context.add_init_script(script)
            for path, _ in pages:
                await page.goto(served.url + path)
                result = await page.evaluate(
                    "async () => await axe.run(document, {resultTypes: ['violations']})"
                )
                bad = [
                    f"{v['id']} ({v['impact']}): {v['nodes'][0]['target']}"
                    for v in result["violations"]
                    if v["impact"] in ("serious", "critical")
                ]
                if bad:
                    found[path] = bad
    assert found == {}
