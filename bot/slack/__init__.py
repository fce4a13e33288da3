"""The Slack adapter (issue #8): slack-bolt's AsyncApp over HTTP or Socket Mode.

``run_slack(settings)`` is what ``coursebot run`` starts when Slack tokens are set;
:class:`SlackBot` is the adapter itself (listeners, reply rendering, the outbox).
"""

from __future__ import annotations

from bot.slack.bot import SlackBot
from bot.slack.run import run_slack, slack_mode

__all__ = ["SlackBot", "run_slack", "slack_mode"]
