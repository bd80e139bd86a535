"""People: factory_boy's UserFactory, a person in given roles, a logged-in staff client."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group
from django.test import Client
from factory.declarations import LazyAttribute, PostGeneration, PostGenerationMethodCall, Sequence
from factory.django import DjangoModelFactory

from lab.accounts.models import User
from lab.accounts.seal import account_seal_set

PASSWORD = "correct horse battery"  # every built person's password


# E-mail addresses longer than the 254 characters the lab stores: as sent, or only once lower-cased ("İ"
# lower-cases to two characters), by the name a parametrized test gives each.
TOO_LONG_EMAILS = {
    "too-long": "a" * 250 + "@example.org",
    "too-long-once-lower-cased": "guest@" + ".".join(["İ" * 60] * 3) + ".org",
}


def _roles_add(user: User, create: bool, extracted: list[str] | None, **kwargs: Any) -> None:
    """UserFactory's `roles=[...]`: the person's groups (a customer unless told otherwise)."""
    for role in extracted or ["customer"]:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    account_seal_set(user)  # as registration and the lab admin seal the accounts they make
    user.save()


# Generic in its model, so `UserFactory.create(...)` is typed as returning a User (a bare `UserFactory(...)`
# goes through factory_boy's unannotated metaclass call and is not).
class UserFactory(DjangoModelFactory[User]):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = Sequence(lambda n: f"person{n}@example.net")
    full_name = Sequence(lambda n: f"Person Number{n}")
    address = LazyAttribute(
        lambda o: {
            "name": o.full_name,
            "line1": "12 Harbour Road",
            "line2": "",
            "city": "Portville",
            "region": "OR",
            "postal_code": "97035",
            "country": "US",
        }
    )
    password = PostGenerationMethodCall("set_password", PASSWORD)
    roles = PostGeneration(_roles_add)


def person(*roles: str, **fields: Any) -> User:
    """A user in the given roles."""
    return UserFactory.create(roles=list(roles), **fields)


def new_customer(**fields: Any) -> User:
    return UserFactory.create(**fields)


def client_as(*roles: str) -> tuple[Client, User]:
    """A Django test client logged in as a new person in these roles."""
    user = person(*roles)
    client = Client()
    client.force_login(user)
    return client, user


def messages_of(response: object) -> list[str]:
    """The Django messages a page response carries."""
    return [str(message) for message in response.context["messages"]]  # type: ignore[attr-defined]
