"""A checkpoint row can be a restore marker (`manage.py audit_restore`): its mark, the witnessed checkpoint the
chain continues from after a database restore, the one it supersedes and the seqs lost, is stored beside the
lane heads it signs. Every other row holds "" (also those stored before, and those a process of the version
before inserts)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("audit", "0012_review_items_inserted_open")]

    operations = [
        migrations.AddField(
            model_name="auditcheckpoint",
            name="restore",
            field=models.TextField(blank=True, db_default="", default=""),
        ),
    ]
