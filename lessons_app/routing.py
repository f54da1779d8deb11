from django.urls import path

from lessons_app import consumers

websocket_urlpatterns = [
    path("ws/lessons/union/<str:ref>/", consumers.UnionConsumer.as_asgi()),
    path("ws/lessons/cgroups/<str:ref>/", consumers.CgroupsConsumer.as_asgi()),
    path("ws/lessons/architecture/", consumers.ArchitectureConsumer.as_asgi()),
    path("ws/lessons/build/", consumers.BuildConsumer.as_asgi()),
]
