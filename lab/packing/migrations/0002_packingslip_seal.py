"""A packing slip's seal (PackingSlip.seal, lab/packing/services.py).

Slips stored before it have none: each is rendered again from its order the next time it is served or
printed (the order's address seal checked then), so no unsealed PDF is ever handed out after the upgrade.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("packing", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="packingslip",
            name="seal",
            field=models.CharField(blank=True, max_length=64),
        ),
    ]
