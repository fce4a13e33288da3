"""Registration rules: a chat account is linked to a roster entry only with proof.

Three ways in, chosen per request (see docs/registration.md):

- **platform email**: the platform vouches for the caller's address (Slack profiles,
  ``Caller.email``); it must be the roster email or one of the entry's aliases, and
  ``register`` links at once (no argument needed).
- **mailed code**: with a mail server configured (``SMTP_*``), ``register <email>`` mails
  a one-time code to the roster address; ``register <code>`` completes it. Codes last
  :data:`CODE_TTL`; :data:`MAX_TRIES` wrong ones lock the account out for :data:`LOCK_FOR`.
  Only a salted hash of a code is stored.
- **staff approval**: otherwise ``register <email>`` files a request that a TA or an
  instructor approves or denies (``register pending``); the requester is told by DM.

Staff entries (TAs, instructors) are never claimed through ``register``: an instructor
links them (``register link``, or ``coursebot people link`` / the course file for the
first one). A TA links and unlinks students only. Every change by staff is audited and
whoever loses a link is told.

Services here take the :class:`Context` (or a session, for the command line) and raise
the typed errors whose text the user reads. Handlers live in :mod:`commands.people`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from commands import audit
from commands.context import Context
from commands.coursefile import link_identity
from commands.errors import Conflict, Forbidden, InvalidInput, NotFound
from commands.mail import MailConfig, send_mail
from commands.outbox import new_batch
from commands.replies import Button, Delivery, Reply, Table, Tone
from commands.solver import plural
from commands.timefmt import fmt_instant, relative
from db.models import (
    AuditEntry,
    Course,
    Identity,
    Person,
    Platform,
    RegistrationCode,
    RegistrationRequest,
    Role,
)

log = logging.getLogger("coursebot.registration")

#: How long a mailed code is valid.
CODE_TTL = timedelta(minutes=15)
#: Wrong codes an account may type before it is locked out ...
MAX_TRIES = 5
#: ... for this long.
LOCK_FOR = timedelta(minutes=30)
#: A new code for the same entry is mailed at most this often.
RESEND_AFTER = timedelta(minutes=1)
CODE_DIGITS = 6

PENDING, APPROVED, DENIED, WITHDRAWN = "pending", "approved", "denied", "withdrawn"


class Mode(StrEnum):
    """How a caller proves who they are."""

    EMAIL = "platform email"
    CODE = "mailed code"
    APPROVAL = "staff approval"


def mail_config(ctx: Context) -> MailConfig | None:
    cfg = ctx.config.get("mail")
    return cfg if isinstance(cfg, MailConfig) else None


def mode_for(ctx: Context) -> Mode:
    if ctx.caller.email:
        return Mode.EMAIL
    if mail_config(ctx) is not None:
        return Mode.CODE
    return Mode.APPROVAL


def _platform(platform: Platform) -> str:
    return {"terminal": "terminal", "discord": "Discord", "slack": "Slack"}[platform.value]


def next_step(ctx: Context) -> str:
    """What an unlinked caller types next, in this deployment's mode."""
    mode = mode_for(ctx)
    if mode is Mode.EMAIL:
        return (
            f"Type `register`: your {_platform(ctx.caller.platform)} profile email "
            f"({ctx.caller.email}) links you if it is the one on the roster."
        )
    if mode is Mode.CODE:
        return (
            "Type `register <your email>` (the one on the roster): we mail a one-time code "
            "to it, then type `register <code>`."
        )
    return (
        "Type `register <your email>` (the one on the roster): a TA or instructor "
        "approves the request and you get a message here."
    )


def mode_explained(ctx: Context) -> Reply:
    """``register`` with nothing after it (and no verified email): the next step."""
    mode = mode_for(ctx)
    why = {
        Mode.CODE: f"This course checks your email with a one-time code (valid "
        f"{int(CODE_TTL.total_seconds() // 60)} minutes) mailed to the roster address.",
        Mode.APPROVAL: f"Your {_platform(ctx.caller.platform)} account comes with no verified "
        "email and this course sends no mail, so a TA or instructor confirms who you are.",
    }.get(mode, "")
    return Reply(
        title="register",
        text=f"{why} {next_step(ctx)}".strip(),
    )


# ----------------------------------------------------------------------------- lookups


def normalise_email(email: str) -> str:
    return email.strip().strip("<>").removeprefix("mailto:").lower()


