from django.urls import path

from lessons_app import views

app_name = "lessons"
urlpatterns = [
    path("", views.index, name="index"),
    path("experiment/", views.experiment, name="experiment"),
    path("measure/<str:what>/", views.measure, name="measure"),
    path("hog/<str:ref>/", views.memory_hog, name="hog"),
    path("layer-of/<str:ref>/", views.layer_of, name="layer_of"),
    path("<slug:slug>/", views.lesson, name="lesson"),
]
