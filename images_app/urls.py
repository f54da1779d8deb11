from django.urls import path

from images_app import views

app_name = "images"
urlpatterns = [
    path("", views.image_list, name="list"),
    path("pull/", views.pull, name="pull"),
    path("build/", views.build, name="build"),
    path("registries/", views.registries, name="registries"),
    path("registries/<int:pk>/logout/", views.registry_logout, name="registry_logout"),
    path("<str:ref>/", views.detail, name="detail"),
    path("<str:ref>/tag/", views.tag, name="tag"),
    path("<str:ref>/remove/", views.remove, name="remove"),
]
