from django.contrib import admin

from images_app.models import Image


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    """Admins reassign owners here; the engine's data is shown, not edited."""

    list_display = ["engine_id", "host", "owner", "updated"]
    list_filter = ["host"]
    search_fields = ["engine_id"]
    readonly_fields = ["host", "engine_id", "data", "updated"]
