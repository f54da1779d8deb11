from django.urls import path

from volumes_app import views

app_name = "volumes"
urlpatterns = [
    path("", views.volume_list, name="list"),
    path("new/", views.create, name="create"),
    path("<str:ref>/", views.detail, name="detail"),
    path("<str:ref>/remove/", views.remove, name="remove"),
]
