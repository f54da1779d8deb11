from django.urls import path

from containers_app import views

app_name = "containers"
urlpatterns = [
    path("", views.container_list, name="list"),
    path("bulk/", views.bulk, name="bulk"),
    path("new/", views.create, name="create"),
    path("<str:ref>/", views.detail, name="detail"),
    path("<str:ref>/action/<str:action>/", views.action, name="action"),
    path("<str:ref>/logs.txt", views.logs_download, name="logs_download"),
    path("<str:ref>/top/", views.top, name="top"),
    path("<str:ref>/changes/", views.changes, name="changes"),
]
