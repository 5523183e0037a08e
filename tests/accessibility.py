"""Every page a browser test looks at is also audited with axe-core, the rules engine behind
most accessibility checkers (WCAG 2 A and AA, plus its best practices).

Crowdworkers rate with screen readers, keyboards and zoomed screens; a researcher reads the
critic page in bright light. The audit runs where each test takes its screenshot, so it
sees the page in the state the test built (a plot with points, a finished job, a form with
its messages). The engine is the ``axe.min.js`` that the ``axe-playwright-python`` wheel
ships: nothing is fetched."""

from __future__ import annotations

from typing import Any

from axe_playwright_python.sync_playwright import Axe

_AXE = Axe()


def assert_accessible(page: Any) -> None:
    """No axe-core violation on the page as it is now, named rule by rule with the elements."""
    violations = _AXE.run(page).response["violations"]
    lines = []
    for violation in violations:
        lines.append(f"{violation['id']} ({violation['impact']}): {violation['help']}")
        for node in violation["nodes"][:5]:
            lines.append(f"    {node['target']}: {node['html'][:120]}")
    assert not violations, f"accessibility at {page.url}:\n" + "\n".join(lines)
