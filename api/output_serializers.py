"""The base classes of output serializers: each renders through one template per class, its fields built
once; and the convention that an input serializer is a Serializer[None]."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Model
from rest_framework import serializers

# An input serializer is a Serializer[None]: it validates request data and is never given an instance.

_ModelT = TypeVar("_ModelT", bound=Model)
_InstanceT = TypeVar("_InstanceT")


# Output serializers render through a template: one instance per class whose fields are built and bound once.
# DRF builds a serializer's fields again for every serializer it makes (a deep copy of the declared fields
# that runs each field's __init__ again, nested serializers included; a ModelSerializer also introspects its
# model again): for a quote of three lines that was about a fifth of the request's CPU, and half of an
# order's answer. An output's fields depend on its class alone, so every instance renders with its class's
# template, with the same fields and the same `to_representation` code DRF runs. The template has no context
# (reading one raises): a serializer that needs its context (a token shown once) stays a plain Serializer.
# (Comments, not docstrings: the schema would show a docstring to API users.)
class _NoContext(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise ImproperlyConfigured(f"an output serializer renders without a context (asked for {key!r})")

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


_NO_CONTEXT = _NoContext()
_TEMPLATES: dict[type[Any], serializers.Serializer[Any]] = {}
_TEMPLATES_LOCK = threading.Lock()


def _template_render(serializer: serializers.Serializer[Any], instance: Any) -> dict[str, Any]:
    cls = type(serializer)
    template = _TEMPLATES.get(cls)
    if template is None:
        with _TEMPLATES_LOCK:
            template = _TEMPLATES.get(cls)
            if template is None:
                template = cls()
                template._context = _NO_CONTEXT  # DRF's own attribute
                template.fields  # noqa: B018  # built and bound here, once
                _TEMPLATES[cls] = template
    rendered: dict[str, Any] = serializers.Serializer.to_representation(template, instance)
    return rendered


class Output(serializers.Serializer[_InstanceT]):
    def to_representation(self, instance: _InstanceT) -> dict[str, Any]:
        return _template_render(self, instance)


class ModelOutput(serializers.ModelSerializer[_ModelT]):
    # Every field read-only: an output renders each of its fields, so the schema lists each as required (a
    # model field with a default or blank=True was optional there, though always sent).
    def get_extra_kwargs(self) -> dict[str, Any]:
        extra: dict[str, Any] = super().get_extra_kwargs()
        for name in self.Meta.fields:
            extra[name] = {**extra.get(name, {}), "read_only": True}
        return extra

    def to_representation(self, instance: _ModelT) -> dict[str, Any]:
        return _template_render(self, instance)
