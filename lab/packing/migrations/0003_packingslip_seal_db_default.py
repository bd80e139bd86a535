"""A database default for the slip's seal, which 0002 added NOT NULL with none (Django drops the default it
adds a column with): through an upgrade, a process of a version before it inserted slips without naming it,
and each of those inserts failed. The default is "", a slip stored before slips were sealed, which is
rendered again from its order the next time it is served or printed (lab/packing/services.py)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("packing", "0002_packingslip_seal"),
    ]

    operations = [
        migrations.AlterField(
            model_name="packingslip",
            name="seal",
            field=models.CharField(blank=True, db_default="", max_length=64),
        ),
    ]