def matches_email(person: Person, email: str) -> bool:
    email = normalise_email(email)
    return person.email.lower() == email or email in {
        a.lower() for a in (person.email_aliases or [])
    }


async def person_by_email(session: AsyncSession, course_id: int, email: str) -> Person | None:
    """The roster entry whose email, or one of whose aliases, is ``email``."""
    email = normalise_email(email)
    person = await session.scalar(
        select(Person).where(Person.course_id == course_id, func.lower(Person.email) == email)
    )
    if person is not None:
        return person
    # Aliases are a short JSON list per person: matched here, the same on every backend.
    for candidate in await session.scalars(select(Person).where(Person.course_id == course_id)):
        if matches_email(candidate, email):
            return candidate
    return None


async def _identity_of(
    session: AsyncSession, person: Person, platform: Platform
) -> Identity | None:
    return await session.scalar(
        select(Identity).where(Identity.person_id == person.id, Identity.platform == platform)
    )


async def _holder(
    session: AsyncSession, course_id: int, platform: Platform, user_id: str
) -> Identity | None:
    return await session.scalar(
        select(Identity).where(
            Identity.course_id == course_id,
            Identity.platform == platform,
            Identity.user_id == user_id,
        )
    )


# ------------------------------------------------------------------------- who may do it


def _role(person: Person) -> str:
    return {
        Role.INSTRUCTOR: "an instructor",
        Role.TA: "a TA",
        Role.STUDENT: "a student",
        Role.WITHDRAWN: "a student who left the course",
    }[person.role]


def refuse_staff_entry(person: Person) -> None:
    """Staff entries are never claimed through ``register`` (nor requested)."""
    if person.is_staff:
        raise Forbidden(
            f"{person.name} is {_role(person)} of this course: staff accounts are linked by "
            "an instructor, never through `register`.",
            hint="Ask an instructor to link you (`register link`); the first instructor is "
            "linked on the server with `coursebot people link`.",
        )


def check_may_manage(actor: Person | None, target: Person, verb: str = "link or unlink") -> None:
    """An instructor (or the command line, ``actor`` None) manages every link; a TA
    only students'. ``target`` is whose link changes."""
    if actor is None or actor.role is Role.INSTRUCTOR:
        return
    if actor.role is Role.TA and target.role is Role.STUDENT:
        return
    if actor.role is Role.TA:
        raise Forbidden(
            f"Only an instructor can {verb} {target.name}'s accounts ({target.name} is "
            f"{_role(target)}); TAs manage students' links only.",
            hint="Ask an instructor to do it.",
        )
    raise Forbidden("Only TAs and instructors manage other people's links.")


# -------------------------------------------------------------------------- self-service


async def register(ctx: Context, email: str | None, code: str | None) -> Reply:
    """``register [email] [code]`` for the caller's own chat account."""
    if email is not None and "@" not in email:
        raise InvalidInput(
            f"`{email}` is not an email address.",
            hint="Example: `register alice.chen@unc.edu`.",
        )
    if ctx.person is not None:
        return _already(ctx, email)
    if mode_for(ctx) is Mode.EMAIL:
        return await _register_verified(ctx, email)
    if code is not None:
        return await redeem_code(ctx, code, email)
    if email is None:
        return mode_explained(ctx)
    person = await person_by_email(ctx.session, ctx.course.id, email)
    if person is None:
        raise NotFound(
            f"No one with the email {normalise_email(email)} is on the roster of {ctx.course.name}.",
            hint="Check the spelling (use your university email) or ask your instructor to add you.",
        )
    refuse_staff_entry(person)
    await _refuse_if_linked(ctx, person)
    if mode_for(ctx) is Mode.CODE:
        return await request_code(ctx, person)
    return await request_approval(ctx, person)


def _already(ctx: Context, email: str | None) -> Reply:
    me = ctx.me()
    if email is not None and not matches_email(me, email):
        raise Conflict(
            f"Your {_platform(ctx.caller.platform)} account is already linked to {me.name} "
            f"({me.email}); nothing was changed.",
            hint="If that is wrong, ask a TA or instructor to `register unlink` it.",
        )
    return Reply(
        text=f"You are already registered as {me.name} ({me.role.value}); nothing to do. "
        "`whoami` shows your linked accounts.",
    )


