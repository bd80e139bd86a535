"""Staff accounts and their roles in the lab admin. Customers are not listed: their data is not staff work.

Roles are groups (lab.accounts.roles); only staff roles can be given here, and Django's is_staff /
is_superuser / per-user permissions are not offered: the lab's pages and this admin go by role alone.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminPasswordChangeForm
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import ReadOnlyPasswordHashField
from django.contrib.auth.password_validation import validate_password
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect

from lab.accounts.models import User
from lab.accounts.roles import STAFF_ROLES, Role
from lab.accounts.seal import account_seal_holds, email_as_stored
from lab.lib.mail import address_has_mail_form
from lab.staff.admin.base import LabModelAdmin
from lab.staff.admin.services import staff_account_save, staff_password_set, staff_roles_of
from lab.staff.admin.site import is_lab_admin

STAFF_ROLE_CHOICES = [(role.value, role.label) for role in Role if role in STAFF_ROLES]


NOT_ENCODABLE = (
    "No e-mail can be sent to this address: it cannot be encoded (a part of its domain is too long once"
    " encoded, for example)."
)


def _email_with_a_mail_form(typed: str, *, current: str | None) -> str:
    """`typed` as the lab stores it (`email_as_stored`), refused if no message can be written to it (the API's
    StoredEmailField's check): such an address was stored as typed, and a supervisor's made every alert
    e-mail raise before it was sent, to every supervisor."""
    stored = email_as_stored(typed)
    if stored != current and not address_has_mail_form(typed):
        raise forms.ValidationError(NOT_ENCODABLE, code="not_encodable")
    return stored


class StaffAccountChangeForm(forms.ModelForm[User]):
    password = ReadOnlyPasswordHashField(
        label="Password",
        help_text='Passwords are not stored in clear. Set a new one <a href="../password/">here</a>.',
    )
    roles = forms.MultipleChoiceField(choices=STAFF_ROLE_CHOICES, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = User
        fields = ("email", "full_name", "is_active")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["roles"].initial = staff_roles_of(self.instance)

    def clean_email(self) -> str:
        # As creation stores it, and as the sign-in looks it up: an address saved as typed signed nobody in.
        # One already stored is kept as it is (the account can still be edited, deactivated); a new one must
        # have a mail form.
        return _email_with_a_mail_form(str(self.cleaned_data["email"]), current=self.instance.email)


class StaffAccountCreationForm(forms.ModelForm[User]):
    password1 = forms.CharField(label="Password", strip=False, widget=forms.PasswordInput)
    password2 = forms.CharField(label="Password again", strip=False, widget=forms.PasswordInput)
    roles = forms.MultipleChoiceField(choices=STAFF_ROLE_CHOICES, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = User
        fields = ("email", "full_name")

    def clean_email(self) -> str:
        return _email_with_a_mail_form(str(self.cleaned_data["email"]), current=None)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        first, second = cleaned.get("password1"), cleaned.get("password2")
        if first and second and first != second:
            self.add_error("password2", "The two passwords differ.")
        elif first:
            user = User(email=cleaned.get("email", ""), full_name=cleaned.get("full_name", ""))
            try:
                validate_password(first, user=user)
            except forms.ValidationError as error:
                self.add_error("password1", error)
        return cleaned

    def save(self, commit: bool = True) -> User:
        user: User = super().save(commit=False)
        user.set_password(self.cleaned_data["password1"])
        if commit:
            user.save()
        return user


class OwnPasswordChangeForm(AdminPasswordChangeForm):
    """The admin's own "Change password" form (LabAdminSite.password_change, inside its transaction): the
    admin site's PasswordChangeForm, old password first (not the auth admin's form of the same name).

    Once the form is valid, the account's row is locked and read again: an account deactivated meanwhile (or
    no longer an admin), or whose password changed since the old one was checked, changes nothing (a
    deactivated admin changes nothing). The save writes the password alone onto the locked row and seals
    that row's state: Django's form saved every column of the copy the request loaded before, so another
    admin's deactivation, committed while this form was checked, was undone and sealed."""

    locked: User | None = None
    seal_held = True

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        locked = User.objects.select_for_update(of=("self",)).get(pk=self.user.pk)
        # On the old password's field: Django's admin page shows no error but the fields' own.
        if not is_lab_admin(locked):
            self.add_error(
                "old_password",
                forms.ValidationError(
                    "Not changed: this account was deactivated, or lost its admin role, while the form was"
                    " sent. Ask another lab admin.",
                    code="account_changed_meanwhile",
                ),
            )
        elif locked.password != self.user.password:
            self.add_error(
                "old_password",
                forms.ValidationError(
                    "Not changed: this account's password was changed while the form was sent."
                    " Sign in again.",
                    code="password_changed_meanwhile",
                ),
            )
        else:
            self.locked, self.seal_held = locked, account_seal_holds(locked)
        return cleaned

    def save(self, commit: bool = True) -> User:
        locked = self.locked
        assert locked is not None, "save() of a form that is not valid"
        locked.set_password(self.cleaned_data["new_password1"])
        locked.save(update_fields=["password"])
        staff_password_set(actor=locked, user=locked, seal_held=self.seal_held)
        # The view's update_session_auth_hash reads form.user: the session's hash is of the password saved.
        self.user = locked
        return locked


