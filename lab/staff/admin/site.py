"""The lab's AdminSite: open to the `admin` role only (not Django's is_staff), signed in through /lab/login/.

Django's default site is never used (SimpleAdminConfig, no autodiscover): only what `register_all` lists
is reachable, and a test checks that none of it can return image bytes.
"""

from __future__ import annotations

from functools import update_wrapper
from pathlib import Path, PurePosixPath
from typing import Any, cast

import django.contrib.admin
from django.contrib import admin
from django.contrib.contenttypes import views as contenttype_views
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.urls import URLPattern, URLResolver, path, reverse
from django.utils.http import urlencode
from django.views.static import serve

from lab.accounts.roles import Role, has_role
from lab.staff.access import forbidden

# Django's own admin styles and scripts, the same for every install; served by the app so the reference
# deployment needs no separate static file server (a proxy may still serve them from STATIC_ROOT).
ADMIN_STATIC_DIR = Path(django.contrib.admin.__file__).resolve().parent / "static" / "admin"


def is_lab_admin(user: Any) -> bool:
    return bool(getattr(user, "is_active", False) and has_role(user, Role.ADMIN))


class LabAdminSite(admin.AdminSite):
    site_header = "Print Lab administration"
    site_title = "Print Lab admin"
    index_title = "Catalog, printers and staff accounts"
    site_url = "/lab/"
    enable_nav_sidebar = False

    def has_permission(self, request: HttpRequest) -> bool:
        return is_lab_admin(request.user)

    def admin_view(self, view: Any, cacheable: bool = False) -> Any:
        inner = super().admin_view(view, cacheable)

        def gate(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            # Signed in without the role: the staff pages' 403, not Django's login page and its loop.
            if request.user.is_authenticated and not self.has_permission(request):
                return forbidden(request, "Only lab admins can open the admin.")
            response: HttpResponse = inner(request, *args, **kwargs)
            return response

        return update_wrapper(gate, view)

    def get_urls(self) -> list[URLPattern | URLResolver]:
        """Django's own, but for its "view on site" shortcut, which answers 404 for an object id its model's
        key cannot be (Django's catches ValueError only; a UUID key's to_python raises ValidationError: a
        500, which the crawl of every URL met whenever content type 38 was a model with a UUID key)."""
        urls = super().get_urls()
        return [
            path(
                "r/<int:content_type_id>/<path:object_id>/",
                self.admin_view(_object_shortcut),
                name="view_on_site",
            )
            if isinstance(url, URLPattern) and url.name == "view_on_site"
            else url
            for url in urls
        ]

    def password_change(  # type: ignore[override]  # the stub says TemplateResponse: success is a redirect
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The admin's own password (the admin's "Change password" link): Django's view with the lab's form
        (`OwnPasswordChangeForm`), which writes the password alone under the account's row lock, seals it and
        records it. Django's view alone saved a hash the account's seal did not cover (the next request
        signed the admin out as if the database had been changed behind the lab's back); and its form saved
        the whole row of the copy the request loaded, so a deactivation another admin committed meanwhile was
        undone, and then sealed."""
        from django.contrib.auth.views import PasswordChangeView

        from lab.staff.admin.accounts import OwnPasswordChangeForm

        defaults: dict[str, Any] = {
            "form_class": OwnPasswordChangeForm,
            "success_url": reverse("admin:password_change_done", current_app=self.name),
            "extra_context": {**self.each_context(request), **(extra_context or {})},
        }
        if self.password_change_template is not None:
            defaults["template_name"] = self.password_change_template
        request.current_app = self.name
        with transaction.atomic():  # the form's row lock is held until its save commits
            response = PasswordChangeView.as_view(**defaults)(request)
        return cast(HttpResponse, response)  # its form page (TemplateResponse) or its redirect

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """One sign-in page for all staff: the lab's (rate rules, idle clock), never the admin's own."""
        if request.user.is_authenticated and not self.has_permission(request):
            return forbidden(request, "Only lab admins can open the admin.")
        target = request.GET.get("next") or reverse("lab_admin:index")
        return HttpResponseRedirect(f"{reverse('staff:login')}?{urlencode({'next': target})}")


site = LabAdminSite(name="lab_admin")


def admin_static_view(request: HttpRequest, path: str) -> HttpResponseBase:
    if ".." in PurePosixPath(path).parts:
        raise Http404("no such file")
    return serve(request, path, document_root=str(ADMIN_STATIC_DIR))


def register_all() -> LabAdminSite:
    """The site with its model pages; called once by lab/urls.py (a second call changes nothing)."""
    from lab.staff.admin import accounts, catalog, production, shifts

    if not site._registry:
        for module in (accounts, catalog, production, shifts):
            module.register(site)
    return site


def _object_shortcut(request: HttpRequest, content_type_id: int, object_id: str) -> HttpResponse:
    try:
        return contenttype_views.shortcut(request, content_type_id, object_id)
    except ValidationError as error:
        raise Http404("No such object.") from error
