"""The chaos benchmark in its smallest form (``python -m bench.chaos --quick``): the
course week on SQLite, the bot process killed with SIGKILL 3 times, behind the
terminal transcript, discord.py against the fake Discord and slack_sdk against the fake
Slack. Nothing is lost; the terminal and Discord show nothing twice; Slack at most once
per kill that fell between its answer and the commit."""

from __future__ import annotations

from bench.chaos import parse_args, run


async def test_quick_chaos_loses_nothing_and_says_nothing_twice() -> None:
    opts = parse_args(["--quick", "--seed", "3"])
    rows, _notes = await run(opts)
    by_platform = {r.platform: r for r in rows}
    assert set(by_platform) == {"terminal", "discord", "slack"}
    for row in rows:
        assert (row.backend, row.target) == ("sqlite", "bot")
        assert 1 <= row.kills <= 3, row
        assert row.expected > 150, row  # the whole week was compared
        assert row.lost == 0, row.why
    for name in ("terminal", "discord"):
        assert by_platform[name].duplicated == 0, by_platform[name].why
    slack = by_platform["slack"]
    assert slack.duplicated <= slack.window <= slack.kills, slack
    assert all(r.verdict == "OK" for r in rows), [r.why for r in rows]
