"""Template filters of the staff pages: role checks for navigation, nothing that reads data."""

from __future__ import annotations

from datetime import timedelta

from django import template

from lab.accounts.roles import has_role

register = template.Library()


@register.filter
def in_roles(user: object, roles: str) -> bool:
    """`{% if user|in_roles:"technician,supervisor" %}`: does the user hold one of the roles?"""
    return has_role(user, *[role.strip() for role in roles.split(",") if role.strip()])


@register.filter
def sweep_duration(value: timedelta) -> str:
    """A sweep's interval or age in the largest whole unit read at a glance: 45 s, 12 min, 3 h, 2 days."""
    seconds = int(value.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"