async def _refuse_if_linked(ctx: Context, person: Person) -> None:
    platform = ctx.caller.platform
    if await _identity_of(ctx.session, person, platform) is not None:
        raise Conflict(
            f"{person.name} is already linked to another {_platform(platform)} account.",
            hint="If that is not you, ask a TA or instructor to reset it (`register unlink`).",
        )


async def _link_self(ctx: Context, person: Person, mode: Mode) -> Reply:
    platform = ctx.caller.platform
    await link_identity(
        ctx.session,
        ctx.course,
        person,
        platform,
        ctx.caller.user_id,
        now=ctx.now,
        display_name=ctx.caller.display_name or None,
        replace=False,
    )
    audit.record(
        ctx,
        "register.email" if mode is Mode.EMAIL else "register.code",
        subject=person,
        summary=f"linked {platform.value} account {ctx.caller.user_id} (proof: {mode.value})",
        after={"platform": platform.value, "account": ctx.caller.user_id},
    )
    return Reply(
        text=f"Welcome, {person.name}! Your {_platform(platform)} account is now linked "
        f"({person.role.value}). Type `help` to see what you can do.",
        tone=Tone.SUCCESS,
    )


async def _register_verified(ctx: Context, typed: str | None) -> Reply:
    assert ctx.caller.email is not None
    verified = normalise_email(ctx.caller.email)
    where = _platform(ctx.caller.platform)
    person = await person_by_email(ctx.session, ctx.course.id, verified)
    if typed is not None and (person is None or not matches_email(person, typed)):
        raise Forbidden(
            f"Your {where} profile email is {verified}, not {normalise_email(typed)}: "
            f"here {where} vouches for who you are, so you can register only as the roster "
            "entry with that address.",
            hint=f"If {normalise_email(typed)} is yours, ask your instructor to add {verified} "
            "to your roster entry (`email_aliases` in the course file) or to link you.",
        )
    if person is None:
        raise NotFound(
            f"Your {where} profile email {verified} is not on the roster of {ctx.course.name}.",
            hint="Ask your instructor to add it to your roster entry (as an alias) or to link "
            "your account.",
        )
    refuse_staff_entry(person)
    await _refuse_if_linked(ctx, person)
    return await _link_self(ctx, person, Mode.EMAIL)


