from django.urls import path

from hosts_app import views

app_name = "hosts"
urlpatterns = [path("", views.host_list, name="list")]
