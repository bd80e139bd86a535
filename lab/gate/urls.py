from django.urls import path, re_path

from lab.gate import views

urlpatterns = [
    path("<str:asset_id>/<str:variant>", views.staff_photo, name="staff-photo"),
    # Last: whatever else is asked under /lab/photos/ is refused by the gate and recorded. Newlines too: `.`
    # skips them and `$` matches before a final one, so `/lab/photos/x%0Ay` was a plain, unrecorded 404.
    # ([\s\S] rather than (?s): Django's reverse() cannot read inline flags.)
    re_path(r"^(?P<rest>[\s\S]*)\Z", views.staff_photo_unknown, name="staff-photo-unknown"),
]
