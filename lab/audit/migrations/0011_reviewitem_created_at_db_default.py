"""A review item is dated by the database's clock (statement_timestamp()), the clock the chain's records are
stamped by, not by the clock of the worker that drew it: the sample items of a run from before queued records
named their seqs are vouched for by their time against the run's record (lab.gate.review), and a worker two
hours ahead of the database dated them after it, so none was vouched for. A row inserted without a time is
dated too. Items already stored keep the time they have."""

import django.db.models.functions.datetime
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("audit", "0010_review_items_sign_off_only")]

    operations = [
        migrations.AlterField(
            model_name="reviewitem",
            name="created_at",
            field=models.DateTimeField(db_default=django.db.models.functions.datetime.Now()),
        ),
    ]
