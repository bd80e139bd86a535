"""Template filters of the staff pages: role checks for navigation, nothing that reads data."""

from __future__ import annotations

from django import template

from lab.accounts.roles import has_role

register = template.Library()


@register.filter
def in_roles(user: object, roles: str) -> bool:
    """`{% if user|in_roles:"technician,supervisor" %}`: does the user hold one of the roles?"""
    return has_role(user, *[role.strip() for role in roles.split(",") if role.strip()])
