"""The Slack adapter (issue #8): slack-bolt's AsyncApp over HTTP or Socket Mode.

``run_slack(settings)`` is what ``coursebot run`` starts when Slack tokens are set;
:class:`SlackBot` assembles the adapter: middleware, listeners (one module per feature),
the sender (replies and the outbox port), the course's channels, the Block Kit renderer.
"""

from __future__ import annotations

from bot.slack.bot import SlackBot
from bot.slack.run import run_slack, slack_mode

__all__ = ["SlackBot", "run_slack", "slack_mode"]
