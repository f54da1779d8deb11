from django.urls import path

from networks_app import views

app_name = "networks"
urlpatterns = [
    path("", views.network_list, name="list"),
    path("new/", views.create, name="create"),
    path("<str:ref>/", views.detail, name="detail"),
    path("<str:ref>/remove/", views.remove, name="remove"),
]
