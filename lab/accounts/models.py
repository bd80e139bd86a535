"""People: customers and staff share one e-mail-login user model; policy versions and consents.

Personal fields live only here and on orders' shipping addresses, so erasure has two places to clear.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.contrib.auth.hashers import check_password
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **fields: Any) -> User:
        from lab.accounts.seal import account_seal_of, email_as_stored

        user = self.model(email=email_as_stored(self.normalize_email(email)), **fields)
        user.set_password(password)
        user.account_seal = account_seal_of(user, roles=())  # a new account holds no role yet
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **fields: Any) -> User:
        fields.setdefault("is_staff", True)
        fields.setdefault("is_superuser", True)
        return self.create_user(email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    # A public, non-sequential id: API payloads and audit records name people by it.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    email = models.EmailField(unique=True)
    # A new address asked for in My Account, not yet confirmed from its mailbox (accounts/email_change.py):
    # the account's e-mail changes only once the token mailed there comes back; "" when none is waiting.
    pending_email = models.EmailField(blank=True, default="", db_default="")
    full_name = models.CharField(max_length=200, blank=True)
    address = models.JSONField(default=dict, blank=True)
    marketing_opt_in = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)  # may use the Django admin; roles are groups
    date_joined = models.DateTimeField(default=timezone.now)
    erased_at = models.DateTimeField(null=True, blank=True)
    # The account's seal (lab/accounts/seal.py): its staff roles, password and activation as the lab's tools
    # set them, under a key the database never holds.
    account_seal = models.CharField(max_length=64, blank=True)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    def __str__(self) -> str:
        return f"user:{self.public_id}"

    def check_password(self, raw_password: str | None) -> bool:
        """Django's check, whose upgrade of an outdated password hash (a new Django raises the iterations)
        keeps a sealed account sealed; an account that was not sealed stays so."""
        from lab.accounts.seal import account_seal_holds, account_seal_of

        verified, seal = self.password, self.account_seal

        def setter(raw: str | None) -> None:
            was_sealed = account_seal_holds(self)
            self.set_password(raw)
            self._password = None
            values = {"password": self.password}
            if was_sealed:
                self.account_seal = account_seal_of(self)
                values["account_seal"] = self.account_seal
            # Only over the hash just verified: a password change committed since this check read the row
            # would be written over with a hash of the old password (and its tokens' revocation undone in
            # effect). Then the row is left as it is and this object keeps the hash it verified, which is no
            # longer the account's: the token's issue refuses it (409 `password_changed_meanwhile`).
            if not User.objects.filter(pk=self.pk, password=verified).update(**values):
                self.password, self.account_seal = verified, seal

        return check_password(raw_password, self.password, setter)


class PolicyVersion(models.Model):
    """Every published version of the privacy policy is kept; consents point at one."""

    version = models.CharField(max_length=32, unique=True)
    text = models.TextField()
    sha256 = models.CharField(max_length=64)
    published_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering: ClassVar[list[str]] = ["-published_at"]

    def __str__(self) -> str:
        return self.version


class Consent(models.Model):
    class Kind(models.TextChoices):
        PRIVACY_POLICY = "privacy_policy"
        MARKETING = "marketing"

    user = models.ForeignKey(User, null=True, blank=True, on_delete=models.CASCADE, related_name="consents")
    order = models.ForeignKey(
        "orders.Order", null=True, blank=True, on_delete=models.CASCADE, related_name="consents"
    )
    kind = models.CharField(max_length=32, choices=Kind.choices)
    policy_version = models.ForeignKey(PolicyVersion, null=True, on_delete=models.PROTECT)
    granted = models.BooleanField(default=True)
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.CheckConstraint(
                condition=models.Q(user__isnull=False) | models.Q(order__isnull=False),
                name="consent_has_subject",
            )
        ]


class ApiToken(models.Model):
    """A customer's named API token. Only the SHA-256 of its key (and its binding) is stored; the key is shown
    once."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    key_sha256 = models.CharField(max_length=64, unique=True)
    # The first characters of the key, so a person can tell their tokens apart; too short to guess from.
    key_prefix = models.CharField(max_length=8)
    # HMAC of the owner's public id and key_sha256 under a key the database never holds
    # (lab/accounts/tokens.py): a row written in the database alone (a token made up, or moved to another
    # account) authenticates nobody.
    binding = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes: ClassVar[list[models.Index]] = [models.Index(fields=["user", "created_at"])]

    def __str__(self) -> str:
        return f"token:{self.public_id}"


class SecurityEvent(models.Model):
    """An account's security log: failed and refused sign-ins, tokens issued and revoked, password and e-mail
    changes.

    Never a password or an e-mail address: an unknown account is named by the SHA-256 of its e-mail.
    """

    class Kind(models.TextChoices):
        SIGN_IN_FAILED = "sign_in_failed"
        SIGN_IN_LOCKED = "sign_in_locked"
        TOKEN_ISSUED = "token_issued"
        TOKEN_REVOKED = "token_revoked"
        PASSWORD_CHANGED = "password_changed"
        EMAIL_CHANGED = "email_changed"  # My Account's change; no address, the earlier one's digest
        ACCOUNT_SEAL_BROKEN = "account_seal_broken"  # an account changed outside the lab was refused

    class Channel(models.TextChoices):
        API = "api"
        STAFF_LOGIN = "staff_login"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    user = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.CASCADE, related_name="security_events"
    )
    email_sha256 = models.CharField(max_length=64, blank=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    # What was limited for a lock (account/address), or how many tokens a revocation ended.
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["user", "created_at"]),
            models.Index(fields=["kind", "created_at"]),
            # An export or an erasure finds the failed sign-ins with its address that found no account.
            models.Index(
                fields=["email_sha256"],
                condition=models.Q(user=None) & ~models.Q(email_sha256=""),
                name="security_event_unknown_email",
            ),
        ]


class AccountMail(models.Model):
    """A mail a change of the account owes its holder, written in the change's transaction: the durable
    record lab.notify.account_mails sends from (a task nudges it, a beat sweep finds it again), claimed so it
    goes once.

    The token for the address waiting for confirmation (made when it is sent, from the account as it is then),
    or the notice of a password or e-mail change to the address the account had.
    """

    class Kind(models.TextChoices):
        EMAIL_CONFIRMATION = "email_confirmation"
        PASSWORD_CHANGED_NOTICE = "password_changed_notice"
        EMAIL_CHANGED_NOTICE = "email_changed_notice"

    class Status(models.TextChoices):
        PENDING = "pending"  # owed, not claimed yet
        SENDING = "sending"  # claimed at `claimed_at` by a worker sending it now
        SENT = "sent"
        FAILED = "failed"  # the mail server was unreachable: the task's retry or the sweep sends it
        REFUSED = "refused"  # the mail server refused this message: no retry can send it
        SKIPPED = "skipped"  # nothing to send any more (`skip_reason`): the account erased, a later address

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    # A notice's event (`password_changed`, `email_changed`): an erasure deletes the account's events, and so
    # this row and the address in it. None for a confirmation, which holds no address.
    security_event = models.OneToOneField(
        SecurityEvent, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    kind = models.CharField(max_length=32, choices=Kind.choices)
    # Where a notice goes (the account's address before the change; nowhere else holds it once the e-mail
    # changed), blanked once the row is done. "" for a confirmation: it goes to `User.pending_email`.
    recipient = models.EmailField(blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    skip_reason = models.CharField(max_length=40, blank=True, default="")
    send_attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["status", "created_at"]),
            models.Index(fields=["user", "kind"]),
        ]

    def __str__(self) -> str:
        return f"account-mail:{self.pk}"
