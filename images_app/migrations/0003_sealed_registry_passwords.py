"""Registry passwords saved before they were sealed are sealed now."""

from django.db import migrations, models


def seal_existing(apps, schema_editor):
    from images_app.sealing import seal_plain_rows

    seal_plain_rows(apps.get_model("images_app", "RegistryLogin"))


class Migration(migrations.Migration):

    dependencies = [
        ("images_app", "0002_registry_login"),
    ]

    operations = [
        migrations.AlterField(
            model_name="registrylogin",
            name="password",
            field=models.CharField(max_length=2048, verbose_name="password"),
        ),
        migrations.RunPython(seal_existing, migrations.RunPython.noop),
    ]
