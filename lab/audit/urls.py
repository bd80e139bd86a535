from django.urls import path

from lab.audit import views

urlpatterns = [
    path("<uuid:asset_id>/<str:variant>", views.staff_photo, name="staff-photo"),
]
