"""Platform adapters (terminal shell, Discord, Slack), scheduler, settings and CLI."""