# ------------------------------------------------------------------------- mailed codes


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def hash_code(code: str, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(8)
    digest = hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()
    return f"{salt}${digest}"


def code_matches(code: str, stored: str) -> bool:
    if "$" not in stored:
        return False
    salt = stored.split("$", 1)[0]
    return hmac.compare_digest(hash_code(code, salt), stored)


def clean_code(text: str) -> str | None:
    """The digits of a typed code (``123 456``, ``123-456``), or None if it is not one."""
    digits = text.replace(" ", "").replace("-", "")
    return digits if digits.isdigit() and len(digits) == CODE_DIGITS else None


def _mask(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}{'•' * max(1, len(local) - 1)}@{domain}"


async def _code_row(ctx: Context) -> RegistrationCode | None:
    return await ctx.session.scalar(
        select(RegistrationCode).where(
            RegistrationCode.course_id == ctx.course.id,
            RegistrationCode.platform == ctx.caller.platform,
            RegistrationCode.user_id == ctx.caller.user_id,
        )
    )


def _locked_message(ctx: Context, until: datetime) -> str:
    return (
        f"Too many wrong codes: registering from this account is locked until "
        f"{fmt_instant(until, ctx.tz)} ({relative(until, ctx.now)}). Then type "
        "`register <your email>` for a new code."
    )


async def request_code(ctx: Context, person: Person) -> Reply:
    cfg = mail_config(ctx)
    assert cfg is not None
    row = await _code_row(ctx)
    if row is not None and row.locked_until is not None and row.locked_until > ctx.now:
        raise Forbidden(_locked_message(ctx, row.locked_until))
    if (
        row is not None
        and row.person_id == person.id
        and row.code_hash
        and row.sent_at > ctx.now - RESEND_AFTER
    ):
        raise Conflict(
            f"A code for {person.name} was mailed {relative(row.sent_at, ctx.now)}; it is "
            f"valid until {fmt_instant(row.expires_at, ctx.tz)}.",
            hint="Check your inbox (and spam folder), then type `register <code>`. A new code "
            "can be sent after a minute.",
        )
    if row is None:
        row = RegistrationCode(
            course_id=ctx.course.id,
            platform=ctx.caller.platform,
            user_id=ctx.caller.user_id,
            attempts=0,
        )
        ctx.session.add(row)
    elif row.locked_until is not None:  # the lock is over: a fresh start
        row.locked_until, row.attempts = None, 0
    code = new_code()
    row.person_id = person.id
    row.code_hash = hash_code(code)
    row.sent_at, row.expires_at, row.used_at = ctx.now, ctx.now + CODE_TTL, None
    await ctx.session.flush()  # a clash with a concurrent request fails before mailing
    minutes = int(CODE_TTL.total_seconds() // 60)
    await send_mail(
        cfg,
        person.email,
        f"{ctx.course.name}: your registration code {code}",
        f"Hello {person.name},\n\n"
        f"Your code to link your {_platform(ctx.caller.platform)} account "
        f"({ctx.caller.display_name or ctx.caller.user_id}) to the {ctx.course.name} "
        f"course bot is:\n\n    {code}\n\n"
        f"Type `register {code}` where you asked for it (on Discord: /register "
        f"code:{code}). It is valid for {minutes} minutes.\n\n"
        "If you did not ask for this, ignore this mail: nobody is linked to you without "
        "the code.\n",
    )
    return Reply(
        text=f"We mailed a {CODE_DIGITS}-digit code to {_mask(person.email)}, the roster "
        f"address of {person.name}. Type `register <code>` here within {minutes} minutes.",
        tone=Tone.SUCCESS,
    )


async def redeem_code(ctx: Context, code_text: str, email: str | None) -> Reply:
    code = clean_code(code_text)
    if code is None:
        raise InvalidInput(
            f"`{code_text}` is not a registration code: the code in the mail is "
            f"{CODE_DIGITS} digits.",
            hint="Type it as it is in the mail, e.g. `register 123456`.",
        )
    row = await _code_row(ctx)
    if row is not None and row.locked_until is not None and row.locked_until > ctx.now:
        raise Forbidden(_locked_message(ctx, row.locked_until))
    if row is None or (not row.code_hash and row.used_at is None):
        raise NotFound(
            f"No code is waiting for this {_platform(ctx.caller.platform)} account.",
            hint="Type `register <your email>` first; the code is mailed to that address "
            "and works only from the account that asked for it."
            if mode_for(ctx) is Mode.CODE
            else "This course mails no codes: `register <your email>` asks a TA or "
            "instructor to approve you.",
        )
    if row.used_at is not None:
        raise Conflict(
            "That code was already used; a code works once.",
            hint="Type `register <your email>` for a new one.",
        )
    if row.expires_at <= ctx.now:
        raise InvalidInput(
            f"That code has expired (codes last {int(CODE_TTL.total_seconds() // 60)} minutes).",
            hint="Type `register <your email>` for a new one.",
        )
    person = await ctx.session.get(Person, row.person_id)
    assert person is not None
    if email is not None and not matches_email(person, email):
        raise InvalidInput(
            f"The code waiting for this account was mailed for another address, not "
            f"{normalise_email(email)}.",
            hint="Type `register <code>` alone, or `register <your email>` for a new code.",
        )
    if not code_matches(code, row.code_hash):
        # Stored even though the command is refused: the reply is an error, not a raise.
        row.attempts += 1
        if row.attempts >= MAX_TRIES:
            row.locked_until, row.code_hash = ctx.now + LOCK_FOR, ""
            return Reply.error(_locked_message(ctx, row.locked_until))
        left = MAX_TRIES - row.attempts
        return Reply.error(
            f"That code is not right; nothing was linked. {left} "
            f"{'try' if left == 1 else 'tries'} left before this account is locked for "
            f"{int(LOCK_FOR.total_seconds() // 60)} minutes. Use the code from the latest "
            "mail (a new request replaces the code)."
        )
    refuse_staff_entry(person)
    await _refuse_if_linked(ctx, person)
    row.used_at, row.code_hash, row.attempts = ctx.now, "", 0
    return await _link_self(ctx, person, Mode.CODE)


# ------------------------------------------------------------------------ staff approval


async def _pending_of(ctx: Context) -> RegistrationRequest | None:
    return await ctx.session.scalar(
        select(RegistrationRequest).where(
            RegistrationRequest.course_id == ctx.course.id,
            RegistrationRequest.platform == ctx.caller.platform,
            RegistrationRequest.user_id == ctx.caller.user_id,
            RegistrationRequest.status == PENDING,
        )
    )


def decision_buttons(req: RegistrationRequest, name: str) -> list[Button]:
    first = name.split()[0] if name.split() else name
    return [
        Button(f"Approve {first}"[:80], "register.approve", (str(req.id),), "success"),
        Button(f"Deny {first}"[:80], "register.deny", (str(req.id),), "danger"),
    ]


def _account(platform: Platform, user_id: str, display: str | None = None) -> str:
    who = f" ({display})" if display and display != user_id else ""
    return f"{platform.value} `{user_id}`{who}"


async def request_approval(ctx: Context, person: Person) -> Reply:
    old = await _pending_of(ctx)
    if old is not None and old.person_id == person.id:
        raise Conflict(
            f"Your request to be linked to {person.name} is already waiting for staff "
            f"(asked {relative(old.created_at, ctx.now)}).",
            hint="You will get a message here when a TA or instructor decides.",
        )
    if old is not None:  # asked for someone else before (a typo): this replaces it
        old.status, old.decided_at = WITHDRAWN, ctx.now
    req = RegistrationRequest(
        course_id=ctx.course.id,
        person_id=person.id,
        platform=ctx.caller.platform,
        user_id=ctx.caller.user_id,
        display_name=ctx.caller.display_name or None,
        created_at=ctx.now,
        status=PENDING,
    )
    ctx.session.add(req)
    await ctx.session.flush()
    if "staff" in (ctx.course.channels or {}):
        ctx.post(
            "staff",
            Reply(
                text=f"{_account(req.platform, req.user_id, req.display_name)} asks to be "
                f"linked to {person.name} ({person.email}). `register pending` lists every "
                "request.",
                buttons=decision_buttons(req, person.name),
            ),
        )
    return Reply(
        text=f"Your request to be linked to {person.name} is waiting for a TA or instructor "
        "to approve it. You will get a message here when they decide.",
        tone=Tone.SUCCESS,
    )


async def pending_requests(
    session: AsyncSession, course_id: int
) -> list[tuple[RegistrationRequest, Person]]:
    rows = await session.execute(
        select(RegistrationRequest, Person)
        .join(Person, Person.id == RegistrationRequest.person_id)
        .where(RegistrationRequest.course_id == course_id, RegistrationRequest.status == PENDING)
        .order_by(RegistrationRequest.created_at, RegistrationRequest.id)
    )
    return [(r, p) for r, p in rows]


#: Requests shown with buttons (two each): Discord takes 25 buttons per message.
MAX_BUTTONS = 12


async def pending_reply(ctx: Context) -> Reply:
    pending = await pending_requests(ctx.session, ctx.course.id)
    if not pending:
        mode = mode_for(ctx)
        return Reply(
            text="No registration requests are waiting."
            + (
                " (Students get a mailed code in this deployment, so requests are rare.)"
                if mode is Mode.CODE
                else ""
            )
        )
    rows = [
        [
            str(r.id),
            p.name,
            p.email,
            _account(r.platform, r.user_id, r.display_name).replace("`", ""),
            relative(r.created_at, ctx.now),
        ]
        for r, p in pending
    ]
    buttons = [b for r, p in pending[:MAX_BUTTONS] for b in decision_buttons(r, p.name)]
    more = (
        f" Buttons for the first {MAX_BUTTONS}; decide the rest with `register approve`."
        if len(pending) > MAX_BUTTONS
        else ""
    )
    return Reply(
        title="registration requests",
        text=f"{len(pending)} waiting. Approve only accounts you know are that person "
        "(`register approve <person>`, `register deny <person> [reason]`)." + more,
        tables=[Table(["#", "Person", "Roster email", "Account", "Asked"], rows)],
        buttons=buttons,
    )


async def request_for(ctx: Context, person: Person, account: str | None) -> RegistrationRequest:
    """The pending request for ``person`` (from ``account`` when several are waiting)."""
    q = select(RegistrationRequest).where(
        RegistrationRequest.course_id == ctx.course.id,
        RegistrationRequest.person_id == person.id,
        RegistrationRequest.status == PENDING,
    )
    if account:
        q = q.where(RegistrationRequest.user_id == account.strip().lstrip("@"))
    found = list(await ctx.session.scalars(q.order_by(RegistrationRequest.id)))
    if not found:
        raise NotFound(
            f"No registration request from {person.name} is waiting"
            + (f" from account `{account}`." if account else "."),
            hint="`register pending` lists the requests; `register link` links anyone directly.",
        )
    if len(found) > 1:
        accounts = ", ".join(_account(r.platform, r.user_id, r.display_name) for r in found)
        raise InvalidInput(
            f"{len(found)} accounts ask to be {person.name}: {accounts}.",
            hint="Add the account, e.g. "
            f"`register approve {person.email} account={found[0].user_id}`.",
        )
    return found[0]


async def decide(
    ctx: Context, req: RegistrationRequest, *, approve: bool, reason: str | None = None
) -> Reply:
    actor = ctx.me()
    if req.status != PENDING:
        who = ""
        if req.decided_by_id:
            by = await ctx.session.get(Person, req.decided_by_id)
            who = f" by {by.name}" if by else ""
        raise Conflict(f"That request was already {req.status}{who}; nothing changed.")
    person = await ctx.session.get(Person, req.person_id)
    assert person is not None
    platform = req.platform
    if approve:
        if person.is_staff:
            raise Forbidden(
                f"{person.name} is {_role(person)}: staff entries are not approved from requests.",
                hint="An instructor links staff with `register link`.",
            )
        check_may_manage(actor, person, "approve a link for")
        holder = await _holder(ctx.session, ctx.course.id, platform, req.user_id)
        if holder is not None:
            other = await ctx.session.get(Person, holder.person_id)
            raise Conflict(
                f"That {_platform(platform)} account is already linked to "
                f"{other.name if other else 'someone'}; nothing changed.",
                hint="Deny this request, or `register unlink` that link first.",
            )
        mine = await _identity_of(ctx.session, person, platform)
        if mine is not None:
            raise Conflict(
                f"{person.name} is already linked to {_platform(platform)} account "
                f"`{mine.user_id}`; nothing changed.",
                hint=f"If that link is wrong, `register unlink {person.email} {platform.value}` "
                "first, then approve.",
            )
        await link_identity(
            ctx.session,
            ctx.course,
            person,
            platform,
            req.user_id,
            now=ctx.now,
            display_name=req.display_name,
            replace=False,
        )
    else:
        check_may_manage(actor, person, "decide on a request for")
    req.status = APPROVED if approve else DENIED
    req.decided_at, req.decided_by_id, req.reason = ctx.now, actor.id, reason or None
    account = {"platform": platform.value, "account": req.user_id}
    audit.record(
        ctx,
        "register.approve" if approve else "register.deny",
        subject=person,
        summary=f"{'approved' if approve else 'denied'} the request of "
        f"{platform.value} account {req.user_id} to be {person.name}",
        before={"request": req.id, **({} if approve else account)},
        after=account if approve else {},
        reason=reason,
    )
    why = f" ({reason})" if reason else ""
    batch = new_batch("register")
    told = Delivery(batch, what="messages to the account")
    if not approve:
        ctx.dm_account(
            platform,
            req.user_id,
            batch=batch,
            reply=Reply(
                text=f"Your request to be linked to {person.name} in {ctx.course.name} was "
                f"not approved by {actor.name}{why}. If this is you, talk to your course staff.",
                tone=Tone.WARNING,
            ),
        )
        return Reply(
            text=f"Denied: {_account(platform, req.user_id, req.display_name)} is not linked "
            f"to {person.name}.",
            tone=Tone.SUCCESS,
            delivery=told,
        )
    ctx.dm_account(
        platform,
        req.user_id,
        batch=batch,
        reply=Reply(
            text=f"Welcome, {person.name}! {actor.name} approved your registration in "
            f"{ctx.course.name}: this {_platform(platform)} account is now linked. Type "
            "`help` to see what you can do.",
            tone=Tone.SUCCESS,
        ),
    )
    # Other accounts that asked to be the same person on this platform lose.
    others = await ctx.session.scalars(
        select(RegistrationRequest).where(
            RegistrationRequest.course_id == ctx.course.id,
            RegistrationRequest.person_id == person.id,
            RegistrationRequest.platform == platform,
            RegistrationRequest.status == PENDING,
            RegistrationRequest.id != req.id,
        )
    )
    closed = 0
    for other in others:
        other.status, other.decided_at, other.decided_by_id = DENIED, ctx.now, actor.id
        other.reason = "another account was approved for this person"
        audit.record(
            ctx,
            "register.deny",
            subject=person,
            summary=f"denied the request of {platform.value} account {other.user_id} "
            f"(another account was approved)",
            before={"request": other.id, "platform": platform.value, "account": other.user_id},
            reason=other.reason,
        )
        ctx.dm_account(
            platform,
            other.user_id,
            Reply(
                text=f"Your request to be linked to {person.name} in {ctx.course.name} was not "
                "approved: staff linked another account to that roster entry.",
                tone=Tone.WARNING,
            ),
        )
        closed += 1
    extra = (
        f" {plural(closed, 'other request')} for {person.name} "
        f"{'was' if closed == 1 else 'were'} denied."
        if closed
        else ""
    )
    return Reply(
        text=f"Approved: {_account(platform, req.user_id, req.display_name)} is now linked "
        f"to {person.name}.{extra}",
        tone=Tone.SUCCESS,
        delivery=told,
    )


# ------------------------------------------------------------------- links set by staff


@dataclass(frozen=True)
class Lost:
    """A chat account that lost (or changed) its link, to be told."""

    platform: Platform
    user_id: str
    person: Person  # whose link it was
    moved_to: Person | None = None  # the account now belongs to this entry


async def link_account(
    session: AsyncSession,
    course: Course,
    person: Person,
    platform: Platform,
    user_id: str,
    *,
    now: datetime,
    actor: Person | None,
) -> tuple[bool, list[Lost]]:
    """Link ``user_id`` to ``person`` for ``actor`` (None: the command line), moving
    links as needed. Returns (changed, the accounts whose link was taken away)."""
    check_may_manage(actor, person)
    user_id = user_id.strip()
    if not user_id:
        raise InvalidInput("Give the chat account's user id to link.")
    lost: list[Lost] = []
    held = await _holder(session, course.id, platform, user_id)
    if held is not None and held.person_id == person.id:
        return False, []
    if held is not None:
        holder = await session.get(Person, held.person_id)
        assert holder is not None
        check_may_manage(actor, holder)
        lost.append(Lost(platform, user_id, holder, moved_to=person))
    mine = await _identity_of(session, person, platform)
    if mine is not None:
        lost.append(Lost(platform, mine.user_id, person))
    await link_identity(session, course, person, platform, user_id, now=now)
    return True, lost


async def unlink_accounts(
    session: AsyncSession, person: Person, platform: Platform | None, *, actor: Person | None
) -> list[Identity]:
    """Remove ``person``'s links (on ``platform`` or all) for ``actor``."""
    check_may_manage(actor, person)
    query = select(Identity).where(Identity.person_id == person.id)
    if platform:
        query = query.where(Identity.platform == platform)
    removed = list(await session.scalars(query.order_by(Identity.id)))
    if not removed:
        where = f" on {_platform(platform)}" if platform else ""
        raise NotFound(f"{person.name} has no linked account{where} to remove.")
    for ident in removed:
        await session.delete(ident)
    await session.flush()
    return removed


def lost_message(course: Course, lost: Lost, actor_name: str, reason: str | None) -> Reply:
    """What the previous holder of a link is told (true, and no more than that)."""
    why = f" Reason given: {reason}" if reason else ""
    where = _platform(lost.platform)
    if lost.moved_to is not None:
        text = (
            f"Your {where} account in {course.name} was linked to {lost.person.name}; "
            f"{actor_name} linked it to {lost.moved_to.name} instead.{why}"
        )
    else:
        text = (
            f"Your {where} account is no longer linked to {lost.person.name} in "
            f"{course.name}: {actor_name} removed the link.{why} If this is a mistake, talk "
            "to your course staff."
        )
    return Reply(text=text, tone=Tone.WARNING)


def audit_entry(
    course: Course,
    now: datetime,
    kind: str,
    *,
    actor: str,
    subject: Person,
    summary: str,
    before: dict[str, object],
    after: dict[str, object],
    reason: str | None,
) -> AuditEntry:
    """An audit entry for a change made outside a command (the command line)."""
    return AuditEntry(
        course_id=course.id,
        at=now,
        actor_id=None,
        actor=actor,
        kind=kind,
        subject_id=subject.id,
        subject=subject.name,
        summary=summary,
        before=before,
        after=after,
        reason=reason or None,
    )
