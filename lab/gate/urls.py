from django.urls import path, re_path

from lab.gate import views

urlpatterns = [
    path("<str:asset_id>/<str:variant>", views.staff_photo, name="staff-photo"),
    # Last: whatever else is asked under /lab/photos/ is refused by the gate and recorded.
    re_path(r"^(?P<rest>.*)$", views.staff_photo_unknown, name="staff-photo-unknown"),
]
