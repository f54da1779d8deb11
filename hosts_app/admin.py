from django.contrib import admin

from hosts_app.models import Host

admin.site.register(Host, list_display=["name", "last_seen"])
