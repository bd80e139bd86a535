"""People: customers and staff share one e-mail-login user model; policy versions and consents.

Personal fields live only here and on orders' shipping addresses, so erasure has two places to clear.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **fields: Any) -> User:
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)
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
    full_name = models.CharField(max_length=200, blank=True)
    address = models.JSONField(default=dict, blank=True)
    marketing_opt_in = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)  # may use the Django admin; roles are groups
    date_joined = models.DateTimeField(default=timezone.now)
    erased_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    def __str__(self) -> str:
        return f"user:{self.public_id}"


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