class StaffAccountAdmin(LabModelAdmin[User], UserAdmin[User]):
    form = StaffAccountChangeForm
    add_form = StaffAccountCreationForm
    fieldsets = ((None, {"fields": ("email", "full_name", "password", "is_active", "roles")}),)
    add_fieldsets = ((None, {"fields": ("email", "full_name", "password1", "password2", "roles")}),)
    list_display = ("email", "full_name", "staff_roles", "is_active", "date_joined")
    list_filter = ("is_active", "groups")
    search_fields = ("email", "full_name")
    ordering = ("email",)
    filter_horizontal = ()
    readonly_fields = ()

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return super().get_queryset(request).filter(groups__name__in=STAFF_ROLES).distinct()

    @admin.display(description="roles")
    def staff_roles(self, user: User) -> str:
        return ", ".join(staff_roles_of(user))

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Two admins saving the same e-mail address at once (two "add" forms, or a rename): the form's check
        passed for both, and the unique index refuses the second save. Its whole save is rolled back (account,
        roles, LogEntry, audit record): the admin is told so, back on the form, instead of a server error."""
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except IntegrityError:
            email = str(request.POST.get("email", "")).strip()
            others = User.objects.filter(email__iexact=email)
            if object_id is not None:
                others = others.exclude(pk=object_id)
            if request.method != "POST" or not email or not others.exists():
                raise
            self.message_user(
                request,
                "Not saved: an account with this e-mail address was saved by someone else at the same "
                "moment. Nothing of this form was kept; look the account up before trying again.",
                messages.ERROR,
            )
            return HttpResponseRedirect(request.get_full_path())

    def save_model(self, request: HttpRequest, obj: User, form: forms.ModelForm[User], change: bool) -> None:
        """Save the account as the page edits it (`staff_account_save`), and only that: every other column,
        the password shown read-only among them, is taken from the row under its lock, not from the copy the
        page read before waiting for it (a sign-in's last_login, or the profile its owner changed meanwhile,
        was written back)."""
        with transaction.atomic():
            if change:
                stored = User.objects.select_for_update(of=("self",)).get(pk=obj.pk)
                for field in User._meta.concrete_fields:
                    edited = field.name in form.cleaned_data and field.name != "password"
                    if not field.primary_key and not edited:
                        setattr(obj, field.attname, getattr(stored, field.attname))
            accepted_outside_change = staff_account_save(
                actor=request.user,  # type: ignore[arg-type]
                user=obj,
                roles=form.cleaned_data["roles"],
                is_new=not change,
            )
        if accepted_outside_change:
            self.message_user(
                request,
                "This account was changed outside the lab: its roles and state as this page shows them are"
                " the lab's again, and its password was made unusable (the database may have held one the"
                " lab never set). Set a new one with its password form.",
                messages.WARNING,
            )

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        """Django's password form for a staff account; a password it saves is sealed and recorded with it."""
        shown = self.get_object(request, unquote(id))  # None for an id no staff account has (or can have)
        if shown is None:
            raise Http404("No staff account has this id.")
        with transaction.atomic():
            target = User.objects.select_for_update(of=("self",)).get(pk=shown.pk)
            seal_held = account_seal_holds(target)  # read before the form saves
            response = super().user_change_password(request, id, form_url)
            # Django redirects also when it rejects a submission ("Conflicting form data"): what was saved is
            # what the row, still locked, holds now.
            saved = User.objects.get(pk=target.pk)
            if saved.password != target.password:
                disabled = not saved.has_usable_password()
                staff_password_set(
                    actor=request.user,  # type: ignore[arg-type]
                    user=saved,
                    seal_held=seal_held,
                    disabled=disabled,
                )
                if not seal_held:
                    self.message_user(
                        request,
                        f"The password is {'disabled' if disabled else 'set'}, but this account was changed"
                        " outside the lab (its roles or state are not as the lab last set them): it stays"
                        " refused until you save its page, checking its roles. That save makes the password"
                        " unusable: set it again after.",
                        messages.WARNING,
                    )
        return response

    def save_related(
        self, request: HttpRequest, form: forms.ModelForm[User], formsets: Any, change: bool
    ) -> None:
        """Roles were saved with the account (staff_account_save); the form has no other relations."""


def register(site: admin.AdminSite) -> None:
    site.register(User, StaffAccountAdmin)
